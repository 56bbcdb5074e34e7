"""The Spark job, on the driver: every piece scored by a task into one Parquet directory.

Piece *i* is partition *i* of the job and becomes ``part-<i>`` of the output, so the output
lists patients in input order (Spark's own file scan would not keep it: it orders its splits
by size). The problems the tasks found are gathered with their row numbers; if there is any,
the job is refused with all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import astuple, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

from womac.data.contract import FIELDS
from womac.data.problems import CohortError, Problem
from womac.models.eligibility import Protocol
from womac.pipeline.detail import Detail
from womac.pipeline.predict import score_columns
from womac.pipeline.spark.errors import SparkEngineError
from womac.pipeline.spark.model import Model
from womac.pipeline.spark.pieces import PIECE_SCHEMA, Plan
from womac.pipeline.spark.tasks import WORKER_FAILURE, ProblemRows, RowsByRule, score_pieces

if TYPE_CHECKING:
    from pyspark.accumulators import Accumulator, AccumulatorParam
    from pyspark.broadcast import Broadcast
    from pyspark.sql import SparkSession


@dataclass(frozen=True, slots=True)
class ScoringJob:
    """What every task scores with: the model, the clinic's exclusions, the explanations."""

    model: Model
    protocol: Protocol
    detail: Detail


def run_job(
    spark: SparkSession, job: ScoringJob, plan: Plan, scores: Path, step: Callable[[str], None]
) -> None:
    """Score every piece of ``plan`` (piece *i* in partition *i*) into ``scores``.

    Raises
    ------
    CohortError
        The tasks found problems in the input (every one, by column, rule and row).
    SparkEngineError
        The Spark job failed (by our task's summary of the failure, or the error's type).
    """
    step(f"Scoring {len(plan.pieces)} piece(s) on Spark")
    context = spark.sparkContext
    broadcast = context.broadcast(job.model.data)
    # ProblemRows has AccumulatorParam's two methods without importing pyspark at import.
    problems = context.accumulator({}, cast("AccumulatorParam[RowsByRule]", ProblemRows()))
    try:
        _write_scores(spark, job, plan, broadcast, problems, scores)
    except Exception as error:
        if not type(error).__module__.startswith(("pyspark", "py4j")):
            raise
        raise SparkEngineError(
            f"the Spark job failed{_reason(error)}; nothing was written"
        ) from None
    finally:
        broadcast.destroy()
    found = _in_contract_order(problems.value)
    if found:
        raise CohortError(plan.source, found)


def _write_scores(
    spark: SparkSession,
    job: ScoringJob,
    plan: Plan,
    model: Broadcast[bytes],
    problems: Accumulator[RowsByRule],
    scores: Path,
) -> None:
    context = spark.sparkContext
    pieces = plan.pieces
    rows = context.parallelize([astuple(piece) for piece in pieces], max(len(pieces), 1))
    task = partial(
        score_pieces,
        model=model,
        digest=job.model.digest,
        protocol=job.protocol,
        detail=job.detail,
        problems=problems,
    )
    schema = ", ".join(f"`{name}` {kind}" for name, kind in score_columns(job.detail))
    scored = spark.createDataFrame(rows, PIECE_SCHEMA).mapInPandas(task, schema)
    # Absolute: Hadoop reads a relative path with ":" in its first name as a scheme.
    scored.write.parquet(str(scores.resolve()))


def _in_contract_order(found: RowsByRule) -> list[Problem]:
    """The problems, by column in the contract's order, then by their first row."""
    order = {spec.name: position for position, spec in enumerate(FIELDS)}
    return [
        Problem(column, rule, tuple(sorted(lines)), place="row")
        for (column, rule), lines in sorted(
            found.items(), key=lambda item: (order.get(item[0][0], len(order)), min(item[1]))
        )
    ]


def _reason(error: Exception) -> str:
    """Our task's own summary of a failure (type and place), else the error's type."""
    match = re.search(rf"{WORKER_FAILURE}: [\w.]+ at [\w.]+:\d+", str(error))
    return f" ({match[0]})" if match else f" ({type(error).__name__})"
