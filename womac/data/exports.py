"""A clinic's export in whichever format it comes: CSV, a spreadsheet, or Parquet.

Each format hands the reader the same thing: its header as written, then its rows in chunks
of cells as text (what a CSV holds), each with its place in the file, so the contract's rules
(:mod:`womac.data.values`) and the problem report (:mod:`womac.data.problems`) are the same
whatever the format. Places are what a person would look for: file lines of a CSV (the header
is line 1), row numbers of a spreadsheet as it shows them with the sheet and column letter,
rows of a Parquet file (from 1).

- CSV (``.csv``, ``.tsv``, ``.txt``): :class:`~womac.data.csv_export.CsvExport`.
- Spreadsheets (``.xlsx``, ``.xlsm``, ``.xls``, ``.ods``): :class:`SheetExport`, read with
  python-calamine (Rust; no formulas are evaluated, a cell holds its last saved value).
- Parquet (``.parquet``, ``.pq``): :class:`ParquetExport`, read with pyarrow by row group.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from womac.data.csv_export import CsvExport
from womac.data.problems import CohortError, Problem, ProblemLog

SHEET_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xls", ".ods"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
FORMATS = "CSV, Excel (.xlsx, .xls), OpenDocument (.ods) or Parquet"

Chunk = tuple[pd.DataFrame, np.ndarray]
"""Cells as text (one column per header position, blank as ""), and each row's place."""


class Export(Protocol):
    """What a reader needs of an export, whatever its format."""

    @property
    def source(self) -> str:
        """The file's name, for messages."""
        ...

    @property
    def header(self) -> list[str]:
        """The header's cells as written (a chunk has a column for each of the first ones)."""
        ...

    place: str
    notes: list[str]

    def chunks(self, rows: int, problems: ProblemLog) -> Iterator[Chunk]:
        """The data rows, at most ``rows`` at a time; rows that cannot be read go to
        ``problems``."""
        ...

    def column_place(self, position: int) -> str:
        """Where the header's ``position``-th column is, in the file's own terms."""
        ...


def open_export(path: Path, sheet: str | None = None) -> Export:
    """The export at ``path``, by its suffix.

    Raises
    ------
    CohortError
        When the file cannot be read as a table, or ``sheet`` is given for a file that has
        no sheets or names a sheet the workbook does not have.
    """
    suffix = path.suffix.casefold()
    if suffix in SHEET_SUFFIXES:
        return SheetExport.open(path, sheet)
    if sheet is not None:
        raise CohortError(path.name, [Problem("file", "has no sheets (--sheet is for workbooks)")])
    if suffix in PARQUET_SUFFIXES:
        return ParquetExport.open(path)
    return CsvText(CsvExport.open(path))


@dataclass
class CsvText:
    """A CSV export as an :class:`Export`: places are file lines."""

    csv: CsvExport
    place: str = "line"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.csv.encoding_note:
            self.notes.append(self.csv.encoding_note)

    @property
    def source(self) -> str:
        return self.csv.source

    @property
    def header(self) -> list[str]:
        return self.csv.header

    def chunks(self, rows: int, problems: ProblemLog) -> Iterator[Chunk]:
        cells: list[list[str]] = []
        lines: list[int] = []
        for row, line in self.csv.rows(problems):
            cells.append(row)
            lines.append(line)
            if len(cells) == rows:
                yield _chunk(cells, lines, self.csv.width)
                cells, lines = [], []
        if cells:
            yield _chunk(cells, lines, self.csv.width)

    def column_place(self, position: int) -> str:
        return ""


@dataclass
class SheetExport:
    """One sheet of a workbook: its header is its first non-blank row."""

    path: Path
    source: str
    sheet: str
    header: list[str]
    header_row: int
    place: str = "row"
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, sheet: str | None) -> SheetExport:
        """Open the workbook, choose the sheet (the first by default) and find its header."""
        from python_calamine import CalamineError, CalamineWorkbook

        source = path.name
        try:
            workbook = CalamineWorkbook.from_path(str(path))
        except (CalamineError, OSError, ValueError) as error:
            why = error.strerror if isinstance(error, OSError) else "not a readable workbook"
            raise CohortError(source, [Problem("file", f"cannot be read ({why})")]) from None
        names = list(workbook.sheet_names)
        chosen = sheet if sheet is not None else (names[0] if names else None)
        if chosen not in names:
            listed = ", ".join(repr(name) for name in names) or "none"
            rule = f"has no sheet {sheet!r} (its sheets: {listed})"
            raise CohortError(source, [Problem("file", rule)])
        for number, row in enumerate(workbook.get_sheet_by_name(chosen).iter_rows(), start=1):
            cells = [_cell_text(value) for value in row]
            if any(cell.strip() for cell in cells):
                while cells and not cells[-1].strip():
                    cells.pop()
                notes = [] if sheet is not None or len(names) == 1 else [_first_sheet(chosen)]
                return cls(path, source, chosen, cells, number, notes=notes)
        raise CohortError(source, [Problem("file", f"sheet {chosen!r} is empty")])

    def chunks(self, rows: int, problems: ProblemLog) -> Iterator[Chunk]:
        from python_calamine import CalamineWorkbook

        width = len(self.header)
        sheet = CalamineWorkbook.from_path(str(self.path)).get_sheet_by_name(self.sheet)
        cells: list[list[str]] = []
        numbers: list[int] = []
        for number, row in enumerate(sheet.iter_rows(), start=1):
            if number <= self.header_row:
                continue
            texts = [_cell_text(value) for value in row[:width]]
            if not any(text.strip() for text in texts):
                continue
            if any(_cell_text(value).strip() for value in row[width:]):
                problems.add(
                    Problem("file", "row has cells beyond the header's columns", (number,))
                )
                continue
            cells.append(texts + [""] * (width - len(texts)))
            numbers.append(number)
            if len(cells) == rows:
                yield _chunk(cells, numbers, width)
                cells, numbers = [], []
        if cells:
            yield _chunk(cells, numbers, width)

    def column_place(self, position: int) -> str:
        return f"sheet {self.sheet!r}, column {column_letter(position)}"


@dataclass
class ParquetExport:
    """A Parquet file: its columns by name, its rows numbered from 1."""

    path: Path
    source: str
    header: list[str]
    place: str = "row"
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> ParquetExport:
        """Read the file's schema (its footer); the rows are read chunk by chunk."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as error:
            why = error.strerror if isinstance(error, OSError) and error.strerror else None
            rule = f"cannot be read ({why or 'not a readable Parquet file'})"
            raise CohortError(path.name, [Problem("file", rule)]) from None
        return cls(path, path.name, list(schema.names))

    def chunks(self, rows: int, problems: ProblemLog) -> Iterator[Chunk]:
        import pyarrow.parquet as pq

        first = 1
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=rows):
            text = {i: _arrow_text(column) for i, column in enumerate(batch.columns)}
            numbers = np.arange(first, first + batch.num_rows)
            first += batch.num_rows
            yield pd.DataFrame(text, index=pd.RangeIndex(batch.num_rows)), numbers

    def column_place(self, position: int) -> str:
        return ""


def column_letter(position: int) -> str:
    """A spreadsheet's letters for the ``position``-th column (0 is A, 26 is AA)."""
    letters = ""
    position += 1
    while position:
        position, remainder = divmod(position - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _chunk(cells: list[list[str]], places: list[int], width: int) -> Chunk:
    frame = pd.DataFrame(cells, columns=range(width), dtype=object)
    return frame, np.asarray(places, dtype=int)


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as a CSV export of it would hold it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))  # 1001, not 1001.0: an identifier reads the same as in CSV
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return "" if value is None else str(value)


def _arrow_text(column: Any) -> np.ndarray:
    """A Parquet column as text: Arrow's shortest round-trip numbers, true/false, "" for null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    text = pc.fill_null(pc.cast(column, pa.string()), "")
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)


def _first_sheet(name: str) -> str:
    return f"read the workbook's first sheet, {name!r} (choose another with --sheet)"
