"""``womac predict --engine spark``: the job's steps, in order, from the cohort to the summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from womac.data.cohort import AS_CONTRACT, Layout
from womac.models.eligibility import Protocol
from womac.pipeline.detail import Detail
from womac.pipeline.predict import BatchSummary
from womac.pipeline.spark.job import ScoringJob, run_job
from womac.pipeline.spark.model import fetch_model
from womac.pipeline.spark.output import Target, Workspace
from womac.pipeline.spark.pieces import PIECE_ROWS
from womac.pipeline.spark.session import quiet_pyspark, require_spark, starting_spark
from womac.pipeline.spark.staging import open_cohort, plan_pieces
from womac.settings import DEFAULT_SPARK_MASTER

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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
    layout: Layout = AS_CONTRACT,
) -> BatchSummary:
    """Score every row of a cohort (CSV or Parquet) on Spark into a Parquet directory.

    The output has the columns of ``womac predict``'s file, with the same values, in input
    order (:func:`~womac.pipeline.predict.score_columns`); it is written whole or not at all.

    Parameters
    ----------
    data
        Cohort export (CSV, workbook, Parquet file or folder of Parquet files).
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
    on_step, layout
        Told each step (for a progress display); the sheet and mapping of ``data``.

    Raises
    ------
    CohortError
        The input breaks the contract (every problem, by column, rule and line or row).
    SparkEngineError
        pyspark or Java missing, ``out`` is not ours to replace, or the Spark job failed.
    """
    step = on_step or _silent
    require_spark()
    quiet_pyspark()
    target = Target.checked(out)
    cohort = open_cohort(Path(data).absolute(), chunk_rows, step, layout)
    with Workspace(target.path) as work, starting_spark(master, spark, step) as session:
        job = ScoringJob(fetch_model(model_uri, tracking_uri, step), protocol, detail)
        plan = plan_pieces(cohort, work.create(), step)
        run_job(session(), job, plan, work.scores, step)
        written = work.publish()
    return written.summary(target.shown, model_uri, plan.notes)


def _silent(description: str) -> None:
    """No progress display."""
