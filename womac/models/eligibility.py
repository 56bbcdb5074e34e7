"""Eligibility under the clinic's MSC protocol, with plain reasons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from womac.data import defaults
from womac.data.contract import FIELD_BY_NAME


@dataclass(frozen=True, slots=True)
class Protocol:
    """Who the clinic's protocol excludes from MSC therapy.

    Defaults: :mod:`womac.data.defaults` (Kellgren-Lawrence grade 4, avascular necrosis,
    active infection and immune disorder; DESIGN.md), which the settings expose.
    """

    excluded_kl_grades: tuple[int, ...] = defaults.EXCLUDED_KL_GRADES
    exclusion_flags: tuple[str, ...] = defaults.EXCLUSION_FLAGS


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
    flags = [
        np.asarray(patients[name], dtype=float) if name in patients else np.full(n, np.nan)
        for name in protocol.exclusion_flags
    ]
    # Patients share a handful of situations (a grade, each flag yes, no or unknown): each
    # is worded once. NaN codes as -1 (grade) or 2 (flag); a situation is one base-8 number.
    situation = np.column_stack(
        [
            np.where(np.isnan(kl_grade), -1, kl_grade) + 1,
            *(np.where(np.isnan(flag), 2, flag) for flag in flags),
        ]
    ).astype(np.int64)
    codes = situation @ (8 ** np.arange(situation.shape[1], dtype=np.int64))
    _, first, kind_of = np.unique(codes, return_index=True, return_inverse=True)
    worded = [_word(tuple(int(s) for s in situation[row]), protocol) for row in first]
    reasons = [list(worded[k][0]) for k in kind_of]
    unchecked = [list(worded[k][1]) for k in kind_of]
    candidate = np.array([not worded[k][0] for k in kind_of], dtype=bool)
    return Eligibility(candidate=candidate, reasons=reasons, unchecked=unchecked)


def assess_record(record: Mapping[str, Any], protocol: Protocol) -> Eligibility:
    """:func:`assess` for one validated record (an API request), without arrays."""
    grade = record.get("kl_grade")
    situation = (
        0 if grade is None else int(grade) + 1,
        *(
            2 if record.get(name) is None else int(record[name])
            for name in protocol.exclusion_flags
        ),
    )
    reasons, unchecked = _word(situation, protocol)
    return Eligibility(
        candidate=np.array([not reasons]), reasons=[list(reasons)], unchecked=[list(unchecked)]
    )


@lru_cache(maxsize=4096)
def _word(
    situation: tuple[int, ...], protocol: Protocol
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Reasons and unchecked criteria of one situation: the KL grade plus one (0 unknown),
    then each flag of the protocol (1 yes, 0 no, 2 unknown)."""
    reasons: list[str] = []
    unchecked: list[str] = []
    grade = situation[0] - 1
    if grade < 0:
        if protocol.excluded_kl_grades:
            excluded = ", ".join(str(g) for g in protocol.excluded_kl_grades)
            unchecked.append(f"Kellgren-Lawrence grade (the protocol excludes grade {excluded})")
    elif grade in protocol.excluded_kl_grades:
        words = dict(FIELD_BY_NAME["kl_grade"].value_labels).get(grade)
        reasons.append(
            f"Kellgren-Lawrence grade {grade}"
            + (f" ({words})" if words else "")
            + ": outside the protocol"
        )
    for name, state in zip(protocol.exclusion_flags, situation[1:], strict=True):
        label = FIELD_BY_NAME[name].label
        if state == 2:
            unchecked.append(label.lower())
        elif state == 1:
            reasons.append(f"{label}: outside the protocol")
    return tuple(reasons), tuple(unchecked)


def protocol_from(settings: Any) -> Protocol:
    """The protocol configured in the settings."""
    return Protocol(
        excluded_kl_grades=tuple(settings.excluded_kl_grades),
        exclusion_flags=tuple(settings.exclusion_flags),
    )
