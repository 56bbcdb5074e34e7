"""What tests share that is not a fixture: settings for a throwaway store, the environment of
a subprocess, running the installed ``womac`` and ``womac serve``, patients new to every model.

A plain module: tests import it as ``tests.helpers``; fixtures stay in the conftest files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from womac.data.cohort import Cohort, read_cohort
from womac.data.contract import FOLLOW_UP_SUBSCALES
from womac.data.simulate import simulate_cohort
from womac.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The simulator's default size (Settings.default_cohort_size). The clinical-trust acceptance
# test needs it: about 880 held-out patients, so the promotion gates judge coverage within
# 3 points, and a model whose interval and responder probability hold on 20,000 new patients.
# (At 1,000 patients the baseline-only comparator wins CV; the product reports that honestly.)
SESSION_COHORT = 5000


def store_settings(root: Path, **overrides: object) -> Settings:
    """Settings pointing every output into ``root``: store, artifacts, generated data."""
    values: dict[str, object] = {
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "artifact_root": root / "mlruns",
        "generated_dir": root / "generated",
        "default_cohort_size": SESSION_COHORT,
        "cv_folds": 3,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess (CLI or server) that should use ``settings``' store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WOMAC_", "MLFLOW_"))}
    env |= {
        "WOMAC_TRACKING_URI": settings.resolved_tracking_uri(),
        "WOMAC_ARTIFACT_ROOT": str(settings.artifact_root),
        "WOMAC_GENERATED_DIR": str(settings.generated_dir),
        "WOMAC_DEFAULT_COHORT_SIZE": str(settings.default_cohort_size),
        "WOMAC_CV_FOLDS": str(settings.cv_folds),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return env


def registry_client(settings: Settings) -> MlflowClient:
    """A client of ``settings``' tracking store and model registry (no global MLflow state)."""
    from mlflow import MlflowClient

    uri = settings.resolved_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def womac_command() -> str:
    """The installed ``womac`` console script of this environment."""
    return str(Path(sys.executable).parent / "womac")


def free_port() -> int:
    """A TCP port free on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running ``womac serve``: its base URL, its process and the file holding its output."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the process has written so far (stdout and stderr)."""
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serving(
    settings: Settings, cwd: Path, env: dict[str, str] | None = None, timeout: float = 90.0
) -> Iterator[Server]:
    """Start ``womac serve`` on 127.0.0.1 with ``settings``' store; stop it by PID at the end.

    Yields the process too (for signals and liveness) and the path of its combined output
    (for what it logged).
    """
    port = free_port()
    log = cwd / f"server-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [womac_command(), "serve", "--port", str(port)],
            cwd=cwd,
            env=settings_env(settings) | (env or {}),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        server = Server(f"http://127.0.0.1:{port}", process, log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {process.returncode}:\n{server.output()}"
                    )
                try:
                    if httpx.get(f"{server.url}/health", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not up after {timeout} s:\n{server.output()}")
                time.sleep(0.1)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def running_server(settings: Settings, cwd: Path, timeout: float = 90.0) -> Iterator[str]:
    """Start ``womac serve`` as a real uvicorn process; yield its base URL; stop it by PID."""
    with serving(settings, cwd, timeout=timeout) as server:
        yield server.url


def run_womac(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with a wide terminal; the caller checks the outcome."""
    return subprocess.run(
        [womac_command(), *args],
        cwd=cwd,
        env=env | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# A seed no training in this suite uses: these patients are new to every model.
FRESH_SEED = 987654
FRESH_SIZE = 500


def read_simulated(path: Path, n: int, seed: int, *, outcomes: bool = False) -> Cohort:
    """Simulate ``n`` patients, write them as a clinic export and read them back."""
    cohort, _ = simulate_cohort(n, seed)
    if not outcomes:
        cohort = cohort.drop(columns=list(FOLLOW_UP_SUBSCALES))
    cohort.to_csv(path, index=False)
    return read_cohort(path)
