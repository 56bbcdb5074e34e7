"""Promotion gates through a real training run: a model failing a gate is registered but
never made champion, and the reason is tagged on the version and printed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import registry_client, settings_env, store_settings
from womac.data.simulate import simulate_cohort
from womac.models.store import champion_version
from womac.pipeline.cli import app
from womac.serve.model import ModelUnavailableError, load_champion
from womac.settings import get_settings

MODEL_NAME = "womac-improvement"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A band no honest model reaches (a calibration slope near 1 is the aim): the slope gate fails.
STRICT_SLOPE = {"gate_slope_min": 1.5, "gate_slope_max": 3.0}


@pytest.fixture
def fresh_settings_cache() -> Iterator[None]:
    """``womac train`` reads the process-wide settings: read them anew, and forget them after."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_first_model_failing_the_slope_gate_is_registered_not_champion_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_settings_cache: None
) -> None:
    """Even on an empty store (no champion to beat), a gate failure keeps the alias unset."""
    settings = store_settings(tmp_path, **STRICT_SLOPE)
    data = tmp_path / "cohort.csv"
    simulate_cohort(600, 31)[0].to_csv(data, index=False)
    env = settings_env(settings) | {"COLUMNS": "400"}
    env |= {f"WOMAC_{name.upper()}": str(value) for name, value in STRICT_SLOPE.items()}
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["train", "--data", str(data)], env=env)

    output = ANSI.sub("", result.output)
    assert result.exit_code == 0, output
    printed = re.search(r"Model version (\d+): registered, NOT promoted \((.*)\)\. MLflow", output)
    assert printed is not None, output
    version, printed_reason = printed.groups()
    assert "calibration slope" in printed_reason
    assert "outside 1.5-3" in printed_reason
    # Only the failed gate is named as the reason.
    assert "interval covers" not in printed_reason
    assert "no champion yet" not in printed_reason

    client = registry_client(settings)
    registered = client.get_model_version(MODEL_NAME, version)
    assert registered.tags["promotion"] == "not promoted"
    assert registered.tags["promotion_reason"] == printed_reason
    assert client.get_run(registered.run_id).data.tags["promoted"] == "False"
    assert champion_version(client, MODEL_NAME, "champion") is None
    with pytest.raises(ModelUnavailableError, match="womac train"):
        load_champion(settings)
