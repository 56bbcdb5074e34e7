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
patients with a core value unknown) would be under-covered by one pooled set of errors: each
such group gets a widening factor, the smallest that gives its own calibration patients the
pooled coverage, applied to its members' scale (never narrowing; groups of fewer than
:data:`MIN_GROUP_SCORES` patients are left as they are). The distribution stays one per
patient, so range and chance still agree.

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
_WIDENING = np.round(np.arange(1.0, 2.0001, 0.01), 2)


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
        group_columns: Any = None,
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
        group_columns
            ``(column, cut)`` pairs, one per group whose coverage is checked: a patient is in
            the group when the encoded column exceeds the cut (the encoded value halfway
            between absent and present, for a one-hot level or an unknown indicator).
        """
        Z = np.asarray(Z, dtype=float)
        y = np.asarray(y, dtype=float)
        out_of_fold = np.asarray(out_of_fold, dtype=float)
        baseline_total = np.asarray(baseline_total, dtype=float)
        self.n_features_in_ = Z.shape[1]
        scale = self._fit_difficulty(Z, y, out_of_fold, np.asarray(folds))
        normalized = (y - out_of_fold) / scale
        self.scores_ = np.sort(normalized)
        self._set_groups(group_columns)
        self.group_widening_ = self._fit_widening(Z, normalized)
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

    def _set_groups(self, group_columns: Any) -> None:
        """The groups whose coverage is checked, as encoded columns and cuts."""
        pairs = [(int(c), float(t)) for c, t in group_columns or []]
        self.group_columns_ = np.array([c for c, _ in pairs], dtype=int)
        self.group_cuts_ = np.array([t for _, t in pairs], dtype=float)

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
        low_score, high_score = self.quantiles(level)
        # What the scale allows: the 12-month total lies in 0-96.
        low_limit, high_limit = baseline_total - WOMAC_TOTAL_MAX, baseline_total
        lower = np.clip(predicted + low_score * scale, low_limit, high_limit)
        upper = np.clip(predicted + high_score * scale, low_limit, high_limit)
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
        columns = getattr(self, "group_columns_", np.zeros(0, dtype=int))
        if len(columns) == 0:
            return np.zeros((len(Z), 0), dtype=bool)
        return np.asarray(Z[:, columns] > self.group_cuts_)

    def _fit_widening(self, Z: np.ndarray, normalized: np.ndarray) -> np.ndarray:
        """Per group, the smallest factor giving its calibration patients the pooled coverage."""
        member = self._membership(Z)
        low, high = self.quantiles(self.level)
        target = np.mean((normalized >= low) & (normalized <= high))
        widening = np.ones(member.shape[1])
        for g in range(member.shape[1]):
            scores = normalized[member[:, g]]
            if len(scores) < MIN_GROUP_SCORES:
                continue
            covered = [np.mean((scores >= f * low) & (scores <= f * high)) for f in _WIDENING]
            enough = np.flatnonzero(np.asarray(covered) >= target)
            widening[g] = _WIDENING[enough[0]] if len(enough) else _WIDENING[-1]
        return widening

    def widening(self, Z: Any) -> np.ndarray:
        """Each patient's widening factor: the largest of their groups' (1 for none)."""
        Z = np.asarray(Z, dtype=float)
        member = self._membership(Z)
        if member.shape[1] == 0:
            return np.ones(len(Z))
        return np.asarray(np.max(np.where(member, self.group_widening_, 1.0), axis=1))

    def quantiles(self, level: float) -> tuple[float, float]:
        """Conformal quantiles of the calibration scores with the finite-sample correction."""
        n = len(self.scores_)
        alpha = 1.0 - level
        low_rank = int(np.floor(alpha / 2 * (n + 1)))
        high_rank = int(np.ceil((1 - alpha / 2) * (n + 1)))
        low = self.scores_[low_rank - 1] if low_rank >= 1 else -np.inf
        high = self.scores_[high_rank - 1] if high_rank <= n else np.inf
        return float(low), float(high)

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


def _floor(scale: Any) -> np.ndarray:
    """A floor of one point keeps an over-confident difficulty from collapsing the interval."""
    return np.maximum(np.asarray(scale, dtype=float), 1.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPSILON, 1 - _EPSILON)
    return np.asarray(np.log(p / (1 - p)))


def _expit(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))
