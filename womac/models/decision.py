"""Clinical utility of the responder probability: decision curve analysis.

A clinician and patient who would choose MSC therapy when the chance of a clinically important
improvement is at least a threshold ``pt`` weigh treating a non-responder as ``pt / (1 - pt)``
of the benefit of treating a responder. The net benefit of offering therapy to the patients
whose ``p_clinically_important`` is at least ``pt`` is (Vickers & Elkin, Med Decis Making
2006;26:565)::

    net benefit = TP / n - FP / n * pt / (1 - pt)

against offering it to every patient (``prevalence - (1 - prevalence) * pt / (1 - pt)``) and to
none (0). A model is useful at a threshold where its net benefit exceeds both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# 5% to 80% in steps of 5%. Below 5% a clinician would offer MSC therapy to practically every
# patient (treat all is then the benchmark and a model cannot change the decision); above 80%
# hardly any patient is offered it and the few offered make the net benefit noise. Rounded so
# the thresholds read, and compare, as written (0.15, not 0.15000000000000002).
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * step, 2) for step in range(1, 17))
# The thresholds a report's table shows: the range in which clinicians plausibly decide.
REPORTED_THRESHOLDS: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6)
# A difference of net benefit smaller than this is rounding, not a better decision.
NET_BENEFIT_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """Net benefit at one threshold probability (per patient, on the scale of responders).

    Attributes
    ----------
    threshold
        The lowest ``p_clinically_important`` at which MSC therapy is offered.
    net_benefit_model
        Net benefit of offering it to the patients at or above ``threshold``.
    net_benefit_all
        Net benefit of offering it to every patient.
    offered
        Share of patients the model's rule offers it to.
    net_benefit_none
        Net benefit of offering it to no one: 0 by definition.
    """

    threshold: float
    net_benefit_model: float
    net_benefit_all: float
    offered: float
    net_benefit_none: float = 0.0

    @classmethod
    def from_dict(cls, row: Mapping[str, float]) -> DecisionRow:
        """A row back from its plain data (``dataclasses.asdict``, JSON)."""
        return cls(
            threshold=float(row["threshold"]),
            net_benefit_model=float(row["net_benefit_model"]),
            net_benefit_all=float(row["net_benefit_all"]),
            offered=float(row["offered"]),
            net_benefit_none=float(row.get("net_benefit_none", 0.0)),
        )

    @property
    def useful(self) -> bool:
        """Whether deciding by the model beats both treating everyone and treating no one."""
        best_default = max(self.net_benefit_all, self.net_benefit_none)
        return self.net_benefit_model > best_default + NET_BENEFIT_TOLERANCE


def decision_curve(
    responded: np.ndarray,
    probability: np.ndarray,
    thresholds: Sequence[float] = THRESHOLDS,
) -> list[DecisionRow]:
    """Net benefit of the model, of treating all and of treating none, per threshold.

    Parameters
    ----------
    responded
        Whether each patient had a clinically important improvement (observed).
    probability
        Each patient's predicted ``p_clinically_important``. Patients without a finite
        probability are left out: the rule cannot decide for them.
    thresholds
        Threshold probabilities, each strictly between 0 and 1.

    Returns
    -------
    list[DecisionRow]
        One row per threshold, in the order given; empty when no patient has a probability.

    Raises
    ------
    ValueError
        If the arrays differ in length or a threshold is not strictly between 0 and 1.
    """
    responded = np.asarray(responded, dtype=bool).ravel()
    probability = np.asarray(probability, dtype=float).ravel()
    if responded.shape != probability.shape:
        raise ValueError(
            f"responded has {responded.size} patients, probability has {probability.size}"
        )
    if any(not 0.0 < threshold < 1.0 for threshold in thresholds):
        raise ValueError("every threshold must lie strictly between 0 and 1")
    scored = np.isfinite(probability)
    responded, probability = responded[scored], probability[scored]
    n = responded.size
    if n == 0:
        return []
    prevalence = float(responded.mean())
    rows = []
    for threshold in thresholds:
        harm_weight = threshold / (1.0 - threshold)
        offered = probability >= threshold
        true_positive = np.count_nonzero(offered & responded) / n
        false_positive = np.count_nonzero(offered & ~responded) / n
        rows.append(
            DecisionRow(
                threshold=float(threshold),
                net_benefit_model=float(true_positive - false_positive * harm_weight),
                net_benefit_all=float(prevalence - (1.0 - prevalence) * harm_weight),
                offered=float(offered.mean()),
            )
        )
    return rows


def decision_rows(rows: Iterable[DecisionRow | Mapping[str, float]]) -> list[DecisionRow]:
    """Rows as :class:`DecisionRow`, whether given as rows or as their plain data."""
    return [row if isinstance(row, DecisionRow) else DecisionRow.from_dict(row) for row in rows]


def rows_at(
    rows: Iterable[DecisionRow | Mapping[str, float]],
    thresholds: Sequence[float] = REPORTED_THRESHOLDS,
) -> list[DecisionRow]:
    """The rows at ``thresholds`` (those the curve has), in the order of ``thresholds``."""
    by_threshold = {round(row.threshold, 6): row for row in decision_rows(rows)}
    wanted = (by_threshold.get(round(threshold, 6)) for threshold in thresholds)
    return [row for row in wanted if row is not None]


def useful_thresholds(rows: Iterable[DecisionRow | Mapping[str, float]]) -> list[float]:
    """Thresholds at which deciding by the model beats treating all and treating none."""
    return [row.threshold for row in decision_rows(rows) if row.useful]
