"""The monitoring section: rendered once, added to the version's model report and logged as
a page of its own with the monitoring run. Same environment as the model report
(autoescape on, the same filters and stylesheet)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from womac.pipeline.report.render import _environment
from womac.pipeline.report.view import FigureView

if TYPE_CHECKING:
    from womac.pipeline.monitor import MonitorResult

_TITLES = {
    "monitor_calibration": (
        "Calibration on new patients",
        "Left: mean observed against expected improvement by decile of the new patients. "
        "Right: observed share of responders by decile of the predicted chance, new and "
        "held-out patients.",
    ),
    "monitor_coverage": (
        "Interval coverage by subgroup",
        "With 95% bootstrap intervals, new and held-out patients; the dashed line is nominal.",
    ),
    "monitor_drift": (
        "Input drift by field",
        "Population stability index of each field, new patients against the training data's "
        "summary.",
    ),
    "monitor_decision_curve": (
        "Decision curve on new patients",
        "Net benefit of offering MSC therapy above a responder-chance threshold, against "
        "offering it to all or to none.",
    ),
}


def render_section(result: MonitorResult, figures: dict[str, bytes]) -> str:
    """The monitoring as one HTML ``<section>`` (figures embedded)."""
    views = {name: _view(name, figure) for name, figure in figures.items()}
    template = _environment().get_template("sections/monitoring.html")
    return template.render(result=result, figures=views)


def standalone_page(section: str, model: str) -> str:
    """The section as a page of its own, with the report's stylesheet."""
    template = _environment().get_template("monitoring_page.html")
    return template.render(section=section, model=model) + "\n"


def _view(name: str, png: bytes) -> FigureView:
    title, caption = _TITLES.get(name, (name.replace("_", " "), ""))
    return FigureView(name, title, caption, base64.b64encode(png).decode("ascii"))
