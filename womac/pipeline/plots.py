"""Figures logged with every training run."""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from womac.data.contract import FIELD_BY_NAME
from womac.models.decision import DecisionRow, decision_rows

if TYPE_CHECKING:
    import shap
    from matplotlib.figure import Figure

    from womac.models.evaluation import Evaluation


# Drawn once at this resolution, for MLflow and for the report alike.
FIGURE_DPI = 100


def drawn(figures: Mapping[str, Figure]) -> dict[str, bytes]:
    """Each figure as PNG bytes, drawn once: the run logs them and the report embeds them."""
    pngs = {}
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
        pngs[name] = buffer.getvalue()
    return pngs


def log_drawn(pngs: Mapping[str, bytes], folder: str = "plots") -> None:
    """Log drawn figures to the active MLflow run as ``<folder>/<name>.png``, in one upload."""
    import mlflow

    with tempfile.TemporaryDirectory() as temporary:
        for name, png in pngs.items():
            (Path(temporary) / f"{name}.png").write_bytes(png)
        mlflow.log_artifacts(temporary, folder)


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


def shap_summary(explanation: shap.Explanation, title: str) -> Figure:
    """SHAP beeswarm of per-field contributions over patients (real SHAP values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    labelled = shap.Explanation(
        values=explanation.values,
        base_values=explanation.base_values,
        data=explanation.data,
        feature_names=[FIELD_BY_NAME[name].label for name in explanation.feature_names],
    )
    with warnings.catch_warnings():
        # A field the export does not have is all blank: shown grey, nothing to colour by.
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        shap.plots.beeswarm(
            labelled, max_display=len(labelled.feature_names), show=False, plot_size=(10, 7)
        )
    figure = plt.gcf()
    figure.suptitle(title)
    figure.tight_layout()
    plt.close(figure)
    return figure


def responder_calibration(evaluation: Evaluation, title: str) -> Figure:
    """Observed responder fraction against predicted probability, by decile."""
    figure = _figure()
    axes = figure.subplots()
    curve = evaluation.calibration_curve
    predicted = [point["predicted"] for point in curve]
    observed = [point["observed"] for point in curve]
    axes.plot([0, 1], [0, 1], color="#444", lw=1, ls="--", label="perfect calibration")
    axes.plot(predicted, observed, marker="o", color="#2b6cb0", label="deciles of patients")
    responder = evaluation.responder
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("Predicted chance of a clinically important improvement")
    axes.set_ylabel("Observed fraction of responders")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    axes.text(
        0.98,
        0.03,
        f"AUROC {responder.get('auroc', float('nan')):.2f}\n"
        f"Brier {responder['brier']:.3f}\n"
        f"slope {responder.get('calibration_slope', float('nan')):.2f}, "
        f"intercept {responder.get('calibration_intercept', float('nan')):.2f}",
        ha="right",
        va="bottom",
        fontsize=8,
        transform=axes.transAxes,
    )
    return figure


def subgroup_forest(evaluation: Evaluation, title: str) -> Figure:
    """RMSE, calibration slope and interval coverage per subgroup, with 95% bootstrap CIs."""
    rows = evaluation.subgroups
    figure = _figure(12.0, 0.32 * len(rows) + 1.6)
    panels = figure.subplots(1, 3, sharey=True)
    labels = [f"{row.subgroup.replace('_', ' ')}: {row.level} (n={row.n})" for row in rows]
    positions = np.arange(len(rows))[::-1]
    specs = (
        ("RMSE (points)", "rmse", "rmse_ci", evaluation.point["rmse"]),
        ("Calibration slope", "calibration_slope", "calibration_slope_ci", 1.0),
        (
            f"Coverage of the {evaluation.level:.0%} interval",
            "coverage",
            "coverage_ci",
            evaluation.level,
        ),
    )
    for axes, (name, value_key, ci_key, reference) in zip(panels, specs, strict=True):
        values = np.array([getattr(row, value_key) for row in rows], dtype=float)
        intervals = np.array([getattr(row, ci_key) for row in rows], dtype=float)
        errors = np.abs(intervals.T - values)
        axes.errorbar(values, positions, xerr=errors, fmt="o", color="#2b6cb0", ms=4, capsize=2)
        axes.axvline(reference, color="#c05621", lw=1, ls="--")
        axes.set_xlabel(name)
    panels[0].set_yticks(positions, labels, fontsize=8)
    figure.suptitle(title)
    return figure


def decision_curve_plot(
    rows: Iterable[DecisionRow | Mapping[str, float]],
    title: str,
    *,
    reference: Iterable[DecisionRow | Mapping[str, float]] | None = None,
    label: str = "model",
    reference_label: str = "held-out",
) -> Figure:
    """Net benefit of deciding by the model against treating all and treating none.

    Parameters
    ----------
    rows
        The decision curve (``decision_curve``'s rows or their plain data).
    title
        The figure's title.
    reference
        A second model curve to overlay dashed, e.g. the held-out patients' curve beside new
        patients'; its treat-all line is not drawn.
    label, reference_label
        Legend names of the two model curves.
    """
    figure = _figure(6.0, 4.5)
    axes = figure.subplots()
    curve = decision_rows(rows)
    thresholds = [row.threshold for row in curve]
    model = [row.net_benefit_model for row in curve]
    treat_all = [row.net_benefit_all for row in curve]
    shown = [*model, 0.0]
    axes.plot(thresholds, treat_all, color="#888", lw=1.5, label="offer to all")
    axes.axhline(0.0, color="#444", lw=1, ls=":", label="offer to none")  # 0 by definition
    axes.plot(thresholds, model, color="#2b6cb0", lw=2, label=label)
    if reference is not None:
        other = decision_rows(reference)
        axes.plot(
            [row.threshold for row in other],
            [row.net_benefit_model for row in other],
            color="#c05621",
            lw=2,
            ls="--",
            label=reference_label,
        )
        shown += [row.net_benefit_model for row in other]
    # Treat all falls steeply at high thresholds; the axis follows the model and the top of
    # treat all instead, so the region where the decision is made stays readable.
    top = max([*shown, *treat_all[:1]])
    axes.set_ylim(min(min(shown), -0.05 * max(top, 0.1)), max(top, 0.01) * 1.1)
    if thresholds:
        axes.set_xlim(min(thresholds), max(thresholds))
    axes.set_xlabel("Threshold chance of a clinically important improvement")
    axes.set_ylabel("Net benefit (responders treated per patient)")
    axes.set_title(title)
    axes.legend(loc="upper right", fontsize=8)
    return figure
