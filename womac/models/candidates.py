"""Candidate models of 12-month WOMAC improvement, each one whole sklearn Pipeline.

Every candidate is ``preprocess`` (a :class:`~features.encoding.PatientEncoder`) followed by
``model``, fitted as one object and served as that same object. The candidates run from the
naive to the flexible, so the chosen model is always shown beside what it must beat:

- ``mean``: the cohort's average improvement for everyone (no information).
- ``baseline_womac``: ordinary least squares on the baseline WOMAC subscales only, the
  comparator published outcome models are asked to report (TRIPOD+AI item 12).
- ``ridge``: a penalised additive model, every numeric field a cubic spline, categories
  one-hot; curved effects (BMI, floor effects) without interactions.
- ``lightgbm``: gradient-boosted trees, learning interactions between fields.
- ``blend``: ``ridge`` and ``lightgbm`` as tuned, averaged with weights fitted on their
  out-of-fold predictions (:mod:`womac.models.blend`, :mod:`womac.models.selection`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightgbm import LGBMRegressor
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline

from womac.data.contract import BASELINE_SUBSCALES, PREDICTOR_NAMES
from womac.features.encoding import PatientEncoder

COMPARATOR = "baseline_womac"
BLEND = "blend"
LINEAR, TREES = "ridge", "lightgbm"  # the blend's members
BLEND_DESCRIPTION = "Ridge and LightGBM, weighted by their out-of-fold errors"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A model family: how to build it and which settings cross-validation may choose."""

    name: str
    description: str
    build: Callable[[int], Pipeline]
    grid: dict[str, list[Any]] = field(default_factory=dict)


def _pipeline(encoder: PatientEncoder, model: Any) -> Pipeline:
    return Pipeline([("preprocess", encoder), ("model", model)]).set_output(transform="pandas")


def _mean(seed: int) -> Pipeline:
    return _pipeline(PatientEncoder(fields=PREDICTOR_NAMES), DummyRegressor(strategy="mean"))


def _baseline_womac(seed: int) -> Pipeline:
    return _pipeline(PatientEncoder(fields=BASELINE_SUBSCALES), LinearRegression())


def _ridge(seed: int) -> Pipeline:
    return _pipeline(PatientEncoder(fields=PREDICTOR_NAMES, spline_knots=4), Ridge(alpha=30.0))


def _lightgbm(seed: int) -> Pipeline:
    # Two threads to fit (this machine's cores; fixed, so results do not depend on where it
    # runs). Serving never uses this wrapper for one patient: it calls the booster with one
    # thread (single-row prediction is ~200x slower with two, DESIGN.md pitfalls).
    model = LGBMRegressor(
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=4,
        min_child_samples=40,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        reg_lambda=1.0,
        n_jobs=2,
        random_state=seed,
        # The same data, seed and versions give the same model (threads included).
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    return _pipeline(PatientEncoder(fields=PREDICTOR_NAMES), model)


CANDIDATES: dict[str, Candidate] = {
    candidate.name: candidate
    for candidate in (
        Candidate("mean", "Cohort mean for every patient", _mean),
        Candidate(COMPARATOR, "Linear model on baseline WOMAC subscales only", _baseline_womac),
        Candidate(
            "ridge",
            "Ridge regression, cubic splines per numeric field",
            _ridge,
            {
                "model__alpha": [3.0, 10.0, 30.0, 100.0, 300.0, 1000.0],
                "preprocess__spline_knots": [None, 4],
            },
        ),
        Candidate(
            "lightgbm",
            "Gradient-boosted trees (LightGBM)",
            _lightgbm,
            # Tree counts are read off one fit per fold (models.selection): a fine grid is free.
            {"model__num_leaves": [4, 8, 16], "model__n_estimators": list(range(50, 601, 50))},
        ),
    )
}
