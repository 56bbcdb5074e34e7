"""Recalibrating a served model on new patients: the smallest update the evidence supports.

A model that drifts on a clinic's new patients is usually off by a constant (a new implant, a
new rehabilitation protocol), sometimes by a factor (its differences between patients too
large or too small), and its interval may be too narrow or too wide. Refitting answers all of
that by throwing away what the model knew; recalibration keeps the model and changes only what
the new patients show is wrong, in the order of Steyerberg's closed testing (Clinical
Prediction Models, 2nd ed., ch. 20; Vergouwe et al. 2017):

1. the intercept, when the mean error differs from 0 beyond sampling error (a t-test);
2. intercept and slope together (least squares of observed on predicted), only when the slope
   differs from 1 beyond sampling error;
3. the interval's scale, when the updated interval's coverage on the new patients is outside
   what binomial sampling allows around its level: the conformal quantile, with the
   finite-sample correction, of the factor each patient's half-width needed.

:class:`RecalibratedRegressor` applies 1 and 2 to the point regressor; :func:`updated_pipeline`
applies 3 to the conformal scores, which scales the interval and the responder probability's
distribution together, so range and chance still agree. Explanations stay exact per field:
``a + b * (base + sum(phi))`` is base value ``a + b * base`` and contributions ``b * phi``
(:func:`womac.models.explain.terms_of`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.pipeline import Pipeline

from womac.models.blend import member_predict
from womac.models.uncertainty import OutcomeModel

MIN_PATIENTS = 3  # a mean, its spread and a slope need at least this many


class RecalibratedRegressor(RegressorMixin, BaseEstimator):
    """A fitted point regressor with its predictions moved and scaled: ``a + b * base``.

    Parameters
    ----------
    base
        The fitted regressor (linear, LightGBM, a blend, or another recalibrated one).
    intercept, slope
        The update: predictions are ``intercept + slope * base.predict(X)``.
    """

    def __init__(self, base: Any = None, intercept: float = 0.0, slope: float = 1.0) -> None:
        self.base = base
        self.intercept = intercept
        self.slope = slope

    def fit(self, X: Any, y: Any) -> RecalibratedRegressor:
        """Nothing to learn: ``base`` arrives fitted and the update comes from
        :func:`choose_update` (as with MAPIE's ``prefit=True``)."""
        self.n_features_in_ = getattr(self.base, "n_features_in_", np.shape(X)[1])
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return self.base is not None

    def predict(self, X: Any) -> np.ndarray:
        """The base regressor's prediction, moved by ``intercept`` and scaled by ``slope``."""
        if hasattr(X, "columns"):
            # Passed through as given: a regressor fitted on named columns keeps its names.
            base = np.asarray(self.base.predict(X), dtype=float)
        else:
            base = member_predict(self.base, np.asarray(X, dtype=float))
        return np.asarray(self.intercept + self.slope * base)


def recalibrated(regressor: Any, intercept: float, slope: float) -> Any:
    """``regressor`` with ``intercept + slope * prediction``; an update of an already
    recalibrated regressor is composed into one (``a2 + b2 (a1 + b1 f)``), not nested."""
    if intercept == 0.0 and slope == 1.0:
        return regressor
    if isinstance(regressor, RecalibratedRegressor):
        return RecalibratedRegressor(
            regressor.base,
            float(intercept + slope * regressor.intercept),
            float(slope * regressor.slope),
        )
    return RecalibratedRegressor(regressor, float(intercept), float(slope))


@dataclass(frozen=True, slots=True)
class Update:
    """What recalibration changes, and why in plain words.

    Attributes
    ----------
    intercept, slope
        The updated point is ``intercept + slope * current point``.
    scale
        The interval's half-widths around the updated point are multiplied by it.
    sentences
        What was fitted (or kept) and the evidence for it, one sentence each.
    """

    intercept: float = 0.0
    slope: float = 1.0
    scale: float = 1.0
    sentences: list[str] = field(default_factory=list)

    @property
    def changes_model(self) -> bool:
        """Whether applying it changes anything."""
        return (self.intercept, self.slope, self.scale) != (0.0, 1.0, 1.0)


def choose_update(
    predicted: Any, lower: Any, upper: Any, observed: Any, level: float, alpha: float
) -> Update:
    """The smallest update of point and interval that the new patients' outcomes support.

    Parameters
    ----------
    predicted, lower, upper
        The current model's expected improvement and interval bounds for each followed-up
        new patient.
    observed
        Their observed improvement.
    level
        The interval's intended coverage (e.g. 0.8).
    alpha
        False-alarm rate of each test (an update when chance alone would show it less often).

    Returns
    -------
    Update
        Intercept 0, slope 1 and scale 1 when nothing is needed.
    """
    predicted, lower, upper, observed = (
        np.asarray(a, dtype=float) for a in (predicted, lower, upper, observed)
    )
    n = len(predicted)
    if not len(lower) == len(upper) == len(observed) == n:
        raise ValueError("predicted, lower, upper and observed must have one value per patient")
    if n < MIN_PATIENTS:
        raise ValueError(f"recalibration needs at least {MIN_PATIENTS} followed-up patients")
    if not np.isfinite(np.stack([predicted, lower, upper, observed])).all():
        raise ValueError("predicted, lower, upper and observed must all be known numbers")
    intercept, slope, point_sentences = _point_update(predicted, observed, alpha)
    updated = intercept + slope * predicted
    scale, scale_sentence = _scale_update(predicted, lower, upper, observed, updated, level, alpha)
    if (intercept, slope, scale) == (0.0, 1.0, 1.0):
        return Update(
            sentences=[
                f"no update needed on {n} new patients: "
                + _joined([*point_sentences, scale_sentence])
            ]
        )
    return Update(intercept, slope, scale, [*point_sentences, scale_sentence])


def _point_update(
    predicted: np.ndarray, observed: np.ndarray, alpha: float
) -> tuple[float, float, list[str]]:
    """Intercept, then intercept and slope, each only beyond sampling error at ``alpha``."""
    shift, shifted, shift_words = _shift_test(predicted, observed, alpha)
    intercept, slope, sloped, slope_words = _slope_test(predicted, observed, alpha)
    if sloped:
        size = "too large" if slope < 1 else "too small"
        fitted = (
            f"intercept {intercept:+.1f} points and slope {slope:.2f}, fitted together by least "
            f"squares: {slope_words}, not 1, so the model's differences between patients were "
            f"{size}"
        )
        return intercept, slope, [fitted]
    slope_kept = f"slope kept at 1: {slope_words}, within sampling error of 1"
    if shifted:
        return shift, 1.0, [f"intercept {shift:+.1f} points: {shift_words}", slope_kept]
    intercept_kept = f"intercept kept at 0: {shift_words}, within sampling error of 0"
    return 0.0, 1.0, [intercept_kept, slope_kept]


def _shift_test(
    predicted: np.ndarray, observed: np.ndarray, alpha: float
) -> tuple[float, bool, str]:
    """The mean error, whether its confidence interval excludes 0, and that in words."""
    n = len(predicted)
    error = observed - predicted
    shift = float(np.mean(error))
    spread = float(np.std(error, ddof=1)) / math.sqrt(n)
    margin = float(stats.t.ppf(1 - alpha / 2, n - 1)) * spread
    low, high = shift - margin, shift + margin
    more = "more" if shift >= 0 else "less"
    words = (
        f"the new patients improved {abs(shift):.1f} ({_percent(1 - alpha)} CI {low:.1f} to "
        f"{high:.1f}) points {more} than predicted"
    )
    return shift, bool(spread > 0 and not low <= 0.0 <= high), words


def _slope_test(
    predicted: np.ndarray, observed: np.ndarray, alpha: float
) -> tuple[float, float, bool, str]:
    """Least squares of observed on predicted, whether the slope's confidence interval
    excludes 1, and that in words."""
    if np.ptp(predicted) == 0:
        return 0.0, 1.0, False, "the predictions do not vary, so no slope can be judged"
    fit = stats.linregress(predicted, observed)
    slope, stderr = float(fit.slope), float(fit.stderr)
    margin = float(stats.t.ppf(1 - alpha / 2, len(predicted) - 2)) * stderr
    low, high = slope - margin, slope + margin
    words = (
        f"observed improvement rose {slope:.2f} ({_percent(1 - alpha)} CI {low:.2f} to "
        f"{high:.2f}) points per predicted point"
    )
    return float(fit.intercept), slope, bool(stderr > 0 and not low <= 1.0 <= high), words


def _scale_update(
    predicted: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    observed: np.ndarray,
    updated: np.ndarray,
    level: float,
    alpha: float,
) -> tuple[float, str]:
    """The interval's scale around the updated point: 1 unless its coverage is beyond chance."""
    n = len(predicted)
    # A bound clipped onto the point (at the WOMAC scale's limit) leaves no half-width to scale.
    below = np.maximum(predicted - lower, 1e-9)
    above = np.maximum(upper - predicted, 1e-9)
    covered = int(np.sum((observed >= updated - below) & (observed <= updated + above)))
    chance_low = stats.binom.ppf(alpha / 2, n, level) / n
    chance_high = stats.binom.isf(alpha / 2, n, level) / n
    held = (
        f"the interval{' around the updated point' if np.any(updated != predicted) else ''} "
        f"held {_percent(covered / n, 1)} of the new patients ({_percent(level)} intended; "
        f"{_percent(chance_low, 1)} to {_percent(chance_high, 1)} happens by chance with {n})"
    )
    if stats.binomtest(covered, n, level).pvalue >= alpha:
        return 1.0, f"interval's scale kept: {held}"
    needed = np.where(
        observed < updated, (updated - observed) / below, (observed - updated) / above
    )
    rank = math.ceil((n + 1) * level)
    scale = float(np.sort(needed)[min(rank, n) - 1])
    verb = "widened" if scale > 1 else "narrowed"
    return scale, (
        f"interval {verb} {scale:.2f}x around the updated point: {held}; "
        f"{scale:.2f}x its half-widths holds {_percent(level)} of them"
    )


def updated_pipeline(pipeline: Pipeline, update: Update) -> Pipeline:
    """A copy of the served pipeline with ``update`` applied; ``pipeline`` is left as it was.

    The point regressor is wrapped in (or, if already recalibrated, composed into) a
    :class:`RecalibratedRegressor`; the conformal scores are multiplied by ``update.scale``,
    which scales the interval's half-widths and the responder probability's distribution
    around the updated point alike (:meth:`OutcomeModel.distribution`).
    """
    if not isinstance(pipeline.named_steps["model"], OutcomeModel):
        raise TypeError("the pipeline has no predictive distribution (not a served model)")
    if not update.scale > 0:
        raise ValueError("the interval's scale must be positive")
    # sklearn's clone would drop the fitted state; a deep copy keeps it and shares nothing.
    updated = copy.deepcopy(pipeline)
    outcome: OutcomeModel = updated.named_steps["model"]
    outcome.regressor = recalibrated(outcome.regressor, update.intercept, update.slope)
    if update.scale != 1.0:
        outcome.scale_errors(float(update.scale))
    return updated


def _percent(fraction: float, decimals: int = 0) -> str:
    return f"{100 * fraction:.{decimals}f}%"


def _joined(sentences: list[str]) -> str:
    return "; ".join(sentences)
