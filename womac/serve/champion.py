"""Finding the champion in MLflow, in a child process started first thing at start-up.

The lookup (MLflow and its SQLAlchemy store: ~2 s of imports) runs on one core while the
service imports scikit-learn, skops and LightGBM (~2 s) on the other; the service itself
never imports MLflow. This module stays light so that starting the child costs nothing.

A process that has imported MLflow already (a notebook or a test session creating the app)
has nothing to overlap: the lookup runs in a thread of its own instead, MLflow's tracking and
registry URIs left as they were.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from pydantic import ValidationError

from womac.models.lookup import (
    ANSWER,
    ChampionFound,
    LookupFailed,
    LookupRequest,
    NoChampion,
    answer,
)
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
        self.early: NoChampion | None = None
        database = sqlite_file(uri)
        if database is not None and not database.exists():
            # Do not create an empty tracking store just by starting the service.
            wanted = f"{settings.model_name}@{settings.champion_alias}"
            self.early = NoChampion(
                message=f"No MLflow store at {uri}, so no model is registered as {wanted}. "
                + train_advice(Command.serve)
            )
            return
        self.request = LookupRequest(
            tracking_uri=uri, model_name=settings.model_name, alias=settings.champion_alias
        )
        self.inline: _InlineLookup | None = None
        if "mlflow" in sys.modules:  # its imports are paid for: no child to overlap them
            self.inline = _InlineLookup(self.request)
            return
        self.process = subprocess.Popen(
            [sys.executable, "-m", "womac.models.lookup"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=os.environ
            | {"MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")},
        )

    def result(self) -> ChampionFound | NoChampion | LookupFailed:
        """The champion's details, or why there are none."""
        if self.early is not None:
            return self.early
        if self.inline is not None:
            return self.inline.result(LOOKUP_TIMEOUT_S)
        assert self.process is not None
        try:
            output, _ = self.process.communicate(
                self.request.model_dump_json().encode(), timeout=LOOKUP_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return LookupFailed(message="the model registry did not answer in time")
        try:
            return ANSWER.validate_json(output)
        except ValidationError:  # the child died before answering, or answered garbage
            return LookupFailed(message="the model registry lookup failed")


class _InlineLookup:
    """The lookup in a daemon thread of this process (a registry that hangs keeps only it)."""

    def __init__(self, request: LookupRequest) -> None:
        self.found: ChampionFound | NoChampion | LookupFailed | None = None
        self.thread = threading.Thread(
            target=self._run, args=(request.model_dump_json(),), daemon=True
        )
        self.thread.start()

    def _run(self, request_json: str) -> None:
        import mlflow

        tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        try:
            self.found = answer(request_json)
        finally:  # the process's own MLflow settings, as they were
            mlflow.set_tracking_uri(tracking)
            mlflow.set_registry_uri(registry)

    def result(self, timeout: float) -> ChampionFound | NoChampion | LookupFailed:
        self.thread.join(timeout)
        if self.found is None:
            return LookupFailed(message="the model registry did not answer in time")
        return self.found
