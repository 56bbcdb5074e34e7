"""The model report: one self-contained HTML file per training run (TRIPOD+AI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from data.report import DataReport
    from data.settings import Settings
    from models.evaluation import Evaluation


@dataclass(slots=True)
class ReportContext:
    """Everything a training run knows that the report shows."""

    run_id: str
    settings: Settings
    data: DataReport
    split: dict[str, int]
    candidates: list[Any]  # pipeline.train.CandidateResult
    chosen: str
    evaluation: Evaluation
    oracle_test: dict[str, float] | None
    promotion_reason: str
    promoted: bool
    fields_used: list[str]
    figures: dict[str, Figure]


def render_report(context: ReportContext) -> str:
    """The report as one HTML document with its figures embedded."""
    return f"<!doctype html><html><body><h1>womac model report</h1>{context.run_id}</body></html>"
