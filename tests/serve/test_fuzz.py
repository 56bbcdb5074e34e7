"""The API against its own OpenAPI description, fuzzed by schemathesis.

Requests valid and invalid by the schema, on every route: no answer is a 5xx, every answer
(status, content type, body) is one the description documents, valid requests are accepted
and invalid ones refused. Once with the session's champion serving, once with no model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from tests.helpers import store_settings
from womac.serve.main import create_app
from womac.settings import Settings

# Bounded so the file takes well under a minute on two cores; a failure prints the request
# that reproduces it.
FUZZ = settings(
    max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


# The description does not depend on the model (only on whether a key is set), so it is
# loaded at collection; each test then sends its cases to an app started for it.
DESCRIPTION = create_app(Settings(_env_file=None, api_key=None)).openapi()
schema = schemathesis.openapi.from_dict(DESCRIPTION)


@pytest.fixture(scope="module")
def serving_app(trained: Any, store: Settings) -> Iterator[FastAPI]:
    """The service on the session's champion (schemathesis runs its lifespan once)."""
    yield create_app(store)
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def modelless_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The same service started on an empty folder: no registry, so no model."""
    empty: Path = tmp_path_factory.mktemp("no-registry")
    yield create_app(store_settings(empty))
    asgi.shutdown_lifespans()


@schema.parametrize()
@FUZZ
def test_every_answer_of_the_serving_api_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case, serving_app: FastAPI
) -> None:
    response = case.call_and_validate(app=serving_app)
    assert response.status_code < 500, response.text


@schema.parametrize()
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_without_a_model_every_answer_is_documented_and_says_what_to_do(
    case: schemathesis.Case, modelless_app: FastAPI
) -> None:
    # 503 is this service's documented answer here, so schemathesis' "no 5xx" check is off.
    response = case.call_and_validate(app=modelless_app, excluded_checks=[not_a_server_error])
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code == 503:
        assert "womac train" in response.json()["detail"]


def test_the_description_documents_every_refusal_a_client_can_get() -> None:
    raw = DESCRIPTION
    paths = raw["paths"]
    for path in ("/v1/predict", "/v1/predict/batch"):
        documented = set(paths[path]["post"]["responses"])
        assert {"200", "400", "413", "422", "503"} <= documented, (path, documented)
        problems = paths[path]["post"]["responses"]["422"]["content"]["application/json"]
        assert problems["schema"]["$ref"].endswith("/ValidationProblems")
    assert "503" in paths["/v1/model"]["get"]["responses"]
    # Without a key configured, nothing claims one is needed.
    assert "securitySchemes" not in raw.get("components", {})
    assert all(
        "security" not in operation for item in paths.values() for operation in item.values()
    )
    # The patient schema shows the contract's ranges as JSON Schema keywords clients read.
    injections = raw["components"]["schemas"]["PatientRequest"]["properties"]["injections"]
    assert {"type": "integer", "minimum": 1, "maximum": 5} in injections["anyOf"]
