"""Evaluation figures: error, explained variance and calibration of predicted improvement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from womac.models.metrics import regression_metrics, wilson_interval


@pytest.fixture
def observed() -> np.ndarray:
    return np.random.default_rng(0).normal(12.0, 11.0, 500)


def test_perfect_predictions(observed: np.ndarray) -> None:
    metrics = regression_metrics(observed, observed.copy())

    assert metrics["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["mae"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["r2"] == pytest.approx(1.0)
    assert metrics["calibration_slope"] == pytest.approx(1.0)
    assert metrics["calibration_intercept"] == pytest.approx(0.0, abs=1e-9)


def test_known_errors() -> None:
    metrics = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 3.0, 3.0]))

    assert metrics["rmse"] == pytest.approx(math.sqrt(0.5))
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["r2"] == pytest.approx(1 - 2 / 5)


def test_predictions_twice_too_spread_out_have_slope_one_half(observed: np.ndarray) -> None:
    centre = observed.mean()
    metrics = regression_metrics(observed, centre + 2 * (observed - centre))

    assert metrics["calibration_slope"] == pytest.approx(0.5)
    assert metrics["calibration_intercept"] == pytest.approx(centre / 2)


def test_over_spread_noisy_predictions_have_slope_about_one_half() -> None:
    rng = np.random.default_rng(1)
    expected = rng.normal(15.0, 6.0, 20_000)
    observed = expected + rng.normal(0.0, 11.0, expected.size)
    predicted = expected.mean() + 2 * (expected - expected.mean())

    metrics = regression_metrics(observed, predicted)

    assert metrics["calibration_slope"] == pytest.approx(0.5, abs=0.05)


def test_predictions_shifted_up_have_a_negative_intercept(observed: np.ndarray) -> None:
    metrics = regression_metrics(observed, observed + 3.0)

    assert metrics["calibration_slope"] == pytest.approx(1.0)
    assert metrics["calibration_intercept"] == pytest.approx(-3.0)
    assert metrics["rmse"] == pytest.approx(3.0)


def test_constant_predictions_have_no_calibration_slope(observed: np.ndarray) -> None:
    metrics = regression_metrics(observed, np.full_like(observed, observed.mean()))

    assert math.isnan(metrics["calibration_slope"])
    assert math.isnan(metrics["calibration_intercept"])
    assert metrics["rmse"] == pytest.approx(observed.std())
    assert metrics["r2"] == pytest.approx(0.0, abs=1e-12)


def test_wilson_interval_matches_the_published_example() -> None:
    # Newcombe, Stat Med 1998;17:857, table I: 81 of 263 gives 0.2553-0.3662.
    low, high = wilson_interval(81 / 263, 263) or (math.nan, math.nan)

    assert low == pytest.approx(0.2553, abs=1e-4)
    assert high == pytest.approx(0.3662, abs=1e-4)


def test_wilson_interval_stays_within_zero_and_one_and_is_none_without_patients() -> None:
    assert wilson_interval(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(1.0, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0.5, 0) is None
    assert wilson_interval(None, 10) is None
    assert wilson_interval(math.nan, 10) is None
