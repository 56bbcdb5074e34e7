"""Calibrating a fitted candidate: its conformal interval and responder probability from
out-of-fold errors, and which patient groups the interval's coverage must hold in."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline

from womac.data.cohort import model_input, womac_total
from womac.data.contract import FIELD_BY_NAME, Kind
from womac.features.encoding import UNKNOWN, field_of
from womac.models.selection import Folds
from womac.models.split import group_folds, tuning_rows
from womac.models.uncertainty import OutcomeModel, difficulty_model
from womac.settings import Settings


def domain_columns(names: list[str]) -> list[int]:
    """Encoded columns of the required fields' values (not their unknown indicators)."""
    return [
        i
        for i, column in enumerate(names)
        if FIELD_BY_NAME[field_of(column)].required and not column.endswith(f"__{UNKNOWN}")
    ]


def coverage_groups(encoder: object, names: list[str]) -> list[list[tuple[int, float, float]]]:
    """Groups whose coverage must hold, each as its conditions on encoded columns.

    Each level of a required category field, each known grade of a required labelled scale
    (the KL grade), and the patients with a required value unknown. Cuts are halfway between
    encoded values (the encoder standardises its columns).
    """
    mean, scale = encoder.mean_, encoder.scale_  # type: ignore[attr-defined]

    def encoded(i: int, value: float) -> float:
        return float((value - mean[i]) / scale[i])

    groups = []
    for i, column in enumerate(names):
        spec = FIELD_BY_NAME[field_of(column)]
        if not spec.required:
            continue
        if column.endswith(f"__{UNKNOWN}") or spec.kind is Kind.CATEGORY:
            groups.append([(i, encoded(i, 0.5), np.inf)])
        elif column == spec.name and spec.value_labels:
            indicator = f"{spec.name}__{UNKNOWN}"  # present when training had unknowns
            unknown = names.index(indicator) if indicator in names else None
            for value, _ in spec.value_labels:
                group = [(i, encoded(i, value - 0.5), encoded(i, value + 0.5))]
                if unknown is not None:
                    group.append((unknown, -np.inf, encoded(unknown, 0.5)))
                groups.append(group)
    return groups


def calibrate(
    pipeline: Pipeline,
    out_of_fold: np.ndarray,
    training: pd.DataFrame,
    observed: np.ndarray,
    folds: Folds,
    settings: Settings,
) -> Pipeline:
    """A fitted candidate with its conformal predictive distribution, as served.

    ``out_of_fold`` are the predictions of the same kind of model for the ``training``
    patients, each from a fit without the patient's fold (``folds``); ``pipeline`` itself
    may have been fitted on more patients than these.
    """
    fold_of = np.empty(len(training), dtype=int)
    for fold, (_, inside) in enumerate(folds):
        fold_of[inside] = fold
    encoder = pipeline.named_steps["preprocess"]
    names = list(encoder.get_feature_names_out())
    outcome = OutcomeModel(
        regressor=pipeline.named_steps["model"],
        difficulty=difficulty_model(settings.seed),
        level=settings.interval_level,
        responder_min_points=settings.responder_min_points,
        responder_min_fraction=settings.responder_min_fraction,
    ).fit(
        np.asarray(encoder.transform(model_input(training)), dtype=float),
        observed,
        out_of_fold=out_of_fold,
        folds=fold_of,
        baseline_total=womac_total(training).to_numpy(dtype=float),
        domain_columns=domain_columns(names),
        groups=coverage_groups(encoder, names),
    )
    return Pipeline([("preprocess", encoder), ("model", outcome)])


def fit(unfitted: Pipeline, patients: pd.DataFrame, observed: np.ndarray) -> Pipeline:
    """A fresh clone of ``unfitted`` fitted on ``patients``."""
    with warnings.catch_warnings():
        # Spline bases are collinear by design; the ridge penalty handles it.
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        return clone(unfitted).fit(patients, observed)


def refit_on_all(
    unfitted: Pipeline,
    frame: pd.DataFrame,
    improvement: np.ndarray,
    settings: Settings,
) -> Pipeline:
    """The chosen model fitted on every followed-up patient, calibrated by cross-validation
    over them (whole patients up to ``settings.tuning_rows``)."""
    patients = model_input(frame)
    groups = frame["patient_id"].to_numpy()
    rows = tuning_rows(np.arange(len(frame)), groups, settings)
    folds = group_folds(groups[rows], settings.cv_folds, settings.seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        out_of_fold = cross_val_predict(
            clone(unfitted), patients.iloc[rows], improvement[rows], cv=folds
        )
    pipeline = fit(unfitted, patients, improvement)
    return calibrate(pipeline, out_of_fold, frame.iloc[rows], improvement[rows], folds, settings)
