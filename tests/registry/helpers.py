"""What the registry tests share that is not a fixture: the champion's URI, an environment with
nothing of ours, a Python holding only the model's requirements, a tracking server's handle,
waiting for a server, and reading an export as a data scientist does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

CHAMPION = "models:/womac-improvement@champion"


PROJECT = Path(__file__).resolve().parents[2]


BIN = Path(sys.executable).parent


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment with nothing of ours: no WOMAC_ or MLFLOW_ settings, no
    PYTHONPATH, no active virtual environment."""
    ours = ("WOMAC_", "MLFLOW_", "PYTHONPATH", "VIRTUAL_ENV", "PYSPARK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return env | {"MLFLOW_DISABLE_TELEMETRY": "true"} | extra


@dataclass(frozen=True)
class CleanPython:
    """A virtual environment holding only the model's requirements, not this project."""

    python: Path

    def run(self, script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run ``script`` (a file in ``cwd``) as a data scientist would: ``python script.py``."""
        return subprocess.run(
            [str(self.python), script],
            cwd=cwd,
            env=clean_env(**env),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


@dataclass(frozen=True)
class TrackingServer:
    """A running ``mlflow server``: its URL and where it keeps runs and artifacts."""

    url: str
    artifacts: Path
    process: subprocess.Popen[bytes]


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Wait until ``url`` answers 200; fail with the log's tail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer:\n{log.read_text()[-3000:]}")


def read_export(path: Path) -> pd.DataFrame:
    """A cohort export as a data scientist reads it: plain ``pd.read_csv``."""
    return pd.read_csv(path)
