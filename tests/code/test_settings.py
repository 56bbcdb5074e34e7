"""Settings from the environment and a .env file; where the tracking store is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from womac.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No WOMAC_ or MLflow tracking variables, and an empty working directory."""
    for name in list(os.environ):
        if name.startswith("WOMAC_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_womac_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOMAC_SEED", "7")
    monkeypatch.setenv("WOMAC_CV_FOLDS", "3")
    monkeypatch.setenv("WOMAC_MAX_BATCH_SIZE", "25")
    monkeypatch.setenv("WOMAC_API_KEY", "s3cret-key")
    monkeypatch.setenv("WOMAC_GENERATED_DIR", "/data/generated")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.seed == 7
    assert settings.cv_folds == 3
    assert settings.max_batch_size == 25
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cret-key"
    assert settings.generated_dir == Path("/data/generated")
    assert "s3cret-key" not in repr(settings)


def test_variables_without_the_prefix_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEED", "7")
    monkeypatch.setenv("API_KEY", "s3cret-key")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.seed != 7
    assert settings.api_key is None


def test_an_invalid_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOMAC_CV_FOLDS", "1")

    with pytest.raises(ValidationError, match="cv_folds"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_a_dotenv_file_in_the_working_directory_is_read(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("WOMAC_SEED=11\nWOMAC_MODEL_NAME=clinic-model\n")

    settings = Settings()

    assert settings.seed == 11
    assert settings.model_name == "clinic-model"


def test_default_tracking_store_is_sqlite_in_the_working_directory(
    clean_environment: Path,
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert (
        settings.resolved_tracking_uri()
        == f"sqlite:///{clean_environment.resolve() / 'mlflow.db'}"
    )


def test_mlflow_tracking_uri_is_honoured_when_ours_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.clinic.local:5000")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.resolved_tracking_uri() == "http://mlflow.clinic.local:5000"


def test_womac_tracking_uri_wins_over_mlflows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.clinic.local:5000")
    monkeypatch.setenv("WOMAC_TRACKING_URI", "sqlite:////srv/womac/mlflow.db")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.resolved_tracking_uri() == "sqlite:////srv/womac/mlflow.db"


def test_served_model_is_the_champion_of_the_registered_model() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.model_uri == "models:/womac-improvement@champion"


def test_artifact_root_is_absolute_so_the_store_works_from_any_folder(
    clean_environment: Path,
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.resolved_artifact_root() == (clean_environment.resolve() / "mlruns").as_uri()
