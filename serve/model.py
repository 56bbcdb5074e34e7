"""Loading the champion once at start-up, and scoring patients with it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from data.cohort import patients_frame
from data.contract import FIELD_BY_NAME, Kind
from data.settings import Settings
from features.encoding import PatientEncoder
from models.explain import explain
from models.store import champion_version, connect, load_pipeline

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
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fields_used(self) -> list[str]:
        """Fields the model has inputs for (others contribute nothing)."""
        encoder: PatientEncoder = self.pipeline.named_steps["preprocess"]
        return [encoding["field"] for encoding in encoder.encodings_]

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Expected improvement and per-field contributions for validated patient records."""
        explanation = explain(self.pipeline, patients_frame(records))
        encoder: PatientEncoder = self.pipeline.named_steps["preprocess"]
        learned_unknown = {e["field"]: e["indicator"] for e in encoder.encodings_}
        answers = []
        for row, record in enumerate(records):
            contributions = []
            unknown = []
            for column, name in enumerate(explanation.fields):
                spec = FIELD_BY_NAME[name]
                value = record.get(name)
                note = None
                if name not in learned_unknown:
                    note = "not used by this model (unknown in all its training data)"
                elif value is None:
                    note = (
                        "unknown; the model learned from training patients for whom it was unknown"
                        if learned_unknown[name]
                        else "unknown; the model assumed the typical training value"
                    )
                    unknown.append(spec.label)
                contributions.append(
                    {
                        "feature": name,
                        "label": spec.label,
                        "value": value
                        if spec.kind is not Kind.INTEGER or value is None
                        else int(value),
                        "unit": spec.unit,
                        "contribution": float(explanation.contributions[row, column]),
                        "note": note,
                    }
                )
            warnings = []
            if unknown:
                warnings.append("Not known for this patient: " + ", ".join(unknown) + ".")
            answers.append(
                {
                    "patient_id": record.get("patient_id"),
                    "expected_improvement": float(explanation.expected_improvement[row]),
                    "explanation": {
                        "base_value": explanation.base_value,
                        "contributions": contributions,
                    },
                    "warnings": warnings,
                    "model": {"name": self.name, "version": self.version, "run_id": self.run_id},
                }
            )
        return answers


def load_champion(settings: Settings) -> ServedModel | None:
    """Load the model the champion alias points to; ``None`` when none is registered."""
    client = connect(settings.resolved_tracking_uri())
    version = champion_version(client, settings.model_name, settings.champion_alias)
    if version is None:
        logger.warning(
            "no model registered as %s@%s; run `womac train`",
            settings.model_name,
            settings.champion_alias,
        )
        return None
    pipeline = load_pipeline(f"models:/{settings.model_name}/{version.version}")
    run = client.get_run(version.run_id)
    logger.info("serving %s version %s", settings.model_name, version.version)
    return ServedModel(
        pipeline=pipeline,
        name=settings.model_name,
        version=str(version.version),
        run_id=str(version.run_id),
        alias=settings.champion_alias,
        candidate=run.data.params.get("chosen_model", ""),
        metrics=dict(run.data.metrics),
    )
