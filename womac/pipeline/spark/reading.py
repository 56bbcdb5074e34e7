"""A task's piece read back and typed by the contract, as the CSV reader types a chunk's rows.

A staged CSV chunk is read as it was written (already typed and checked on the driver). A
slice of a Parquet input goes through the contract's own parsing rules as text, so a Parquet
file passes or fails exactly as its CSV export would; its problems carry row numbers
(counted from 1 across the files in name order).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from womac.data.contract import FIELD_BY_NAME, FIELDS, Role
from womac.data.problems import Problem

# The contract's parsing rules, the CSV reader's own: Parquet values go through the very
# same functions rather than a copy of the rules.
from womac.data.values import parse_column, unknown_column
from womac.pipeline.spark.pieces import STAGED, Piece

if TYPE_CHECKING:
    import pyarrow as pa


def read_piece(piece: Piece) -> tuple[pd.DataFrame, list[Problem]]:
    """A piece's rows, typed as the reader types a chunk, and the problems found in them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if piece.row_group == STAGED:
        return _staged_frame(pq.read_table(piece.path)), []
    columns: dict[str, str] = json.loads(piece.columns)
    batches = pq.ParquetFile(piece.path).iter_batches(
        batch_size=piece.length,
        row_groups=[piece.row_group],
        columns=sorted(set(columns.values())),
    )
    # The group's slices are its batches of ``length`` rows; decoding stops at this one.
    batch = next(itertools.islice(batches, piece.offset // piece.length, None))
    rows = np.arange(piece.first_row, piece.first_row + batch.num_rows)
    return type_rows(pa.Table.from_batches([batch]), columns, rows)


def type_rows(
    table: pa.Table, columns: Mapping[str, str], rows: np.ndarray
) -> tuple[pd.DataFrame, list[Problem]]:
    """Type Parquet rows by the contract, as the CSV reader types the rows of a chunk.

    Each value is taken as the text a CSV export would hold (Arrow's shortest round-trip
    text for numbers, ``true``/``false``, empty for null) and parsed by the reader's own
    rules, so ranges, categories and their aliases, yes/no spellings and blanks mean the
    same in both formats.

    Parameters
    ----------
    table
        The rows, with the file's own column names.
    columns
        Contract field -> column name in ``table``, for the fields the file has.
    rows
        The row number of each row (from 1), for problems.

    Returns
    -------
    tuple
        The typed rows (every contract column, as :class:`~data.cohort.Cohort` holds them;
        values that break a rule are unknown) and the problems found.
    """
    index = pd.RangeIndex(table.num_rows)
    typed: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    for spec in FIELDS:
        if spec.name not in columns:
            typed[spec.name] = unknown_column(spec, index)
            continue
        text = _as_text(table.column(columns[spec.name]))
        values, found, blank = parse_column(text, spec, rows)
        typed[spec.name] = values
        problems.extend(found)
        if spec.role is Role.IDENTIFIER and spec.required and blank.any():
            problems.append(Problem(spec.name, "must not be blank", tuple(rows[blank].tolist())))
    return pd.DataFrame(typed, index=index), problems


def _as_text(column: pa.ChunkedArray) -> pd.Series:
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.fill_null(pc.cast(column, pa.string()), "")
    return pd.Series(text.to_numpy(zero_copy_only=False), dtype=object)


def _staged_frame(table: pa.Table) -> pd.DataFrame:
    """A staged chunk back as the reader typed it (text as objects, unknown as NaN)."""
    frame = table.to_pandas()
    for name in frame.columns:
        if FIELD_BY_NAME[str(name)].is_text:
            frame[name] = frame[name].to_numpy(dtype=object, na_value=np.nan)
    return frame
