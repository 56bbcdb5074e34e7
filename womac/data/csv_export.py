"""The text of a CSV export: its encoding, separator and header, and its rows of cells.

This knows CSV and nothing of the contract's fields: it finds how a file is written (UTF-8
with or without BOM, UTF-16, Latin-1; comma, semicolon or tab separated), where its header
is, and yields each data row's cells with the file line it starts on (the header's first
line is line 1, as a spreadsheet numbers rows). A file that is not a table at all is refused
with a :class:`~womac.data.problems.CohortError`, in words a data manager can act on.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from womac.data.problems import CohortError, Problem, ProblemLog


@dataclass(frozen=True, slots=True)
class CsvExport:
    """How a CSV export is written, found from its bytes and its first non-blank line.

    Attributes
    ----------
    path
        The file.
    source
        The file's name, for messages.
    encoding
        The text encoding every byte of the file is valid in.
    encoding_note
        A warning for the user about the encoding, if any.
    header
        The header's cells as written.
    delimiter
        The separator: the one of comma, semicolon and tab the header uses most.
    header_line
        The file line of the header.
    """

    path: Path
    source: str
    encoding: str
    encoding_note: str | None
    header: list[str]
    delimiter: str
    header_line: int

    @classmethod
    def open(cls, path: Path) -> CsvExport:
        """Check the file's bytes and find its header.

        Raises
        ------
        CohortError
            When the file cannot be read as a table (missing, empty, binary, no valid header).
        """
        source = path.name
        encoding, note = _detect_encoding(path, source)
        with path.open(encoding=encoding, newline="") as stream:
            header, delimiter, line = _read_header(stream, source)
        return cls(path, source, encoding, note, header, delimiter, line)

    @property
    def width(self) -> int:
        """Cells per row: the header's, without trailing cells that have no name."""
        # Spreadsheets export trailing empty columns as unnamed headers and blank cells.
        width = len(self.header)
        while width and not self.header[width - 1].strip():
            width -= 1
        return width

    def rows(self, problems: ProblemLog) -> Iterator[tuple[list[str], int]]:
        """Each data row's ``width`` cells and the file line it starts on.

        Blank rows are skipped; a row with a different number of cells than the header is
        recorded in ``problems`` and skipped.

        Raises
        ------
        CohortError
            When the file turns out not to be text, or not valid CSV, part-way through.
        """
        width = self.width
        with self.path.open(encoding=self.encoding, newline="") as stream:
            reader = csv.reader(stream, delimiter=self.delimiter, strict=True)
            previous = 0
            try:
                for row in reader:
                    # A quoted cell may span lines; a row starts after the previous one ends.
                    start, previous = previous + 1, reader.line_num
                    if start <= self.header_line or not any(cell.strip() for cell in row):
                        continue
                    if any("\x00" in cell for cell in row):
                        raise CohortError(self.source, [_BINARY])
                    if len(row) < width or any(cell.strip() for cell in row[width:]):
                        problems.add(Problem("file", _ROW_WIDTH, (start,)))
                        continue
                    yield row[:width], start
            except csv.Error as error:
                # The row being read starts on the line after the previous row ended.
                raise CohortError(self.source, [_csv_problem(error, previous + 1)]) from None


_BINARY = Problem("file", "is not a text CSV file (binary content)")
_ROW_WIDTH = "row has a different number of cells than the header"


def _read_header(stream: IO[str], source: str) -> tuple[list[str], str, int]:
    """The first non-blank line's cells, the separator it uses, and its line number."""
    for number, text in enumerate(stream, start=1):
        if "\x00" in text:
            raise CohortError(source, [_BINARY])
        if text.strip():
            delimiter = max((",", ";", "\t"), key=text.count)
            try:
                header = next(csv.reader([text], delimiter=delimiter, strict=True))
            except csv.Error as error:
                raise CohortError(source, [_csv_problem(error, number)]) from None
            return header, delimiter, number
    raise CohortError(source, [Problem("file", "is empty")])


def _csv_problem(error: csv.Error, line: int) -> Problem:
    """The CSV module's complaint in words a data manager can act on, with its line."""
    message = str(error)
    if "field larger than field limit" in message:
        why = f"a cell is longer than {csv.field_size_limit():,} characters"
    elif "unexpected end of data" in message:
        why = 'a quote (") is opened and never closed'
    else:
        why = message
    return Problem("file", f"is not a valid CSV file: {why}", (line,))


def _detect_encoding(path: Path, source: str) -> tuple[str, str | None]:
    """UTF-16 (by its BOM), UTF-8 (with or without BOM), else Latin-1, checked on all bytes."""
    try:
        with path.open("rb") as stream:
            start = stream.read(4)
            stream.seek(0)
            if start.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" export
                if not _decodes(stream, "utf-16"):
                    raise CohortError(
                        source,
                        [Problem("file", "starts as UTF-16 text but is not valid UTF-16")],
                    )
                return "utf-16", None
            if b"\x00" in stream.read(1 << 16):
                raise CohortError(source, [_BINARY])
            stream.seek(0)
            if not _decodes(stream, "utf-8"):
                # Spreadsheets on Windows export Latin-1/CP-1252; our names are ASCII.
                return "latin-1", "file is not UTF-8; read as Latin-1"
    except OSError as error:
        raise CohortError(
            source, [Problem("file", f"cannot be read ({error.strerror})")]
        ) from None
    return "utf-8-sig", None


def _decodes(stream: Any, encoding: str) -> bool:
    """Whether the whole of a binary stream is valid text in ``encoding`` (read by blocks)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        for block in iter(lambda: stream.read(1 << 20), b""):
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True
