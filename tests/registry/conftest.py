"""Fixtures of the registry tests: the champion as MLflow's own tools see it, a Python that
has only the model's own requirements, a real ``mlflow server`` and a real PostgreSQL.

Each is started once per test session, on loopback, and stopped by its PID at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port
from tests.registry.helpers import (
    BIN,
    CHAMPION,
    PROJECT,
    CleanPython,
    TrackingServer,
    clean_env,
    wait_for,
)
from womac.data.contract import FOLLOW_UP_SUBSCALES, PREDICTORS
from womac.data.simulate import simulate_cohort
from womac.settings import Settings


@pytest.fixture(scope="session")
def cohort_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clinic's export of 3,000 simulated patients to score (no 12-month scores): about a
    quarter with their optional fields left blank, and some with a blank KL grade."""
    frame, _ = simulate_cohort(3000, 777001)
    frame = frame.drop(columns=list(FOLLOW_UP_SUBSCALES))
    frame = frame.dropna(subset=["age", "bmi", "womac_function_0"]).reset_index(drop=True)
    optional = [spec.name for spec in PREDICTORS if not spec.required]
    frame.loc[frame.index % 4 == 1, optional] = None
    frame.loc[frame.index % 9 == 2, "kl_grade"] = None
    path = tmp_path_factory.mktemp("export") / "patients.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def champion_dir(trained: Any, store: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The champion's registered files, as MLflow downloads them."""
    import mlflow.artifacts

    uri = store.resolved_tracking_uri()
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=CHAMPION,
        dst_path=str(tmp_path_factory.mktemp("champion")),
        tracking_uri=uri,
        registry_uri=uri,
    )
    return Path(local)


@pytest.fixture(scope="session")
def clean_python(champion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CleanPython:
    """A fresh environment made from the champion's own ``requirements.txt`` alone.

    Versions the requirements leave open (MLflow's own dependencies) are held to this
    project's lock, so the environment comes from uv's cache without a network.
    """
    uv = shutil.which("uv") or str(PROJECT / ".tools" / "bin" / "uv")
    folder = tmp_path_factory.mktemp("clean-python")
    constraints = folder / "constraints.txt"
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-hashes", "--no-emit-project", "--all-extras"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    )
    constraints.write_text(exported.stdout)
    venv = folder / "venv"
    python = venv / "bin" / "python"
    env = clean_env(UV_PYTHON_DOWNLOADS="never")
    for command in (
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [
            *(uv, "pip", "install", "--quiet", "--python", str(python)),
            *("-r", str(champion_dir / "requirements.txt"), "-c", str(constraints)),
        ],
    ):
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)
    return CleanPython(python)


# -- a real tracking server -------------------------------------------------------------


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """``mlflow server`` on a loopback port, with its own store and artifact destination."""
    folder = tmp_path_factory.mktemp("tracking-server")
    port = free_port()
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [
            *(str(BIN / "mlflow"), "server"),
            *("--backend-store-uri", f"sqlite:///{folder / 'server.db'}"),
            *("--artifacts-destination", str(folder / "artifacts")),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        cwd=folder,
        env=clean_env(PATH=f"{BIN}:{os.environ['PATH']}"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = TrackingServer(f"http://127.0.0.1:{port}", folder / "artifacts", process)
    try:
        wait_for(f"{server.url}/health", process, folder / "server.log")
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


# -- a real PostgreSQL ------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own (Debian's package) on a loopback port: its URI.

    As root (CI), the server runs as the ``postgres`` system user the package creates.
    """
    binaries = _postgres_bin()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="womac-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_owner, *command], check=True, capture_output=True, timeout=120)

    run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
    run(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "log"),
        "-w",
        "start",
    )
    try:
        run(
            str(binaries / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "womac",
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/womac"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
