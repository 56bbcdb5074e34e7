"""A short data report of a cohort: size, follow-up, missingness, problems."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from womac.data.cohort import Cohort
from womac.data.contract import FIELDS, Role
from womac.data.problems import Problem


@dataclass(slots=True)
class FieldSummary:
    """Missingness of one contract field in a cohort."""

    name: str
    required: bool
    present: bool
    blank: int
    blank_fraction: float


@dataclass(slots=True)
class DataReport:
    """What is in a cohort, for the user and for the tracking store.

    Holds counts and fractions only, never a patient's values.
    """

    source: str
    rows: int
    lost_to_follow_up: int
    incomplete_predictors: int
    usable_for_training: int
    fields: list[FieldSummary]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    target_mean: float | None = None
    target_sd: float | None = None
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def summarise(
    cohort: Cohort, problems: list[Problem] | None = None, path: Path | None = None
) -> DataReport:
    """Summarise a cohort (and the problems found in it) without any patient's values."""
    frame = cohort.frame
    rows = len(frame)
    summaries = []
    for spec in FIELDS:
        if spec.role is Role.OUTCOME and not cohort.has_outcomes:
            continue
        present = spec.name in cohort.present
        blank = int(frame[spec.name].isna().sum()) if present else rows
        summaries.append(
            FieldSummary(
                name=spec.name,
                required=spec.required,
                present=present,
                blank=blank,
                blank_fraction=blank / rows if rows else 0.0,
            )
        )
    target = cohort.target[cohort.trainable]
    return DataReport(
        source=cohort.source,
        rows=rows,
        lost_to_follow_up=int(cohort.lost_to_follow_up.sum()),
        incomplete_predictors=int((~cohort.complete).sum()),
        usable_for_training=int(cohort.trainable.sum()) if cohort.has_outcomes else 0,
        fields=summaries,
        problems=[str(problem) for problem in problems or []],
        notes=list(cohort.notes),
        target_mean=float(target.mean()) if len(target) else None,
        target_sd=float(target.std()) if len(target) > 1 else None,
        sha256=file_sha256(path) if path is not None else None,
    )


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, to tie a run to the exact data it was trained on."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
