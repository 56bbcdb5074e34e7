"""Writing output files whole or not at all, and safe to open in a spreadsheet."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import pandas as pd

from womac.models.leftovers import temporary_prefix
from womac.pipeline.safety import stop_if_interrupted

# Characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection"):
# =, +, -, @, and a tab or carriage return (which precede one), with their full-width forms.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


# RFC 4180's line ending. It also makes the CSV writer quote a cell holding a carriage
# return, which with "\n" endings it leaves bare, splitting the row in a spreadsheet.
LINE_END = "\r\n"


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula, prefixed with a single quote.

    OWASP's advice for CSV files: a leading ``'`` makes Excel, LibreOffice and Google Sheets
    show the cell as text. Only text cells change (a negative number stays a number), and only
    those that start like a formula; a patient id written ``=HYPERLINK(...)`` arrives in the
    file as ``'=HYPERLINK(...)``, shown, never run.
    """
    out = frame
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object and not pd.api.types.is_string_dtype(column):
            continue
        risky = column.map(lambda cell: isinstance(cell, str) and cell.startswith(FORMULA_STARTS))
        if risky.any():
            if out is frame:
                out = frame.copy()
            out[name] = column.where(~risky, "'" + column.astype(object).where(risky, ""))
    return out


@contextmanager
def written_whole_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed into place when the block ends, removed if
    it fails: ``path`` is written whole or not at all.

    A crash or an interrupt leaves either the old file or none, never half a file. The
    temporary file's name holds this process (:func:`~womac.models.leftovers.temporary_prefix`),
    so that if it is killed outright the next command writing here removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=temporary_prefix(path.name), suffix=".tmp", dir=path.parent
    )
    os.close(handle)
    try:
        yield Path(temporary)
        stop_if_interrupted()
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def written_whole(path: Path) -> Iterator[TextIO]:
    """A UTF-8 text stream for ``path``, written whole or not at all.

    See :func:`written_whole_path`.
    """
    with (
        written_whole_path(path) as temporary,
        temporary.open("w", encoding="utf-8", newline="") as stream,
    ):
        yield stream


def atomic_write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a spreadsheet-safe CSV whole or not at all (:func:`written_whole`)."""
    with written_whole(path) as stream:
        spreadsheet_safe(frame).to_csv(stream, index=False, lineterminator=LINE_END)
