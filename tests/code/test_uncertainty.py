"""The conformal predictive distribution (models.uncertainty) on synthetic data whose truth
is known: coverage, adaptive width, limits of the WOMAC scale, and the responder chance."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import cross_val_predict

from womac.models.uncertainty import OutcomeModel, difficulty_model, responder_threshold

N_TRAIN, N_NEW = 3000, 20000


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three inputs; improvement linear in the first, noise growing with the second."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    baseline = rng.uniform(20, 80, n)
    y = 15 + 4 * Z[:, 0] + rng.normal(size=n) * (4 + 4 * np.abs(Z[:, 1]))
    return Z, np.minimum(y, baseline), baseline


@pytest.fixture(scope="module")
def fitted() -> OutcomeModel:
    Z, y, baseline = synthetic(N_TRAIN, 1)
    folds = np.arange(N_TRAIN) % 5
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(5)]
    out_of_fold = cross_val_predict(LinearRegression(), Z, y, cv=splits)
    return OutcomeModel(
        regressor=LinearRegression().fit(Z, y), difficulty=difficulty_model(0), level=0.8
    ).fit(Z, y, out_of_fold=out_of_fold, folds=folds, baseline_total=baseline)


@pytest.fixture(scope="module")
def new_patients() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic(N_NEW, 2)


def test_responder_threshold_is_the_larger_of_points_and_fraction() -> None:
    threshold = responder_threshold(np.array([10.0, 45.0, 45.1, 80.0]), 9.0, 0.2)
    np.testing.assert_allclose(threshold, [9.0, 9.0, 9.02, 16.0])


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_interval_covers_its_level_of_new_patients(
    fitted: OutcomeModel, new_patients: tuple[np.ndarray, ...], level: float
) -> None:
    Z, y, baseline = new_patients
    lower, upper, _ = fitted.distribution(Z, fitted.predict(Z), baseline, level)
    covered = (y >= lower) & (y <= upper)
    assert covered.mean() == pytest.approx(level, abs=0.02)


def test_interval_is_wider_where_outcomes_are_noisier(
    fitted: OutcomeModel, new_patients: tuple[np.ndarray, ...]
) -> None:
    Z, y, baseline = new_patients
    lower, upper, _ = fitted.distribution(Z, fitted.predict(Z), baseline)
    width = upper - lower
    noisy = np.abs(Z[:, 1]) > 1.5
    calm = np.abs(Z[:, 1]) < 0.5
    assert np.median(width[noisy]) > 1.5 * np.median(width[calm])
    # ... and coverage stays near nominal in both, not only on average (a regularized
    # difficulty model adapts only partly, so not exactly).
    covered = (y >= lower) & (y <= upper)
    for group in (noisy, calm):
        assert covered[group].mean() == pytest.approx(0.8, abs=0.07)


def test_wider_level_contains_the_narrower_interval(
    fitted: OutcomeModel, new_patients: tuple[np.ndarray, ...]
) -> None:
    Z, _, baseline = new_patients
    predicted = fitted.predict(Z)
    lower80, upper80, p80 = fitted.distribution(Z, predicted, baseline, 0.8)
    lower90, upper90, p90 = fitted.distribution(Z, predicted, baseline, 0.9)
    assert np.all(lower90 <= lower80)
    assert np.all(upper90 >= upper80)
    np.testing.assert_array_equal(p80, p90)  # the chance does not depend on the level


def test_interval_stays_on_the_womac_scale(fitted: OutcomeModel) -> None:
    Z, _, _ = synthetic(500, 3)
    baseline = np.full(500, 6.0)  # little to gain: improvement cannot exceed 6 points
    lower, upper, _ = fitted.distribution(Z, fitted.predict(Z), baseline)
    assert np.all(upper <= 6.0)
    assert np.all(lower >= 6.0 - 96)


def test_interval_is_never_upside_down_when_the_estimate_exceeds_the_baseline(
    fitted: OutcomeModel,
) -> None:
    Z, _, _ = synthetic(500, 3)
    baseline = np.full(500, 6.0)
    lower, upper, _ = fitted.distribution(Z, fitted.predict(Z), baseline)
    assert np.all(lower <= upper)
    assert np.all(lower <= 6.0)


def test_where_the_ceiling_of_the_scale_closes_the_interval_it_covers_its_level(
    fitted: OutcomeModel, new_patients: tuple[np.ndarray, ...]
) -> None:
    """Improvement cannot exceed the baseline total: where the interval reaches it, no
    patient is left out above, so the lower end leaves out the whole 20% (not 10%)."""
    Z, y, baseline = new_patients
    lower, upper, _ = fitted.distribution(Z, fitted.predict(Z), baseline)
    at_ceiling = upper == baseline
    covered = (y >= lower) & (y <= upper)
    assert at_ceiling.sum() > 1000
    assert covered[at_ceiling].mean() == pytest.approx(0.8, abs=0.03)
    assert covered[~at_ceiling].mean() == pytest.approx(0.8, abs=0.03)


def test_chance_is_zero_when_the_threshold_exceeds_the_baseline(fitted: OutcomeModel) -> None:
    Z, _, _ = synthetic(500, 4)
    # 9 points are needed, but a baseline total of 8 can improve by 8 at most.
    _, _, p = fitted.distribution(Z, np.full(500, 30.0), np.full(500, 8.0))
    assert np.all(p == 0.0)


def test_chance_rises_with_the_expected_improvement_at_the_same_baseline(
    fitted: OutcomeModel,
) -> None:
    Z, _, _ = synthetic(200, 5)
    baseline = np.full(200, 50.0)
    chances = [fitted.distribution(Z, np.full(200, e), baseline)[2] for e in range(-10, 41, 2)]
    steps = np.diff(np.stack(chances), axis=0)
    assert np.all(steps >= 0)
    assert np.all((chances[0] >= 0) & (chances[-1] <= 1))
    assert np.all(chances[-1] > chances[0])


def test_chance_is_calibrated_on_new_patients(
    fitted: OutcomeModel, new_patients: tuple[np.ndarray, ...]
) -> None:
    Z, y, baseline = new_patients
    _, _, p = fitted.distribution(Z, fitted.predict(Z), baseline)
    responded = y >= responder_threshold(baseline, 9.0, 0.2)
    order = np.argsort(p)
    for decile in np.array_split(order, 10):
        assert responded[decile].mean() == pytest.approx(p[decile].mean(), abs=0.05)


def test_training_patients_are_rarely_atypical_and_a_far_patient_is(
    fitted: OutcomeModel, new_patients: tuple[np.ndarray, ...]
) -> None:
    Z, _, _ = new_patients
    assert fitted.atypical(Z).mean() == pytest.approx(0.01, abs=0.01)
    assert fitted.atypical(np.array([[6.0, -6.0, 6.0]])).tolist() == [True]


def minority(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 15% group (a one-hot column) whose noise is 1.6 times the others'."""
    rng = np.random.default_rng(seed)
    group = rng.random(n) < 0.15
    Z = np.column_stack([rng.normal(size=n), group.astype(float)])
    y = 20 + 4 * Z[:, 0] + rng.normal(size=n) * np.where(group, 8.0, 5.0)
    return Z, y, np.full(n, 96.0)


def test_a_group_with_larger_errors_is_widened_to_its_own_coverage() -> None:
    Z, y, baseline = minority(N_TRAIN, 3)
    folds = np.arange(N_TRAIN) % 5
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(5)]
    out_of_fold = cross_val_predict(LinearRegression(), Z, y, cv=splits)
    blind = DummyRegressor()  # a difficulty model that misses the group entirely
    fitted = {
        grouped: OutcomeModel(
            regressor=LinearRegression().fit(Z, y), difficulty=blind, level=0.8
        ).fit(
            Z,
            y,
            out_of_fold=out_of_fold,
            folds=folds,
            baseline_total=baseline,
            groups=[[(1, 0.5, np.inf)]] if grouped else None,
        )
        for grouped in (False, True)
    }
    Z_new, y_new, baseline_new = minority(N_NEW, 4)
    in_group = Z_new[:, 1] > 0.5

    def coverage(model: OutcomeModel, members: np.ndarray) -> float:
        lower, upper, _ = model.distribution(Z_new, model.predict(Z_new), baseline_new)
        inside = (y_new >= lower) & (y_new <= upper)
        return float(inside[members].mean())

    assert coverage(fitted[False], in_group) < 0.7  # pooled errors under-cover the group
    # Widened to its own calibration patients' coverage (500 of them: a few points of noise).
    assert 0.77 <= coverage(fitted[True], in_group) <= 0.87
    assert coverage(fitted[True], ~in_group) == pytest.approx(
        coverage(fitted[False], ~in_group), abs=1e-12
    )  # the others are left as they were
    assert fitted[True].group_factors_[0] > 1.1


@pytest.mark.parametrize("model", [LinearRegression(), Ridge(alpha=30.0)])
def test_a_linear_model_fitted_on_named_columns_predicts_arrays_the_same_and_quietly(
    model: LinearRegression | Ridge,
) -> None:
    """The served pipeline hands the regressor plain arrays; a linear champion learnt names."""
    Z, y, _ = synthetic(500, 5)
    named = pd.DataFrame(Z, columns=["age", "bmi", "kl_grade_2"])
    outcome = OutcomeModel(regressor=model.fit(named, y), difficulty=difficulty_model(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predicted = outcome.predict(Z)
    np.testing.assert_allclose(predicted, model.predict(named), rtol=0, atol=1e-12)
