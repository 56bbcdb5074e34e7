"""Fixtures of the model tests: patients the model never saw, and the patients it trained on.

Patients always go through the contract (written as a CSV export, read back with
``read_cohort``), so the model sees them exactly as it sees a clinic's file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from womac.data.cohort import Cohort, model_input, read_cohort
from womac.data.contract import FOLLOW_UP_SUBSCALES
from womac.data.simulate import simulate_cohort
from womac.settings import Settings

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
