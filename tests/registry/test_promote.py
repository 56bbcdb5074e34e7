"""No champion yet: every command that needs one lists the registered versions with why each
was not promoted, and says how to use one anyway; ``womac promote`` does that by hand, with a
recorded reason.

Versions are registered with MlflowClient in a real SQLite store (no training): for the
listing and for promotion any registered version will do. One test takes a copy of the
session's trained store, so the version promoted by hand then really scores patients.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from typer.testing import CliRunner

from tests.helpers import registry_client, settings_env, store_settings
from womac.data.simulate import simulate_cohort
from womac.models.registry import (
    Command,
    no_champion_message,
    registered_versions,
)
from womac.models.store import champion_version
from womac.pipeline.cli import app
from womac.serve.main import create_app
from womac.settings import Settings, get_settings

NAME = "womac-improvement"
ALIAS = "champion"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COVERAGE_REFUSAL = (
    "80% interval covers 86.7% of held-out patients (allowed gap 3.0%); "
    "calibration slope 0.70 outside 0.8-1.25"
)
RMSE_REFUSAL = "held-out RMSE 11.020 does not beat champion v1 (10.950)"


@pytest.fixture
def fresh_settings_cache() -> Iterator[None]:
    """CLI commands read the process-wide settings: read them anew, and forget them after."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def register(client: MlflowClient, source: Path, promotion: str, reason: str) -> str:
    """Register a version as training tags it, without moving the alias."""
    source.mkdir(parents=True, exist_ok=True)
    try:
        client.get_registered_model(NAME)
    except Exception:
        client.create_registered_model(NAME)
    version = str(client.create_model_version(NAME, str(source)).version)
    client.set_model_version_tag(NAME, version, "promotion", promotion)
    client.set_model_version_tag(NAME, version, "promotion_reason", reason)
    client.set_model_version_tag(NAME, version, "run_id", f"run-{version}")
    return version


@pytest.fixture
def refused(tmp_path: Path) -> Settings:
    """A store whose two versions were both refused promotion: no champion exists."""
    settings = store_settings(tmp_path)
    client = registry_client(settings)
    register(client, tmp_path / "model-1", "not promoted", COVERAGE_REFUSAL)
    register(client, tmp_path / "model-2", "not promoted", RMSE_REFUSAL)
    return settings


def run(settings: Settings, *args: str) -> tuple[int, str]:
    """``womac`` in this process with ``settings``' store; exit code and flattened output."""
    result = CliRunner().invoke(app, list(args), env=settings_env(settings) | {"COLUMNS": "400"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(ANSI.sub("", result.output).split())


def patients_csv(folder: Path) -> Path:
    path = folder / "patients.csv"
    simulate_cohort(20, 4242)[0].to_csv(path, index=False)
    return path


# -- the listing ------------------------------------------------------------------------


def test_versions_are_listed_newest_first_with_their_recorded_verdict(refused: Settings) -> None:
    versions = registered_versions(registry_client(refused), NAME)

    assert [v.version for v in versions] == [2, 1]
    assert [v.promotion for v in versions] == ["not promoted", "not promoted"]
    assert [v.promotion_reason for v in versions] == [RMSE_REFUSAL, COVERAGE_REFUSAL]
    assert [v.run_id for v in versions] == ["run-2", "run-1"]
    for version in versions:
        assert abs((datetime.now(UTC) - version.created).total_seconds()) < 600


def test_the_message_lists_versions_with_reasons_and_the_exact_commands_for_each_command(
    refused: Settings,
) -> None:
    versions = registered_versions(registry_client(refused), NAME)
    created = versions[0].created.strftime("%Y-%m-%d %H:%M UTC")

    for_predict = no_champion_message(NAME, ALIAS, versions, Command.predict, store="here")
    for_serve = no_champion_message(NAME, ALIAS, versions, Command.serve, store="here")

    for message in (for_predict, for_serve):
        assert message.startswith(f"No model is registered as {NAME}@{ALIAS}.")
        assert f"v2 ({created}) not promoted: {RMSE_REFUSAL}." in message
        assert f"not promoted: {COVERAGE_REFUSAL}." in message
        assert message.index("v2 (") < message.index("v1 (")
        assert '`womac promote 2 --reason "..."`' in message
        assert "`womac train`" in message
        assert "\n" not in message
    assert f"--model-uri models:/{NAME}/2" in for_predict
    # The service serves the alias only: it is told what works there, and nothing else.
    assert "--model-uri" not in for_serve
    assert "POST /v1/admin/reload" in for_serve


def test_with_nothing_registered_the_advice_is_to_train(tmp_path: Path) -> None:
    message = no_champion_message(NAME, ALIAS, [], Command.predict, store="sqlite:///x.db")

    assert "no version of womac-improvement is registered in sqlite:///x.db" in message
    assert "`womac train`" in message
    assert "womac promote" not in message
    assert "--model-uri" not in message


def test_at_most_ten_versions_are_listed(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    client = registry_client(settings)
    for number in range(12):
        register(client, tmp_path / f"model-{number}", "not promoted", f"gate {number}")

    message = no_champion_message(
        NAME, ALIAS, registered_versions(client, NAME), Command.predict, store="here"
    )

    assert "v12 (" in message
    assert "v3 (" in message
    assert "v2 (" not in message
    assert "(2 older versions not shown.)" in message


# -- womac promote ----------------------------------------------------------------------


def test_promote_moves_the_alias_and_records_it_on_the_version(
    refused: Settings, fresh_settings_cache: None
) -> None:
    code, output = run(refused, "promote", "1", "--reason", "coverage judged acceptable by AB")

    assert code == 0, output
    assert f"{NAME}@{ALIAS} is now version 1 (there was no champion before)" in output
    client = registry_client(refused)
    assert str(champion_version(client, NAME, ALIAS).version) == "1"
    tags = client.get_model_version(NAME, "1").tags
    assert tags["promotion"] == "champion (by hand)"
    assert tags["promotion_reason"] == "coverage judged acceptable by AB"
    assert datetime.fromisoformat(tags["promoted_by_hand_at"]).tzinfo is not None
    assert "replaced_version" not in tags
    assert client.get_model_version(NAME, "2").tags["promotion"] == "not promoted"

    code, output = run(refused, "promote", "2", "--reason", "newer data")

    assert code == 0, output
    assert "is now version 2 (replacing version 1)" in output
    assert str(champion_version(client, NAME, ALIAS).version) == "2"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["replaced_version"] == "1"
    assert tags["promotion_reason"] == "newer data"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("promote", "7", "--reason", "why not"), "womac-improvement has no version 7; "),
        (("promote", "1", "--reason", "  "), "--reason must say why"),
        (("promote", "1", "--reason", ""), "--reason must say why"),
    ],
    ids=["unknown version", "blank reason", "empty reason"],
)
def test_promote_refuses_in_one_line_and_moves_nothing(
    refused: Settings, fresh_settings_cache: None, args: tuple[str, ...], expected: str
) -> None:
    code, output = run(refused, *args)

    assert code == 1
    assert expected in output
    assert output.startswith("error:")
    assert "Traceback" not in output
    client = registry_client(refused)
    assert champion_version(client, NAME, ALIAS) is None
    assert client.get_model_version(NAME, "1").tags["promotion"] == "not promoted"


def test_promote_names_the_registered_versions_when_the_one_asked_for_is_unknown(
    refused: Settings, fresh_settings_cache: None
) -> None:
    code, output = run(refused, "promote", "9", "--reason", "x")

    assert code == 1
    assert "has no version 9; registered versions: 2, 1" in output


def test_promote_without_a_reason_is_a_usage_error(
    refused: Settings, fresh_settings_cache: None
) -> None:
    code, _ = run(refused, "promote", "1")

    assert code == 2
    assert champion_version(registry_client(refused), NAME, ALIAS) is None


def test_promote_refuses_a_store_that_does_not_exist_and_creates_none(
    tmp_path: Path, fresh_settings_cache: None
) -> None:
    settings = store_settings(tmp_path / "nothing-here")

    code, output = run(settings, "promote", "1", "--reason", "x")

    assert code == 1
    assert "there is no MLflow store at" in output
    assert not (tmp_path / "nothing-here" / "mlflow.db").exists()


def test_promote_refuses_a_store_that_is_unavailable(
    tmp_path: Path, fresh_settings_cache: None
) -> None:
    settings = store_settings(tmp_path, tracking_uri="http://127.0.0.1:9")

    code, output = run(settings, "promote", "1", "--reason", "x")

    assert code == 1
    assert "cannot reach the tracking server http://127.0.0.1:9" in output


# -- the commands that need a champion --------------------------------------------------


def test_predict_without_a_champion_lists_the_versions_and_how_to_use_one(
    refused: Settings, tmp_path: Path, fresh_settings_cache: None
) -> None:
    out = tmp_path / "scores.csv"

    code, output = run(
        refused, "predict", "--data", str(patients_csv(tmp_path)), "--out", str(out)
    )

    assert code == 1
    assert f"No model is registered as {NAME}@{ALIAS}." in output
    assert f"not promoted: {RMSE_REFUSAL}." in output
    assert f"not promoted: {COVERAGE_REFUSAL}." in output
    assert f"--model-uri models:/{NAME}/2" in output
    assert '`womac promote 2 --reason "..."`' in output
    assert not out.exists()


def test_predict_with_nothing_registered_still_says_to_train(
    tmp_path: Path, fresh_settings_cache: None
) -> None:
    settings = store_settings(tmp_path)
    registry_client(settings).search_registered_models()  # an empty store

    code, output = run(
        settings, "predict", "--data", str(patients_csv(tmp_path)), "--out", "scores.csv"
    )

    assert code == 1
    assert "`womac train`" in output
    assert "womac promote" not in output


def test_the_service_without_a_champion_answers_503_with_the_listing(refused: Settings) -> None:
    with TestClient(create_app(refused)) as service:
        health = service.get("/health")
        card = service.get("/v1/model")

    assert health.json()["model_loaded"] is False
    assert card.status_code == 503
    detail = card.json()["detail"]
    assert f"No model is registered as {NAME}@{ALIAS}." in detail
    assert f"not promoted: {RMSE_REFUSAL}." in detail
    assert '`womac promote 2 --reason "..."`' in detail
    assert "--model-uri" not in detail


def test_a_version_promoted_by_hand_is_the_one_predict_and_the_service_use(
    trained: Any, store: Settings, tmp_path: Path, fresh_settings_cache: None
) -> None:
    """The first training refused (as a gate would): promoted by hand, it serves."""
    copy = store_settings(tmp_path, artifact_root=store.artifact_root)
    shutil.copyfile(
        Path(store.resolved_tracking_uri().removeprefix("sqlite:///")), tmp_path / "mlflow.db"
    )
    client = registry_client(copy)
    version = str(trained.model_version)
    client.delete_registered_model_alias(NAME, ALIAS)
    client.set_model_version_tag(NAME, version, "promotion", "not promoted")
    client.set_model_version_tag(NAME, version, "promotion_reason", COVERAGE_REFUSAL)
    data, out = patients_csv(tmp_path), tmp_path / "scores.csv"

    refused_code, refused_output = run(copy, "predict", "--data", str(data), "--out", str(out))
    promoted_code, promoted_output = run(copy, "promote", version, "--reason", "reviewed")
    scored_code, scored_output = run(copy, "predict", "--data", str(data), "--out", str(out))

    assert refused_code == 1
    assert f"v{version} (" in refused_output
    assert promoted_code == 0, promoted_output
    assert scored_code == 0, scored_output
    assert f"with models:/{NAME}@{ALIAS}" in scored_output
    assert out.exists()
    with TestClient(create_app(copy)) as service:
        health = service.get("/health").json()
    assert health["model_loaded"] is True
    assert health["model_version"] == version
    # The session's own store is untouched.
    assert str(champion_version(registry_client(store), NAME, ALIAS).version) == version
