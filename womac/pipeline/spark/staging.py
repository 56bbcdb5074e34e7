"""The cohort on the driver, before any Spark work: checked, and cut into pieces for the tasks.

* **CSV input** is read and validated on the driver by the single path's streaming reader
  (encodings, separators, decimal commas, every problem with its file line); its typed chunks
  are staged as Parquet in the job's work folder for the tasks.
* **Parquet input** is validated where it is read, in the tasks (:mod:`.reading`). Here only
  its column names, types and required columns are checked, from the files' footers, and its
  row groups cut into slices.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from womac.data.cohort import AS_CONTRACT, CohortReader, Layout
from womac.data.contract import FIELD_BY_NAME, FIELDS
from womac.data.problems import CohortError, Problem
from womac.data.values import normalise_header
from womac.pipeline.spark.pieces import MAX_PIECES_PER_ROW_GROUP, STAGED, Piece, Plan

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET_SUFFIXES = (".parquet", ".pq")


def open_cohort(
    data: Path, chunk_rows: int, step: Callable[[str], None], layout: Layout = AS_CONTRACT
) -> CohortReader | Plan:
    """The cohort as the driver first sees it: a Parquet input's plan, or a reader.

    A Parquet input in the contract's names (a ``.parquet``/``.pq`` file or a folder) is
    planned from its footers here; any other export (a CSV, a workbook, or anything read
    through a mapping) is read and staged by :func:`plan_pieces` once the job's work folder
    exists.
    """
    parquet = data.is_dir() or data.suffix.lower() in PARQUET_SUFFIXES
    step("Checking the cohort")
    if parquet and layout.mapping is None:
        return plan_parquet(data, chunk_rows)
    return CohortReader(data, chunk_rows=chunk_rows, layout=layout)


def plan_pieces(cohort: CohortReader | Plan, work: Path, step: Callable[[str], None]) -> Plan:
    """The pieces to score: a Parquet input's plan as it is, a CSV staged into ``work``."""
    if isinstance(cohort, Plan):
        return cohort
    return stage_csv(cohort, work / "staged", step)


def stage_csv(reader: CohortReader, folder: Path, step: Callable[[str], None]) -> Plan:
    """Validate a CSV on the driver (the single path's reader) and stage its typed chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [(spec.name, pa.string() if spec.is_text else pa.float64()) for spec in FIELDS]
    )
    folder.mkdir()
    pieces = []
    for index, chunk in enumerate(reader.chunks()):
        step(f"Reading and checking the cohort ({reader.rows:,} rows)")
        if len(chunk) == 0 or reader.problems():
            continue  # keep reading to list every problem, but stage nothing more
        path = folder / f"chunk-{index:06d}.parquet"
        table = pa.Table.from_pandas(chunk.frame, schema=schema, preserve_index=False)
        pq.write_table(table, path)
        pieces.append(Piece(str(path), STAGED, 0, len(chunk), int(chunk.lines[0])))
    problems = reader.problems()
    if problems:
        raise CohortError(reader.source, problems)
    return Plan(pieces=pieces, source=reader.source, notes=list(reader.notes))


def plan_parquet(data: Path, chunk_rows: int) -> Plan:
    """Check a Parquet input's columns from its footers and cut its rows into pieces."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = data.name
    if not data.exists():
        raise CohortError(source, [Problem("file", "does not exist")])
    files = _parquet_files(data)
    if not files:
        raise CohortError(source, [Problem("file", "holds no .parquet file")])
    problems: list[Problem] = []
    ignored: set[str] = set()
    pieces: list[Piece] = []
    rows = 0
    for path in files:
        where = f" in {path.relative_to(data)}" if data.is_dir() and len(files) > 1 else ""
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowException):
            problems.append(Problem("file", f"is not a readable Parquet file{where}"))
            continue
        columns, found, extra = _contract_columns(parquet.schema_arrow, where)
        problems.extend(found)
        ignored.update(extra)
        mapping = json.dumps(columns)
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            # A task decodes its row group up to its slice: a few slices per group at most.
            step = max(chunk_rows, -(-size // MAX_PIECES_PER_ROW_GROUP))
            for offset in range(0, size, step):
                pieces.append(Piece(str(path), group, offset, step, rows + offset + 1, mapping))
            rows += size
    if rows == 0 and not problems:
        problems.append(Problem("file", "has no data rows"))
    if problems:
        raise CohortError(source, problems)
    return Plan(pieces=pieces, source=source, notes=_ignored_notes(ignored))


def _ignored_notes(ignored: set[str]) -> list[str]:
    """The note naming the columns not in the contract (none if there are none)."""
    if not ignored:
        return []
    shown = ", ".join(name[:40] for name in sorted(ignored)[:10])
    return [f"ignored {len(ignored)} column(s) not in the contract: {shown}"]


def _parquet_files(data: Path) -> list[Path]:
    """A Parquet file, or a folder's ``.parquet`` files in name order (as pyarrow reads them)."""
    if not data.is_dir():
        return [data]
    return sorted(
        path
        for path in data.rglob("*")
        if path.is_file()
        and path.suffix.lower() in PARQUET_SUFFIXES
        and not any(part.startswith((".", "_")) for part in path.relative_to(data).parts)
    )


def _contract_columns(
    schema: pa.Schema, where: str
) -> tuple[dict[str, str], list[Problem], list[str]]:
    """Contract field -> column name of a Parquet file; problems; columns ignored."""
    import pyarrow as pa

    columns: dict[str, str] = {}
    problems: list[Problem] = []
    extra: list[str] = []
    seen: dict[str, int] = {}
    for column in schema:
        name = normalise_header(column.name)
        if name not in FIELD_BY_NAME:
            extra.append(column.name)
            continue
        seen[name] = seen.get(name, 0) + 1
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if not _text_castable(kind):
            problems.append(
                Problem(name, f"has Parquet type {kind}, not text, a number or true/false{where}")
            )
        columns[name] = column.name
    for name, count in seen.items():
        if count > 1:
            problems.append(Problem(name, f"column appears more than once{where}"))
    for spec in FIELDS:
        if spec.required and spec.name not in columns:
            problems.append(Problem(spec.name, f"required column is missing{where}"))
    return columns, problems, extra


def _text_castable(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )
