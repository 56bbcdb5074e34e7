"""A blend of an additive model and a tree ensemble, weighted by out-of-fold error.

Neither model family wins on every cohort: a penalised spline model is hard to beat when
effects are smooth and additive, boosted trees when fields interact or effects have steps. On
cohorts from other data-generating processes a weighted average of the two was better than
either (``bench/accuracy.py``). The weights are a convex combination fitted on out-of-fold
predictions (Breiman's stacked regression with non-negative weights summing to one), so they
cannot reward over-fitting, and a weight of one recovers a single member.

Explanations stay exact per field: each member's SHAP values add up to its prediction, so
``sum_m w_m (base_m + sum_j phi_mj) = sum_m w_m base_m + sum_j (sum_m w_m phi_mj)`` and the
blend's base value and per-field contributions are the weighted sums of the members'.

Every member sees the encoder's columns it can use: a linear member all of them (a field's
value and its spline basis), a tree member the values, levels and unknown indicators but not
the spline bases (a tree splits on the value; the basis would only add noisy copies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin, clone

from womac.features.encoding import is_spline_column

TREE_INPUTS = "values"
ALL_INPUTS = "all"


def blend_weights(out_of_fold: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise the squared error of a blend.

    Parameters
    ----------
    out_of_fold
        ``(patients, members)``: each member's out-of-fold predictions.
    observed
        The patients' observed improvement.
    """
    members = out_of_fold.shape[1]
    start = np.full(members, 1.0 / members)
    if members == 1:
        return start

    def loss(weights: np.ndarray) -> float:
        return float(np.mean((observed - out_of_fold @ weights) ** 2))

    result = minimize(
        loss,
        start,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * members,
        constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}],
    )
    weights = np.clip(result.x if result.success else start, 0.0, 1.0)
    weights[weights < 1e-3] = 0.0  # a member worth nothing is not computed at all
    return np.asarray(weights / weights.sum())


class BlendedRegressor(RegressorMixin, BaseEstimator):
    """A fixed convex combination of regressors, each on the encoded columns it can use.

    Parameters
    ----------
    members
        ``(name, regressor, inputs)`` triples; ``inputs`` is ``"all"`` (every encoded column)
        or ``"values"`` (every column but the spline bases: for trees).
    weights
        One weight per member, non-negative and summing to one (from :func:`blend_weights`
        on out-of-fold predictions); equal weights when ``None``.
    """

    def __init__(
        self,
        members: Sequence[tuple[str, Any, str]] | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.members = members
        self.weights = weights

    def fit(self, X: Any, y: Any) -> BlendedRegressor:
        """Fit every member with a non-zero weight on its columns of the encoded patients."""
        members = list(self.members or [])
        if not members:
            raise ValueError("a blend needs at least one member")
        names = [str(c) for c in getattr(X, "columns", [])] or [
            f"x{i}" for i in range(np.shape(X)[1])
        ]
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        weights = np.full(len(members), 1.0 / len(members))
        if self.weights is not None:
            weights = np.asarray(self.weights, dtype=float)
        if len(weights) != len(members) or (weights < 0).any() or abs(weights.sum() - 1) > 1e-6:
            raise ValueError("blend weights must be one per member, non-negative, summing to 1")
        Z = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        self.weights_ = weights
        self.columns_: list[np.ndarray] = []
        self.members_: list[Any] = []
        for (_, regressor, inputs), weight in zip(members, weights, strict=True):
            if inputs not in (ALL_INPUTS, TREE_INPUTS):
                raise ValueError(f"member inputs must be {ALL_INPUTS!r} or {TREE_INPUTS!r}")
            columns = np.asarray(
                [
                    i
                    for i, name in enumerate(names)
                    if inputs == ALL_INPUTS or not is_spline_column(name)
                ],
                dtype=int,
            )
            self.columns_.append(columns)
            # A member with no weight is kept unfitted and never computed.
            self.members_.append(clone(regressor).fit(Z[:, columns], y) if weight > 0 else None)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The weighted sum of the members' predictions."""
        Z = np.asarray(X, dtype=float)
        total = np.zeros(len(Z))
        for member, columns, weight in self.active():
            total += weight * member_predict(member, Z[:, columns])
        return total

    def active(self) -> list[tuple[Any, np.ndarray, float]]:
        """``(fitted member, its columns, weight)`` for every member with a non-zero weight."""
        return [
            (member, columns, float(weight))
            for member, columns, weight in zip(
                self.members_, self.columns_, self.weights_, strict=True
            )
            if member is not None
        ]


def member_predict(regressor: Any, Z: np.ndarray) -> np.ndarray:
    """A fitted regressor's prediction on plain arrays, by its own fastest means.

    LightGBM's booster directly (its sklearn wrapper warns about missing column names), a
    linear model's formula, otherwise the estimator's ``predict``.
    """
    booster = getattr(regressor, "booster_", None)
    if booster is not None:
        return np.asarray(booster.predict(Z, num_threads=1 if len(Z) < 2000 else 0))
    coefficients = getattr(regressor, "coef_", None)
    if coefficients is not None and np.ndim(coefficients) == 1:
        return np.asarray(Z @ coefficients + regressor.intercept_)
    return np.asarray(regressor.predict(Z))
