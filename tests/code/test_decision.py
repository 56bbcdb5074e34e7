"""Decision curve: net benefit of offering MSC therapy by the responder probability
(Vickers & Elkin, Med Decis Making 2006), against offering it to all and to none."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from womac.models.decision import (
    REPORTED_THRESHOLDS,
    THRESHOLDS,
    DecisionRow,
    decision_curve,
    rows_at,
    useful_thresholds,
)
from womac.pipeline.plots import decision_curve_plot


def test_net_benefit_matches_a_hand_computed_example() -> None:
    # 10 patients, 4 responders. At a threshold of 0.25 (weight 1/3) the model offers the
    # six with p >= 0.25: 3 responders (TP) and 3 non-responders (FP).
    responded = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 0], dtype=bool)
    probability = np.array([0.9, 0.6, 0.3, 0.5, 0.4, 0.25, 0.1, 0.2, 0.05, 0.0])

    (row,) = decision_curve(responded, probability, thresholds=[0.25])

    assert row.threshold == 0.25
    assert row.offered == pytest.approx(0.6)
    assert row.net_benefit_model == pytest.approx(3 / 10 - 3 / 10 * (1 / 3))
    assert row.net_benefit_all == pytest.approx(0.4 - 0.6 * (1 / 3))
    assert row.net_benefit_none == 0.0


def test_a_perfect_model_gains_the_prevalence_at_a_low_threshold() -> None:
    rng = np.random.default_rng(3)
    responded = rng.random(400) < 0.35

    curve = decision_curve(responded, responded.astype(float))

    assert curve[0].net_benefit_model == pytest.approx(responded.mean())
    assert all(row.net_benefit_model == pytest.approx(responded.mean()) for row in curve)
    assert useful_thresholds(curve) == [row.threshold for row in curve]


def test_treat_all_follows_its_formula_and_treat_none_is_zero() -> None:
    rng = np.random.default_rng(5)
    responded = rng.random(300) < 0.4
    prevalence = responded.mean()

    curve = decision_curve(responded, rng.random(300))

    for row in curve:
        weight = row.threshold / (1 - row.threshold)
        assert row.net_benefit_all == pytest.approx(prevalence - (1 - prevalence) * weight)
        assert row.net_benefit_none == 0.0


@pytest.mark.parametrize("constant", [0.0, 0.1, 0.33, 0.5, 0.9, 1.0])
def test_a_constant_probability_never_beats_treating_all_or_none(constant: float) -> None:
    rng = np.random.default_rng(7)
    responded = rng.random(250) < 0.3

    curve = decision_curve(responded, np.full(250, constant))

    for row in curve:
        assert row.net_benefit_model <= max(row.net_benefit_all, 0.0) + 1e-12
    assert useful_thresholds(curve) == []


def test_the_threshold_range_is_five_to_eighty_percent_and_holds_the_reported_ones() -> None:
    assert THRESHOLDS[0] == 0.05
    assert THRESHOLDS[-1] == 0.8
    assert len(THRESHOLDS) == 16
    assert set(REPORTED_THRESHOLDS) <= set(THRESHOLDS)


def test_no_patients_give_no_curve_and_all_responders_give_a_finite_one() -> None:
    assert decision_curve(np.array([], dtype=bool), np.array([])) == []
    assert decision_curve(np.array([True]), np.array([np.nan])) == []

    curve = decision_curve(np.ones(20, dtype=bool), np.linspace(0, 1, 20))

    for row in curve:
        assert row.net_benefit_all == pytest.approx(1.0)
        assert row.net_benefit_model == pytest.approx(row.offered)
        assert np.isfinite(row.net_benefit_model)


def test_mismatched_inputs_and_thresholds_outside_zero_and_one_are_refused() -> None:
    with pytest.raises(ValueError, match="patients"):
        decision_curve(np.ones(3, dtype=bool), np.ones(4))
    with pytest.raises(ValueError, match="strictly between"):
        decision_curve(np.ones(3, dtype=bool), np.ones(3), thresholds=[0.0, 0.5])


def test_rows_survive_json_and_the_reported_rows_are_picked_by_threshold() -> None:
    rng = np.random.default_rng(11)
    curve = decision_curve(rng.random(100) < 0.5, rng.random(100))

    plain = json.loads(json.dumps([asdict(row) for row in curve]))

    assert [DecisionRow.from_dict(row) for row in plain] == curve
    assert [row.threshold for row in rows_at(plain)] == list(REPORTED_THRESHOLDS)


def test_the_plot_draws_the_model_treat_all_none_and_a_reference() -> None:
    rng = np.random.default_rng(13)
    responded = rng.random(200) < 0.4
    new = decision_curve(responded, rng.random(200))
    held_out = [asdict(row) for row in decision_curve(responded, responded * 0.8 + 0.1)]

    figure = decision_curve_plot(new, "new patients", reference=held_out, label="new")
    labels = figure.axes[0].get_legend_handles_labels()[1]

    assert labels == ["offer to all", "offer to none", "new", "held-out"]
    assert decision_curve_plot([], "empty").axes[0].get_title() == "empty"
