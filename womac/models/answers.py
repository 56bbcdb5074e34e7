"""What the product says about a batch of patients: :class:`Answers`, and its columns.

:data:`ANSWER_COLUMNS` is the registered model's output, one row per patient (also its MLflow
output signature and the Spark schema); :meth:`Answers.frame` lays a batch's answers out in
them. :class:`~womac.models.scoring.Scorer` makes every :class:`Answers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from womac.data.contract import PREDICTOR_NAMES

if TYPE_CHECKING:
    from womac.models.compiled import PatientScore
    from womac.models.eligibility import Eligibility

CONTRIBUTION = "contribution_"
# The registered model's output, one row per patient (also its MLflow output signature and
# the Spark schema): name and MLflow type.
ANSWER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("expected_improvement", "double"),
    ("interval_lower", "double"),
    ("interval_upper", "double"),
    ("level", "double"),
    ("p_clinically_important", "double"),
    ("candidate", "boolean"),
    ("reasons", "array<string>"),
    ("warnings", "array<string>"),
    ("base_value", "double"),
    *((f"{CONTRIBUTION}{name}", "double") for name in PREDICTOR_NAMES),
)


@dataclass(frozen=True, slots=True)
class Answers:
    """Everything the product says about a batch of patients, one row per patient.

    ``base_value + contributions.sum(axis=1) == expected_improvement`` for every patient.
    """

    expected_improvement: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    p_clinically_important: np.ndarray
    candidate: np.ndarray
    reasons: list[list[str]]
    warnings: list[list[str]]
    base_value: float
    fields: tuple[str, ...]
    contributions: np.ndarray  # (patients, fields), in the order of ``fields``

    @classmethod
    def of_one(
        cls,
        score: PatientScore,
        level: float,
        eligibility: Eligibility,
        warnings: list[str],
        fields: tuple[str, ...],
    ) -> Answers:
        """The answers for one patient scored on the fast path."""
        return cls(
            expected_improvement=np.array([score.expected_improvement]),
            lower=np.array([score.lower]),
            upper=np.array([score.upper]),
            level=level,
            p_clinically_important=np.array([score.p_clinically_important]),
            candidate=eligibility.candidate,
            reasons=eligibility.reasons,
            warnings=[warnings],
            base_value=score.base_value,
            fields=fields,
            contributions=score.contributions[None, :],
        )

    @classmethod
    def of_none(cls, level: float, fields: tuple[str, ...]) -> Answers:
        """The answers for no patients (an empty frame gets an empty frame back)."""
        empty = np.zeros(0)
        return cls(
            expected_improvement=empty,
            lower=empty,
            upper=empty,
            level=level,
            p_clinically_important=empty,
            candidate=np.zeros(0, dtype=bool),
            reasons=[],
            warnings=[],
            base_value=float("nan"),
            fields=fields,
            contributions=np.zeros((0, len(fields))),
        )

    def __len__(self) -> int:
        return len(self.expected_improvement)

    def frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """The answers as :data:`ANSWER_COLUMNS`, the registered model's output."""
        n = len(self)
        columns: dict[str, Any] = {
            "expected_improvement": self.expected_improvement,
            "interval_lower": self.lower,
            "interval_upper": self.upper,
            "level": np.full(n, self.level),
            "p_clinically_important": self.p_clinically_important,
            "candidate": np.asarray(self.candidate, dtype=bool),
            "reasons": pd.Series(self.reasons, dtype=object),
            "warnings": pd.Series(self.warnings, dtype=object),
            "base_value": np.full(n, self.base_value),
        }
        for position, name in enumerate(self.fields):
            columns[f"{CONTRIBUTION}{name}"] = self.contributions[:, position]
        frame = pd.DataFrame(columns)
        if index is not None:
            frame.index = index
        return frame

    def top(self, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per rank up to ``k``: each patient's field with that rank of |contribution|, and it."""
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")
        names = np.asarray(self.fields, dtype=object)
        return [
            (
                names[order[:, rank]],
                np.take_along_axis(self.contributions, order[:, rank : rank + 1], axis=1)[:, 0],
            )
            for rank in range(min(k, len(self.fields)))
        ]
