"""Scoring patients with the served pipeline: the one path behind the API and batch scoring.

For each patient: the expected improvement and its per-field explanation, the interval and
the chance of a clinically important improvement, eligibility under the clinic's protocol,
and warnings wherever the model would extrapolate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from data.cohort import model_input, womac_total
from data.contract import FIELD_BY_NAME
from features.encoding import PatientEncoder
from models.eligibility import Eligibility, Protocol, assess
from models.explain import Explanation, attribute
from models.uncertainty import OutcomeModel

ATYPICAL = (
    "This combination of characteristics is unusual among the patients the model was trained "
    "on (farther from them than 99% of them are): treat the estimate with caution."
)


@dataclass(frozen=True, slots=True)
class Scores:
    """Everything the product says about a batch of patients, row by row."""

    explanation: Explanation
    lower: np.ndarray
    upper: np.ndarray
    level: float
    p_clinically_important: np.ndarray
    eligibility: Eligibility
    warnings: list[list[str]]

    @property
    def expected_improvement(self) -> np.ndarray:
        """Expected 12-month improvement (points)."""
        return self.explanation.expected_improvement


def score(
    pipeline: Pipeline,
    patients: pd.DataFrame,
    protocol: Protocol,
    level: float | None = None,
) -> Scores:
    """Score typed patients (predictors, and eligibility flags where known).

    Parameters
    ----------
    pipeline
        The served pipeline: ``preprocess`` -> :class:`~models.uncertainty.OutcomeModel`.
    patients
        Typed patients as read from a cohort or built from requests.
    protocol
        The clinic's exclusions.
    level
        Interval coverage; the model's default when ``None``.
    """
    encoder: PatientEncoder = pipeline.named_steps["preprocess"]
    outcome = pipeline.named_steps["model"]
    if not isinstance(outcome, OutcomeModel):
        raise TypeError("the pipeline has no predictive distribution (not a served model)")
    predictors = model_input(patients)
    encoded = np.asarray(encoder.transform(predictors), dtype=float)
    explanation = attribute(pipeline, encoded)
    baseline = womac_total(patients).to_numpy(dtype=float)
    lower, upper, probability = outcome.distribution(
        encoded, explanation.expected_improvement, baseline, level
    )
    eligibility = assess(patients, protocol)

    warnings: list[list[str]] = [[] for _ in range(len(patients))]
    for name, outside in encoder.outside_training(predictors).items():
        for row in np.flatnonzero(outside):
            warnings[row].append(_outside_warning(encoder, name, predictors[name].iloc[row]))
    for atypical_row in np.flatnonzero(outcome.atypical(encoded)):
        warnings[atypical_row].append(ATYPICAL)
    for patient, unchecked in enumerate(eligibility.unchecked):
        if unchecked:
            warnings[patient].append(
                "Not recorded, so not checked against the protocol: " + ", ".join(unchecked) + "."
            )
    return Scores(
        explanation=explanation,
        lower=lower,
        upper=upper,
        level=outcome.level if level is None else level,
        p_clinically_important=probability,
        eligibility=eligibility,
        warnings=warnings,
    )


def _outside_warning(encoder: PatientEncoder, name: str, value: object) -> str:
    """Names the field, the side and the training range; never repeats the value itself."""
    spec = FIELD_BY_NAME[name]
    encoding = next(e for e in encoder.encodings_ if e["field"] == name)
    if encoding["kind"] == "category":
        return (
            f"{spec.label}: this value was not among the patients the model was trained on, "
            "so the model treats it as unknown."
        )
    side = "above" if float(value) > encoding["maximum"] else "below"  # type: ignore[arg-type]
    unit = f" {spec.unit}" if spec.unit else ""
    return (
        f"{spec.label} is {side} the range of the patients the model was trained on "
        f"({encoding['minimum']:g}-{encoding['maximum']:g}{unit}): the estimate extrapolates."
    )
