"""Registry-scale batch scoring on Spark: ``womac predict --engine spark``.

The same model, rules and numbers as ``womac predict``, with the scoring spread over a Spark
cluster (or every core of this machine with ``local[*]``). pyspark is optional (the ``spark``
extra) and imported only here, only when the engine runs.

How it works
------------
* **One model, the registered artifact.** The champion (or ``--model-uri``) is resolved once,
  on the driver, and its skops file downloaded and checked there (loaded as a served model).
  Its bytes are broadcast to the executors; each Python worker loads them once (cached by
  their SHA-256) with skops trusting our own type list, exactly as the service does, and
  builds the same :class:`~womac.models.scoring.Scorer`. Every task therefore scores with the
  same version, even if the alias moves during the job. (``mlflow.pyfunc.spark_udf`` on the
  registered model gives the same answer columns, but checks each task's values by raising,
  where this engine lists every problem of the whole input by row.)
* **One row format.** Each piece of the cohort goes through
  :func:`womac.pipeline.predict.score_frame`, the function the single-process path calls on
  each chunk, so both engines write the same columns with the same values.
* **Rows keep their order.** The cohort is cut into pieces of at most ``chunk_rows`` rows in
  file order; piece *i* is partition *i* of the job and becomes ``part-<i>`` of the output,
  so the output lists patients in input order (one patient may have several rows, and the
  output names only ``patient_id``). Spark's own file scan would not keep it: it orders its
  splits by size. Each task reads its piece with pyarrow.
* **CSV input** is read and validated on the driver by the single path's streaming reader
  (encodings, separators, decimal commas, every problem with its file line), before any
  Spark work starts; its typed chunks are staged as Parquet beside the output for the tasks.
* **Parquet input** is validated where it is read, in the tasks. Column names, types and
  required columns are checked on the driver from the files' footers; then every value goes
  through the contract's own parsing rules as text (so a Parquet file passes or fails exactly
  as its CSV export would), problems are gathered from all tasks with their row numbers
  (counted from 1 across the files in name order), and if there is any the job is refused
  with all of them and nothing is written.
* **Whole output or none.** Spark writes a Parquet directory into a temporary folder beside
  the target; it is renamed into place only when the job succeeded.
* **No patient data in messages.** A task's failure is reported by exception type and code
  location only, and the Spark loggers that would print a task's exception are off.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

# The contract's parsing rules live in data/cohort.py, beside the CSV reader; Parquet
# values go through the very same functions rather than a copy of the rules.
from womac.data.cohort import (
    CohortError,
    CohortReader,
    Problem,
    normalise_header,
    parse_column,
)
from womac.data.contract import FIELD_BY_NAME, FIELDS, Kind, Role
from womac.models.eligibility import Protocol
from womac.models.leftovers import temporary_prefix
from womac.models.scoring import Scorer
from womac.models.store import connect, download_skops, loads_skops
from womac.pipeline.detail import Detail
from womac.pipeline.predict import BatchSummary, score_columns, score_frame
from womac.settings import DEFAULT_SPARK_MASTER

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark import SparkConf
    from pyspark.broadcast import Broadcast
    from pyspark.sql import SparkSession

INSTALL_HINT = "pip install '.[spark]' (or `make setup-spark` in a clone)"
PARQUET_SUFFIXES = (".parquet", ".pq")
# Rows per task: small enough that a 100,000-patient file keeps four cores busy, large
# enough that a task's fixed costs (reading its piece, Arrow hand-over) stay under 1%.
PIECE_ROWS = 25_000
MAX_PIECES_PER_ROW_GROUP = 8
LOG4J2_CONFIG = Path(__file__).with_name("spark-log4j2.properties")
# pyspark warns on every import path that it does not yet fully support pandas 3; what this
# engine uses (mapInPandas over plain float, text and boolean columns) is tested with it.
_PANDAS_3_WARNING = "PySpark does not yet fully support pandas"
# The JVM's own start-up notice (Spark starts it with the incubating vector module).
_JVM_NOTICES = (b"WARNING: Using incubator modules",)
_WORKER_FAILURE = "womac task failed"
_PIECE_SCHEMA = (
    "path string, row_group int, offset long, length long, first_row long, columns string"
)
_STAGED = -1  # row_group of a piece staged from a CSV (already typed): the whole file


class SparkEngineError(RuntimeError):
    """The Spark engine cannot run (no pyspark or Java), may not write there, or its job failed."""


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
class _Plan:
    """What the driver found in the input before any Spark work."""

    pieces: list[Piece]
    source: str
    notes: list[str] = field(default_factory=list)


def require_spark() -> None:
    """Check that the Spark engine can start; raise :class:`SparkEngineError` saying how if not."""
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkEngineError(
            f"the Spark engine needs the optional spark extra (pyspark, pyarrow): {INSTALL_HINT}"
        ) from None
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise SparkEngineError(
            "the Spark engine needs a Java runtime (17 or later) on PATH or in JAVA_HOME"
        )


def start_spark(master: str = DEFAULT_SPARK_MASTER) -> SparkSession:
    """Start (or join) the Spark session of this process, configured for scoring.

    Workers run this interpreter (it has pyarrow and the model's packages), the web UI and
    console progress are off, the driver logs errors only, and on a ``local`` master the
    driver listens on loopback only. A session already running in this process is reused
    as it is.
    """
    require_spark()
    quiet_pyspark()
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    # Respect an explicit PYSPARK_PYTHON (a cluster's executors may keep Python elsewhere).
    python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = SparkConf().setMaster(master).setAppName("womac-predict")
    conf.set("spark.pyspark.python", python)
    conf.set("spark.ui.enabled", "false")
    conf.set("spark.ui.showConsoleProgress", "false")
    conf.set(
        "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}"
    )
    conf.set("spark.executorEnv.PYTHONWARNINGS", f"ignore:{_PANDAS_3_WARNING}:FutureWarning")
    if master.startswith("local"):
        conf.set("spark.driver.host", "127.0.0.1")
        conf.set("spark.driver.bindAddress", "127.0.0.1")
    if SparkContext._active_spark_context is None:
        gateway = _quiet_gateway(conf) if SparkContext._gateway is None else None
        SparkContext(conf=conf, gateway=gateway)
    session = SparkSession.builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def quiet_pyspark() -> None:
    """Silence pyspark's warning about pandas 3 in this process (workers: PYTHONWARNINGS).

    py4j's own log lines are off too: it logs at ERROR when the connection to the JVM goes
    while the JVM shuts down (``Broken pipe`` after a successful job); a real failure during
    a job reaches us as an exception, which the engine reports itself.
    """
    warnings.filterwarnings("ignore", message=_PANDAS_3_WARNING, category=FutureWarning)
    logging.getLogger("py4j").setLevel(logging.CRITICAL)


def _quiet_gateway(conf: SparkConf) -> Any:
    """Start Spark's JVM with its stderr passed on without the JVM's start-up notice."""
    from pyspark.java_gateway import launch_gateway

    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(
        target=_pass_on, args=(gateway.proc.stderr,), name="spark-stderr", daemon=True
    ).start()
    return gateway


def _pass_on(stream: Any) -> None:
    for line in iter(stream.readline, b""):
        if not line.startswith(_JVM_NOTICES):
            os.write(2, line)


def score_cohort_spark(
    data: Path,
    out: Path,
    model_uri: str,
    tracking_uri: str,
    protocol: Protocol,
    *,
    master: str = DEFAULT_SPARK_MASTER,
    spark: SparkSession | None = None,
    chunk_rows: int = PIECE_ROWS,
    detail: Detail = Detail.top3,
    on_step: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Score every row of a cohort (CSV or Parquet) on Spark into a Parquet directory.

    The output has the columns of ``womac predict``'s file
    (:func:`~womac.pipeline.predict.score_columns`) with the same values, in input order; it is
    written whole or not at all.

    Parameters
    ----------
    data
        Cohort CSV, or Parquet file (``.parquet``/``.pq``) or folder of Parquet files.
    out
        The Parquet directory to write. An existing one written by this command is replaced;
        anything else there is refused.
    model_uri, tracking_uri
        The model to score with and the MLflow store it is registered in.
    protocol
        The clinic's exclusions.
    master
        Spark master, when this call starts the session.
    spark
        A running session to use (left running); default: start one and stop it at the end.
    chunk_rows
        Rows per task.
    detail
        How much of each explanation to write.
    on_step
        Called with a short description of each step, for a progress display.

    Raises
    ------
    CohortError
        The input breaks the contract (every problem, by column, rule and line or row).
    SparkEngineError
        pyspark or Java missing, ``out`` is not ours to replace, or the Spark job failed.
    """
    step = on_step or (lambda _: None)
    require_spark()
    quiet_pyspark()
    # Executors run elsewhere (a worker's own folder, another machine): every path they are
    # given is absolute. The summary names the output as the user wrote it.
    shown = Path(out)
    data, out = Path(data).absolute(), Path(out).absolute()
    _check_replaceable(out)
    parquet = data.is_dir() or data.suffix.lower() in PARQUET_SUFFIXES
    step("Checking the cohort")
    reader = None if parquet else CohortReader(data, chunk_rows=chunk_rows)
    plan = _plan_parquet(data, chunk_rows) if parquet else None

    # Spark's JVM takes seconds to start: it starts while the driver loads the model and
    # reads the CSV, and is stopped (once started) whatever happens.
    starter = ThreadPoolExecutor(1, thread_name_prefix="spark-start") if spark is None else None
    starting = starter.submit(start_spark, master) if starter is not None else None
    work: Path | None = None
    try:
        step("Loading the model")
        model = _fetch_model(model_uri, tracking_uri)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Holds the staged cohort and the scores: named after this process, so that if it
        # is killed outright the next command writing here removes it (models.leftovers).
        prefix = temporary_prefix(out.name)
        work = Path(tempfile.mkdtemp(prefix=prefix, suffix=".spark", dir=out.parent))
        if reader is not None:
            plan = _stage_csv(reader, work / "staged", step)
        assert plan is not None
        if starting is not None:
            step(f"Starting Spark ({master})")
            spark = starting.result()
        assert spark is not None
        step(f"Scoring {len(plan.pieces)} piece(s) on Spark")
        scores = work / "scores"
        problems = _run(spark, plan.pieces, model, protocol, detail, scores)
        if problems:
            raise CohortError(plan.source, problems)
        rows, scored, candidates = _count(scores)
        _replace(scores, out, work)
    finally:
        if starting is not None and starter is not None:
            starter.shutdown(wait=True)
            if starting.exception() is None:
                starting.result().stop()
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return BatchSummary(
        rows=rows,
        scored=scored,
        candidates=candidates,
        out=shown,
        model_uri=model_uri,
        notes=plan.notes,
    )


@dataclass(frozen=True, slots=True)
class _Model:
    data: bytes
    digest: str


def _fetch_model(model_uri: str, tracking_uri: str) -> _Model:
    """The registered skops file's bytes, checked on the driver to be a served model."""
    connect(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="womac-model-") as folder:
        try:
            data = download_skops(model_uri, folder).read_bytes()
        except ValueError as error:  # not a skops file: never unpickled
            raise SparkEngineError(f"cannot use model {model_uri}: {error}") from None
    Scorer(loads_skops(data))  # refuse here, once, what every worker would refuse
    return _Model(data=data, digest=hashlib.sha256(data).hexdigest())


# --- input -------------------------------------------------------------------------------


def _stage_csv(reader: CohortReader, folder: Path, step: Callable[[str], None]) -> _Plan:
    """Validate a CSV on the driver (the single path's reader) and stage its typed chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [(spec.name, pa.string() if _is_text(spec.name) else pa.float64()) for spec in FIELDS]
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
        pieces.append(Piece(str(path), _STAGED, 0, len(chunk), int(chunk.lines[0])))
    problems = reader.problems()
    if problems:
        raise CohortError(reader.source, problems)
    return _Plan(pieces=pieces, source=reader.source, notes=list(reader.notes))


def _plan_parquet(data: Path, chunk_rows: int) -> _Plan:
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
    notes = []
    if ignored:
        shown = ", ".join(name[:40] for name in sorted(ignored)[:10])
        notes.append(f"ignored {len(ignored)} column(s) not in the contract: {shown}")
    return _Plan(pieces=pieces, source=source, notes=notes)


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


def _is_text(name: str) -> bool:
    return FIELD_BY_NAME[name].kind in (Kind.CATEGORY, Kind.IDENTIFIER)


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
            dtype = object if _is_text(spec.name) else float
            typed[spec.name] = pd.Series(np.nan, index=index, dtype=dtype)
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
        if _is_text(str(name)):
            frame[name] = frame[name].to_numpy(dtype=object, na_value=np.nan)
    return frame


def _read_piece(piece: Piece) -> tuple[pd.DataFrame, list[Problem]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if piece.row_group == _STAGED:
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


# --- the job -----------------------------------------------------------------------------


class _ProblemRows:
    """Spark accumulator of problems: ``{(column, rule): set of rows}`` (a retried task adds
    the same rows again, which a set absorbs)."""

    def zero(self, value: dict[tuple[str, str], set[int]]) -> dict[tuple[str, str], set[int]]:
        return {}

    def addInPlace(  # noqa: N802 - pyspark's AccumulatorParam interface
        self, total: dict[tuple[str, str], set[int]], more: dict[tuple[str, str], set[int]]
    ) -> dict[tuple[str, str], set[int]]:
        for key, rows in more.items():
            total.setdefault(key, set()).update(rows)
        return total


_SCORERS: dict[str, Scorer] = {}  # per Python worker: the model, loaded once


def _scorer(model: Broadcast[bytes], digest: str, protocol: Protocol) -> Scorer:
    key = f"{digest}:{protocol}"
    scorer = _SCORERS.get(key)
    if scorer is None:
        _SCORERS.clear()  # one model per worker: a later job's model replaces it
        scorer = _SCORERS[key] = Scorer(loads_skops(model.value), protocol)
    return scorer


def _score_pieces(
    batches: Iterable[pd.DataFrame],
    *,
    model: Broadcast[bytes],
    digest: str,
    protocol: Protocol,
    detail: Detail,
    problems: Any,
) -> Iterator[pd.DataFrame]:
    """The task: score each piece of its partition (one piece per partition)."""
    try:
        for pieces in batches:
            for values in pieces.itertuples(index=False):
                frame, found = _read_piece(Piece(*values))
                if found:
                    rows: dict[tuple[str, str], set[int]] = {}
                    for problem in found:
                        rows.setdefault((problem.column, problem.rule), set()).update(
                            problem.lines
                        )
                    problems.add(rows)
                    continue  # the job will be refused: these rows need no scores
                yield score_frame(frame, _scorer(model, digest, protocol), detail)
    except Exception as error:
        # Never the message: it may quote a patient's value. Type and place are enough.
        place = traceback.extract_tb(error.__traceback__)[-1]
        raise RuntimeError(
            f"{_WORKER_FAILURE}: {type(error).__name__} at "
            f"{Path(place.filename).name}:{place.lineno}"
        ) from None


def _run(
    spark: SparkSession,
    pieces: list[Piece],
    model: _Model,
    protocol: Protocol,
    detail: Detail,
    scores: Path,
) -> list[Problem]:
    """Score every piece (piece *i* in partition *i*) into ``scores``; problems of the input."""
    context = spark.sparkContext
    broadcast = context.broadcast(model.data)
    # _ProblemRows has AccumulatorParam's two methods without importing pyspark at import.
    problems: Any = context.accumulator({}, _ProblemRows())  # type: ignore[arg-type]
    try:
        rows = context.parallelize([astuple(piece) for piece in pieces], max(len(pieces), 1))
        task = partial(
            _score_pieces,
            model=broadcast,
            digest=model.digest,
            protocol=protocol,
            detail=detail,
            problems=problems,
        )
        schema = ", ".join(f"`{name}` {kind}" for name, kind in score_columns(detail))
        scored = spark.createDataFrame(rows, _PIECE_SCHEMA).mapInPandas(task, schema)
        # Absolute: Hadoop reads a relative path with ":" in its first name as a scheme.
        scored.write.parquet(str(scores.resolve()))
    except Exception as error:
        if not type(error).__module__.startswith(("pyspark", "py4j")):
            raise
        raise SparkEngineError(
            f"the Spark job failed{_reason(error)}; nothing was written"
        ) from None
    finally:
        broadcast.destroy()
    found: dict[tuple[str, str], set[int]] = problems.value
    order = {spec.name: position for position, spec in enumerate(FIELDS)}
    return [
        Problem(column, rule, tuple(sorted(lines)), place="row")
        for (column, rule), lines in sorted(
            found.items(), key=lambda item: (order.get(item[0][0], len(order)), min(item[1]))
        )
    ]


def _reason(error: Exception) -> str:
    """Our task's own summary of a failure (type and place), else the error's type."""
    match = re.search(rf"{_WORKER_FAILURE}: [\w.]+ at [\w.]+:\d+", str(error))
    return f" ({match[0]})" if match else f" ({type(error).__name__})"


# --- output ------------------------------------------------------------------------------


def _count(scores: Path) -> tuple[int, int, int]:
    """Rows, scored rows and protocol candidates of a written output."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(scores, columns=["expected_improvement", "candidate"])
    scored = pc.sum(pc.is_finite(table.column("expected_improvement"))).as_py() or 0
    candidates = pc.sum(table.column("candidate")).as_py() or 0
    return table.num_rows, int(scored), int(candidates)


def _is_scores_directory(path: Path) -> bool:
    """Whether ``path`` looks like a finished output of this command (safe to replace)."""
    if not path.is_dir() or path.is_symlink() or not (path / "_SUCCESS").is_file():
        return False
    return all(
        re.fullmatch(r"\.?(part-.*\.parquet|_SUCCESS)(\.crc)?", entry.name) and entry.is_file()
        for entry in path.iterdir()
    )


def _check_replaceable(out: Path) -> None:
    if (out.exists() or out.is_symlink()) and not _is_scores_directory(out):
        raise SparkEngineError(
            f"{out} exists and is not a scores directory written by `womac predict --engine "
            "spark`; choose another --out (nothing was replaced)"
        )


def _replace(scores: Path, out: Path, work: Path) -> None:
    """Move the finished output into place, replacing a previous one as one rename."""
    _check_replaceable(out)
    if not (out.exists() or out.is_symlink()):
        os.replace(scores, out)
        return
    previous = work / "previous"
    os.replace(out, previous)
    try:
        os.replace(scores, out)
    except BaseException:
        os.replace(previous, out)
        raise
