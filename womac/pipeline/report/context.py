"""What a training run hands the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from womac.data.report import DataReport
    from womac.models.evaluation import Evaluation
    from womac.pipeline.results import CandidateResult
    from womac.settings import Settings


@dataclass(slots=True)
class ReportContext:
    """Everything a training run knows that the report shows."""

    run_id: str
    settings: Settings
    data: DataReport
    split: dict[str, int]
    candidates: list[CandidateResult]
    chosen: str
    evaluation: Evaluation
    oracle_test: dict[str, float] | None
    promotion_reason: str
    promoted: bool
    fields_used: list[str]
    figures: dict[str, bytes]  # PNG, drawn once by the run
    selection_reason: str = ""
    refit_on_all: bool = False
