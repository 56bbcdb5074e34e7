"""Loading the champion once at start-up, and answering with it."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from womac.models.eligibility import Protocol, protocol_from
from womac.models.lookup import ChampionFound, LookupFailed, NoChampion
from womac.models.scoring import Scorer
from womac.models.status import MonitoringStatus
from womac.models.store import load_skops, prepare_loading
from womac.serve.champion import ChampionLookup
from womac.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ServedModel:
    """The champion pipeline, its scorer, and what clients are told about it."""

    pipeline: Any
    name: str
    version: str
    run_id: str
    alias: str
    candidate: str
    protocol: Protocol = field(default_factory=Protocol)
    metrics: dict[str, float] = field(default_factory=dict)
    report_html: str | None = None
    monitoring: MonitoringStatus | None = None
    scorer: Scorer = field(init=False)

    def __post_init__(self) -> None:
        # Prepared once, at load: a request then costs only array operations.
        self.scorer = Scorer(self.pipeline, self.protocol)

    @property
    def fields_used(self) -> list[str]:
        """Fields the model has inputs for (others contribute nothing)."""
        return self.scorer.fields_used

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The scorer's answer for each validated patient record, naming this model."""
        reference = {"name": self.name, "version": self.version, "run_id": self.run_id}
        return [answer | {"model": reference} for answer in self.scorer.respond(records)]

    def serves(self, answer: ChampionFound) -> bool:
        """Whether ``answer`` names the very version (and run) this model was loaded from."""
        return (answer.version, answer.run_id) == (self.version, self.run_id)

    def refreshed(self, answer: ChampionFound) -> ServedModel:
        """This model with what the registry says of its version now: figures, report and
        the latest monitoring verdict.

        A registered version's model file never changes, so the loaded pipeline and its
        prepared scorer are shared, not loaded and prepared again.
        """
        fresh = copy.copy(self)
        fresh.metrics = answer.metrics
        fresh.report_html = answer.report_html
        fresh.monitoring = answer.monitoring
        return fresh


class ModelUnavailableError(RuntimeError):
    """No model can be served; the message says why and what to do."""


def load_champion(
    settings: Settings,
    lookup: ChampionLookup | None = None,
    current: ServedModel | None = None,
) -> ServedModel:
    """Load the model the champion alias points to, with its run's figures, report and
    latest monitoring verdict.

    Parameters
    ----------
    settings
        Registry names, tracking store and protocol.
    lookup
        A lookup already started (at the very beginning of start-up); started here if not.
    current
        The model serving now (on reload): if the alias still points to its version, that
        model is kept, with the registry's latest verdict, instead of being loaded again.

    Raises
    ------
    ModelUnavailableError
        When no champion is registered or it cannot be loaded; the service then answers 503
        instead of crashing.
    """
    lookup = lookup or ChampionLookup(settings)
    prepare_loading()  # overlaps the lookup, which runs in its own process
    answer = lookup.result()
    wanted = f"{settings.model_name}@{settings.champion_alias}"
    if isinstance(answer, NoChampion):
        # Says which versions are registered and how to serve one, or how to train one.
        raise ModelUnavailableError(answer.message)
    if isinstance(answer, LookupFailed):
        raise ModelUnavailableError(
            f"{wanted} cannot be loaded: {answer.message}. Retrain with `womac train` or "
            "point the alias at a working version."
        )
    if current is not None and current.serves(answer):
        return current.refreshed(answer)
    try:
        pipeline = load_skops(answer.model_file)
        served = ServedModel(
            pipeline=pipeline,
            name=settings.model_name,
            version=answer.version,
            run_id=answer.run_id,
            alias=settings.champion_alias,
            candidate=answer.chosen_model,
            protocol=protocol_from(settings),
            metrics=answer.metrics,
            report_html=answer.report_html,
            monitoring=answer.monitoring,
        )
    except Exception as error:
        raise ModelUnavailableError(
            f"{wanted} (version {answer.version}) cannot be loaded "
            f"({type(error).__name__}). Retrain with `womac train` or point the alias at a "
            "working version."
        ) from error
    logger.info("serving %s version %s", settings.model_name, answer.version)
    return served
