"""A training killed outright (SIGKILL, lost power) is cleaned up by the next command.

Its run is closed as FAILED, a version it registered without a verdict is tagged abandoned
and never promoted, and what was cleaned is said in one line; a run whose training may be
alive (this host's live process, another machine's) or that is not ours is left alone.

One test kills a real ``womac train`` process; the others write the store as a killed
training leaves it, with MlflowClient, in a copy of one empty store (building a store takes
seconds).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from tests.helpers import registry_client, run_womac, settings_env, store_settings, womac_command
from womac.data.simulate import simulate_cohort
from womac.models.leftovers import (
    PID_TAG,
    Leftover,
    LeftoverKind,
    clean_store,
    process_tags,
    temporary_prefix,
    this_process,
)
from womac.models.registry import Command, no_champion_message, registered_versions
from womac.models.store import create_store
from womac.pipeline.cli import app
from womac.settings import Settings, get_settings

NAME = "womac-improvement"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = store_settings(tmp_path_factory.mktemp("empty-store"))
    create_store(settings.resolved_tracking_uri(), settings.resolved_artifact_root())
    return Path(settings.resolved_tracking_uri().removeprefix("sqlite:///"))


@pytest.fixture
def settings(empty_store: Path, tmp_path: Path) -> Iterator[Settings]:
    """A store of its own, and the process-wide settings read anew for CLI commands."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    get_settings.cache_clear()
    yield store_settings(tmp_path)
    get_settings.cache_clear()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def training_run(client: MlflowClient, settings: Settings, **tags: str) -> str:
    """A RUNNING training run, tagged as training tags it unless ``tags`` say otherwise."""
    experiment = client.get_experiment_by_name(settings.experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(settings.experiment_name)
    )
    run = client.create_run(
        experiment_id, run_name="train", tags={k: v for k, v in tags.items() if v}
    )
    return str(run.info.run_id)


def killed_tags(**changes: str) -> dict[str, str]:
    """The process tags of a training on this machine that was killed outright."""
    return process_tags() | {PID_TAG: str(dead_pid())} | changes


def register(client: MlflowClient, folder: Path, run_id: str | None) -> str:
    """A version registered from ``run_id`` with nothing tagged yet: training's first step."""
    try:
        client.get_registered_model(NAME)
    except Exception:
        client.create_registered_model(NAME)
    (folder / "model").mkdir(exist_ok=True)
    return str(client.create_model_version(NAME, str(folder / "model"), run_id=run_id).version)


def status(client: MlflowClient, run_id: str) -> str:
    return str(client.get_run(run_id).info.status)


def flat(text: str) -> str:
    return " ".join(ANSI.sub("", text).split())


def running_training(database: Path) -> str | None:
    """The id of a RUNNING training run already tagged with its process, read beside the
    writer without disturbing it (``None`` if there is none yet)."""
    if not database.exists():
        return None
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            row = connection.execute(
                "select runs.run_uuid from runs join tags on tags.run_uuid = runs.run_uuid "
                "where runs.status = 'RUNNING' and runs.name = 'train' and tags.key = ?",
                (PID_TAG,),
            ).fetchone()
    except sqlite3.Error:  # tables not created yet, or locked by the writer
        return None
    return None if row is None else str(row[0])


def wait_for_training_run(database: Path, training: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 300  # a busy machine: fitting 300 patients can take minutes
    while (run_id := running_training(database)) is None:
        assert training.poll() is None, "the training ended before its MLflow run was seen"
        assert time.monotonic() < deadline, "the training never started its MLflow run"
        time.sleep(0.05)
    return run_id


@pytest.mark.e2e
def test_a_training_killed_outright_is_cleaned_up_by_the_next_command(
    settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "cohort.csv"
    simulate_cohort(300, 5252)[0].to_csv(data, index=False)
    database = Path(settings.resolved_tracking_uri().removeprefix("sqlite:///"))
    env = settings_env(settings) | {"WOMAC_REFIT_ON_ALL": "false"}
    training = subprocess.Popen(
        [womac_command(), "train", "--data", str(data)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run_id = wait_for_training_run(database, training)
    finally:
        training.send_signal(signal.SIGKILL)  # no handler runs: the run stays RUNNING
        training.communicate(timeout=60)
    client = registry_client(settings)
    assert status(client, run_id) == "RUNNING"
    # Killed during registration: its version registered, no verdict written yet.
    version = register(client, tmp_path, run_id)
    # And a `womac predict` killed outright while writing scores to the same folder.
    scores = tmp_path / "scores"
    scores.mkdir()
    writer = replace(this_process(), pid=training.pid, started=0)
    handle, partial = tempfile.mkstemp(
        prefix=temporary_prefix("scores.csv", writer), suffix=".tmp", dir=scores
    )
    os.close(handle)

    result = run_womac(
        "predict", "--data", str(data), "--out", str(scores / "scores.csv"), cwd=tmp_path, env=env
    )

    said = flat(result.stdout)
    assert (
        f"note: cleaned up after a killed training: run {run_id} closed as FAILED; version "
        f"{version} tagged abandoned (it will never be promoted)" in said
    )
    assert (
        f"note: removed 1 temporary file left by a killed womac command in {scores}/ "
        "(an unfinished scores.csv)" in said
    )
    assert status(client, run_id) == "FAILED"
    assert "was killed" in client.get_run(run_id).data.tags["womac.closed_because"]
    tags = client.get_model_version(NAME, version).tags
    assert tags["promotion"] == "abandoned"
    assert run_id in tags["abandoned"]
    assert not Path(partial).exists()
    # No champion: the listing says the version was abandoned and offers no way to use it.
    assert result.returncode == 1
    refusal = flat(result.stderr)
    assert f"v{version} (" in refusal
    assert "abandoned, never promoted" in refusal
    assert "--model-uri" not in refusal
    assert "`womac train`" in refusal


def test_womac_promote_cleans_first_and_refuses_an_abandoned_version(
    settings: Settings, tmp_path: Path
) -> None:
    client = registry_client(settings)
    run_id = training_run(client, settings, **killed_tags())
    version = register(client, tmp_path, run_id)

    result = CliRunner().invoke(
        app,
        ["promote", version, "--reason", "the gates were too strict"],
        env=settings_env(settings) | {"COLUMNS": "400"},
    )

    said = flat(result.output)
    assert result.exit_code == 1, said
    assert f"run {run_id} closed as FAILED; version {version} tagged abandoned" in said
    assert f"error: version {version} of {NAME} is abandoned and never promoted" in said
    assert client.get_registered_model(NAME).aliases == {}
    listed = registered_versions(client, NAME)
    assert listed[0].promotion == "abandoned"
    message = no_champion_message(NAME, "champion", listed, Command.serve, store="here")
    assert "abandoned, never promoted: its training was killed" in message
    assert "womac promote" not in message


def test_runs_whose_training_may_be_alive_or_is_not_ours_are_left_alone(
    settings: Settings, tmp_path: Path
) -> None:
    client = registry_client(settings)
    alive = training_run(client, settings, **process_tags())  # this very process
    elsewhere = training_run(client, settings, **killed_tags(**{"womac.host": "lab-2"}))
    foreign = training_run(client, settings)  # somebody's own run, no womac tags
    legacy = training_run(client, settings, **{"code.womac_version": "0.9"})
    left_alone = [alive, elsewhere, foreign, legacy]

    assert clean_store(client, settings, store_locked=False, by="test") == []
    assert [status(client, run) for run in left_alone] == ["RUNNING"] * 4

    # Holding a local store's lock, no training can be live in it: a run from a release
    # without process tags is orphaned too; the others still may be alive.
    cleaned = clean_store(client, settings, store_locked=True, by="test")
    assert cleaned == [Leftover(LeftoverKind.run, legacy)]
    assert [status(client, run) for run in left_alone] == ["RUNNING"] * 3 + ["FAILED"]


def test_versions_are_settled_only_when_their_training_was_cut_short(
    settings: Settings, tmp_path: Path
) -> None:
    client = registry_client(settings)
    killed = training_run(client, settings, **killed_tags())
    child = client.create_run(
        client.get_run(killed).info.experiment_id, tags={"mlflow.parentRunId": killed}
    ).info.run_id
    abandoned = register(client, tmp_path, killed)
    made_champion = register(client, tmp_path, killed)  # the alias moved, then the kill
    client.set_registered_model_alias(NAME, "champion", made_champion)
    finished = training_run(client, settings, **killed_tags())
    client.set_terminated(finished, "FINISHED")
    by_a_person = register(client, tmp_path, finished)  # later, from a finished run
    no_run = register(client, tmp_path, None)
    still_registering = register(
        client, tmp_path, training_run(client, settings, **killed_tags(**{"womac.host": "lab-2"}))
    )

    cleaned = clean_store(client, settings, store_locked=True, by="test")

    assert cleaned == [
        Leftover(LeftoverKind.run, killed, candidate_runs=1),
        Leftover(LeftoverKind.version, abandoned),
        Leftover(LeftoverKind.champion, made_champion),
    ]
    assert status(client, child) == "FAILED"
    tags = {v: client.get_model_version(NAME, v).tags for v in (abandoned, made_champion)}
    assert tags[abandoned]["promotion"] == "abandoned"
    assert tags[abandoned]["abandoned_at"]
    assert tags[made_champion]["promotion"] == "champion"
    for version in (by_a_person, no_run, still_registering):
        assert "promotion" not in client.get_model_version(NAME, version).tags
    assert clean_store(client, settings, store_locked=True, by="test") == []  # done once


def test_cleaning_never_makes_a_command_fail(settings: Settings) -> None:
    class Unusable:
        def __getattr__(self, name: str) -> Any:
            raise OSError("attempt to write a readonly database")

    assert clean_store(Unusable(), settings, store_locked=True, by="test") == []


def test_a_training_run_names_its_process_and_records_its_verdict_last(
    trained: Any, store: Settings
) -> None:
    client = registry_client(store)
    tags = client.get_run(trained.run_id).data.tags
    assert tags["womac.pid"] == str(os.getpid())
    assert tags["womac.host"] == this_process().host
    assert tags["womac.started"] == str(this_process().started)
    version = client.get_model_version(NAME, trained.model_version)
    assert version.tags["promotion"] in {"champion", "not promoted"}
    assert "abandoned" not in version.tags
