"""Figures logged with every training run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from data.contract import FIELD_BY_NAME

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from models.explain import Explanation


def _figure(width: float = 5.5, height: float = 5.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def observed_vs_predicted(observed: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    """Observed against predicted improvement, with the identity and the calibration line."""
    figure = _figure()
    axes = figure.subplots()
    axes.scatter(predicted, observed, s=8, alpha=0.35, color="#2b6cb0", linewidths=0)
    low = float(min(np.min(predicted), np.min(observed)))
    high = float(max(np.max(predicted), np.max(observed)))
    axes.plot([low, high], [low, high], color="#444", lw=1, ls="--", label="perfect calibration")
    if np.var(predicted) > 1e-12:
        slope, intercept = np.polyfit(predicted, observed, 1)
        grid = np.linspace(np.min(predicted), np.max(predicted), 50)
        axes.plot(
            grid,
            intercept + slope * grid,
            color="#c05621",
            lw=2,
            label=f"calibration: slope {slope:.2f}, intercept {intercept:.1f}",
        )
    axes.set_xlabel("Predicted 12-month improvement (WOMAC points)")
    axes.set_ylabel("Observed 12-month improvement (WOMAC points)")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def residuals(observed: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    """Residuals against predictions, and their distribution."""
    figure = _figure(9.0, 4.0)
    left, right = figure.subplots(1, 2)
    residual = observed - predicted
    left.scatter(predicted, residual, s=8, alpha=0.35, color="#2b6cb0", linewidths=0)
    left.axhline(0, color="#444", lw=1, ls="--")
    left.set_xlabel("Predicted improvement (points)")
    left.set_ylabel("Observed - predicted (points)")
    right.hist(residual, bins=40, color="#2b6cb0", alpha=0.8)
    right.set_xlabel("Observed - predicted (points)")
    right.set_ylabel("Patients")
    figure.suptitle(title)
    return figure


def shap_summary(explanation: Explanation, patients: pd.DataFrame, title: str) -> Figure:
    """SHAP beeswarm of per-field contributions over patients (real SHAP values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    numeric = pd.DataFrame(
        {
            name: (
                patients[name].astype("category").cat.codes.astype(float).replace(-1.0, np.nan)
                if FIELD_BY_NAME[name].categories
                else patients[name]
            )
            for name in explanation.fields
        }
    )
    values = shap.Explanation(
        values=explanation.contributions,
        base_values=np.full(len(patients), explanation.base_value),
        data=numeric.to_numpy(dtype=float),
        feature_names=[FIELD_BY_NAME[name].label for name in explanation.fields],
    )
    shap.plots.beeswarm(values, max_display=len(explanation.fields), show=False, plot_size=(10, 7))
    figure = plt.gcf()
    figure.suptitle(title)
    figure.tight_layout()
    plt.close(figure)
    return figure
