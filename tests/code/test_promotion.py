"""Promotion gates (pipeline.train._decide_promotion) on held-out figures made up to sit on
either side of each gate: calibration slope band, interval coverage, champion to beat."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from womac.data.settings import Settings
from womac.models.evaluation import Evaluation
from womac.pipeline.train import Promotion, _decide_promotion


@pytest.fixture(autouse=True)
def no_womac_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built here come from the test alone, not from the machine's WOMAC_ variables."""
    for variable in [name for name in os.environ if name.startswith("WOMAC_")]:
        monkeypatch.delenv(variable)


class EmptyRegistry:
    """A registry client with no champion yet."""

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        raise MlflowException(f"no alias {alias} on {name}")


def held_out(n: int = 1000, slope: float = 1.0, coverage: float = 0.8) -> Evaluation:
    return Evaluation(
        n=n,
        level=0.8,
        point={"rmse": 9.0, "calibration_slope": slope},
        coverage=coverage,
        mean_width=22.0,
        responder={},
        calibration_curve=[],
    )


def decide(evaluation: Evaluation, **settings: Any) -> Promotion:
    configured = Settings(_env_file=None, **settings)  # type: ignore[call-arg]
    return _decide_promotion(EmptyRegistry(), configured, None, evaluation, None, None)  # type: ignore[arg-type]


def test_first_model_passing_every_gate_is_promoted_with_each_gate_named() -> None:
    promotion = decide(held_out())
    assert promotion.promoted
    assert "calibration slope 1.00 within 0.8-1.25" in promotion.reason
    assert "80% interval covers 80.0%" in promotion.reason
    assert "no champion yet" in promotion.reason
    assert promotion.champion_rmse is None


@pytest.mark.parametrize("slope", [0.7, 1.3, math.nan])
def test_calibration_slope_outside_the_band_refuses_and_names_the_gate(slope: float) -> None:
    promotion = decide(held_out(slope=slope))
    assert not promotion.promoted
    assert promotion.reason == f"calibration slope {slope:.2f} outside 0.8-1.25"


@pytest.mark.parametrize("slope", [0.8, 1.25])
def test_slope_on_the_edge_of_the_band_passes(slope: float) -> None:
    assert decide(held_out(slope=slope)).promoted


def test_configured_slope_band_is_the_one_applied() -> None:
    promotion = decide(held_out(slope=1.0), gate_slope_min=1.1, gate_slope_max=1.4)
    assert not promotion.promoted
    assert "outside 1.1-1.4" in promotion.reason


@pytest.mark.parametrize("coverage", [0.75, 0.86])
def test_coverage_more_than_three_points_off_on_many_patients_refuses(coverage: float) -> None:
    # At n=5000 the 95% sampling error of a coverage (1.1 points) is below the tolerance.
    promotion = decide(held_out(n=5000, coverage=coverage))
    assert not promotion.promoted
    assert f"80% interval covers {coverage:.1%}" in promotion.reason
    assert "allowed gap 3.0%" in promotion.reason
    assert "calibration slope" not in promotion.reason


def test_coverage_three_points_off_is_allowed() -> None:
    assert decide(held_out(n=5000, coverage=0.829)).promoted
    assert decide(held_out(n=5000, coverage=0.771)).promoted


def test_small_held_out_set_allows_its_sampling_error_and_says_so() -> None:
    # n=100: the 95% sampling error of an 80% coverage is 1.96 * sqrt(0.16 / 100) = 7.8 points.
    promotion = decide(held_out(n=100, coverage=0.75))
    assert promotion.promoted
    assert "allowed gap 7.8%, the sampling error at n=100" in promotion.reason
    refused = decide(held_out(n=100, coverage=0.70))
    assert not refused.promoted
    assert "covers 70.0%" in refused.reason


def test_tiny_tolerance_with_a_big_held_out_set_refuses_a_one_point_gap() -> None:
    # n=20000: sampling error 0.55 points; the configured tolerance is half a point.
    promotion = decide(held_out(n=20000, coverage=0.81), gate_coverage_tolerance=0.005)
    assert not promotion.promoted
    assert "covers 81.0%" in promotion.reason


def test_every_failed_gate_is_named() -> None:
    promotion = decide(held_out(n=5000, slope=0.5, coverage=0.6))
    assert not promotion.promoted
    assert "calibration slope 0.50 outside" in promotion.reason
    assert "covers 60.0%" in promotion.reason
    assert "no champion yet" not in promotion.reason
