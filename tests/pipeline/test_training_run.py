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

from womac.data.contract import FIELDS
from womac.features.encoding import frame_columns
from womac.models.answers import ANSWER_COLUMNS
from womac.models.candidates import BLEND, CANDIDATES, COMPARATOR
from womac.models.evaluation import SUBGROUPS
from womac.models.explain import explain
from womac.models.scoring import Scorer
from womac.models.store import REPORT_ARTIFACT, connect, load_pipeline
from womac.settings import Settings

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
    # The served model's figures: the chosen candidate's, with estimates capped to what the
    # scale allows (the same or a little better).
    assert metrics["test_r2"] == pytest.approx(trained.evaluation.point["r2"])
    assert metrics["test_r2"] == pytest.approx(chosen_r2, abs=0.01)
    assert metrics["test_rmse"] <= trained.chosen_result.test["rmse"] + 1e-9
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
    assert sorted(by_name) == sorted([*CANDIDATES, BLEND])
    for name, run in by_name.items():
        missing = [m for m in CANDIDATE_METRICS if m not in run.data.metrics]
        assert not missing, f"{name} lacks {missing}"
        assert run.data.tags["chosen"] == str(name == trained.chosen)
        result = next(c for c in trained.candidates if c.name == name)
        assert run.data.metrics["test_rmse"] == pytest.approx(result.test["rmse"])
        assert run.data.metrics["cv_rmse"] == pytest.approx(result.cv["rmse"])


def test_run_says_why_the_candidate_was_chosen_and_which_patients_each_figure_uses(
    trained: Any, client: MlflowClient
) -> None:
    run = client.get_run(trained.run_id)
    reason = run.data.tags["selection_reason"]
    assert reason == trained.selection_reason
    assert reason.startswith(f"{trained.chosen}")  # "blend: ..." or "<single> is clearly ..."
    assert "standard error" in reason
    params = run.data.params
    followed_up = trained.n_train + trained.n_test
    assert params["served_model_fitted_on"] == (
        f"all {followed_up} followed-up patients (training and held-out)"
    )
    assert "training patients only" in params["held_out_figures_from"]
    assert "out-of-fold" in params["cv_figures_from"]


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
    # Every contract field by name, for the model to check by the contract's rules.
    assert info.signature.inputs.input_names() == [spec.name for spec in FIELDS]
    assert info.signature.outputs.input_names() == [name for name, _ in ANSWER_COLUMNS]
    pyfunc = info.flavors["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"  # models-from-code
    assert pyfunc["artifacts"]["pipeline"]["path"] == "artifacts/pipeline.skops"
    assert pyfunc["code"] == "code"  # the womac package ships with it


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


def test_registered_champion_loads_back_and_answers_like_the_served_pipeline(
    trained: Any, store: Settings, fresh_patients: pd.DataFrame
) -> None:
    connect(store.resolved_tracking_uri())
    loaded = load_pipeline(CHAMPION_URI)
    expected = trained.pipeline
    np.testing.assert_array_equal(loaded.predict(fresh_patients), expected.predict(fresh_patients))
    np.testing.assert_array_equal(
        explain(loaded, fresh_patients).contributions,
        explain(expected, fresh_patients).contributions,
    )
    # The held-out figures are those of the chosen candidate's fit on the training patients;
    # the served model is the same candidate refitted on every followed-up patient.
    np.testing.assert_array_equal(
        trained.evaluated.predict(fresh_patients),
        trained.chosen_result.pipeline.predict(fresh_patients),
    )
    assert not np.array_equal(
        expected.predict(fresh_patients), trained.evaluated.predict(fresh_patients)
    )
    from_registry = Scorer(loaded).answer_columns(frame_columns(fresh_patients))
    from_training = Scorer(expected).answer_columns(frame_columns(fresh_patients))
    np.testing.assert_array_equal(from_registry.lower, from_training.lower)
    np.testing.assert_array_equal(from_registry.upper, from_training.upper)
    np.testing.assert_array_equal(
        from_registry.p_clinically_important, from_training.p_clinically_important
    )


# -- held-out evaluation of the served model ---------------------------------------------


def test_held_out_evaluation_has_coverage_responder_figures_and_subgroups(
    trained: Any,
) -> None:
    evaluation = trained.evaluation
    assert evaluation.n == trained.n_test
    assert evaluation.level == 0.8
    assert 0.7 < evaluation.coverage < 0.9
    assert evaluation.mean_width > 0
    for key in ("auroc", "brier", "calibration_slope", "calibration_intercept", "prevalence"):
        assert np.isfinite(evaluation.responder[key]), key
    assert evaluation.calibration_curve
    # The served model is the chosen candidate with estimates capped to the scale's limits.
    assert evaluation.point["rmse"] == pytest.approx(trained.chosen_result.test["rmse"], rel=1e-3)

    assert {row.subgroup for row in evaluation.subgroups} == set(SUBGROUPS)
    for row in evaluation.subgroups:
        name = f"{row.subgroup}={row.level}"
        assert row.n >= 2, name
        for figure, (low, high) in (
            (row.rmse, row.rmse_ci),
            (row.coverage, row.coverage_ci),
        ):
            assert low <= figure <= high, name
    by_sex = {row.level: row.n for row in evaluation.subgroups if row.subgroup == "sex"}
    assert sum(by_sex.values()) == evaluation.n


def test_held_out_figures_are_logged_as_metrics_of_the_run(
    trained: Any, client: MlflowClient
) -> None:
    metrics = client.get_run(trained.run_id).data.metrics
    evaluation = trained.evaluation
    assert metrics["test_coverage"] == pytest.approx(evaluation.coverage)
    assert metrics["test_interval_width"] == pytest.approx(evaluation.mean_width)
    for key in ("auroc", "brier", "calibration_slope", "calibration_intercept"):
        assert metrics[f"test_responder_{key}"] == pytest.approx(evaluation.responder[key])
    female = next(
        row for row in evaluation.subgroups if (row.subgroup, row.level) == ("sex", "female")
    )
    assert metrics["subgroup_sex_female_coverage"] == pytest.approx(female.coverage)
    assert metrics["subgroup_sex_female_rmse"] == pytest.approx(female.rmse)
    subgroup_metrics = {name for name in metrics if name.startswith("subgroup_")}
    for subgroup in SUBGROUPS:
        assert any(name.startswith(f"subgroup_{subgroup}_") for name in subgroup_metrics)
    assert "subgroup_age_band_70plus_coverage" in subgroup_metrics


def test_run_logs_evaluation_plots_held_out_json_and_the_model_report(
    trained: Any, client: MlflowClient, tmp_path: Path
) -> None:
    for plot in ("responder_calibration", "subgroups"):
        local = client.download_artifacts(trained.run_id, f"plots/{plot}.png", str(tmp_path))
        assert Path(local).read_bytes()[:8] == PNG_MAGIC, plot

    held_out = json.loads(
        Path(
            client.download_artifacts(trained.run_id, "evaluation/held_out.json", str(tmp_path))
        ).read_text()
    )
    assert held_out["n"] == trained.n_test
    assert held_out["coverage"] == pytest.approx(trained.evaluation.coverage)
    assert held_out["responder"]["auroc"] == pytest.approx(trained.evaluation.responder["auroc"])
    assert len(held_out["subgroups"]) == len(trained.evaluation.subgroups)

    report = Path(
        client.download_artifacts(trained.run_id, REPORT_ARTIFACT, str(tmp_path))
    ).read_text(encoding="utf-8")
    assert REPORT_ARTIFACT == "report/model_report.html"
    assert report.lstrip().lower().startswith("<!doctype html")
    assert "TRIPOD" in report


def test_champion_version_is_tagged_with_the_gates_it_passed(
    trained: Any, client: MlflowClient
) -> None:
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    reason = champion.tags["promotion_reason"]
    assert reason == trained.promotion.reason
    assert "calibration slope" in reason
    assert "within 0.8-1.25" in reason
    assert "80% interval covers" in reason


# -- what a team reads in MLflow ------------------------------------------------------------


def test_registered_model_and_version_are_described(trained: Any, client: MlflowClient) -> None:
    model = client.get_registered_model(MODEL_NAME)
    assert "WOMAC" in model.description
    assert "champion" in model.description
    version = client.get_model_version(MODEL_NAME, trained.model_version)
    point = trained.evaluation.point
    assert version.description.startswith(f"{trained.chosen} trained on {trained.n_train}")
    assert f"RMSE {point['rmse']:.2f}" in version.description
    assert trained.data.sha256[:16] in version.description


def test_the_run_carries_mlflows_git_tags_and_its_data_as_dataset_inputs(
    trained: Any, client: MlflowClient
) -> None:
    run = client.get_run(trained.run_id)
    tags = run.data.tags
    assert len(tags["mlflow.source.git.commit"]) == 40
    assert tags["code.git_commit"].startswith(tags["mlflow.source.git.commit"])
    inputs = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "held-out"}
    assert json.loads(inputs["training"].profile)["num_rows"] == trained.n_train
    assert json.loads(inputs["held-out"].profile)["num_rows"] == trained.n_test
    columns = {c["name"] for c in json.loads(inputs["training"].schema)["mlflow_colspec"]}
    assert "patient_id" not in columns  # a dataset input records the schema, never an id


def test_the_chosen_candidates_held_out_figures_are_the_served_models_everywhere(
    trained: Any, client: MlflowClient
) -> None:
    parent = client.get_run(trained.run_id).data.metrics
    chosen = trained.chosen_result
    child = client.get_run(chosen.run_id).data.metrics
    for name in ("rmse", "mae", "r2", "calibration_slope", "calibration_intercept"):
        assert child[f"test_{name}"] == parent[f"test_{name}"] == trained.evaluation.point[name]
        assert chosen.test[name] == trained.evaluation.point[name]
