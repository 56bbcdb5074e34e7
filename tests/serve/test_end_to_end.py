"""The main job, as a data scientist and a clinician's client do it: the installed ``womac``
command against a real MLflow SQLite store, then HTTP against a real uvicorn process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from data.contract import PREDICTOR_NAMES
from tests.conftest import running_server, settings_env, store_settings, womac_command

from .conftest import as_request

COHORT_SIZE = 600


def womac(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the installed console script; fail the test with its output if it fails."""
    finished = subprocess.run(
        [womac_command(), *args],
        cwd=cwd,
        env=env | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, (
        f"womac {' '.join(args)}:\n{finished.stdout}\n{finished.stderr}"
    )
    return finished


@pytest.mark.e2e
def test_simulate_validate_train_predict_then_serve_over_http(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    env = settings_env(settings)

    womac(
        "simulate",
        "--n",
        str(COHORT_SIZE),
        "--seed",
        "11",
        "--out",
        "cohort.csv",
        cwd=tmp_path,
        env=env,
    )
    validated = womac("validate", "cohort.csv", cwd=tmp_path, env=env)
    assert "follows the contract" in validated.stdout
    womac("train", "--data", "cohort.csv", cwd=tmp_path, env=env)
    womac("predict", "--data", "cohort.csv", "--out", "scores.csv", cwd=tmp_path, env=env)

    uri = settings.resolved_tracking_uri()
    champion = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(
        "womac-improvement", "champion"
    )
    cohort = pd.read_csv(tmp_path / "cohort.csv")
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert scores["patient_id"].tolist() == cohort["patient_id"].tolist()
    assert np.isfinite(scores["expected_improvement"]).all()
    assert scores["top1_field"].isin(PREDICTOR_NAMES).all()

    patient = as_request(cohort.iloc[0].to_dict())
    with running_server(settings, tmp_path) as url, httpx.Client(base_url=url) as http:
        health = http.get("/health")
        predicted = http.post("/v1/predict", json=patient)
        refused = http.post("/v1/predict", json=patient | {"age": 640})
        card = http.get("/v1/model")

    assert health.status_code == 200
    assert health.json()["model_loaded"] is True
    assert health.json()["model_version"] == str(champion.version)

    assert predicted.status_code == 200, predicted.text
    answer = predicted.json()
    contributions = answer["explanation"]["contributions"]
    total = answer["explanation"]["base_value"] + sum(c["contribution"] for c in contributions)
    assert total == pytest.approx(answer["expected_improvement"], abs=1e-6)
    assert sorted(c["feature"] for c in contributions) == sorted(PREDICTOR_NAMES)
    assert answer["model"]["version"] == str(champion.version)
    assert answer["model"]["run_id"] == champion.run_id
    # The same patient, scored in batch by `womac predict`, gets the same number.
    assert answer["expected_improvement"] == pytest.approx(
        scores.loc[0, "expected_improvement"], abs=5e-4
    )

    assert refused.status_code == 422
    assert [issue["field"] for issue in refused.json()["detail"]] == ["age"]
    assert "640" not in refused.text

    # Nothing a request sends is logged.
    server_log = "".join(log.read_text() for log in tmp_path.glob("server-*.log"))
    assert "POST /v1/predict" in server_log
    assert patient["patient_id"] not in server_log

    assert card.status_code == 200
    assert card.json()["version"] == str(champion.version)
    assert card.json()["held_out"]["rmse"] > 0
    assert card.json()["comparator_held_out"]["rmse"] > 0
