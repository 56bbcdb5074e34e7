"""The unit of a Spark job: a piece of the cohort one task scores, and the driver's plan of them.

The cohort is cut into pieces of at most ``chunk_rows`` rows in file order; piece *i* is
partition *i* of the job and becomes ``part-<i>`` of the output, so the output lists patients
in input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Rows per task: small enough that a 100,000-patient file keeps four cores busy, large
# enough that a task's fixed costs (reading its piece, Arrow hand-over) stay under 1%.
PIECE_ROWS = 25_000
MAX_PIECES_PER_ROW_GROUP = 8
STAGED = -1  # row_group of a piece staged from a CSV (already typed): the whole file
# The Spark rows the driver hands the tasks: one per piece, its fields in order.
PIECE_SCHEMA = (
    "path string, row_group int, offset long, length long, first_row long, columns string"
)


@dataclass(frozen=True, slots=True)
class Piece:
    """The rows one Spark task scores: a staged CSV chunk, or a slice of a Parquet row group.

    Attributes
    ----------
    path
        Parquet file holding the rows.
    row_group
        Row group of a Parquet input; ``-1`` for a chunk staged from a CSV (the whole file,
        already typed and validated).
    offset, length
        The slice of the row group: rows ``offset`` to ``offset + length`` (the group's last
        slice may hold fewer); ``length`` rows for a staged chunk.
    first_row
        Number of its first row in the input (from 1), for problems.
    columns
        JSON of ``{contract field: column name in the file}`` (Parquet input only).
    """

    path: str
    row_group: int
    offset: int
    length: int
    first_row: int
    columns: str = ""


@dataclass(slots=True)
class Plan:
    """What the driver found in the input before any Spark work."""

    pieces: list[Piece]
    source: str
    notes: list[str] = field(default_factory=list)
