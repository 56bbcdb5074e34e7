"""Figures of a monitoring: calibration on new against held-out patients, coverage by
subgroup, input drift by field, and the decision curve."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from womac.models.drift import FieldDrift
    from womac.models.monitoring import Performance
    from womac.pipeline.monitor import MonitorResult

NEW = "#c05621"
HELD_OUT = "#2b6cb0"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def monitoring_figures(
    result: MonitorResult, held_out: Mapping[str, Any] | None
) -> dict[str, Figure]:
    """The monitoring's figures by name (none about performance without outcomes)."""
    from womac.pipeline.plots import decision_curve_plot

    held = held_out or {}
    figures: dict[str, Figure] = {}
    performance = result.assessed.performance
    if performance is not None:
        figures["monitor_calibration"] = calibration(performance, held)
        figures["monitor_coverage"] = coverage_by_subgroup(performance, held)
        if performance.decision_curve:
            figures["monitor_decision_curve"] = decision_curve_plot(
                performance.decision_curve,
                f"Decision curve, new patients (n={performance.n})",
                reference=held.get("decision_curve") or None,
            )
    if result.drift:
        figures["monitor_drift"] = drift_by_field(result.drift)
    return figures


def calibration(performance: Performance, held_out: Mapping[str, Any]) -> Figure:
    """Observed against expected improvement by decile (new patients), and the responder
    chance's calibration on new and held-out patients."""
    figure = _figure(11.0, 5.0)
    left, right = figure.subplots(1, 2)
    curve = performance.improvement_calibration
    predicted = [point["predicted"] for point in curve]
    observed = [point["observed"] for point in curve]
    low, high = min(predicted + observed), max(predicted + observed)
    left.plot([low, high], [low, high], color="#444", lw=1, ls="--", label="perfect calibration")
    left.plot(predicted, observed, marker="o", color=NEW, label="new patients, deciles")
    left.set_xlabel("Expected improvement (points)")
    left.set_ylabel("Observed improvement (points)")
    left.set_title(
        f"Slope {performance.calibration_slope.value:.2f}, observed minus expected "
        f"{performance.mean_difference.value:+.1f} points"
    )
    left.legend(loc="upper left", fontsize=8)
    right.plot([0, 1], [0, 1], color="#444", lw=1, ls="--", label="perfect calibration")
    for label, points, colour in (
        ("held-out patients", held_out.get("calibration_curve") or [], HELD_OUT),
        ("new patients", performance.responder_calibration, NEW),
    ):
        if points:
            right.plot(
                [p["predicted"] for p in points],
                [p["observed"] for p in points],
                marker="o",
                color=colour,
                label=label,
            )
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.set_xlabel("Predicted chance of a clinically important improvement")
    right.set_ylabel("Observed fraction of responders")
    right.set_title("Responder chance, by decile")
    right.legend(loc="upper left", fontsize=8)
    return figure


def coverage_by_subgroup(performance: Performance, held_out: Mapping[str, Any]) -> Figure:
    """Interval coverage per subgroup with 95% intervals, new and held-out patients."""
    rows = performance.subgroups
    held = {(row["subgroup"], row["level"]): row for row in held_out.get("subgroups") or []}
    figure = _figure(7.5, 0.34 * len(rows) + 1.6)
    axes = figure.subplots()
    positions = np.arange(len(rows))[::-1].astype(float)
    labels = [f"{row.subgroup.replace('_', ' ')}: {row.level} (n={row.n})" for row in rows]
    new = [
        (i, {"coverage": row.coverage, "coverage_ci": row.coverage_ci})
        for i, row in enumerate(rows)
    ]
    matched = [(i, held.get((row.subgroup, row.level))) for i, row in enumerate(rows)]
    for points, shift, style, label in (
        (new, 0.15, ("o", NEW, 4), "new patients"),
        (
            [(i, row) for i, row in matched if row is not None],
            -0.15,
            ("s", HELD_OUT, 3),
            "held-out patients",
        ),
    ):
        if not points:
            continue
        values = np.array([row["coverage"] for _, row in points], dtype=float)
        bounds = np.array([row["coverage_ci"] for _, row in points], dtype=float).reshape(-1, 2)
        marker, colour, size = style
        axes.errorbar(
            values,
            positions[[i for i, _ in points]] + shift,
            xerr=np.abs(bounds.T - values),
            fmt=marker,
            color=colour,
            ms=size,
            capsize=2,
            label=label,
        )
    axes.axvline(performance.level, color="#444", lw=1, ls="--")
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xlabel(f"Coverage of the {performance.level:.0%} interval")
    axes.legend(loc="lower left", fontsize=8)
    return figure


def drift_by_field(drift: list[FieldDrift]) -> Figure:
    """Population stability index of each field, new patients against training."""
    rows = sorted((row for row in drift if math.isfinite(row.psi)), key=lambda row: row.psi)
    figure = _figure(7.0, 0.3 * len(rows) + 1.4)
    axes = figure.subplots()
    colours = [NEW if row.drifted else HELD_OUT for row in rows]
    axes.barh([row.label for row in rows], [row.psi for row in rows], color=colours)
    for threshold in (0.1, 0.25):
        axes.axvline(threshold, color="#444", lw=1, ls="--")
    axes.set_xlabel("Population stability index (0.1: some shift, 0.25: major shift)")
    axes.set_title("Input drift by field (orange: drifted)")
    axes.tick_params(axis="y", labelsize=8)
    return figure
