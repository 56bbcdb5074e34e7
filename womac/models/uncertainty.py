"""How sure the estimate is: a conformal predictive distribution for each patient.

Cross-conformal prediction with normalized residuals (Papadopoulos et al. 2008; Vovk 2015;
Barber et al. 2021 for the cross-validation variant; Vovk et al. 2019 for predictive
distributions):

1. every training patient gets an out-of-fold prediction, from a model fitted without them;
2. a *difficulty* model learns the size of those errors; it too is cross-fitted, so each
   patient's error is scaled by a difficulty model that never saw it;
3. the signed normalized errors ``e = (y - y_oof) / difficulty`` are kept, sorted;
4. for a new patient, ``y_hat + e * difficulty`` is the conformal predictive distribution: its
   quantiles give the interval (asymmetric where errors are, e.g. at the floor of the WOMAC
   scale) and its upper tail the chance of a clinically important improvement, so the range
   and the probability come from one distribution and cannot contradict each other.

Groups of patients whose errors run larger than the pooled scale predicts (a minority joint,
patients with a core value unknown) would be under-covered by one pooled set of errors, and
groups whose errors run smaller over-covered: each group gets a factor on its members' scale,
fitted so that its own calibration patients are covered as the pooled ones are; a patient's
factor is the product of their groups' (groups of fewer than :data:`MIN_GROUP_SCORES`
patients are left as they are). The distribution stays one per patient, so range and chance
still agree.

Improvement cannot exceed the baseline total. Where an interval reaches that ceiling nothing is
left out above it, so its lower end leaves out the whole tail (:class:`IntervalScores`); and
because errors of patients at the ceiling are cut short by it, the served quantiles are those
of the nominal level that covers the requested share of calibration patients, drawn as served
(:meth:`OutcomeModel.served_level`).

Every training patient calibrates (rather than a quarter of them set aside), which makes the
interval's coverage far less dependent on which patients happened to be set aside; the
out-of-fold models are fitted on fewer patients than the served one, so their errors, and the
interval, err on the wide side. Coverage is checked on held-out patients and gates promotion.

MAPIE 1.x conformalizes intervals but does not expose a predictive distribution, which the
responder probability needs; this module is that distribution, about forty lines of NumPy, with
no import on the request path beyond the fitted models. The probability is then recalibrated
on the calibration patients by logistic regression on its logit (monotone, so a higher
expected improvement never lowers it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from lightgbm import LGBMRegressor
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression

from womac.data import defaults
from womac.data.contract import WOMAC_TOTAL_MAX
from womac.models.blend import member_predict

_EPSILON = 1e-4
MIN_GROUP_SCORES = 200
_GROUP_FACTORS = np.round(np.arange(0.7, 2.0001, 0.01), 2)
_SWEEPS = 3
_NARROW_SE = 2.0  # standard errors of over-coverage a group may keep
# Levels whose served quantiles are calibrated on the training patients (others interpolate).
CALIBRATED_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
_NOMINAL_STEP = 0.0025
_HIGHEST_NOMINAL = 0.999


@dataclass(frozen=True, slots=True)
class IntervalScores:
    """Conformal quantiles of the normalized errors for an interval covering ``1 - alpha``.

    ``low`` and ``high`` end the two-sided interval (alpha/2 left out on each side). Where the
    scale's ceiling (improvement equal to the baseline, a 12-month total of 0) already closes
    the interval above, nothing is left out there, so the lower end leaves out all of alpha:
    ``low_one_sided``; ``high_one_sided`` likewise at the scale's floor. Otherwise a patient
    whose outcome can reach the ceiling would be covered at 1 - alpha/2, not 1 - alpha.
    """

    low: float
    high: float
    low_one_sided: float
    high_one_sided: float


def interval_bounds(
    predicted: Any, scale: Any, baseline_total: Any, scores: IntervalScores
) -> tuple[Any, Any]:
    """The interval of expected improvements ``predicted`` with error scales ``scale``, on the
    WOMAC scale: improvement lies between ``baseline - 96`` and ``baseline``. Arrays or floats.
    """
    low_limit, high_limit = baseline_total - WOMAC_TOTAL_MAX, baseline_total
    lower = predicted + scores.low * scale
    upper = predicted + scores.high * scale
    at_ceiling, at_floor = upper >= high_limit, lower <= low_limit
    lower = np.where(at_ceiling & ~at_floor, predicted + scores.low_one_sided * scale, lower)
    upper = np.where(at_floor & ~at_ceiling, predicted + scores.high_one_sided * scale, upper)
    return np.clip(lower, low_limit, high_limit), np.clip(upper, low_limit, high_limit)


def responder_threshold(
    baseline_total: np.ndarray, min_points: float, min_fraction: float
) -> np.ndarray:
    """Improvement a patient needs to count as a clinically important responder.

    At least ``min_points`` and at least ``min_fraction`` of the baseline total (Tubach et al.
    2005: MCII of WOMAC function 9.1 knee, 7.9 hip on 0-100; Angst et al. 2001: MCID 17-22% of
    baseline).
    """
    return np.maximum(min_points, min_fraction * np.asarray(baseline_total, dtype=float))


def difficulty_model(seed: int) -> LGBMRegressor:
    """Predicts the size of a patient's error from the encoded fields (heavily regularized)."""
    return LGBMRegressor(
        n_estimators=100,
        learning_rate=0.05,
        num_leaves=4,
        min_child_samples=50,
        subsample=0.8,
        subsample_freq=1,
        n_jobs=1,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )


class OutcomeModel(RegressorMixin, BaseEstimator):
    """Point regressor, predictive distribution and training domain of the served model.

    ``regressor`` arrives already fitted on all training patients (as with MAPIE's
    ``prefit=True``); :meth:`fit` learns the difficulty model and conformalizes with the
    out-of-fold predictions of the same kind of model.

    Parameters
    ----------
    regressor
        Fitted regressor of 12-month improvement on encoded inputs.
    difficulty
        Unfitted regressor for the size of a patient's error on encoded inputs.
    level
        Default coverage of the interval (0.8 = 80%).
    responder_min_points, responder_min_fraction
        The clinically important improvement the probability is about.
    """

    def __init__(
        self,
        regressor: Any = None,
        difficulty: Any = None,
        level: float = 0.8,
        responder_min_points: float = defaults.RESPONDER_MIN_POINTS,
        responder_min_fraction: float = defaults.RESPONDER_MIN_FRACTION,
    ) -> None:
        self.regressor = regressor
        self.difficulty = difficulty
        self.level = level
        self.responder_min_points = responder_min_points
        self.responder_min_fraction = responder_min_fraction

    def fit(
        self,
        Z: Any,
        y: Any,
        *,
        out_of_fold: Any,
        folds: Any,
        baseline_total: Any,
        domain_columns: Any = None,
        groups: Any = None,
    ) -> OutcomeModel:
        """Learn the difficulty model and the conformal scores from training patients.

        Parameters
        ----------
        Z, y
            Encoded training patients and their observed improvement.
        out_of_fold
            Each patient's prediction by a model fitted without their fold.
        folds
            The fold of each patient (the same folds as ``out_of_fold``).
        baseline_total
            Their baseline WOMAC total, for the responder definition and the scale's limits.
        domain_columns
            Encoded columns that describe how typical a patient is (the core fields every
            patient has); all columns when ``None``. Optional fields left unknown would
            otherwise make most real requests look unusual.
        groups
            One entry per group whose coverage is checked: its conditions, ``(column, low,
            high)`` triples that a member's encoded values all meet (``low < value <=
            high``), e.g. a one-hot level above the encoded value halfway between absent and
            present, or a KL grade within half a grade and its unknown indicator below that.
        """
        Z = np.asarray(Z, dtype=float)
        y = np.asarray(y, dtype=float)
        out_of_fold = np.asarray(out_of_fold, dtype=float)
        baseline_total = np.asarray(baseline_total, dtype=float)
        self.n_features_in_ = Z.shape[1]
        scale = self._fit_difficulty(Z, y, out_of_fold, np.asarray(folds))
        self.scores_ = np.sort((y - out_of_fold) / scale)
        self._set_groups(groups)
        self._fit_levels(y, out_of_fold, scale, baseline_total)
        self.group_factors_ = self._fit_group_factors(Z, y, out_of_fold, scale, baseline_total)
        scale = scale * self.widening(Z)
        raw = self._raw_probability(out_of_fold, scale, baseline_total)
        responded = y >= responder_threshold(
            baseline_total, self.responder_min_points, self.responder_min_fraction
        )
        self._fit_recalibration(raw, responded)
        self._fit_domain(Z, domain_columns)
        return self

    def _fit_difficulty(
        self, Z: np.ndarray, y: np.ndarray, out_of_fold: np.ndarray, folds: np.ndarray
    ) -> np.ndarray:
        """Fit the served difficulty model; return each patient's cross-fitted scale.

        A patient's error is scaled by a difficulty model that never saw it.
        """
        error = np.abs(y - out_of_fold)
        scale = np.empty(len(y))
        for fold in np.unique(folds):
            inside = folds == fold
            scale[inside] = _floor(
                clone(self.difficulty).fit(Z[~inside], error[~inside]).predict(Z[inside])
            )
        self.difficulty_ = clone(self.difficulty).fit(Z, error)
        return scale

    def _set_groups(self, groups: Any) -> None:
        """The groups whose coverage is checked, as one row per condition (sorted by group)."""
        rows = [
            (g, int(column), float(low), float(high))
            for g, conditions in enumerate(groups or [])
            for column, low, high in conditions
        ]
        self.condition_group_ = np.array([r[0] for r in rows], dtype=int)
        self.condition_column_ = np.array([r[1] for r in rows], dtype=int)
        self.condition_low_ = np.array([r[2] for r in rows], dtype=float)
        self.condition_high_ = np.array([r[3] for r in rows], dtype=float)

    def _fit_recalibration(self, raw: np.ndarray, responded: np.ndarray) -> None:
        """Logistic recalibration of the raw responder chance on the calibration patients."""
        self.recalibration_ = np.array([0.0, 1.0])
        possible = raw > 0
        if responded[possible].min(initial=1) != responded[possible].max(initial=0):
            logistic = LogisticRegression(C=1e4).fit(
                _logit(raw[possible])[:, None], responded[possible]
            )
            intercept, slope = float(logistic.intercept_[0]), float(logistic.coef_[0, 0])
            if slope > 0:  # keep the probability rising with the expected improvement
                self.recalibration_ = np.array([intercept, slope])

    def _fit_domain(self, Z: np.ndarray, domain_columns: Any) -> None:
        """The training domain: shrunk covariance of the core fields and its 99% distance."""
        self.domain_columns_ = (
            np.arange(Z.shape[1]) if domain_columns is None else np.asarray(domain_columns, int)
        )
        covariance = LedoitWolf().fit(Z[:, self.domain_columns_])
        self.center_ = covariance.location_
        self.precision_ = covariance.precision_
        self.distance_threshold_ = float(np.quantile(self._distance(Z), 0.99))

    def predict(self, Z: Any) -> np.ndarray:
        """Expected improvement."""
        if hasattr(Z, "columns"):
            # Passed through as given: a regressor fitted on named columns keeps its names.
            return np.asarray(self.regressor.predict(Z))
        return member_predict(self.regressor, np.asarray(Z, dtype=float))

    def distribution(
        self,
        Z: Any,
        predicted: np.ndarray,
        baseline_total: np.ndarray,
        level: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Interval bounds and responder probability for encoded patients.

        Parameters
        ----------
        Z
            Encoded patients.
        predicted
            Their expected improvement (from :meth:`predict`, passed to avoid recomputing).
        baseline_total
            Their baseline WOMAC total: improvement cannot exceed it (the 12-month total
            cannot fall below 0) nor fall below ``baseline - 96``.
        level
            Coverage of the interval; the model's default when ``None``.

        Returns
        -------
        lower, upper, p_clinically_important
        """
        Z = np.asarray(Z, dtype=float)
        predicted = np.asarray(predicted, dtype=float)
        baseline_total = np.asarray(baseline_total, dtype=float)
        level = self.level if level is None else level
        scale = self._scale(Z) * self.widening(Z)
        lower, upper = interval_bounds(predicted, scale, baseline_total, self.quantiles(level))
        raw = self._raw_probability(predicted, scale, baseline_total)
        return lower, upper, self.recalibrated(raw)

    def recalibrated(self, raw: np.ndarray) -> np.ndarray:
        """The responder probability from the predictive distribution's raw chance: logistic
        recalibration on its logit (0 stays 0: a threshold the scale cannot reach)."""
        intercept, slope = self.recalibration_
        return np.where(raw > 0, _expit(intercept + slope * _logit(raw)), 0.0)

    def atypical(self, Z: Any) -> np.ndarray:
        """Whether each patient lies farther from the training patients than 99% of them.

        Mahalanobis distance over the core fields (shrunk covariance, Ledoit-Wolf), so an
        unusual *combination* of values, each within its own range, is caught too.
        """
        return self._distance(np.asarray(Z, dtype=float)) > self.distance_threshold_

    def _scale(self, Z: np.ndarray) -> np.ndarray:
        booster = getattr(self.difficulty_, "booster_", None)
        if booster is not None:  # LightGBM's own predict: no wrapper overhead
            return _floor(booster.predict(Z, num_threads=1 if len(Z) < 2000 else 0))
        return _floor(self.difficulty_.predict(Z))

    def _membership(self, Z: np.ndarray) -> np.ndarray:
        """Whether each patient is in each group: all of the group's conditions hold."""
        groups = self.condition_group_
        if len(groups) == 0:
            return np.zeros((len(Z), 0), dtype=bool)
        values = Z[:, self.condition_column_]
        holds = (values > self.condition_low_) & (values <= self.condition_high_)
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        return np.asarray(np.logical_and.reduceat(holds, starts, axis=1))

    def _fit_levels(
        self, y: np.ndarray, out_of_fold: np.ndarray, scale: np.ndarray, baseline_total: np.ndarray
    ) -> None:
        """For each calibrated level, the nominal level whose quantiles, drawn as served, cover
        that share of the calibration patients (with the finite-sample correction).

        The errors of patients who reached the ceiling of the scale are cut short by it, which
        pulls the pooled upper quantile down: the nominal quantiles would leave patients far
        from the ceiling under-covered. Found by scanning nominal levels upwards in steps of
        0.25 points; served as an offset, interpolated between calibrated levels.
        """
        n = len(y)
        levels = sorted({*CALIBRATED_LEVELS, float(self.level)})
        offsets = []
        for level in levels:
            target = min(1.0, np.ceil(level * (n + 1)) / n)
            nominal = level
            while nominal < _HIGHEST_NOMINAL and (
                _coverage(self._nominal_quantiles(nominal), y, out_of_fold, scale, baseline_total)
                < target
            ):
                nominal += _NOMINAL_STEP
            offsets.append(min(nominal, _HIGHEST_NOMINAL) - level)
        self.calibrated_levels_ = np.array(levels)
        self.level_offsets_ = np.array(offsets)

    def _fit_group_factors(
        self,
        Z: np.ndarray,
        y: np.ndarray,
        out_of_fold: np.ndarray,
        scale: np.ndarray,
        baseline_total: np.ndarray,
    ) -> np.ndarray:
        """One factor per group on its members' scale, so that each group's calibration
        patients are covered as the pooled ones are (intervals drawn as served).

        A patient's factor is the product of their groups' (raking: every patient is in a KL
        grade, a sex and a joint, so a maximum could never narrow an over-covered group).
        Each group's factor is the smallest on the grid giving it the pooled coverage, the
        others held (below 1 only for a group covered more than :data:`_NARROW_SE` standard
        errors above it, and then only to that edge); a few sweeps over the groups settle them.
        """
        member = self._membership(Z)
        scores = self.quantiles(self.level)

        def coverage(rows: np.ndarray, factor: np.ndarray) -> float:
            return _coverage(
                scores, y[rows], out_of_fold[rows], factor * scale[rows], baseline_total[rows]
            )

        target = coverage(np.arange(len(y)), np.ones(len(y)))
        factors = np.ones(member.shape[1])
        fitted = [g for g in range(member.shape[1]) if member[:, g].sum() >= MIN_GROUP_SCORES]
        for _ in range(_SWEEPS):
            for g in fitted:
                rows = np.flatnonzero(member[:, g])
                others = _product(member[rows], factors) / factors[g]
                covered = np.array([coverage(rows, f * others) for f in _GROUP_FACTORS])
                # Narrowed only when clearly over-covered, and only to the edge of its noise:
                # a group's coverage among m patients varies by sqrt(p (1 - p) / m).
                noise = _NARROW_SE * np.sqrt(target * (1 - target) / len(rows))
                if covered[_GROUP_FACTORS == 1.0][0] > target + noise:
                    enough = np.flatnonzero(covered >= target + noise)
                else:
                    enough = np.flatnonzero((covered >= target) & (_GROUP_FACTORS >= 1.0))
                factors[g] = _GROUP_FACTORS[enough[0]] if len(enough) else _GROUP_FACTORS[-1]
        return factors

    def widening(self, Z: Any) -> np.ndarray:
        """Each patient's factor on the error scale: the product of their groups' (1 for
        none; below 1 narrows)."""
        member = self._membership(np.asarray(Z, dtype=float))
        if member.shape[1] == 0:
            return np.ones(len(member))
        return _product(member, self.group_factors_)

    def quantiles(self, level: float) -> IntervalScores:
        """Conformal quantiles of the calibration scores for an interval covering ``level``:
        those of the nominal level calibrated for it (:meth:`served_level`)."""
        return self._nominal_quantiles(self.served_level(level))

    def served_level(self, level: float) -> float:
        """The nominal level whose quantiles cover ``level`` of the calibration patients."""
        levels = getattr(self, "calibrated_levels_", None)
        if levels is None:  # fitted before levels were calibrated
            return level
        offset = float(np.interp(level, levels, self.level_offsets_))
        return min(level + offset, _HIGHEST_NOMINAL)

    def _nominal_quantiles(self, level: float) -> IntervalScores:
        """Conformal quantiles of the calibration scores with the finite-sample correction."""
        alpha = 1.0 - level
        return IntervalScores(
            low=_below(self.scores_, alpha / 2),
            high=_above(self.scores_, alpha / 2),
            low_one_sided=_below(self.scores_, alpha),
            high_one_sided=_above(self.scores_, alpha),
        )

    def scale_errors(self, factor: float) -> None:
        """Multiply the calibration errors by ``factor`` (a recalibrated interval's width)."""
        self.scores_ = self.scores_ * factor  # stays sorted

    def _raw_probability(
        self, predicted: np.ndarray, scale: np.ndarray, baseline_total: np.ndarray
    ) -> np.ndarray:
        """P(improvement >= threshold) under the conformal predictive distribution."""
        threshold = responder_threshold(
            baseline_total, self.responder_min_points, self.responder_min_fraction
        )
        needed = (threshold - predicted) / scale
        n = len(self.scores_)
        below = np.searchsorted(self.scores_, needed, side="left")
        probability = 1.0 - (below + 0.5) / (n + 1)
        # A threshold above the baseline total cannot be reached: the total cannot go below 0.
        return np.where(threshold > baseline_total, 0.0, probability)

    def _distance(self, Z: np.ndarray) -> np.ndarray:
        centred = Z[:, self.domain_columns_] - self.center_
        return np.sqrt(np.einsum("ij,jk,ik->i", centred, self.precision_, centred))


def _coverage(
    scores: IntervalScores,
    y: np.ndarray,
    predicted: np.ndarray,
    scale: np.ndarray,
    baseline_total: np.ndarray,
) -> float:
    """Share of patients inside their interval, drawn as served."""
    lower, upper = interval_bounds(predicted, scale, baseline_total, scores)
    return float(np.mean((y >= lower) & (y <= upper)))


def _below(sorted_scores: np.ndarray, tail: float) -> float:
    """The score leaving out at most ``tail`` below it (rank floor(tail (n + 1)))."""
    rank = int(np.floor(tail * (len(sorted_scores) + 1)))
    return float(sorted_scores[rank - 1]) if rank >= 1 else -np.inf


def _above(sorted_scores: np.ndarray, tail: float) -> float:
    """The score leaving out at most ``tail`` above it (rank ceil((1 - tail) (n + 1)))."""
    n = len(sorted_scores)
    rank = int(np.ceil((1 - tail) * (n + 1)))
    return float(sorted_scores[rank - 1]) if rank <= n else np.inf


def _product(member: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Per row, the product of the factors of the groups it belongs to."""
    return np.asarray(np.prod(np.where(member, factors, 1.0), axis=1))


def _floor(scale: Any) -> np.ndarray:
    """A floor of one point keeps an over-confident difficulty from collapsing the interval."""
    return np.maximum(np.asarray(scale, dtype=float), 1.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPSILON, 1 - _EPSILON)
    return np.asarray(np.log(p / (1 - p)))


def _expit(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))
