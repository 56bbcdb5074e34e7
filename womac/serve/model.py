"""Loading the champion once at start-up, and answering with it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from womac.data.contract import FIELD_BY_NAME, PREDICTOR_NAMES, Kind
from womac.data.settings import Settings
from womac.features.encoding import PatientEncoder
from womac.models.eligibility import Protocol, protocol_from
from womac.models.scoring import Scorer
from womac.models.store import load_skops, prepare_loading
from womac.serve.champion import ChampionLookup

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ServedModel:
    """The champion pipeline and what clients are told about it."""

    pipeline: Any
    name: str
    version: str
    run_id: str
    alias: str
    candidate: str
    protocol: Protocol = field(default_factory=Protocol)
    metrics: dict[str, float] = field(default_factory=dict)
    report_html: str | None = None
    scorer: Scorer = field(init=False)
    notes: dict[str, tuple[str | None, str]] = field(init=False)

    def __post_init__(self) -> None:
        # Prepared once, at load: a request then costs only array operations.
        self.scorer = Scorer(self.pipeline)
        self.notes = field_notes(self.pipeline.named_steps["preprocess"])

    @property
    def fields_used(self) -> list[str]:
        """Fields the model has inputs for (others contribute nothing)."""
        encoder: PatientEncoder = self.pipeline.named_steps["preprocess"]
        return [encoding["field"] for encoding in encoder.encodings_]

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Everything the API answers about each validated patient record."""
        scores = self.scorer.score_records(records, self.protocol)
        explanation = scores.explanation
        notes = self.notes
        used = self.scorer.encodings.keys()
        answers = []
        for row, record in enumerate(records):
            contributions = []
            unknown = []
            ignored = []
            for column, name in enumerate(explanation.fields):
                spec = FIELD_BY_NAME[name]
                value = record.get(name)
                if value is None and name in used:
                    unknown.append(spec.label)
                elif value is not None and name not in used:
                    ignored.append(spec.label)
                contributions.append(
                    {
                        "feature": name,
                        "label": spec.label,
                        "value": int(value)
                        if spec.kind is Kind.INTEGER and value is not None
                        else value,
                        "unit": spec.unit,
                        "contribution": float(explanation.contributions[row, column]),
                        "note": notes[name][value is None],
                    }
                )
            warnings = list(scores.warnings[row])
            if unknown:
                warnings.append("Not known for this patient: " + ", ".join(unknown) + ".")
            if ignored:
                warnings.append("Given but not used by this model: " + ", ".join(ignored) + ".")
            answers.append(
                {
                    "patient_id": record.get("patient_id"),
                    "expected_improvement": float(explanation.expected_improvement[row]),
                    "interval": {
                        "lower": float(scores.lower[row]),
                        "upper": float(scores.upper[row]),
                        "level": scores.level,
                    },
                    "p_clinically_important": float(scores.p_clinically_important[row]),
                    "eligibility": {
                        "candidate": bool(scores.eligibility.candidate[row]),
                        "reasons": scores.eligibility.reasons[row],
                    },
                    "explanation": {
                        "base_value": explanation.base_value,
                        "contributions": contributions,
                    },
                    "warnings": warnings,
                    "model": {"name": self.name, "version": self.version, "run_id": self.run_id},
                }
            )
        return answers


def field_notes(encoder: PatientEncoder) -> dict[str, tuple[str | None, str]]:
    """Per field: the explanation's note when the patient's value is known, and when not."""
    learned_unknown = {e["field"]: e["indicator"] for e in encoder.encodings_}
    never_known = set(encoder.unused_fields_)
    notes: dict[str, tuple[str | None, str]] = {}
    for name in PREDICTOR_NAMES:
        if name in learned_unknown:
            notes[name] = (
                None,
                "unknown; the model learned from training patients for whom it was unknown"
                if learned_unknown[name]
                else "unknown; the model assumed the typical value of its training patients",
            )
        elif name in never_known:
            unused = "not used: the training cohort did not record it"
            notes[name] = (unused, "unknown; " + unused)
        else:
            notes[name] = ("not an input of this model", "unknown; not an input of this model")
    return notes


class ModelUnavailableError(RuntimeError):
    """No model can be served; the message says why and what to do."""


def load_champion(settings: Settings, lookup: ChampionLookup | None = None) -> ServedModel:
    """Load the model the champion alias points to, with its run's figures and report.

    Parameters
    ----------
    settings
        Registry names, tracking store and protocol.
    lookup
        A lookup already started (at the very beginning of start-up); started here if not.

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
    train_hint = "Train one with `womac train` (or `make run`), then restart the service."
    if answer["status"] == "absent":
        raise ModelUnavailableError(f"{answer['message']} No {wanted}. {train_hint}")
    if answer["status"] != "ok":
        raise ModelUnavailableError(
            f"{wanted} cannot be loaded: {answer['message']}. Retrain with `womac train` or "
            "point the alias at a working version."
        )
    try:
        pipeline = load_skops(answer["model_file"])
        served = ServedModel(
            pipeline=pipeline,
            name=settings.model_name,
            version=answer["version"],
            run_id=answer["run_id"],
            alias=settings.champion_alias,
            candidate=answer["chosen_model"],
            protocol=protocol_from(settings),
            metrics=answer["metrics"],
            report_html=answer["report_html"],
        )
    except Exception as error:
        raise ModelUnavailableError(
            f"{wanted} (version {answer['version']}) cannot be loaded "
            f"({type(error).__name__}). Retrain with `womac train` or point the alias at a "
            "working version."
        ) from error
    logger.info("serving %s version %s", settings.model_name, answer["version"])
    return served
