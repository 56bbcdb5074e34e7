"""Choosing the model: tune each candidate by grouped cross-validation, blend, pick with noise.

1. **Tune.** Each candidate's settings grid is searched by K-fold cross-validation with a
   patient's joints in one fold. Every setting's out-of-fold predictions are kept, so the best
   one's are the honest errors of that candidate (no refit needed to get them). For LightGBM
   the number of trees is read off one fit per fold (predicting with the first ``k`` trees),
   so a fine grid of tree counts costs one fit, not one per count.
2. **Blend.** The tuned linear and tree candidates are combined with convex weights fitted
   on their out-of-fold predictions (:mod:`womac.models.blend`). Its own out-of-fold error
   is cross-fitted too: the weights used for a fold are fitted on the other folds.
3. **Choose, respecting noise.** Out-of-fold errors come with sampling error. The paired
   difference in squared error between two candidates (per patient, summed over their
   joints) has a standard error; a candidate is *clearly better* than another when its mean
   squared error is lower by more than :data:`CLEARLY_BETTER_SE` of those. The blend (which
   contains each member as a special case) is chosen unless a single candidate is clearly
   better than it; otherwise the best such single one. The reason is kept in words.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline

from womac.features.encoding import PatientEncoder
from womac.models.blend import ALL_INPUTS, TREE_INPUTS, BlendedRegressor, blend_weights
from womac.models.candidates import BLEND, Candidate

CLEARLY_BETTER_SE = 1.0
"""How many standard errors of the paired difference make one candidate clearly better."""

TREE_COUNT = "model__n_estimators"

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(slots=True)
class Tuned:
    """One candidate after cross-validation: its best settings and their out-of-fold errors."""

    name: str
    description: str
    params: dict[str, Any]
    pipeline: Pipeline  # unfitted, with the chosen settings
    out_of_fold: np.ndarray

    def cv(self, observed: np.ndarray, folds: Folds) -> dict[str, float]:
        """Out-of-fold RMSE (mean over folds, and its SD across folds), MAE and R^2."""
        per_fold = [_rmse(observed[inside], self.out_of_fold[inside]) for _, inside in folds]
        error = observed - self.out_of_fold
        return {
            "rmse": float(np.mean(per_fold)),
            "rmse_sd": float(np.std(per_fold)),
            "mae": float(np.mean(np.abs(error))),
            "r2": float(1 - np.mean(error**2) / np.var(observed)),
        }


@dataclass(frozen=True, slots=True)
class Choice:
    """The chosen candidate and why, in words."""

    name: str
    reason: str


def tune(
    candidate: Candidate, patients: pd.DataFrame, observed: np.ndarray, folds: Folds, seed: int
) -> Tuned:
    """Search a candidate's grid by grouped cross-validation; keep the best setting's errors."""
    base = candidate.build(seed)
    grid = dict(candidate.grid)
    counts = sorted(grid.pop(TREE_COUNT, []))
    best: tuple[float, dict[str, Any], np.ndarray] | None = None
    for params in ParameterGrid([grid]) if grid else [{}]:
        for settings, predicted in _out_of_fold(base, params, counts, patients, observed, folds):
            score = float(np.mean([_rmse(observed[i], predicted[i]) for _, i in folds]))
            if best is None or score < best[0] - 1e-12:
                best = (score, settings, predicted)
    assert best is not None
    _, params, out_of_fold = best
    return Tuned(
        name=candidate.name,
        description=candidate.description,
        params=params,
        pipeline=clone(base).set_params(**params),
        out_of_fold=out_of_fold,
    )


def _out_of_fold(
    base: Pipeline,
    params: Mapping[str, Any],
    counts: list[int],
    patients: pd.DataFrame,
    observed: np.ndarray,
    folds: Folds,
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Out-of-fold predictions of one setting, or of each tree count of one setting."""
    settings = [dict(params, **{TREE_COUNT: count}) for count in counts] or [dict(params)]
    predicted = [np.empty(len(observed)) for _ in settings]
    for inside_fit, inside in folds:
        pipeline = clone(base).set_params(**settings[-1])
        with warnings.catch_warnings():
            # Spline bases are collinear by design; the ridge penalty handles it.
            warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
            pipeline.fit(patients.iloc[inside_fit], observed[inside_fit])
        encoded = pipeline.named_steps["preprocess"].transform(patients.iloc[inside])
        model = pipeline.named_steps["model"]
        for setting, out in zip(settings, predicted, strict=True):
            if counts:  # the first k trees of the largest model are the model with k trees
                out[inside] = model.booster_.predict(
                    np.asarray(encoded, dtype=float), num_iteration=setting[TREE_COUNT]
                )
            else:
                out[inside] = model.predict(encoded)
    return list(zip(settings, predicted, strict=True))


def blend(
    linear: Tuned, tree: Tuned, observed: np.ndarray, folds: Folds, description: str
) -> Tuned:
    """The blend of a tuned linear and a tuned tree candidate, weighted on out-of-fold errors.

    The blend's encoder is the linear candidate's (values and spline bases); the tree member
    reads the values only, which is what the tree candidate saw, so the members' out-of-fold
    predictions are the candidates' own.
    """
    stacked = np.column_stack([linear.out_of_fold, tree.out_of_fold])
    out_of_fold = np.empty(len(observed))
    for inside_fit, inside in folds:  # cross-fitted weights: honest blend errors
        weights = blend_weights(stacked[inside_fit], observed[inside_fit])
        out_of_fold[inside] = stacked[inside] @ weights
    weights = blend_weights(stacked, observed)
    encoder: PatientEncoder = clone(linear.pipeline.named_steps["preprocess"])
    model = BlendedRegressor(
        members=[
            (linear.name, clone(linear.pipeline.named_steps["model"]), ALL_INPUTS),
            (tree.name, clone(tree.pipeline.named_steps["model"]), TREE_INPUTS),
        ],
        weights=[float(w) for w in weights],
    )
    pipeline = Pipeline([("preprocess", encoder), ("model", model)]).set_output(transform="pandas")
    params = {
        f"weight_{linear.name}": round(float(weights[0]), 4),
        f"weight_{tree.name}": round(float(weights[1]), 4),
        **{f"{linear.name}.{k}": v for k, v in linear.params.items()},
        **{f"{tree.name}.{k}": v for k, v in tree.params.items()},
    }
    return Tuned(BLEND, description, params, pipeline, out_of_fold)


def choose(tuned: Sequence[Tuned], observed: np.ndarray, groups: np.ndarray) -> Choice:
    """The blend unless a single candidate is clearly better; the reason in words."""
    by_name = {t.name: t for t in tuned}
    patient, _ = pd.factorize(groups)

    def squared(t: Tuned) -> np.ndarray:  # per patient: a patient's joints are not independent
        return np.bincount(patient, weights=(observed - t.out_of_fold) ** 2)

    def gap(a: Tuned, b: Tuned) -> tuple[float, float]:
        """Mean squared error of a minus b per row, and its standard error."""
        difference = (squared(a) - squared(b)) * (patient.max() + 1) / len(observed)
        return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))

    singles = [t for t in tuned if t.name != BLEND]
    best_single = min(singles, key=lambda t: _mse(observed, t.out_of_fold))
    blended = by_name.get(BLEND)
    if blended is None:
        return Choice(
            best_single.name,
            f"lowest out-of-fold RMSE ({_rmse(observed, best_single.out_of_fold):.3f})",
        )
    mean, se = gap(best_single, blended)
    rmse_single = _rmse(observed, best_single.out_of_fold)
    rmse_blend = _rmse(observed, blended.out_of_fold)
    versus = (
        f"out-of-fold RMSE {rmse_blend:.3f} for the blend, {rmse_single:.3f} for "
        f"{best_single.name}, the best single candidate (difference in mean squared error "
        f"{mean:+.2f} \u00b1 {se:.2f} standard error)"
    )
    if mean < -CLEARLY_BETTER_SE * se:
        return Choice(
            best_single.name, f"{best_single.name} is clearly better than the blend: {versus}"
        )
    return Choice(BLEND, f"blend: no single candidate is clearly better; {versus}")


def _rmse(observed: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((observed - predicted) ** 2)))


def _mse(observed: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean((observed - predicted) ** 2))
