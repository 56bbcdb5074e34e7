"""Finding the champion in MLflow, in a child process started first thing at start-up.

The lookup (MLflow and its SQLAlchemy store: ~2 s of imports) runs on one core while the
service imports scikit-learn, skops and LightGBM (~2 s) on the other; the service itself
never imports MLflow. This module stays light so that starting the child costs nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from womac.models.registry import Command, train_advice
from womac.models.tracking import sqlite_file
from womac.settings import Settings

LOOKUP_TIMEOUT_S = 120.0


class ChampionLookup:
    """A running lookup of ``models:/<name>@<alias>``; :meth:`result` waits for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        uri = settings.resolved_tracking_uri()
        self.process: subprocess.Popen[bytes] | None = None
        self.early: dict[str, Any] | None = None
        database = sqlite_file(uri)
        if database is not None and not database.exists():
            # Do not create an empty tracking store just by starting the service.
            wanted = f"{settings.model_name}@{settings.champion_alias}"
            self.early = {
                "status": "absent",
                "message": f"No MLflow store at {uri}, so no model is registered as {wanted}. "
                + train_advice(Command.serve),
            }
            return
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "womac.models.store",
                "resolve",
                "--tracking-uri",
                uri,
                "--name",
                settings.model_name,
                "--alias",
                settings.champion_alias,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=os.environ
            | {"MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")},
        )

    def result(self) -> dict[str, Any]:
        """The champion's details, or why there are none (``status`` says which)."""
        if self.early is not None:
            return self.early
        assert self.process is not None
        try:
            output, _ = self.process.communicate(timeout=LOOKUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return {"status": "error", "message": "the model registry did not answer in time"}
        try:
            answer: dict[str, Any] = json.loads(output)
        except json.JSONDecodeError:
            return {"status": "error", "message": "the model registry lookup failed"}
        return answer
