"""What the steps of a training hand each other: typed results, not long argument lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from womac.data.cohort import Cohort
from womac.data.report import DataReport
from womac.models.evaluation import Evaluation
from womac.models.selection import Choice
from womac.models.split import Sides, Split
from womac.pipeline.registration import Promotion


@dataclass(slots=True)
class CandidateResult:
    """One candidate after cross-validation and its single held-out evaluation."""

    name: str
    description: str
    params: dict[str, Any]
    cv: dict[str, float]
    test: dict[str, float]
    pipeline: Pipeline  # fitted on the training patients
    out_of_fold: np.ndarray = field(default_factory=lambda: np.zeros(0))
    run_id: str = ""


@dataclass(frozen=True, slots=True)
class ValidCohort:
    """A cohort that passed the contract, reduced to the rows training can use."""

    cohort: Cohort
    report: DataReport
    frame: pd.DataFrame  # the usable rows, renumbered
    improvement: np.ndarray
    oracle: np.ndarray | None  # the simulator's true improvement of those rows, if known


@dataclass(frozen=True, slots=True)
class Trained:
    """Everything fitted and scored before the tracking store is touched."""

    cohort: Cohort
    report: DataReport
    split: Split
    sides: Sides
    candidates: list[CandidateResult]
    chosen: CandidateResult
    choice: Choice
    evaluated: Pipeline  # fitted on the training patients; the held-out figures are its own
    served: Pipeline  # what is logged and registered
    evaluation: Evaluation
    oracle_test: dict[str, float] | None

    @property
    def refit_on_all(self) -> bool:
        """Whether the served model was refitted on every followed-up patient."""
        return self.served is not self.evaluated


@dataclass(slots=True)
class TrainingResult:
    """What a training run produced, for the summary table and for tests."""

    run_id: str
    experiment_id: str
    data: DataReport
    n_train: int
    n_test: int
    candidates: list[CandidateResult]
    chosen: str
    oracle_test: dict[str, float] | None
    model_version: str
    promotion: Promotion
    seconds: float
    evaluation: Evaluation
    pipeline: Pipeline  # served: fitted on every followed-up patient (settings.refit_on_all)
    evaluated: Pipeline  # fitted on the training patients; the held-out figures are its own
    selection_reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def chosen_result(self) -> CandidateResult:
        """The selected candidate."""
        return next(c for c in self.candidates if c.name == self.chosen)
