"""Scoring patients with the served pipeline: the one path behind the API and batch scoring.

For each patient: the expected improvement and its per-field explanation, the interval and
the chance of a clinically important improvement, eligibility under the clinic's protocol,
and warnings wherever the model would extrapolate.

:class:`Scorer` is prepared once per model (at load) and works on plain arrays, one per
field, so a single request costs NumPy operations and two LightGBM calls, not DataFrames.
It runs the fitted pipeline's own objects (the encoder's :meth:`encode`, the regressor's
booster, the outcome model's distribution); ``tests/model`` checks that it gives the same
features, predictions and contributions as the sklearn pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from womac.data.cohort import patients_columns
from womac.data.contract import BASELINE_SUBSCALES, FIELD_BY_NAME, WOMAC_TOTAL_MAX
from womac.features.encoding import PatientEncoder, frame_columns
from womac.models.compiled import CompiledPatient
from womac.models.eligibility import Eligibility, Protocol, assess
from womac.models.explain import Attributor, Explanation
from womac.models.uncertainty import OutcomeModel

ATYPICAL = (
    "This combination of characteristics is unusual among the patients the model was trained "
    "on (farther from them than 99% of them are): treat the estimate with caution."
)
CAPPED = (
    "The model's estimate was beyond what this baseline allows (the WOMAC total cannot go "
    "below 0 or above 96); it is capped, and the cap is counted in the contributions of the "
    "baseline WOMAC scores."
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


class Scorer:
    """The served pipeline, prepared to score patients given as arrays.

    Parameters
    ----------
    pipeline
        The served pipeline: ``preprocess`` -> :class:`~models.uncertainty.OutcomeModel`.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.encoder: PatientEncoder = pipeline.named_steps["preprocess"]
        outcome = pipeline.named_steps["model"]
        if not isinstance(outcome, OutcomeModel):
            raise TypeError("the pipeline has no predictive distribution (not a served model)")
        self.outcome = outcome
        self.attributor = Attributor(pipeline)
        self.baseline_fields = [self.attributor.fields.index(n) for n in BASELINE_SUBSCALES]
        self.encodings = {e["field"]: e for e in self.encoder.encodings_}
        self.compiled = CompiledPatient(self.encoder, outcome, self.attributor)

    def score_records(
        self,
        records: Sequence[Mapping[str, Any]],
        protocol: Protocol,
        level: float | None = None,
    ) -> Scores:
        """Score validated patient records (e.g. API requests); one alone takes the fast path."""
        if len(records) != 1:
            return self.score(patients_columns(records), protocol, level)
        record = records[0]
        explanation, lower, upper, probability, eligibility, keys = self.compiled.score(
            record, protocol, level
        )
        warnings = []
        for key in keys:
            if key[0] == "outside":
                warnings.append(self._outside_warning(key[1], record[key[1]]))
            else:
                warnings.append(ATYPICAL if key[0] == "atypical" else CAPPED)
        if eligibility.unchecked[0]:
            warnings.append(_unchecked(eligibility.unchecked[0]))
        return Scores(
            explanation=explanation,
            lower=np.array([lower]),
            upper=np.array([upper]),
            level=self.outcome.level if level is None else level,
            p_clinically_important=np.array([probability]),
            eligibility=eligibility,
            warnings=[warnings],
        )

    def score(
        self,
        columns: Mapping[str, np.ndarray],
        protocol: Protocol,
        level: float | None = None,
    ) -> Scores:
        """Score patients given as one array per field.

        Parameters
        ----------
        columns
            Every predictor field (numbers as floats with NaN unknown, categories as objects
            with None unknown) and, where known, the eligibility flags.
        protocol
            The clinic's exclusions.
        level
            Interval coverage; the model's default when ``None``.
        """
        encoded = self.encoder.encode(columns)
        explanation = self.attributor(encoded)
        baseline = np.sum([np.asarray(columns[n], dtype=float) for n in BASELINE_SUBSCALES], 0)
        raw = explanation.expected_improvement
        lower, upper, probability = self.outcome.distribution(encoded, raw, baseline, level)
        explanation, capped = self._cap(explanation, columns, baseline)
        eligibility = assess(columns, protocol)

        warnings: list[list[str]] = [[] for _ in range(len(raw))]
        for name, outside in self.encoder.outside_training(columns).items():
            for row in np.flatnonzero(outside):
                warnings[row].append(self._outside_warning(name, columns[name][row]))
        for atypical in np.flatnonzero(self.outcome.atypical(encoded)):
            warnings[atypical].append(ATYPICAL)
        for bounded in np.flatnonzero(capped):
            warnings[bounded].append(CAPPED)
        for patient, unchecked in enumerate(eligibility.unchecked):
            if unchecked:
                warnings[patient].append(_unchecked(unchecked))
        return Scores(
            explanation=explanation,
            lower=lower,
            upper=upper,
            level=self.outcome.level if level is None else level,
            p_clinically_important=probability,
            eligibility=eligibility,
            warnings=warnings,
        )

    def distribution(
        self, columns: Mapping[str, np.ndarray], level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Expected improvement (capped to the scale), interval and probability, unexplained.

        For evaluating many patients: the same numbers as :meth:`score` without the cost of
        per-field attributions.
        """
        encoded = self.encoder.encode(columns)
        raw = np.asarray(self.outcome.predict(encoded), dtype=float)
        baseline = np.sum([np.asarray(columns[n], dtype=float) for n in BASELINE_SUBSCALES], 0)
        lower, upper, probability = self.outcome.distribution(encoded, raw, baseline, level)
        expected = np.clip(raw, baseline - WOMAC_TOTAL_MAX, baseline)
        return expected, lower, upper, probability

    def _cap(
        self, explanation: Explanation, columns: Mapping[str, np.ndarray], baseline: np.ndarray
    ) -> tuple[Explanation, np.ndarray]:
        """Keep the estimate within what the scale allows, contributions still adding up.

        The 12-month total lies in 0-96, so the improvement lies in [baseline - 96,
        baseline]. The floor is a property of the baseline scores, so the adjustment is
        shared among the three baseline subscales in proportion to their values.
        """
        raw = explanation.expected_improvement
        bounded = np.clip(raw, baseline - WOMAC_TOTAL_MAX, baseline)
        capped = bounded != raw
        if not capped.any():
            return explanation, capped
        subscales = np.stack(
            [np.asarray(columns[n], dtype=float) for n in BASELINE_SUBSCALES], axis=1
        )
        totals = subscales.sum(axis=1, keepdims=True)
        shares = np.where(totals > 0, subscales / np.where(totals > 0, totals, 1.0), 1 / 3)
        contributions = explanation.contributions.copy()
        contributions[:, self.baseline_fields] += (bounded - raw)[:, None] * shares
        adjusted = Explanation(
            expected_improvement=bounded,
            base_value=explanation.base_value,
            fields=explanation.fields,
            contributions=contributions,
        )
        return adjusted, capped

    def _outside_warning(self, name: str, value: object) -> str:
        """Names the field, the side and the training range; never repeats the value itself."""
        spec = FIELD_BY_NAME[name]
        encoding = self.encodings[name]
        if encoding["kind"] == "category":
            return (
                f"{spec.label}: this value was not among the patients the model was trained "
                "on, so the model treats it as unknown."
            )
        side = "above" if float(value) > encoding["maximum"] else "below"  # type: ignore[arg-type]
        unit = f" {spec.unit}" if spec.unit else ""
        return (
            f"{spec.label} is {side} the range of the patients the model was trained on "
            f"({encoding['minimum']:g}-{encoding['maximum']:g}{unit}): the estimate "
            "extrapolates."
        )


def _unchecked(criteria: list[str]) -> str:
    return "Not recorded, so not checked against the protocol: " + ", ".join(criteria) + "."


def score(
    pipeline: Pipeline,
    patients: pd.DataFrame,
    protocol: Protocol,
    level: float | None = None,
) -> Scores:
    """Score typed patients (a DataFrame as read from a cohort) with the served pipeline."""
    return Scorer(pipeline).score(frame_columns(patients), protocol, level)
