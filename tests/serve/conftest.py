"""Fixtures of the service tests: the app on the session's trained store, and a patient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from data.contract import FIELDS, Kind, Role
from data.settings import Settings
from data.simulate import simulate_cohort
from serve.main import create_app

PATIENT_SEED = 424242  # never used for training


def as_request(row: dict[str, Any]) -> dict[str, Any]:
    """A simulated cohort row as a client sends it: JSON types, ``None`` when unknown."""
    body: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.role is Role.OUTCOME:
            continue
        value = row[spec.name]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            body[spec.name] = None
        elif spec.kind is Kind.BOOLEAN:
            body[spec.name] = bool(value)
        elif spec.kind is Kind.INTEGER:
            body[spec.name] = int(value)
        elif spec.kind is Kind.NUMBER:
            body[spec.name] = float(value)
        else:
            body[spec.name] = str(value)
    return body


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
