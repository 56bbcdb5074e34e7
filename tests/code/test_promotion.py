"""Promotion gates (models.gates, pipeline.registration.decide_promotion) on held-out figures
made up to sit on either side of each gate, and the gates' sampling behaviour: a sound model
is refused about as rarely as the settings say, a bad one nearly always."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from womac.models.evaluation import Evaluation
from womac.models.gates import coverage_gate, slope_gate
from womac.pipeline.registration import Promotion, decide_promotion
from womac.settings import Settings

ALPHA = 0.01


@pytest.fixture(autouse=True)
def no_womac_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built here come from the test alone, not from the machine's WOMAC_ variables."""
    for variable in [name for name in os.environ if name.startswith("WOMAC_")]:
        monkeypatch.delenv(variable)


class EmptyRegistry:
    """A registry client with no champion yet."""

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        raise MlflowException(f"no alias {alias} on {name}")


def held_out(
    n: int = 1000, slope: float = 1.0, coverage: float = 0.8, slope_se: float = 0.05
) -> Evaluation:
    return Evaluation(
        n=n,
        level=0.8,
        point={"rmse": 9.0, "calibration_slope": slope, "calibration_slope_se": slope_se},
        coverage=coverage,
        mean_width=22.0,
        responder={},
        calibration_curve=[],
    )


def decide(evaluation: Evaluation, **settings: Any) -> Promotion:
    configured = Settings(_env_file=None, **settings)  # type: ignore[call-arg]
    return decide_promotion(EmptyRegistry(), configured, None, evaluation, None, "")  # type: ignore[arg-type]


def test_first_model_passing_every_gate_is_promoted_with_each_gate_named() -> None:
    promotion = decide(held_out())
    assert promotion.promoted
    assert "calibration slope 1.00 (SE 0.05) within 0.8-1.25" in promotion.reason
    assert "80% interval covers 80.0% of 1000 held-out patients, sound" in promotion.reason
    assert "no champion yet" in promotion.reason
    assert promotion.champion_rmse is None


@pytest.mark.parametrize("slope", [0.6, 1.5, math.nan])
def test_calibration_slope_clearly_outside_the_band_refuses_and_names_the_gate(
    slope: float,
) -> None:
    promotion = decide(held_out(slope=slope))
    assert not promotion.promoted
    if math.isnan(slope):
        assert promotion.reason.startswith("calibration slope undefined")
    else:
        expected = f"calibration slope {slope:.2f} (SE 0.05) outside 0.8-1.25 beyond sampling"
        assert promotion.reason.startswith(expected)
    assert "interval covers" not in promotion.reason  # only the failed gate is the reason


@pytest.mark.parametrize("slope", [0.75, 1.3])
def test_slope_outside_the_band_within_its_sampling_error_passes_and_says_so(
    slope: float,
) -> None:
    promotion = decide(held_out(slope=slope, slope_se=0.06))
    assert promotion.promoted
    assert "outside, within sampling error of 0.8-1.25" in promotion.reason
    # The same slope measured precisely is refused.
    assert not decide(held_out(slope=slope, slope_se=0.01)).promoted


def test_configured_slope_band_is_the_one_applied() -> None:
    promotion = decide(held_out(slope=1.0), gate_slope_min=1.5, gate_slope_max=3.0)
    assert not promotion.promoted
    assert "outside 1.5-3 beyond sampling error" in promotion.reason


def test_an_interval_that_under_covers_beyond_sampling_error_is_refused() -> None:
    promotion = decide(held_out(n=5000, coverage=0.75))
    assert not promotion.promoted
    assert "covers 75.0% of 5000 held-out patients: under-covers (below 77%" in promotion.reason
    assert "calibration slope" not in promotion.reason


def test_small_held_out_set_allows_its_sampling_error() -> None:
    assert decide(held_out(n=100, coverage=0.72)).promoted
    refused = decide(held_out(n=100, coverage=0.62))
    assert not refused.promoted
    assert "covers 62.0%" in refused.reason


def test_a_conservative_interval_passes_and_is_called_conservative() -> None:
    # The first training the gates used to refuse: 86.7% of 353 held-out patients covered.
    promotion = decide(held_out(n=353, coverage=306 / 353))
    assert promotion.promoted
    assert "covers 86.7% of 353 held-out patients: conservative" in promotion.reason


def test_an_interval_far_too_wide_is_refused() -> None:
    promotion = decide(held_out(n=2000, coverage=0.97))
    assert not promotion.promoted
    assert "too wide to inform (above 90%" in promotion.reason


def test_tiny_tolerance_with_a_big_held_out_set_refuses_a_one_point_shortfall() -> None:
    promotion = decide(held_out(n=20000, coverage=0.79), gate_coverage_tolerance=0.0)
    assert not promotion.promoted
    assert "covers 79.0%" in promotion.reason


def test_every_failed_gate_is_named() -> None:
    promotion = decide(held_out(n=5000, slope=0.5, coverage=0.6))
    assert not promotion.promoted
    assert "calibration slope 0.50 (SE 0.05) outside" in promotion.reason
    assert "covers 60.0%" in promotion.reason
    assert "no champion yet" not in promotion.reason


@pytest.mark.parametrize("n", [150, 353, 1000, 5000])
def test_coverage_gate_refuses_a_sound_interval_at_most_at_its_stated_rate(n: int) -> None:
    """Coverage counts of an interval that truly covers 80%, drawn as sampling draws them."""
    covered = np.random.default_rng(n).binomial(n, 0.8, size=4000)
    refused = np.mean(
        [not coverage_gate(int(k), n, 0.8, 0.03, 0.10, ALPHA).passed for k in covered]
    )
    assert refused <= ALPHA


@pytest.mark.parametrize("n", [1000, 5000])
def test_coverage_gate_catches_an_interval_that_truly_covers_70_percent(n: int) -> None:
    covered = np.random.default_rng(n).binomial(n, 0.7, size=2000)
    refused = np.mean(
        [not coverage_gate(int(k), n, 0.8, 0.03, 0.10, ALPHA).passed for k in covered]
    )
    assert refused >= 0.99


def test_slope_gate_refuses_a_slope_at_the_band_edge_at_most_at_its_stated_rate() -> None:
    """A model whose true slope is at the band's edge: estimates scatter by their SE."""
    se = 0.08
    slopes = np.random.default_rng(3).normal(0.8, se, size=20000)
    refused = np.mean([not slope_gate(s, se, 0.8, 1.25, ALPHA).passed for s in slopes])
    assert refused <= ALPHA * 1.3  # sampling noise of the estimate of the rate itself
    assert refused >= ALPHA * 0.7
