"""How a model does on patients treated since its training (temporal validation).

Twelve months after patients are scored, their outcomes arrive. :func:`assess_patients`
scores a later cohort with the model and measures what the held-out evaluation measured at
training, each figure with a 95% confidence interval: RMSE, MAE, R^2, calibration (slope,
intercept, and calibration in the large: mean observed minus mean predicted), interval
coverage overall and per subgroup, responder discrimination and calibration, and the
decision curve. Who is judged is said first:

- patients outside the clinic's protocol, or outside the training domain (a field outside
  its training range, or an unusual combination of fields), are counted separately: the
  model makes no claim about them, so they neither condemn nor absolve it;
- patients lost to follow-up are counted, with whether their loss is related to the
  prediction (Mann-Whitney U of the expected improvement, lost against followed up): loss
  that is related biases every figure on the followed-up patients.

Without 12-month scores only the expected share of responders and the input drift can be
reported (:mod:`womac.models.drift`); performance cannot be judged yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, norm

from womac.data.cohort import Cohort, model_input, womac_total
from womac.features.encoding import frame_columns
from womac.models.decision import decision_curve
from womac.models.eligibility import assess
from womac.models.evaluation import (
    SubgroupRow,
    binned_calibration,
    calibration_curve,
    percentile_interval,
    responder_metrics,
    subgroup_labels,
    subgroup_table,
)
from womac.models.metrics import regression_metrics, wilson_interval
from womac.models.scoring import Scorer
from womac.models.uncertainty import responder_threshold

BOOTSTRAP_SAMPLES = 400
# Draws of at most this many values at once keep memory flat for 100,000 patients.
_BLOCK_VALUES = 4_000_000
_Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure on the new patients, its 95% confidence interval, and the held-out figure."""

    value: float
    low: float
    high: float
    held_out: float | None = None


@dataclass(slots=True)
class Screening:
    """Who in the export the figures are about."""

    rows: int
    incomplete: int  # a required predictor blank: not scored
    outside_protocol: int
    outside_domain: int
    judged: int  # in protocol and in the training domain, complete predictors


@dataclass(slots=True)
class FollowUp:
    """Loss to follow-up among the judged patients, and whether it is related to the
    prediction."""

    followed: int
    lost: int
    mean_predicted_followed: float
    mean_predicted_lost: float
    p_value: float  # Mann-Whitney U, two-sided; NaN when either group is empty
    related: bool
    sentence: str


@dataclass(slots=True)
class Performance:
    """The model on the judged, followed-up patients (what the verdict reads)."""

    n: int
    level: float
    rmse: Estimate
    mae: Estimate
    r2: Estimate
    calibration_slope: Estimate
    calibration_slope_se: float
    calibration_intercept: Estimate
    mean_difference: Estimate  # observed minus predicted: calibration in the large
    mean_difference_se: float
    coverage: Estimate
    covered: int
    interval_width: float
    responder: dict[str, float]
    auroc: Estimate
    brier: Estimate
    responder_calibration: list[dict[str, float]]
    improvement_calibration: list[dict[str, float]]
    subgroups: list[SubgroupRow]
    decision_curve: list[dict[str, float]]


@dataclass(slots=True)
class PatientsAssessed:
    """Everything measured on a later cohort, before any verdict."""

    screening: Screening
    expected_responders: Estimate  # mean responder probability of the judged patients
    follow_up: FollowUp | None  # None: no 12-month scores in the export
    performance: Performance | None  # None: no followed-up patient to judge on
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Scored:
    """The judged patients (typed, as read), their predictions, observed improvement (NaN
    when lost to follow-up) and the improvement that counts as clinically important."""

    patients: pd.DataFrame
    predicted: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    probability: np.ndarray
    observed: np.ndarray
    threshold: np.ndarray  # the improvement that counts as clinically important
    level: float

    def only(self, rows: np.ndarray) -> Scored:
        """The patients of ``rows`` (a mask or indices)."""
        return _only(self, rows)


def assess_patients(
    scorer: Scorer,
    cohort: Cohort,
    held_out: Mapping[str, Any] | None,
    *,
    alpha: float,
    seed: int,
) -> PatientsAssessed:
    """Score a later cohort and measure the model on it.

    Parameters
    ----------
    scorer
        The monitored model's scorer (with the clinic's protocol).
    cohort
        The later cohort, read against the contract (12-month scores where known).
    held_out
        The model's held-out evaluation from its training run (``evaluation/held_out.json``),
        shown beside each figure; ``None`` when the run has none.
    alpha
        The false-alarm rate of the test of loss to follow-up against the prediction.
    seed
        Seed of the bootstrap resamples.
    """
    screening, scored = screen(scorer, cohort)
    expected = _mean_estimate(scored.probability)
    notes: list[str] = []
    if not cohort.has_outcomes:
        notes.append(
            "The export holds no 12-month scores: performance cannot be judged yet, only "
            "the input drift and the expected share of responders."
        )
        return PatientsAssessed(screening, expected, None, None, notes)
    followed = np.isfinite(scored.observed)
    follow_up = _follow_up(scored.predicted, followed, alpha)
    if followed.sum() < 2:
        notes.append(
            "Fewer than two judged patients have 12-month scores: performance cannot be "
            "judged yet."
        )
        return PatientsAssessed(screening, expected, follow_up, None, notes)
    performance = _performance(scored.only(followed), held_out or {}, seed)
    return PatientsAssessed(screening, expected, follow_up, performance, notes)


def screen(scorer: Scorer, cohort: Cohort) -> tuple[Screening, Scored]:
    """Score the export; keep the patients the model speaks for (in protocol, in domain,
    every required field known)."""
    complete = cohort.complete.to_numpy(dtype=bool)
    patients = model_input(cohort.frame[complete].reset_index(drop=True))
    frame = cohort.frame[complete].reset_index(drop=True)
    columns = frame_columns(patients)
    candidate = np.asarray(assess(columns, scorer.protocol).candidate, dtype=bool)
    encoded = scorer.encoder.encode(columns)
    in_domain = ~np.asarray(scorer.outcome.atypical(encoded), dtype=bool)
    for outside in scorer.encoder.outside_training(columns).values():
        in_domain &= ~np.asarray(outside, dtype=bool)
    judged = candidate & in_domain
    screening = Screening(
        rows=len(cohort),
        incomplete=int((~complete).sum()),
        outside_protocol=int((~candidate).sum()),
        outside_domain=int((candidate & ~in_domain).sum()),
        judged=int(judged.sum()),
    )
    kept = {name: np.asarray(values)[judged] for name, values in columns.items()}
    predicted, lower, upper, probability = scorer.distribution(kept)
    observed = (
        cohort.target[complete].to_numpy(dtype=float)[judged]
        if cohort.has_outcomes
        else np.full(int(judged.sum()), np.nan)
    )
    baseline = womac_total(frame[judged]).to_numpy(dtype=float)
    outcome = scorer.outcome
    scored = Scored(
        patients=frame[judged].reset_index(drop=True),
        predicted=predicted,
        lower=lower,
        upper=upper,
        probability=probability,
        observed=observed,
        threshold=responder_threshold(
            baseline, outcome.responder_min_points, outcome.responder_min_fraction
        ),
        level=outcome.level,
    )
    return screening, scored


def _only(scored: Scored, rows: np.ndarray) -> Scored:
    return Scored(
        patients=scored.patients[rows].reset_index(drop=True),
        predicted=scored.predicted[rows],
        lower=scored.lower[rows],
        upper=scored.upper[rows],
        probability=scored.probability[rows],
        observed=scored.observed[rows],
        threshold=scored.threshold[rows],
        level=scored.level,
    )


def _follow_up(predicted: np.ndarray, followed: np.ndarray, alpha: float) -> FollowUp:
    """Is loss to follow-up related to the prediction? Mann-Whitney U, lost vs followed."""
    lost = ~followed
    n_followed, n_lost = int(followed.sum()), int(lost.sum())
    mean_followed = float(predicted[followed].mean()) if n_followed else float("nan")
    mean_lost = float(predicted[lost].mean()) if n_lost else float("nan")
    p_value = float("nan")
    if n_followed and n_lost:
        p_value = float(mannwhitneyu(predicted[lost], predicted[followed]).pvalue)
    related = bool(p_value < alpha)
    share = n_lost / max(n_followed + n_lost, 1)
    sentence = f"{n_lost} of {n_followed + n_lost} judged patients ({share:.0%}) lost to follow-up"
    if not n_lost:
        sentence += "."
    elif related:
        sentence += (
            f"; their expected improvement ({mean_lost:.1f} points) differs from the followed-up"
            f" patients' ({mean_followed:.1f}), so the figures on the followed-up may be biased."
        )
    else:
        sentence += "; loss is not related to the expected improvement (Mann-Whitney U)."
    return FollowUp(n_followed, n_lost, mean_followed, mean_lost, p_value, related, sentence)


def _performance(scored: Scored, held_out: Mapping[str, Any], seed: int) -> Performance:
    observed, predicted = scored.observed, scored.predicted
    point = regression_metrics(observed, predicted)
    held_point = held_out.get("point", {})
    boot = _bootstrap(observed, predicted, np.random.default_rng(seed))
    responded = observed >= scored.threshold
    responder = responder_metrics(responded, scored.probability)
    covered = (observed >= scored.lower) & (observed <= scored.upper)
    n = len(observed)
    difference = observed - predicted

    def estimate(name: str, held: float | None = None) -> Estimate:
        value = point[name] if name in point else float(np.mean(difference))
        low, high = percentile_interval(boot[name])
        return Estimate(value, low, high, held if held is None else float(held))

    coverage_ci = wilson_interval(float(covered.mean()), n) or (float("nan"),) * 2
    return Performance(
        n=n,
        level=scored.level,
        rmse=estimate("rmse", held_point.get("rmse")),
        mae=estimate("mae", held_point.get("mae")),
        r2=estimate("r2", held_point.get("r2")),
        calibration_slope=estimate("calibration_slope", held_point.get("calibration_slope")),
        calibration_slope_se=point["calibration_slope_se"],
        calibration_intercept=estimate(
            "calibration_intercept", held_point.get("calibration_intercept")
        ),
        mean_difference=estimate("mean_difference"),
        mean_difference_se=float(np.std(difference, ddof=1) / math.sqrt(n)),
        coverage=Estimate(float(covered.mean()), *coverage_ci, held_out.get("coverage")),
        covered=int(covered.sum()),
        interval_width=float(np.mean(scored.upper - scored.lower)),
        responder=responder,
        auroc=_auroc_estimate(responder, responded, held_out),
        brier=_brier_estimate(responded, scored.probability, held_out),
        responder_calibration=calibration_curve(responded, scored.probability),
        improvement_calibration=binned_calibration(predicted, observed),
        subgroups=subgroup_table(
            subgroup_labels(scored.patients), observed, predicted, scored.lower, scored.upper, seed
        ),
        decision_curve=[asdict(row) for row in decision_curve(responded, scored.probability)],
    )


def _bootstrap(
    observed: np.ndarray, predicted: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """RMSE, MAE, R^2, calibration slope and intercept, mean difference of resamples."""
    n = len(observed)
    block = max(1, _BLOCK_VALUES // n)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, BOOTSTRAP_SAMPLES, block):
        draws = rng.integers(0, n, size=(min(block, BOOTSTRAP_SAMPLES - start), n))
        y, p = observed[draws], predicted[draws]
        residual = y - p
        y_mean, p_mean = y.mean(axis=1, keepdims=True), p.mean(axis=1, keepdims=True)
        spread = np.mean((p - p_mean) ** 2, axis=1)
        total = np.sum((y - y_mean) ** 2, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.mean((p - p_mean) * (y - y_mean), axis=1) / spread
            r2 = 1.0 - np.sum(residual**2, axis=1) / total
        figures = {
            "rmse": np.sqrt(np.mean(residual**2, axis=1)),
            "mae": np.mean(np.abs(residual), axis=1),
            "r2": r2,
            "calibration_slope": slope,
            "calibration_intercept": y_mean[:, 0] - slope * p_mean[:, 0],
            "mean_difference": residual.mean(axis=1),
        }
        for name, values in figures.items():
            parts.setdefault(name, []).append(values)
    return {name: np.concatenate(values) for name, values in parts.items()}


def _mean_estimate(values: np.ndarray) -> Estimate:
    """A mean with its normal-approximation 95% interval."""
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    mean = float(np.mean(values))
    half = _Z95 * float(np.std(values, ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0
    return Estimate(mean, mean - half, mean + half)


def _auroc_estimate(
    responder: Mapping[str, float], responded: np.ndarray, held_out: Mapping[str, Any]
) -> Estimate:
    """AUROC with the Hanley-McNeil (Radiology 1982) 95% interval."""
    auc = float(responder.get("auroc", float("nan")))
    held = held_out.get("responder", {}).get("auroc")
    positives, negatives = int(responded.sum()), int((~responded).sum())
    if not math.isfinite(auc) or not positives or not negatives:
        return Estimate(auc, float("nan"), float("nan"), held)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    half = _Z95 * math.sqrt(max(variance, 0.0))
    return Estimate(auc, max(0.0, auc - half), min(1.0, auc + half), held)


def _brier_estimate(
    responded: np.ndarray, probability: np.ndarray, held_out: Mapping[str, Any]
) -> Estimate:
    """Brier score, a mean of squared errors, with its normal 95% interval."""
    squared = (np.asarray(responded, dtype=float) - probability) ** 2
    mean = _mean_estimate(squared)
    return Estimate(mean.value, mean.low, mean.high, held_out.get("responder", {}).get("brier"))
