"""Shared fixtures: a real MLflow SQLite store in a temporary folder, one training run on the
simulated default cohort, patients no model has seen, one local Spark session.

Helpers that are not fixtures live in ``tests/helpers.py``, a plain module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from tests.helpers import FRESH_SEED, FRESH_SIZE, read_simulated, store_settings
from womac.data.cohort import Cohort, model_input, read_cohort
from womac.settings import Settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A fresh, empty MLflow store shared by the session's training run."""
    return store_settings(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def trained(store: Settings):  # type: ignore[no-untyped-def]
    """One training run on the simulated default cohort, registered as champion."""
    from womac.pipeline.train import train

    return train(None, store)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The test session's one local[2] Spark session (skipped when pyspark is not installed)."""
    pytest.importorskip("pyspark")
    from womac.pipeline.spark import start_spark

    session = start_spark("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def fresh_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """500 simulated patients from a seed never used for training, read as an export."""
    path = tmp_path_factory.mktemp("fresh") / "fresh.csv"
    return read_simulated(path, FRESH_SIZE, FRESH_SEED)


@pytest.fixture(scope="session")
def fresh_patients(fresh_cohort: Cohort) -> pd.DataFrame:
    """Model input of the fresh patients (every one has all required fields)."""
    assert fresh_cohort.complete.all()
    return model_input(fresh_cohort.frame)


@pytest.fixture(scope="session")
def training_patients(trained: Any, store: Settings) -> pd.DataFrame:
    """Model input of the patients of the session's training cohort that were usable."""
    cohort = read_cohort(store.generated_dir / trained.data.source, require_outcomes=True)
    return model_input(cohort.frame[cohort.trainable]).reset_index(drop=True)
