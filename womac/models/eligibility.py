"""Eligibility under the clinic's MSC protocol, with plain reasons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from womac.data.contract import FIELD_BY_NAME


@dataclass(frozen=True, slots=True)
class Protocol:
    """Who the clinic's protocol excludes from MSC therapy.

    Defaults: Kellgren-Lawrence grade 4 ("bone on bone"), avascular necrosis, active infection
    and immune disorder (DESIGN.md). Configurable through the settings.
    """

    excluded_kl_grades: tuple[int, ...] = (4,)
    exclusion_flags: tuple[str, ...] = field(
        default=("avascular_necrosis", "active_infection", "immune_disorder")
    )


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Per patient: candidate or not, why not, and what could not be checked."""

    candidate: np.ndarray
    reasons: list[list[str]]
    unchecked: list[list[str]]


def assess(patients: pd.DataFrame | Mapping[str, Any], protocol: Protocol) -> Eligibility:
    """Check each patient against the protocol.

    Parameters
    ----------
    patients
        Typed patients (a frame or one array per field) with ``kl_grade`` and the protocol's
        flag columns (1.0, 0.0 or NaN; an absent flag column is unknown).
    protocol
        The exclusions in force.
    """
    kl_grade = np.asarray(patients["kl_grade"], dtype=float)
    n = len(kl_grade)
    reasons: list[list[str]] = [[] for _ in range(n)]
    unchecked: list[list[str]] = [[] for _ in range(n)]
    excluded_grades = ", ".join(str(g) for g in protocol.excluded_kl_grades)
    for row in range(n):
        grade = kl_grade[row]
        if np.isnan(grade):
            if protocol.excluded_kl_grades:
                unchecked[row].append(
                    f"Kellgren-Lawrence grade (the protocol excludes grade {excluded_grades})"
                )
        elif int(grade) in protocol.excluded_kl_grades:
            reasons[row].append(
                f"Kellgren-Lawrence grade {int(grade)}"
                + (" (bone on bone)" if int(grade) == 4 else "")
                + ": outside the protocol"
            )
    for name in protocol.exclusion_flags:
        label = FIELD_BY_NAME[name].label
        values = (
            np.asarray(patients[name], dtype=float) if name in patients else np.full(n, np.nan)
        )
        for row in range(n):
            if np.isnan(values[row]):
                unchecked[row].append(label.lower())
            elif values[row] == 1.0:
                reasons[row].append(f"{label}: outside the protocol")
    candidate = np.array([not row_reasons for row_reasons in reasons], dtype=bool)
    return Eligibility(candidate=candidate, reasons=reasons, unchecked=unchecked)


def protocol_from(settings: Any) -> Protocol:
    """The protocol configured in the settings."""
    return Protocol(
        excluded_kl_grades=tuple(settings.excluded_kl_grades),
        exclusion_flags=tuple(settings.exclusion_flags),
    )
