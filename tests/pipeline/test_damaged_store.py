"""A store file that exists but is not an MLflow store is reported as damaged, never rebuilt.

MLflow takes a zero-byte or foreign ``mlflow.db`` for a new store and builds empty tables in
it; "no model is registered" would then hide the damage, and the file would be lost. Every
command that opens the store, and the service, refuses it in one line and leaves it as it is.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import run_womac, settings_env, store_settings
from womac.serve.main import create_app


def damaged(kind: str, path: Path) -> bytes:
    """Write a damaged store of one kind at ``path`` and return its bytes."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "foreign":
        path.write_bytes(b"patient_id,age\nQX-1,61\n")
    else:  # an SQLite database of something else
        with sqlite3.connect(path) as connection:
            connection.execute("create table visits (visit_id text)")
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["empty", "foreign", "other-sqlite"])
def test_commands_refuse_a_damaged_store_in_one_line_and_leave_it_as_it_is(
    tmp_path: Path, kind: str
) -> None:
    settings = store_settings(tmp_path)
    path = Path(settings.resolved_tracking_uri().removeprefix("sqlite:///"))
    before = damaged(kind, path)
    data = tmp_path / "cohort.csv"
    assert (
        run_womac(
            "simulate", "--n", "60", "--out", str(data), cwd=tmp_path, env=settings_env(settings)
        ).returncode
        == 0
    )

    for command in (
        ["train", "--data", str(data)],
        ["predict", "--data", str(data), "--out", str(tmp_path / "s.csv")],
    ):
        result = run_womac(*command, cwd=tmp_path, env=settings_env(settings))
        assert result.returncode == 1, result.stdout
        assert "is damaged" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert path.read_bytes() == before  # never rewritten


def test_the_service_says_the_store_is_damaged_and_leaves_it(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    path = Path(settings.resolved_tracking_uri().removeprefix("sqlite:///"))
    before = damaged("empty", path)

    with TestClient(create_app(settings)) as service:
        health = service.get("/health").json()
        refused = service.get("/v1/model")
        reload = service.post("/v1/admin/reload")

    assert health["model_loaded"] is False
    assert refused.status_code == 503
    assert "damaged (an empty file)" in refused.json()["detail"]
    assert reload.status_code == 503
    assert "damaged" in reload.json()["detail"]
    assert path.read_bytes() == before
