"""The registered model of a Spark job: resolved, downloaded and checked once, on the driver.

Its bytes are broadcast to the executors (:mod:`.tasks` loads them once per Python worker),
so every task scores with the same version, even if the alias moves during the job.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from womac.models.scoring import Scorer
from womac.models.store import connect, download_skops, loads_skops
from womac.pipeline.spark.errors import SparkEngineError


@dataclass(frozen=True, slots=True)
class Model:
    """A registered model's skops file, and its SHA-256 (the workers' cache key)."""

    data: bytes
    digest: str


def fetch_model(model_uri: str, tracking_uri: str, step: Callable[[str], None]) -> Model:
    """The registered skops file's bytes, checked on the driver to be a served model."""
    step("Loading the model")
    connect(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="womac-model-") as folder:
        try:
            data = download_skops(model_uri, folder).read_bytes()
        except ValueError as error:  # not a skops file: never unpickled
            raise SparkEngineError(f"cannot use model {model_uri}: {error}") from None
    Scorer(loads_skops(data))  # refuse here, once, what every worker would refuse
    return Model(data=data, digest=hashlib.sha256(data).hexdigest())
