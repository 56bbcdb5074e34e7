"""A registry a team shares: a real ``mlflow server`` and a real PostgreSQL.

Training through a tracking server leaves the artifacts in the server's artifact store and
nothing in the trainer's folder; a colleague's ``womac serve`` and ``womac predict``, run from
an empty folder, load the champion through the server. PostgreSQL works as the tracking store
out of the box. A store that cannot be used is found before any fitting, in one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.helpers import free_port, run_womac, serving, store_settings
from tests.registry.helpers import TrackingServer
from womac.data.contract import FOLLOW_UP_SUBSCALES, as_request
from womac.data.simulate import simulate_cohort

pytestmark = pytest.mark.e2e


def womac_env(tracking_uri: str, **settings: str) -> dict[str, str]:
    """This machine's environment with only the given store (and settings) of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WOMAC_", "MLFLOW_"))}
    return env | {
        "WOMAC_TRACKING_URI": tracking_uri,
        "WOMAC_CV_FOLDS": "2",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **settings,
    }


@pytest.fixture(scope="module")
def training_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clinic's training export, kept outside every working folder of these tests."""
    path = tmp_path_factory.mktemp("exports") / "clinic-cohort.csv"
    simulate_cohort(600, 515151)[0].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def to_score(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("to-score") / "patients.csv"
    simulate_cohort(60, 525252)[0].drop(columns=list(FOLLOW_UP_SUBSCALES)).to_csv(
        path, index=False
    )
    return path


def one_request(path: Path) -> dict[str, Any]:
    return as_request(pd.read_csv(path).iloc[0].to_dict())


def answers_from_an_empty_folder(settings: Any, folder: Path, to_score: Path) -> dict[str, Any]:
    """``womac predict`` and ``womac serve`` run from ``folder``: the served answer."""
    folder.mkdir()
    scores = folder.parent / f"{folder.name}-scores.csv"
    predicted = run_womac(
        *("predict", "--data", str(to_score), "--out", str(scores)),
        cwd=folder,
        env=womac_env(settings.resolved_tracking_uri()),
    )
    assert predicted.returncode == 0, predicted.stderr
    assert len(pd.read_csv(scores)) == 60
    with serving(settings, folder) as server:
        health = httpx.get(f"{server.url}/health", timeout=10).json()
        answer = httpx.post(f"{server.url}/v1/predict", json=one_request(to_score), timeout=10)
    assert health["model_loaded"] is True, server.output()
    assert answer.status_code == 200, answer.text
    # Only the service's own log (written by the test helper): no store, no artifacts.
    assert [path.name for path in folder.iterdir() if not path.name.startswith("server-")] == []
    result: dict[str, Any] = answer.json()
    return result


def test_training_through_a_tracking_server_keeps_the_model_on_the_server(
    tracking_server: TrackingServer, training_export: Path, to_score: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    trainer = tmp_path / "trainer"
    trainer.mkdir()

    trained = run_womac(
        "train", "--data", str(training_export), cwd=trainer, env=womac_env(tracking_server.url)
    )

    assert trained.returncode == 0, trained.stderr
    assert "now champion" in " ".join(trained.stdout.split())
    assert list(trainer.iterdir()) == []  # nothing in the trainer's folder
    assert list(tracking_server.artifacts.rglob("pipeline.skops"))
    client = MlflowClient(tracking_server.url)
    experiment = client.get_experiment_by_name("womac")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    version = client.get_model_version_by_alias("womac-improvement", "champion")
    assert version.source.startswith("models:/") or "mlflow-artifacts" in version.source

    settings = store_settings(tmp_path / "unused", tracking_uri=tracking_server.url)
    answer = answers_from_an_empty_folder(settings, tmp_path / "colleague", to_score)
    assert answer["model"]["version"] == str(version.version)


def test_training_and_serving_with_postgresql_as_the_tracking_store(
    postgres: str, to_score: Path, tmp_path: Path
) -> None:
    settings = store_settings(tmp_path / "artifacts-home", tracking_uri=postgres)
    env = womac_env(
        postgres,
        WOMAC_ARTIFACT_ROOT=str(settings.artifact_root),
        WOMAC_GENERATED_DIR=str(settings.generated_dir),
        WOMAC_DEFAULT_COHORT_SIZE="600",
    )
    trainer = tmp_path / "trainer"
    trainer.mkdir()

    trained = run_womac("train", cwd=trainer, env=env)

    assert trained.returncode == 0, trained.stderr
    assert "now champion" in " ".join(trained.stdout.split())
    answer = answers_from_an_empty_folder(settings, tmp_path / "colleague", to_score)
    assert answer["model"]["version"] == "1"


# -- a store that cannot be used, found before any fitting --------------------------------


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("http://127.0.0.1:{port}", "cannot reach the tracking server http://127.0.0.1:{port}"),
        (
            "postgresql://clinic:s3cret@127.0.0.1:{port}/registry",
            "cannot connect to the tracking store postgresql://clinic@127.0.0.1:{port}/registry",
        ),
        (
            "postgresql+pg8000://clinic:s3cret@127.0.0.1:{port}/registry",
            "needs the database driver `pg8000`, which is not installed",
        ),
    ],
    ids=["server down", "database down", "driver missing"],
)
def test_a_store_that_cannot_be_used_is_refused_in_one_line_before_any_work(
    uri: str, said: str, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    uri, said = uri.format(port=port), said.format(port=port)

    done = run_womac("train", cwd=tmp_path, env=womac_env(uri))

    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert said in message
    assert message.count("error:") == 1
    assert "Traceback" not in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # not even the default cohort was simulated


def test_womac_predict_says_the_server_is_down_rather_than_to_train(
    to_score: Path, tmp_path: Path
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    done = run_womac(
        *("predict", "--data", str(to_score), "--out", str(tmp_path / "scores.csv")),
        cwd=tmp_path,
        env=womac_env(uri),
    )
    assert done.returncode == 1
    assert f"cannot reach the tracking server {uri}" in " ".join(done.stderr.split())
    assert not (tmp_path / "scores.csv").exists()


def test_an_experiment_whose_artifacts_stay_on_one_machine_is_refused_on_a_server(
    tracking_server: TrackingServer, training_export: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_server.url).create_experiment(
        "kept-locally", artifact_location=(tmp_path / "mine").as_uri()
    )

    done = run_womac(
        "train",
        "--data",
        str(training_export),
        cwd=tmp_path,
        env=womac_env(tracking_server.url, WOMAC_EXPERIMENT_NAME="kept-locally"),
    )

    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "experiment 'kept-locally'" in message
    assert "other machines cannot read" in message
    assert not (tmp_path / "mine").exists()
