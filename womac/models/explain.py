"""SHAP attributions of a fitted pipeline, in the space of contract fields.

The model sees encoded columns (splines, one-hot levels, unknown indicators); a clinician
asks about fields. Every encoded column comes from exactly one field, so summing the
columns' SHAP values per field gives exact field attributions, and
``base_value + sum(contributions) == expected_improvement`` for every patient.

- Tree ensembles (LightGBM): TreeSHAP as computed by LightGBM itself (``pred_contrib``),
  identical to ``shap.TreeExplainer`` without importing shap on the request path.
- Linear models: ``coef * x``. The encoder centres every column on the training data, so this
  is the exact interventional SHAP value of an additive model and ``intercept_`` is the
  average prediction.
- The mean model: every contribution is zero.
- A blend (:class:`~womac.models.blend.BlendedRegressor`): the weighted sum of its members'
  attributions, each computed as above on the member's own columns, so it is exact too.
- A recalibrated model (:class:`~womac.models.recalibration.RecalibratedRegressor`,
  ``a + b * base``): the base model's terms weighted by ``b``, plus the constant ``a``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.dummy import DummyRegressor
from sklearn.pipeline import Pipeline

from womac.data.contract import PREDICTOR_NAMES
from womac.features.encoding import PatientEncoder, field_of
from womac.models.blend import BlendedRegressor
from womac.models.recalibration import RecalibratedRegressor
from womac.models.uncertainty import OutcomeModel


@dataclass(frozen=True, slots=True)
class Explanation:
    """Predictions and per-field contributions for a batch of patients."""

    expected_improvement: np.ndarray
    base_value: float
    fields: tuple[str, ...]
    contributions: np.ndarray  # (patients, fields), in the order of ``fields``

    def top(self, row: int, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` fields with the largest absolute contribution for one patient."""
        order = np.argsort(-np.abs(self.contributions[row]), kind="stable")[:k]
        return [(self.fields[i], float(self.contributions[row, i])) for i in order]


def explain(pipeline: Pipeline, patients: pd.DataFrame) -> Explanation:
    """Predict and attribute each patient's expected improvement to contract fields.

    Parameters
    ----------
    pipeline
        A fitted ``preprocess`` -> ``model`` pipeline from :mod:`models.candidates`, or the
        served pipeline whose ``model`` is an :class:`~models.uncertainty.OutcomeModel`.
    patients
        Model input: every predictor field (see :func:`data.cohort.model_input`).

    Returns
    -------
    Explanation
        Predictions, the base value and one contribution per predictor field.
    """
    encoder: PatientEncoder = pipeline.named_steps["preprocess"]
    return attribute(pipeline, np.asarray(encoder.transform(patients), dtype=float))


def attribute(pipeline: Pipeline, encoded: np.ndarray) -> Explanation:
    """:func:`explain` for patients already encoded by the pipeline's ``preprocess`` step."""
    return Attributor(pipeline)(encoded)


@dataclass(frozen=True, slots=True)
class Term:
    """One additive part of a prediction: a fitted model on some encoded columns, weighted.

    Attributes
    ----------
    weight
        Its weight in the prediction (1 for a single model, the blend weight in a blend).
    columns
        The encoded columns it reads, in order.
    booster
        LightGBM's booster for a tree model (TreeSHAP by ``pred_contrib``), else ``None``.
    intercept, coefficients
        For an additive model: its prediction is ``intercept + columns @ coefficients``, and
        ``coefficients * x`` its SHAP values (``coefficients`` all zero for the mean model).
    """

    weight: float
    columns: np.ndarray
    booster: Any | None
    intercept: float = 0.0
    coefficients: np.ndarray | None = None


def terms_of(model: Any, width: int) -> list[Term]:
    """The additive terms of a fitted point regressor on ``width`` encoded columns."""
    every = np.arange(width)
    if isinstance(model, BlendedRegressor):
        return [
            Term(weight * t.weight, columns[t.columns], t.booster, t.intercept, t.coefficients)
            for member, columns, weight in model.active()
            for t in terms_of(member, len(columns))
        ]
    if isinstance(model, RecalibratedRegressor):
        slope = float(model.slope)
        return [
            *(
                Term(slope * t.weight, t.columns, t.booster, t.intercept, t.coefficients)
                for t in terms_of(model.base, width)
            ),
            Term(1.0, every, None, float(model.intercept), np.zeros(width)),
        ]
    if isinstance(model, LGBMRegressor):
        return [Term(1.0, every, model.booster_)]
    if isinstance(model, DummyRegressor):
        constant = float(np.ravel(model.constant_)[0])
        return [Term(1.0, every, None, constant, np.zeros(width))]
    if hasattr(model, "coef_"):
        intercept = float(np.ravel(model.intercept_)[0])
        return [Term(1.0, every, None, intercept, np.ravel(model.coef_).astype(float))]
    raise TypeError(f"cannot attribute predictions of a {type(model).__name__}")


class Attributor:
    """Per-field SHAP attribution for one fitted pipeline, prepared once (at model load).

    Parameters
    ----------
    pipeline
        A fitted candidate or served pipeline.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        encoder: PatientEncoder = pipeline.named_steps["preprocess"]
        self.model = point_regressor(pipeline)
        columns = list(encoder.get_feature_names_out())
        self.fields = PREDICTOR_NAMES
        # Encoded column -> contract field: one-hot levels, spline bases and unknown
        # indicators of a field add up to that field's contribution.
        self.to_field = np.zeros((len(columns), len(self.fields)))
        for i, column in enumerate(columns):
            self.to_field[i, self.fields.index(field_of(column))] = 1.0
        self.terms = terms_of(self.model, len(columns))
        # The additive terms folded into one intercept and one coefficient per column.
        self.intercept = sum(t.weight * t.intercept for t in self.terms if t.booster is None)
        self.coefficients = np.zeros(len(columns))
        for t in self.terms:
            if t.booster is None and t.coefficients is not None:
                self.coefficients[t.columns] += t.weight * t.coefficients
        self.boosters = [t for t in self.terms if t.booster is not None]

    def __call__(self, encoded: np.ndarray) -> Explanation:
        """Predictions and per-field contributions of encoded patients."""
        base_value = self.intercept
        column_values = encoded * self.coefficients
        for term in self.boosters:
            assert term.booster is not None
            every = len(term.columns) == encoded.shape[1]  # sorted columns: all of them
            shap_values = np.asarray(
                term.booster.predict(
                    encoded if every else encoded[:, term.columns],
                    pred_contrib=True,
                    num_threads=threads(encoded),
                )
            )
            column_values[:, term.columns] += term.weight * shap_values[:, :-1]
            if len(shap_values):
                base_value += term.weight * float(shap_values[0, -1])
        contributions = column_values @ self.to_field
        return Explanation(
            expected_improvement=base_value + contributions.sum(axis=1),
            base_value=base_value,
            fields=self.fields,
            contributions=contributions,
        )


def threads(encoded: np.ndarray) -> int:
    """LightGBM threads for a batch: one for a few patients (two cost ~40x more on one row,
    DESIGN.md pitfalls), every core (0) for thousands."""
    return 1 if len(encoded) < 2000 else 0


def point_regressor(pipeline: Pipeline) -> Any:
    """The regressor that makes the point prediction, inside an OutcomeModel if there is one."""
    model = pipeline.named_steps["model"]
    return model.regressor if isinstance(model, OutcomeModel) else model
