"""Acceptance of the clinical-trust issue: on 20,000 new patients (a seed no training used)
the served model's range covers what it says, overall and by subgroup; its chance of a
clinically important improvement is calibrated and agrees with the expected improvement;
its answers respect the limits of the WOMAC scale."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import FRESH_SEED
from womac.data.cohort import model_input, read_cohort, womac_total
from womac.data.contract import WOMAC_TOTAL_MAX
from womac.data.simulate import simulate_cohort
from womac.features.encoding import frame_columns
from womac.models.answers import Answers
from womac.models.eligibility import Protocol, protocol_from
from womac.models.evaluation import responder_metrics, subgroup_labels
from womac.models.scoring import Scorer
from womac.models.uncertainty import responder_threshold
from womac.settings import Settings

ACCEPTANCE_SIZE = 20000
COVERAGE_BAND = (0.77, 0.83)  # the issue: the 80% interval covers 77-83%
SLOPE_BAND = (0.8, 1.2)  # the issue: responder calibration slope
MIN_SUBGROUP = 200
NOISE = 0.02  # how much lower a chance may be for a higher expected improvement


@dataclass(frozen=True, slots=True)
class Scored:
    """New patients with their observed improvement and everything the model says."""

    patients: pd.DataFrame
    observed: np.ndarray
    baseline: np.ndarray
    scores: Answers


def score(
    pipeline: Any, patients: pd.DataFrame, protocol: Protocol, level: float | None = None
) -> Answers:
    """The scorer's answers for typed patients (a cohort's frame)."""
    return Scorer(pipeline, protocol).answer_columns(frame_columns(patients), level)


@pytest.fixture(scope="module")
def new_cohort(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """20,000 simulated patients with 12-month scores, exported and read as a clinic's file;
    only usable rows (complete predictors, not lost to follow-up)."""
    path: Path = tmp_path_factory.mktemp("acceptance") / "new-patients.csv"
    simulate_cohort(ACCEPTANCE_SIZE, FRESH_SEED)[0].to_csv(path, index=False)
    cohort = read_cohort(path, require_outcomes=True)
    usable = cohort.trainable
    frame = cohort.frame[usable].reset_index(drop=True)
    return frame.assign(_observed=cohort.target[usable].to_numpy(dtype=float))


@pytest.fixture(scope="module")
def scored(trained: Any, store: Settings, new_cohort: pd.DataFrame) -> Scored:
    patients = new_cohort.drop(columns="_observed")
    return Scored(
        patients=patients,
        observed=new_cohort["_observed"].to_numpy(),
        baseline=womac_total(patients).to_numpy(dtype=float),
        scores=score(trained.pipeline, patients, protocol_from(store)),
    )


def covered(scored: Scored) -> np.ndarray:
    return (scored.observed >= scored.scores.lower) & (scored.observed <= scored.scores.upper)


# -- the "done when" ------------------------------------------------------------


def test_new_patients_are_many_enough_and_the_interval_is_the_configured_80_percent(
    scored: Scored, store: Settings
) -> None:
    assert len(scored.observed) > 15000  # 12% lost to follow-up
    assert scored.scores.level == store.interval_level == 0.8


def test_80_percent_interval_covers_77_to_83_percent_of_new_patients(scored: Scored) -> None:
    coverage = covered(scored).mean()
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], f"{coverage:.1%}"


@pytest.mark.parametrize("subgroup", ["kl_grade", "sex", "joint"])
def test_80_percent_interval_covers_77_to_83_percent_in_every_subgroup(
    scored: Scored, subgroup: str
) -> None:
    labels = subgroup_labels(scored.patients)[subgroup]
    inside = covered(scored)
    checked = {}
    for level in sorted(set(labels)):
        members = labels == level
        if members.sum() >= MIN_SUBGROUP:
            checked[level] = float(inside[members].mean())
    assert len(checked) >= 2, checked
    outside = {level: f"{c:.1%}" for level, c in checked.items() if not 0.77 <= c <= 0.83}
    assert not outside, f"{subgroup}: {outside}"


def threshold(scored: Scored, settings: Settings) -> np.ndarray:
    """The improvement each patient needs to count as a responder (configured at training)."""
    return responder_threshold(
        scored.baseline, settings.responder_min_points, settings.responder_min_fraction
    )


def test_responder_probability_is_calibrated_on_new_patients(
    scored: Scored, store: Settings
) -> None:
    responded = scored.observed >= threshold(scored, store)
    metrics = responder_metrics(responded, scored.scores.p_clinically_important)
    slope = metrics["calibration_slope"]
    assert SLOPE_BAND[0] <= slope <= SLOPE_BAND[1], metrics
    # Calibration-in-the-large: the average chance is the share who responded.
    assert metrics["mean_probability"] == pytest.approx(metrics["prevalence"], abs=0.03)
    assert metrics["auroc"] > 0.65  # published orthopaedic outcome models: 0.65-0.80


# -- limits of the scale ----------------------------------------------------------------


def test_interval_lies_on_the_womac_scale(scored: Scored) -> None:
    lower, upper = scored.scores.lower, scored.scores.upper
    assert np.all(upper <= scored.baseline)  # the 12-month total cannot go below 0
    assert np.all(lower >= scored.baseline - WOMAC_TOTAL_MAX)  # nor above 96
    assert np.all(lower <= upper)


def test_expected_improvement_lies_inside_its_interval(scored: Scored) -> None:
    """Only where the model expects more improvement than the baseline total allows (a point
    estimate beyond the scale, see the bug test below) does the clipped interval miss it."""
    expected = scored.scores.expected_improvement
    assert np.all(scored.scores.lower <= expected)
    above = expected > scored.scores.upper
    assert np.all(expected[above] > scored.baseline[above])
    assert above.mean() < 0.01


def test_chance_is_a_probability(scored: Scored) -> None:
    p = scored.scores.p_clinically_important
    assert np.all((p >= 0) & (p <= 1))
    assert 0 < p.mean() < 1


def test_chance_is_zero_when_the_threshold_exceeds_the_baseline(
    scored: Scored, trained: Any, store: Settings
) -> None:
    """At least 9 points are needed: a baseline total below 9 cannot improve by 9."""
    unreachable = threshold(scored, store) > scored.baseline
    assert unreachable.any()
    assert np.all(scored.scores.p_clinically_important[unreachable] == 0)
    assert np.all(scored.scores.p_clinically_important[~unreachable] > 0)

    little = scored.patients.iloc[:500].assign(
        womac_pain_0=3.0, womac_stiffness_0=1.0, womac_function_0=4.0
    )
    assert np.all(score(trained.pipeline, little, Protocol()).p_clinically_important == 0)


def test_patient_with_nothing_to_gain_gets_an_answer_on_the_scale(
    scored: Scored, trained: Any
) -> None:
    """A baseline total of 0 (allowed by the contract) cannot improve: neither the expected
    improvement nor the interval may promise points the scale does not have."""
    none = scored.patients.iloc[:500].assign(
        womac_pain_0=0.0, womac_stiffness_0=0.0, womac_function_0=0.0
    )
    answer = score(trained.pipeline, none, Protocol())
    assert np.all(answer.lower <= answer.upper)
    assert np.all(answer.upper <= 0)
    assert np.all(answer.expected_improvement <= answer.upper)
    # Capped, the explanation still adds up, and says why.
    np.testing.assert_allclose(
        answer.base_value + answer.contributions.sum(axis=1),
        answer.expected_improvement,
        atol=1e-6,
    )
    capped = trained.pipeline.predict(model_input(none)) > 0  # the estimate promises points
    assert capped.any()
    np.testing.assert_array_equal(answer.expected_improvement[capped], 0.0)
    assert all(any("capped" in w for w in answer.warnings[row]) for row in np.flatnonzero(capped))


# -- direction and nesting --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "without", "with_"),
    [("rehab", 0.0, 1.0), ("prp", 0.0, 1.0), ("injections", 1.0, 3.0)],
)
def test_higher_expected_improvement_at_the_same_baseline_never_lowers_the_chance(
    scored: Scored, trained: Any, field: str, without: float, with_: float
) -> None:
    """Rehabilitation, PRP and repeated injections each add improvement (DESIGN.md); a pair
    of patients differing only there has the same baseline, so the chance must follow."""
    patients = scored.patients.iloc[:3000]
    before = score(trained.pipeline, patients.assign(**{field: without}), Protocol())
    after = score(trained.pipeline, patients.assign(**{field: with_}), Protocol())
    gain = after.expected_improvement - before.expected_improvement
    change = after.p_clinically_important - before.p_clinically_important

    assert np.mean(gain) > 0, f"{field} does not raise the expected improvement on average"
    raised, lowered = gain > 0, gain < 0
    assert np.all(change[raised] >= -NOISE), f"worst {change[raised].min():.3f}"
    assert np.all(change[lowered] <= NOISE), f"worst {change[lowered].max():.3f}"


def test_wider_level_contains_the_80_percent_interval(scored: Scored, trained: Any) -> None:
    patients = scored.patients.iloc[:3000]
    at80 = score(trained.pipeline, patients, Protocol())
    at90 = score(trained.pipeline, patients, Protocol(), level=0.9)
    assert at90.level == 0.9
    assert np.all(at90.lower <= at80.lower)
    assert np.all(at90.upper >= at80.upper)
    assert np.mean(at90.upper - at90.lower) > np.mean(at80.upper - at80.lower)
    np.testing.assert_array_equal(at90.p_clinically_important, at80.p_clinically_important)
