"""Where ``womac predict`` writes its scores: a CSV, a Parquet file or an Excel workbook, by
the output's suffix, written chunk by chunk and whole or not at all.

Every format gets the same cells: a text cell that a spreadsheet would run as a formula is
prefixed with a quote (OWASP's advice, :func:`~womac.pipeline.files.spreadsheet_safe`), in a
workbook too, whose cells are written as text, never as formulas. A list (the top factors)
is one cell of a CSV or a workbook and a list column of a Parquet file, as the Spark engine
writes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from womac.pipeline.files import LINE_END, spreadsheet_safe, written_whole, written_whole_path

SUFFIXES = (".csv", ".parquet", ".xlsx")
XLSX_MAX_ROWS = 1_048_575  # a sheet's rows, less the header


class ScoresFile(Protocol):
    """An output being written: one chunk of scores at a time."""

    def write(self, scores: pd.DataFrame) -> None:
        """Append a chunk of scores (as :func:`~womac.pipeline.predict.score_frame` gives)."""
        ...


def check_suffix(out: Path) -> None:
    """Refuse an output whose format is not known, before any work is done."""
    if out.suffix.casefold() not in SUFFIXES:
        raise ValueError(f"--out must end in {', '.join(SUFFIXES)} (the output's format)")


@contextmanager
def scores_file(out: Path, as_text: Any) -> Iterator[ScoresFile]:
    """The output ``out`` in the format its suffix names; renamed into place at the end.

    ``as_text`` turns a chunk of scores into the cells of a text format (lists joined).
    """
    suffix = out.suffix.casefold()
    if suffix == ".parquet":
        with written_whole_path(out) as temporary:
            parquet = _Parquet(temporary)
            try:
                yield parquet
            finally:
                parquet.close()
    elif suffix == ".xlsx":
        with written_whole_path(out) as temporary:
            workbook = _Workbook(temporary, as_text)
            try:
                yield workbook
            finally:
                workbook.close()
    else:
        with written_whole(out) as stream:
            yield _Csv(stream, as_text)


class _Csv:
    def __init__(self, stream: Any, as_text: Any) -> None:
        self.stream, self.as_text, self.rows = stream, as_text, 0

    def write(self, scores: pd.DataFrame) -> None:
        self.as_text(scores).to_csv(
            self.stream, index=False, header=self.rows == 0, lineterminator=LINE_END
        )
        self.rows += len(scores)


class _Parquet:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: Any = None

    def write(self, scores: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(spreadsheet_safe(scores), preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _Workbook:
    def __init__(self, path: Path, as_text: Any) -> None:
        import xlsxwriter

        options = {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
        self.book = xlsxwriter.Workbook(str(path), options)
        self.sheet = self.book.add_worksheet("Scores")
        self.as_text, self.row = as_text, 0

    def write(self, scores: pd.DataFrame) -> None:
        text = self.as_text(scores)
        if self.row + len(text) > XLSX_MAX_ROWS:
            raise ValueError(
                f"an .xlsx sheet holds at most {XLSX_MAX_ROWS:,} patients; write .csv or "
                ".parquet instead"
            )
        if self.row == 0:
            self.sheet.write_row(0, 0, list(text.columns))
        for values in text.itertuples(index=False):
            self.row += 1
            for column, value in enumerate(values):
                if isinstance(value, str):
                    self.sheet.write_string(self.row, column, value)
                elif value is not None and value == value:  # NaN is a blank cell
                    self.sheet.write(self.row, column, value)

    def close(self) -> None:
        self.book.close()
