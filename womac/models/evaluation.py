"""Held-out evaluation of the served model: point accuracy, interval coverage, responder
probability and its clinical utility (decision curve), and the first three by subgroup with
bootstrap confidence intervals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from womac.models.decision import decision_curve
from womac.models.metrics import regression_metrics

AGE_BANDS = ((0, 50, "<50"), (50, 60, "50-59"), (60, 70, "60-69"), (70, 200, "70+"))
SUBGROUPS = ("sex", "age_band", "kl_grade", "joint")
BOOTSTRAP_SAMPLES = 500


def responder_metrics(responded: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Discrimination and calibration of the responder probability.

    Calibration intercept and slope come from the logistic regression of the observed
    responder status on the logit of the probability (Van Calster et al., J Clin Epidemiol
    2016): 0 and 1 when calibrated; a slope below 1 means too extreme probabilities.
    """
    responded = np.asarray(responded, dtype=bool)
    probability = np.clip(np.asarray(probability, dtype=float), 1e-6, 1 - 1e-6)
    out: dict[str, float] = {
        "prevalence": float(responded.mean()),
        "mean_probability": float(probability.mean()),
        "brier": float(brier_score_loss(responded, probability)),
    }
    if responded.min() == responded.max():
        return out | {
            k: float("nan") for k in ("auroc", "calibration_slope", "calibration_intercept")
        }
    logit = np.log(probability / (1 - probability))
    fit = LogisticRegression(C=1e6).fit(logit[:, None], responded)
    return out | {
        "auroc": float(roc_auc_score(responded, probability)),
        "calibration_slope": float(fit.coef_[0, 0]),
        "calibration_intercept": float(fit.intercept_[0]),
    }


def calibration_curve(
    responded: np.ndarray, probability: np.ndarray, bins: int = 10
) -> list[dict[str, float]]:
    """Observed responder fraction per decile of predicted probability."""
    return binned_calibration(probability, np.asarray(responded, dtype=float), bins)


def binned_calibration(
    predicted: np.ndarray, observed: np.ndarray, bins: int = 10
) -> list[dict[str, float]]:
    """Mean predicted and mean observed per quantile bin (decile) of the prediction."""
    frame = pd.DataFrame({"observed": observed, "predicted": predicted})
    frame["bin"] = pd.qcut(frame["predicted"], q=bins, duplicates="drop", labels=False)
    grouped = frame.groupby("bin").agg(
        predicted=("predicted", "mean"), observed=("observed", "mean"), n=("observed", "size")
    )
    return [
        {"predicted": float(p), "observed": float(o), "n": int(k)}
        for p, o, k in grouped.itertuples(index=False)
    ]


def subgroup_labels(patients: pd.DataFrame) -> dict[str, np.ndarray]:
    """Sex, age band, KL grade and joint of each patient, as text labels."""
    age = patients["age"].to_numpy(dtype=float)
    band = np.full(len(age), "unknown", dtype=object)
    for low, high, label in AGE_BANDS:
        band[(age >= low) & (age < high)] = label
    kl = patients["kl_grade"].to_numpy(dtype=float)
    kl_label = np.array(["unknown" if np.isnan(g) else str(int(g)) for g in kl], dtype=object)
    return {
        "sex": patients["sex"].fillna("unknown").to_numpy(dtype=object),
        "age_band": band,
        "kl_grade": kl_label,
        "joint": patients["joint"].fillna("unknown").to_numpy(dtype=object),
    }


@dataclass(slots=True)
class SubgroupRow:
    """One subgroup's figures with 95% bootstrap intervals."""

    subgroup: str
    level: str
    n: int
    rmse: float
    rmse_ci: tuple[float, float]
    calibration_slope: float
    calibration_slope_ci: tuple[float, float]
    coverage: float
    coverage_ci: tuple[float, float]
    mean_predicted: float
    mean_observed: float


def subgroup_table(
    labels: dict[str, np.ndarray],
    observed: np.ndarray,
    predicted: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    seed: int,
    samples: int = BOOTSTRAP_SAMPLES,
) -> list[SubgroupRow]:
    """RMSE, calibration slope and interval coverage per subgroup, with bootstrap 95% CIs."""
    rng = np.random.default_rng(seed)
    covered = (observed >= lower) & (observed <= upper)
    rows = []
    for subgroup in SUBGROUPS:
        values = labels[subgroup]
        for level in sorted(set(values), key=str):
            members = np.flatnonzero(values == level)
            n = len(members)
            if n < 2:
                continue
            rmse, slope, coverage = _bootstrap(members, observed, predicted, covered, rng, samples)
            point = regression_metrics(observed[members], predicted[members])
            rows.append(
                SubgroupRow(
                    subgroup=subgroup,
                    level=str(level),
                    n=n,
                    rmse=point["rmse"],
                    rmse_ci=percentile_interval(rmse),
                    calibration_slope=point["calibration_slope"],
                    calibration_slope_ci=percentile_interval(slope),
                    coverage=float(covered[members].mean()),
                    coverage_ci=percentile_interval(coverage),
                    mean_predicted=float(predicted[members].mean()),
                    mean_observed=float(observed[members].mean()),
                )
            )
    return rows


def _bootstrap(
    members: np.ndarray,
    observed: np.ndarray,
    predicted: np.ndarray,
    covered: np.ndarray,
    rng: np.random.Generator,
    samples: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RMSE, calibration slope and coverage of ``samples`` resamples of ``members``.

    Resamples are drawn in blocks of at most ~4 million values, so memory stays flat even
    for 100,000 held-out patients.
    """
    n = len(members)
    block = max(1, 4_000_000 // n)
    rmse, slope, coverage = [], [], []
    for start in range(0, samples, block):
        draws = members[rng.integers(0, n, size=(min(block, samples - start), n))]
        y, p = observed[draws], predicted[draws]
        rmse.append(np.sqrt(np.mean((y - p) ** 2, axis=1)))
        p_centred = p - p.mean(axis=1, keepdims=True)
        spread = np.mean(p_centred**2, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            slope.append(np.mean(p_centred * (y - y.mean(axis=1, keepdims=True)), axis=1) / spread)
        coverage.append(covered[draws].mean(axis=1))
    return np.concatenate(rmse), np.concatenate(slope), np.concatenate(coverage)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap resamples (NaN ones left out)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    low, high = np.quantile(finite, [0.025, 0.975])
    return (float(low), float(high))


@dataclass(slots=True)
class Evaluation:
    """The served model on held-out patients: what the report, gates and API show."""

    n: int
    level: float
    point: dict[str, float]
    coverage: float
    mean_width: float
    responder: dict[str, float]
    calibration_curve: list[dict[str, float]]
    subgroups: list[SubgroupRow] = field(default_factory=list)
    # Net benefit per threshold (``DecisionRow`` as plain data); empty in evaluations made
    # before the decision curve existed.
    decision_curve: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """Flat metric names for the tracking store."""
        out = {f"test_{k}": v for k, v in self.point.items()}
        out |= {"test_coverage": self.coverage, "test_interval_width": self.mean_width}
        out |= {f"test_responder_{k}": v for k, v in self.responder.items()}
        for row in self.subgroups:
            key = f"{row.subgroup}_{row.level}".replace("<", "lt").replace("+", "plus")
            out[f"subgroup_{key}_rmse"] = row.rmse
            out[f"subgroup_{key}_coverage"] = row.coverage
            out[f"subgroup_{key}_calibration_slope"] = row.calibration_slope
        return {k: v for k, v in out.items() if np.isfinite(v)}


def evaluate(pipeline: Any, patients: pd.DataFrame, observed: np.ndarray, seed: int) -> Evaluation:
    """Evaluate the served pipeline once on held-out patients (typed, with outcomes)."""
    from womac.data.cohort import womac_total
    from womac.features.encoding import frame_columns
    from womac.models.scoring import Scorer
    from womac.models.uncertainty import responder_threshold

    outcome = pipeline.named_steps["model"]
    predicted, lower, upper, probability = Scorer(pipeline).distribution(frame_columns(patients))
    baseline = womac_total(patients).to_numpy(dtype=float)
    responded = observed >= responder_threshold(
        baseline, outcome.responder_min_points, outcome.responder_min_fraction
    )
    covered = (observed >= lower) & (observed <= upper)
    return Evaluation(
        n=len(observed),
        level=outcome.level,
        point=regression_metrics(observed, predicted),
        coverage=float(covered.mean()),
        mean_width=float(np.mean(upper - lower)),
        responder=responder_metrics(responded, probability),
        calibration_curve=calibration_curve(responded, probability),
        subgroups=subgroup_table(
            subgroup_labels(patients), observed, predicted, lower, upper, seed
        ),
        decision_curve=[asdict(row) for row in decision_curve(responded, probability)],
    )
