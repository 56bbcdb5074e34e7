"""Fixtures of the service tests: the app on the session's trained store, and a patient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from womac.data.contract import as_request
from womac.data.simulate import simulate_cohort
from womac.serve.main import create_app
from womac.settings import Settings

PATIENT_SEED = 424242  # never used for training


@pytest.fixture(scope="session")
def client(trained: Any, store: Settings) -> Iterator[TestClient]:
    """The service on the session's store; the lifespan loads the champion just trained."""
    with TestClient(create_app(store)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def patients() -> list[dict[str, Any]]:
    """Requests for simulated patients with every field known."""
    cohort, _ = simulate_cohort(40, PATIENT_SEED)
    rows = [as_request(row) for row in cohort.to_dict("records")]
    return [row for row in rows if all(value is not None for value in row.values())]


@pytest.fixture
def patient(patients: list[dict[str, Any]]) -> dict[str, Any]:
    """One request with every field known (a fresh copy per test)."""
    return dict(patients[0])
