"""The ``womac predict`` job: which engine scores a cohort file into its output, and what the
user is told when the model cannot be loaded.

Light to import (the scoring stack is imported when a job runs), so that the command line
can offer the engines without importing scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from womac.pipeline.detail import Detail
from womac.pipeline.exits import from_mlflow

if TYPE_CHECKING:
    from womac.data.cohort import Layout
    from womac.models.leftovers import Leftover
    from womac.pipeline.predict import BatchSummary
    from womac.settings import Settings


class Engine(StrEnum):
    """Where ``womac predict`` runs."""

    single = "single"
    spark = "spark"


class ModelUnavailableError(RuntimeError):
    """The model to score with cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ScoringJob:
    """A cohort file to score, where to write the scores, and how.

    ``model_uri`` ``None`` scores with the registered champion; ``master`` ``None`` runs the
    Spark engine on the master the settings name.
    """

    data: Path
    out: Path
    model_uri: str | None = None
    engine: Engine = Engine.single
    master: str | None = None
    detail: Detail = Detail.top3
    layout: Layout | None = None  # None: laid out as the contract


def score_file(
    job: ScoringJob,
    settings: Settings,
    *,
    on_step: Callable[[str], None] = lambda step: None,
    on_cleaned: Callable[[list[Leftover]], None] = lambda leftovers: None,
) -> BatchSummary:
    """Score ``job.data`` into ``job.out`` with the job's engine.

    The store is checked and what a command killed outright left is cleaned first. A model
    MLflow cannot load is a :class:`ModelUnavailableError` (for the champion, listing the
    registered versions when there is none).

    Parameters
    ----------
    job
        The file, output, model, engine and explanation detail.
    settings
        The store, the champion's name and alias, the protocol, the default Spark master.
    on_step
        Told each step the Spark engine reaches (the single engine has one).
    on_cleaned
        Told what was cleaned before scoring.
    """
    from womac.models.tracking import check_store
    from womac.pipeline.safety import clean_leftovers

    tracking_uri = settings.resolved_tracking_uri()
    try:
        check_store(tracking_uri)
        on_cleaned(clean_leftovers(settings, [job.out], store=True, by="womac predict"))
        return _run(job, settings, on_step)
    except Exception as error:
        if not from_mlflow(error):
            raise
        raise ModelUnavailableError(_why_unavailable(job, settings, tracking_uri)) from None


def _run(job: ScoringJob, settings: Settings, on_step: Callable[[str], None]) -> BatchSummary:
    """The job on its engine, with the champion unless it names a model."""
    from womac.data.cohort import AS_CONTRACT
    from womac.models.eligibility import protocol_from

    model = job.model_uri or settings.model_uri
    store, protocol = settings.resolved_tracking_uri(), protocol_from(settings)
    layout = job.layout or AS_CONTRACT
    if job.engine is Engine.spark:
        from womac.pipeline.spark import score_cohort_spark

        master = job.master or settings.resolved_spark_master()
        return score_cohort_spark(
            job.data,
            job.out,
            model,
            store,
            protocol,
            master=master,
            detail=job.detail,
            on_step=on_step,
            layout=layout,
        )
    from womac.pipeline.predict import score_cohort

    return score_cohort(
        job.data, job.out, model, store, protocol, detail=job.detail, layout=layout
    )


def _why_unavailable(job: ScoringJob, settings: Settings, tracking_uri: str) -> str:
    """The champion's absence, with the registered versions; or, when there is a champion or
    the job names its model, the plain refusal naming the model and the store."""
    from womac.models.tracking import shown

    absent = None if job.model_uri else _no_champion(settings, tracking_uri)
    return absent or (
        f"cannot load model {job.model_uri or settings.model_uri} from {shown(tracking_uri)}; "
        "train one with `womac train`"
    )


def _no_champion(settings: Settings, tracking_uri: str) -> str | None:
    """The no-champion listing for ``womac predict``, or ``None`` when a champion exists."""
    from womac.models.registry import Command, no_champion_message, registered_versions
    from womac.models.store import champion_version, connect
    from womac.models.tracking import shown

    try:
        client = connect(tracking_uri)
        if champion_version(client, settings.model_name, settings.champion_alias) is not None:
            return None
        versions = registered_versions(client, settings.model_name)
    except Exception:  # the registry cannot be read either: the plain refusal says enough
        return None
    return no_champion_message(
        settings.model_name,
        settings.champion_alias,
        versions,
        Command.predict,
        store=shown(tracking_uri),
    )
