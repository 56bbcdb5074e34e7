"""Recalibration on new patients: the smallest update the evidence supports, applied to a real
served pipeline whose answers and explanations stay exact, and that loads as a trusted model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from tests.helpers import assert_one_patient_answers_as_the_batch, read_simulated
from womac.data.cohort import Cohort, model_input
from womac.data.contract import ELIGIBILITY_FLAGS, PREDICTOR_NAMES
from womac.features.encoding import PatientEncoder
from womac.models.blend import ALL_INPUTS, TREE_INPUTS, BlendedRegressor
from womac.models.calibration import refit_on_all
from womac.models.explain import Attributor
from womac.models.recalibration import (
    RecalibratedRegressor,
    Update,
    choose_update,
    updated_pipeline,
)
from womac.models.scoring import Scorer
from womac.models.store import _dump_skops, load_skops
from womac.settings import Settings

LEVEL, ALPHA = 0.8, 0.01
UPDATE = Update(intercept=6.0, slope=0.7, scale=1.3)


def _blend() -> Pipeline:
    """A small blend of both kinds of member, so linear and tree terms are both explained."""
    trees = LGBMRegressor(
        n_estimators=60, num_leaves=4, n_jobs=1, deterministic=True, verbose=-1, random_state=0
    )
    model = BlendedRegressor(
        members=[("ridge", Ridge(alpha=30.0), ALL_INPUTS), ("lightgbm", trees, TREE_INPUTS)],
        weights=[0.6, 0.4],
    )
    encoder = PatientEncoder(fields=PREDICTOR_NAMES, spline_knots=4)
    return Pipeline([("preprocess", encoder), ("model", model)]).set_output(transform="pandas")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """A served pipeline (encoder -> OutcomeModel over a blend) fitted on 1,500 patients."""
    cohort = read_simulated(
        tmp_path_factory.mktemp("recalibration") / "cohort.csv", 1500, 4242, outcomes=True
    )
    frame = cohort.frame[cohort.trainable].reset_index(drop=True)
    settings = Settings(_env_file=None, cv_folds=3)  # type: ignore[call-arg]
    return refit_on_all(_blend(), frame, cohort.target[cohort.trainable].to_numpy(), settings)


@pytest.fixture(scope="module")
def new_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """300 new patients, read as a clinic exports them."""
    return read_simulated(tmp_path_factory.mktemp("recalibration-new") / "new.csv", 300, 777)


@pytest.fixture(scope="module")
def patients(new_cohort: Cohort) -> pd.DataFrame:
    """The new patients' model input."""
    return model_input(new_cohort.frame)


def _records(cohort: Cohort) -> list[dict[str, Any]]:
    """The new patients as API records (booleans as such, unknown as None)."""
    names = [*PREDICTOR_NAMES, *(flag.name for flag in ELIGIBILITY_FLAGS)]
    records = []
    for row in cohort.frame[names].to_dict("records"):
        record = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for flag in ("diabetes", "smoker", "prp", "rehab", *(f.name for f in ELIGIBILITY_FLAGS)):
            if record.get(flag) is not None:
                record[flag] = bool(record[flag])
        records.append(record)
    return records


def test_the_updated_point_is_intercept_plus_slope_times_the_old(
    served: Pipeline, patients: pd.DataFrame
) -> None:
    before = served.predict(patients)
    updated = updated_pipeline(served, UPDATE)
    assert isinstance(updated.named_steps["model"].regressor, RecalibratedRegressor)
    np.testing.assert_allclose(updated.predict(patients), 6.0 + 0.7 * before, atol=1e-9)


def test_explanations_stay_exact_and_one_patient_matches_the_batch(
    served: Pipeline, patients: pd.DataFrame, new_cohort: Cohort
) -> None:
    updated = updated_pipeline(served, UPDATE)
    attributor = Attributor(updated)
    # Both kinds of term are explained: the ridge member's coefficients and LightGBM's trees.
    assert attributor.boosters
    assert np.any(attributor.coefficients != 0)
    scorer = Scorer(updated)
    answers = scorer.predict(patients)
    contributions = answers[[f"contribution_{name}" for name in PREDICTOR_NAMES]]
    np.testing.assert_allclose(
        answers["base_value"] + contributions.sum(axis=1),
        answers["expected_improvement"],
        atol=1e-9,
    )
    old = Scorer(served).predict(patients)
    np.testing.assert_allclose(answers["base_value"], 6.0 + 0.7 * old["base_value"], atol=1e-9)
    # the compiled single-patient path
    assert_one_patient_answers_as_the_batch(scorer, _records(new_cohort)[:100])


def test_the_scale_multiplies_the_interval_around_the_updated_point(
    served: Pipeline, patients: pd.DataFrame
) -> None:
    encoded = np.asarray(served.named_steps["preprocess"].transform(patients), dtype=float)
    old, new = served.named_steps["model"], updated_pipeline(served, UPDATE).named_steps["model"]
    point = old.predict(encoded)
    moved = 6.0 + 0.7 * point
    # Baselines that put each point mid-scale (48 of 96 points), so no bound is clipped.
    lower, upper, _ = old.distribution(encoded, point, point + 48.0)
    new_lower, new_upper, _ = new.distribution(encoded, moved, moved + 48.0)
    np.testing.assert_allclose(moved - new_lower, 1.3 * (point - lower), atol=1e-9)
    np.testing.assert_allclose(new_upper - moved, 1.3 * (upper - point), atol=1e-9)


def test_an_update_of_an_updated_model_composes(served: Pipeline, patients: pd.DataFrame) -> None:
    twice = updated_pipeline(updated_pipeline(served, UPDATE), Update(-2.0, 1.5, 2.0))
    np.testing.assert_allclose(
        twice.predict(patients), -2.0 + 1.5 * (6.0 + 0.7 * served.predict(patients)), atol=1e-9
    )
    scores = served.named_steps["model"].scores_
    np.testing.assert_allclose(twice.named_steps["model"].scores_, 2.6 * scores)
    answers = Scorer(twice).predict(patients)
    contributions = answers[[f"contribution_{name}" for name in PREDICTOR_NAMES]].sum(axis=1)
    np.testing.assert_allclose(
        answers["base_value"] + contributions, answers["expected_improvement"], atol=1e-9
    )


def test_the_original_pipeline_answers_as_before(served: Pipeline, patients: pd.DataFrame) -> None:
    before = Scorer(served).predict(patients)
    scores = served.named_steps["model"].scores_.copy()
    updated_pipeline(served, UPDATE)
    pd.testing.assert_frame_equal(Scorer(served).predict(patients), before)
    np.testing.assert_array_equal(served.named_steps["model"].scores_, scores)
    assert not isinstance(served.named_steps["model"].regressor, RecalibratedRegressor)


def test_an_updated_model_round_trips_through_skops_trusting_our_types(
    served: Pipeline, patients: pd.DataFrame, tmp_path: Path
) -> None:
    updated = updated_pipeline(served, UPDATE)
    _dump_skops(updated, tmp_path / "model.skops")
    loaded = load_skops(tmp_path / "model.skops")
    pd.testing.assert_frame_equal(
        Scorer(loaded).predict(patients), Scorer(updated).predict(patients)
    )


def test_the_update_does_not_touch_what_it_does_not_change(
    served: Pipeline, patients: pd.DataFrame
) -> None:
    same = updated_pipeline(served, Update())
    assert not isinstance(same.named_steps["model"].regressor, RecalibratedRegressor)
    pd.testing.assert_frame_equal(Scorer(same).predict(patients), Scorer(served).predict(patients))


# -- choosing the update on new patients' outcomes -------------------------------------------

NOISE = 11.0  # the simulator's residual SD (DESIGN.md)
_Z = float(stats.norm.ppf(0.5 + LEVEL / 2))


def _new_patients(
    seed: int, shift: float = 0.0, slope: float = 1.0, noise: float = 1.0, n: int = 2000
) -> tuple[np.ndarray, ...]:
    """Predictions with an exact 80% interval for outcomes drawn with the given miscalibration."""
    rng = np.random.default_rng(seed)
    predicted = rng.normal(30.0, 10.0, n)
    observed = 30.0 + shift + slope * (predicted - 30.0) + rng.normal(0.0, noise * NOISE, n)
    return predicted, predicted - _Z * NOISE, predicted + _Z * NOISE, observed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_shift_updates_the_intercept_only(seed: int) -> None:
    update = choose_update(*_new_patients(seed, shift=6.0), level=LEVEL, alpha=ALPHA)
    assert update.intercept == pytest.approx(6.0, abs=1.0)
    assert (update.slope, update.scale) == (1.0, 1.0)
    assert update.sentences[0].startswith(f"intercept {update.intercept:+.1f} points")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_calibrated_model_needs_no_update(seed: int) -> None:
    update = choose_update(*_new_patients(seed), level=LEVEL, alpha=ALPHA)
    assert (update.intercept, update.slope, update.scale) == (0.0, 1.0, 1.0)
    assert not update.changes_model
    assert len(update.sentences) == 1
    assert update.sentences[0].startswith("no update needed")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_too_large_differences_between_patients_fit_the_slope(seed: int) -> None:
    update = choose_update(*_new_patients(seed, slope=0.7), level=LEVEL, alpha=ALPHA)
    assert update.slope == pytest.approx(0.7, abs=0.1)
    # The line goes through the patients' average: 30 predicted, 30 observed.
    assert update.intercept + update.slope * 30.0 == pytest.approx(30.0, abs=1.0)
    assert "slope" in update.sentences[0]
    assert "too large" in update.sentences[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_larger_noise_widens_the_interval_back_to_its_level(seed: int) -> None:
    update = choose_update(*_new_patients(seed, noise=1.5), level=LEVEL, alpha=ALPHA)
    assert (update.intercept, update.slope) == (0.0, 1.0)
    assert update.scale > 1.3
    assert "widened" in update.sentences[-1]
    # On fresh draws of the same patients, the scaled interval holds about its level again.
    predicted, lower, upper, observed = _new_patients(seed + 100, noise=1.5, n=20000)
    low = predicted - update.scale * (predicted - lower)
    high = predicted + update.scale * (upper - predicted)
    assert np.mean((observed >= low) & (observed <= high)) == pytest.approx(LEVEL, abs=0.03)


def test_too_few_or_unknown_outcomes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        choose_update([1.0, 2.0], [0.0, 1.0], [2.0, 3.0], [1.0, 2.0], LEVEL, ALPHA)
    predicted, lower, upper, observed = _new_patients(1, n=10)
    observed[3] = np.nan
    with pytest.raises(ValueError, match="known"):
        choose_update(predicted, lower, upper, observed, LEVEL, ALPHA)
