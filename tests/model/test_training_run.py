"""The session's training run: what a data scientist finds in MLflow afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from data.contract import PREDICTOR_NAMES
from data.settings import Settings
from models.candidates import CANDIDATES, COMPARATOR
from models.explain import explain
from models.store import connect, load_pipeline

MODEL_NAME = "womac-improvement"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CANDIDATE_METRICS = ("cv_rmse", "cv_mae", "cv_r2", "test_rmse", "test_mae", "test_r2")


@pytest.fixture(scope="module")
def client(store: Settings, trained: Any) -> MlflowClient:
    """A registry client on the session's store (after the training run)."""
    return MlflowClient(
        tracking_uri=store.resolved_tracking_uri(), registry_uri=store.resolved_tracking_uri()
    )


def test_chosen_model_beats_the_mean_model_on_held_out_patients(trained: Any) -> None:
    mean = next(c for c in trained.candidates if c.name == "mean")
    assert trained.chosen_result.test["rmse"] < mean.test["rmse"]


def test_chosen_model_beats_the_baseline_womac_comparator_on_held_out_patients(
    trained: Any,
) -> None:
    """The product's model must add something to what the baseline score alone predicts."""
    comparator = next(c for c in trained.candidates if c.name == COMPARATOR)
    chosen = trained.chosen_result
    assert chosen.test["rmse"] < comparator.test["rmse"], (
        f"chosen {chosen.name} (held-out RMSE {chosen.test['rmse']:.3f}) does not beat the "
        f"comparator {COMPARATOR} ({comparator.test['rmse']:.3f})"
    )


def test_oracle_r2_is_reported_and_bounds_the_chosen_model(
    trained: Any, client: MlflowClient
) -> None:
    assert trained.oracle_test is not None
    oracle_r2 = trained.oracle_test["r2"]
    chosen_r2 = trained.chosen_result.test["r2"]
    # No model beats the noise-free expectation by more than chance on ~180 patients.
    assert oracle_r2 >= chosen_r2 - 0.02
    metrics = client.get_run(trained.run_id).data.metrics
    assert metrics["oracle_test_r2"] == pytest.approx(oracle_r2)
    assert metrics["test_r2"] == pytest.approx(chosen_r2)
    assert metrics["comparator_test_rmse"] == pytest.approx(
        next(c for c in trained.candidates if c.name == COMPARATOR).test["rmse"]
    )


def test_new_version_is_registered_and_becomes_champion(
    trained: Any, client: MlflowClient
) -> None:
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == trained.model_version
    assert champion.run_id == trained.run_id
    assert champion.tags["promotion"] == "champion"
    assert champion.tags["promotion_reason"]
    assert trained.promotion.promoted


def test_parent_run_has_a_nested_run_per_candidate_with_cv_and_held_out_metrics(
    trained: Any, client: MlflowClient
) -> None:
    children = client.search_runs(
        [trained.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{trained.run_id}'"
    )
    by_name = {run.info.run_name: run for run in children}
    assert sorted(by_name) == sorted(CANDIDATES)
    for name, run in by_name.items():
        missing = [m for m in CANDIDATE_METRICS if m not in run.data.metrics]
        assert not missing, f"{name} lacks {missing}"
        assert run.data.tags["chosen"] == str(name == trained.chosen)
        result = next(c for c in trained.candidates if c.name == name)
        assert run.data.metrics["test_rmse"] == pytest.approx(result.test["rmse"])
        assert run.data.metrics["cv_rmse"] == pytest.approx(result.cv["rmse"])


def test_run_logs_plots_data_summary_and_a_signed_model(
    trained: Any, store: Settings, client: MlflowClient, tmp_path: Path
) -> None:
    for plot in ("observed_vs_predicted", "residuals", "shap_summary"):
        local = client.download_artifacts(trained.run_id, f"plots/{plot}.png", str(tmp_path))
        assert Path(local).read_bytes()[:8] == PNG_MAGIC, plot

    summary_path = client.download_artifacts(trained.run_id, "data/summary.json", str(tmp_path))
    summary = json.loads(Path(summary_path).read_text())
    assert summary["rows"] == trained.data.rows
    assert summary["usable_for_training"] == trained.n_train + trained.n_test

    connect(store.resolved_tracking_uri())
    info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/{trained.model_version}")
    assert info.run_id == trained.run_id
    assert info.signature is not None
    assert info.signature.inputs.input_names() == list(PREDICTOR_NAMES)
    assert info.flavors["sklearn"]["serialization_format"] == "skops"


def test_no_patient_id_reaches_the_tracking_store(trained: Any, store: Settings) -> None:
    """Pseudonymous ids are never logged: not in the database, not in any artifact."""
    ids = pd.read_csv(store.generated_dir / trained.data.source, usecols=["patient_id"])
    id_prefix = str(ids["patient_id"].iloc[0]).rsplit("-", 1)[0] + "-"
    assert all(str(pid).startswith(id_prefix) for pid in ids["patient_id"])
    needle = id_prefix.encode()
    database = Path(store.resolved_tracking_uri().removeprefix("sqlite:///"))
    assert needle not in database.read_bytes()
    leaking = [
        str(path)
        for path in Path(store.artifact_root).rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]
    assert not leaking


def test_registered_champion_loads_back_and_predicts_like_the_trained_pipeline(
    trained: Any, store: Settings, fresh_patients: pd.DataFrame
) -> None:
    connect(store.resolved_tracking_uri())
    loaded = load_pipeline(CHAMPION_URI)
    expected = trained.chosen_result.pipeline
    np.testing.assert_array_equal(loaded.predict(fresh_patients), expected.predict(fresh_patients))
    np.testing.assert_array_equal(
        explain(loaded, fresh_patients).contributions,
        explain(expected, fresh_patients).contributions,
    )
