"""Input drift: new patients' fields against the training data's summary.

For each predictor field, the new patients are counted into the reference's categories (its
decile bins or levels; a blank is a category of its own, so a field suddenly left blank is
drift too; a level unseen in training counts as "other"). The 2 x k table of training and new
counts is tested for homogeneity with SciPy's chi-square test (``chi2_contingency``), Cramér's
V (``scipy.stats.contingency.association``) gives its strength, and the population stability
index (PSI) its size:

    PSI = sum over categories of (new share - training share) * ln(new share / training share)

By the usual convention (Siddiqi, *Credit Risk Scorecards*, 2006; Yurdakul, 2018) a PSI below
0.1 is no meaningful shift, 0.1 to 0.25 a moderate one, above 0.25 a major one. A large export
makes tiny shifts significant, so a field has drifted only when the test rejects *and* the PSI
reaches ``min_psi`` (``Settings.drift_min_psi``). ``alpha`` applies to each field: pass a
Bonferroni share of the false-alarm rate to bound it over all fields.

Categories are named by our levels and decile bins, never by a patient's value.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency
from scipy.stats.contingency import association

from womac.data.contract import FIELD_BY_NAME, PatientField
from womac.models.reference import Binning, FieldReference, TrainingReference

PSI_FLOOR = 1e-4
"""Share given to an empty category in the PSI, whose logarithm would be infinite (a common
choice; a category empty on one side then adds about its other share x 9)."""


@dataclass(frozen=True, slots=True)
class CategoryShare:
    """One category's share of the training and of the new patients (for a plot)."""

    category: str
    reference_share: float
    new_share: float


@dataclass(frozen=True, slots=True)
class FieldDrift:
    """How one field of the new patients compares with the training patients.

    Attributes
    ----------
    field, label
        The contract field and its label.
    present
        Whether the new export has the field; an absent field is reported, not judged.
    n_new
        New patients counted (blanks included).
    psi
        Population stability index (NaN when not judged).
    p_value
        Chi-square test of homogeneity of training and new counts (NaN when not judged).
    cramers_v
        Cramér's V of the same table (NaN when not judged).
    drifted
        ``p_value < alpha`` and ``psi >= min_psi``.
    shares
        Every category's training and new share, in the reference's order.
    sentence
        The finding in words, naming the category whose share moved most.
    """

    field: str
    label: str
    present: bool
    n_new: int
    psi: float
    p_value: float
    cramers_v: float
    drifted: bool
    shares: tuple[CategoryShare, ...]
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as None)."""
        return {
            "field": self.field,
            "label": self.label,
            "present": self.present,
            "n_new": self.n_new,
            "psi": _finite_or_none(self.psi),
            "p_value": _finite_or_none(self.p_value),
            "cramers_v": _finite_or_none(self.cramers_v),
            "drifted": self.drifted,
            "shares": [
                {
                    "category": share.category,
                    "reference_share": share.reference_share,
                    "new_share": share.new_share,
                }
                for share in self.shares
            ],
            "sentence": self.sentence,
        }


def field_drift(
    reference: TrainingReference,
    frame: pd.DataFrame,
    *,
    alpha: float,
    min_psi: float,
    present: Collection[str] | None = None,
) -> list[FieldDrift]:
    """Compare new patients with the training patients, field by field.

    Parameters
    ----------
    reference
        The training patients' summary stored with the model.
    frame
        The new patients, typed as ``read_cohort`` gives them.
    alpha
        Significance level of each field's chi-square test (``Settings.monitor_false_alarm``,
        or a Bonferroni share of it).
    min_psi
        Smallest PSI called drift (``Settings.drift_min_psi``).
    present
        The fields the export had (``Cohort.present``: ``read_cohort`` fills absent optional
        columns with blanks); by default the frame's columns.

    Returns
    -------
    list[FieldDrift]
        One per field of the reference, in its order; fields absent from the export are
        reported as absent, not as drift.
    """
    had = set(frame.columns) if present is None else set(present) & set(frame.columns)
    drifts = []
    for field_reference in reference.fields:
        spec = FIELD_BY_NAME[field_reference.name]
        if field_reference.name not in had:
            drifts.append(_not_judged(spec, False, 0, "not in the new export (not judged)"))
        elif len(frame) == 0:
            drifts.append(_not_judged(spec, True, 0, "no new patients (not judged)"))
        elif sum(field_reference.counts) == 0:
            why = "no training patients in the reference (not judged)"
            drifts.append(_not_judged(spec, True, len(frame), why))
        else:
            new_counts = field_reference.count(frame[field_reference.name])
            drifts.append(_compare(spec, field_reference, new_counts, alpha, min_psi))
    return drifts


def population_stability_index(reference_counts: np.ndarray, new_counts: np.ndarray) -> float:
    """PSI of two count vectors over the same categories, empty shares floored at PSI_FLOOR."""
    reference_share = np.maximum(_shares(reference_counts), PSI_FLOOR)
    new_share = np.maximum(_shares(new_counts), PSI_FLOOR)
    return float(np.sum((new_share - reference_share) * np.log(new_share / reference_share)))


def category_names(reference: FieldReference, spec: PatientField) -> tuple[str, ...]:
    """Words for a field's categories: bin ranges in the field's unit, levels, blank."""
    names: list[str] = []
    if reference.binning is Binning.BINS:
        names = _bin_names(reference.edges, spec.unit)
    elif reference.binning is Binning.LEVELS:
        words = dict(spec.value_labels)
        for level in reference.levels:
            if level.isdigit() and spec.unit:
                names.append(f"{level} {spec.unit}")
            elif level.isdigit() and int(level) in words:
                names.append(f"{level} ({words[int(level)]})")
            else:
                names.append(level)
        names.append("a value not seen in training")
    else:
        names = ["known"]
    return (*names, "blank")


def _compare(
    spec: PatientField,
    reference: FieldReference,
    new_counts: np.ndarray,
    alpha: float,
    min_psi: float,
) -> FieldDrift:
    reference_counts = np.asarray(reference.counts, dtype=np.int64)
    table = np.vstack([reference_counts, new_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        p_value, cramers_v = 1.0, 0.0  # one category only: nothing can differ
    else:
        p_value = float(chi2_contingency(table, correction=False).pvalue)
        cramers_v = float(association(table, method="cramer", correction=False))
    psi = population_stability_index(reference_counts, new_counts)
    shares = tuple(
        CategoryShare(name, float(old), float(new))
        for name, old, new in zip(
            category_names(reference, spec),
            _shares(reference_counts),
            _shares(new_counts),
            strict=True,
        )
    )
    drifted = p_value < alpha and psi >= min_psi
    return FieldDrift(
        field=spec.name,
        label=spec.label,
        present=True,
        n_new=int(new_counts.sum()),
        psi=psi,
        p_value=p_value,
        cramers_v=cramers_v,
        drifted=drifted,
        shares=shares,
        sentence=_sentence(spec.label, psi, p_value, alpha, min_psi, drifted, shares),
    )


def _sentence(
    label: str,
    psi: float,
    p_value: float,
    alpha: float,
    min_psi: float,
    drifted: bool,
    shares: tuple[CategoryShare, ...],
) -> str:
    # The category adding most to the PSI: a rare level tripled, rather than the common
    # level that lost the same share.
    moved = max(shares, key=_psi_term)
    where = (
        f"{moved.category} is {moved.new_share:.0%} of new patients, "
        f"{moved.reference_share:.0%} in training"
    )
    if drifted:
        return f"{label}: drifted (PSI {psi:.2f}; {where})"
    if p_value < alpha:
        return f"{label}: a small shift, below PSI {min_psi:g} (PSI {psi:.2f}; {where})"
    return f"{label}: no drift (PSI {psi:.2f}, p = {p_value:.2g})"


def _psi_term(share: CategoryShare) -> float:
    new_share = max(share.new_share, PSI_FLOOR)
    reference_share = max(share.reference_share, PSI_FLOOR)
    return (new_share - reference_share) * math.log(new_share / reference_share)


def _not_judged(spec: PatientField, present: bool, n_new: int, why: str) -> FieldDrift:
    nan = float("nan")
    return FieldDrift(
        field=spec.name,
        label=spec.label,
        present=present,
        n_new=n_new,
        psi=nan,
        p_value=nan,
        cramers_v=nan,
        drifted=False,
        shares=(),
        sentence=f"{spec.label}: {why}",
    )


def _bin_names(edges: tuple[float, ...], unit: str) -> list[str]:
    suffix = f" {unit}" if unit else ""
    if not edges:
        return ["known"]
    names = [f"up to {edges[0]:g}{suffix}"]
    names += [f"{low:g}-{high:g}{suffix}" for low, high in pairwise(edges)]
    names.append(f"over {edges[-1]:g}{suffix}")
    return names


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
