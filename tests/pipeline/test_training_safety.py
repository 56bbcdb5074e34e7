"""Training holds under interrupts and concurrency, and is reproducible."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.helpers import registry_client, settings_env, store_settings, womac_command
from womac.data.cohort import model_input, read_cohort
from womac.data.simulate import simulate_cohort
from womac.models import store
from womac.pipeline import train as training
from womac.settings import Settings

MODEL = "womac-improvement"
SMALL = 500


def versions(settings: Settings) -> list[Any]:
    if not Path(settings.resolved_tracking_uri().removeprefix("sqlite:///")).exists():
        return []
    return list(registry_client(settings).search_model_versions(f"name='{MODEL}'"))


@pytest.fixture(scope="module")
def cohort_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("safety") / "cohort.csv"
    simulate_cohort(SMALL, 5150)[0].to_csv(path, index=False)
    return path


def test_same_data_seed_and_versions_give_identical_metrics_and_predictions(
    cohort_file: Path, tmp_path: Path
) -> None:
    first = training.train(cohort_file, store_settings(tmp_path / "a", cv_folds=2))
    second = training.train(cohort_file, store_settings(tmp_path / "b", cv_folds=2))
    assert first.chosen == second.chosen
    assert first.evaluation.point == second.evaluation.point
    assert first.evaluation.coverage == second.evaluation.coverage
    assert first.evaluation.responder == second.evaluation.responder
    patients = model_input(read_cohort(cohort_file).frame)
    np.testing.assert_array_equal(
        first.pipeline.predict(patients), second.pipeline.predict(patients)
    )

    run = registry_client(store_settings(tmp_path / "a")).get_run(first.run_id)
    assert run.data.tags["data.sha256"] == first.data.sha256
    assert run.data.tags["seed"] == str(Settings(_env_file=None).seed)
    assert run.data.tags["code.git_commit"]
    packages = registry_client(store_settings(tmp_path / "a")).download_artifacts(
        first.run_id, "environment/packages.json", str(tmp_path)
    )
    recorded = json.loads(Path(packages).read_text())
    assert {"python", "numpy", "scikit-learn", "lightgbm", "mlflow"} <= recorded.keys()


def test_an_interrupt_during_registration_undoes_it(
    cohort_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst moment: the version exists, its tags and the alias are half written."""
    settings = store_settings(tmp_path, cv_folds=2)
    first = training.train(cohort_file, settings)
    before = {str(v.version) for v in versions(settings)}

    original = MlflowClient.set_model_version_tag
    calls = {"n": 0}

    def tag_then_get_killed(self: MlflowClient, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # held back until registration ends
        original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", tag_then_get_killed)
    # Force promotion of the new version, so the alias would move too.
    monkeypatch.setattr(
        training,
        "decide_promotion",
        lambda *a, **k: training.Promotion(True, "forced for the test"),
    )
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        training.train(cohort_file, settings)
    assert calls["n"] >= 1
    assert {str(v.version) for v in versions(settings)} == before
    champion = registry_client(settings).get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == first.model_version


def stored(database: Path, table: str) -> int:
    """Rows in one table of the store, read without disturbing the writer (0 if unreadable)."""
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return int(connection.execute(f"select count(*) from {table}").fetchone()[0])
    except sqlite3.Error:  # tables not created yet, or locked by the writer
        return 0


def wait_for(reached: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while not reached() and process.poll() is None:
        assert time.monotonic() < deadline, f"training never got {what}"
        time.sleep(0.05)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "moment",
    [
        "while writing the cohort",
        "while fitting",
        "as MLflow starts",
        "while MLflow writes",
        "while the model is logged",
    ],
)
def test_training_killed_at_any_point_registers_nothing_and_leaves_no_partial_file(
    tmp_path: Path, moment: str
) -> None:
    settings = store_settings(tmp_path, cv_folds=3)
    database = Path(settings.resolved_tracking_uri().removeprefix("sqlite:///"))
    process = subprocess.Popen(
        [womac_command(), "train"],  # the default cohort: simulated and written to generated/
        cwd=tmp_path,
        env=settings_env(settings) | {"WOMAC_DEFAULT_COHORT_SIZE": "3000"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        if moment == "while writing the cohort":  # or just after: it is written in a blink
            wait_for((tmp_path / "generated").exists, process, "to simulating")
        elif moment == "while fitting":  # the simulated cohort is written; cross-validation runs
            wait_for(lambda: len(list(tmp_path.glob("generated/*.csv"))) == 2, process, "a cohort")
            time.sleep(0.5)
        else:  # MLflow writes from the run's start to the registration's end, a few seconds
            wait_for(lambda: stored(database, "runs") > 0, process, "to MLflow")
            if moment == "while MLflow writes":
                time.sleep(0.7)
            elif moment == "while the model is logged":  # registration comes next
                wait_for(lambda: stored(database, "logged_models") > 0, process, "to the model")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:  # a missed moment must not leave a training running
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode == 0:
        pytest.skip(f"training finished before the signal ({moment}); nothing to interrupt")
    assert process.returncode == 130, stderr.decode()[-1500:]
    assert "nothing was registered" in stderr.decode()
    assert versions(settings) == []
    assert [*tmp_path.rglob("*.tmp"), *tmp_path.rglob("*.creating")] == []
    for path in (tmp_path / "generated").glob("*.csv"):  # cohort and oracle: whole or absent
        assert len(pd.read_csv(path)) == 3000
    if database.exists():  # the training run that was cut is closed as killed, none left open
        client = registry_client(settings)
        experiments = [e.experiment_id for e in client.search_experiments()]
        for run in client.search_runs(experiments):
            assert run.info.status != "RUNNING"
            if "mlflow.parentRunId" not in run.data.tags:  # candidates may have finished
                assert run.info.status == "KILLED"


@pytest.mark.e2e
def test_two_trainings_at_once_on_one_store_both_finish_and_the_registry_stays_consistent(
    cohort_file: Path, tmp_path: Path
) -> None:
    settings = store_settings(tmp_path, cv_folds=2)
    other = tmp_path / "other.csv"
    simulate_cohort(SMALL, 6161)[0].to_csv(other, index=False)
    # Two trainings on two cores: OpenMP threads that spin while they wait for work would
    # take turns with each other's for minutes; passive ones sleep (same result, faster).
    env = settings_env(settings) | {"OMP_WAIT_POLICY": "PASSIVE"}
    processes = [
        subprocess.Popen(
            [womac_command(), "train", "--data", str(data)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for data in (cohort_file, other)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()[-2000:]
    registered = versions(settings)
    assert sorted(int(v.version) for v in registered) == [1, 2]
    client = registry_client(settings)
    for version in registered:
        assert client.get_run(version.run_id).info.status == "FINISHED"
        assert version.tags["promotion"] in {"champion", "not promoted"}
        assert version.tags["promotion_reason"]
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["promotion"] == "champion"


def test_a_store_cut_while_its_tables_are_built_is_never_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow builds a new store by migrations; stopped halfway, no later run could open it."""
    from mlflow.store.tracking import sqlalchemy_store

    def build_a_table_then_get_killed(self: object, db_uri: str, *args: object) -> None:
        with sqlite3.connect(db_uri.removeprefix("sqlite:///")) as connection:
            connection.execute("create table half_built (step text)")  # not an MLflow table
        raise KeyboardInterrupt

    monkeypatch.setattr(
        sqlalchemy_store.SqlAlchemyStore, "__init__", build_a_table_then_get_killed
    )
    settings = store_settings(tmp_path)
    uri = settings.resolved_tracking_uri()
    with pytest.raises(KeyboardInterrupt):
        store.create_store(uri, settings.resolved_artifact_root())
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.undo()

    store.create_store(uri, settings.resolved_artifact_root())  # then made whole
    assert registry_client(settings).search_experiments()
