"""``mlflow models serve`` on the champion answers as ``womac serve`` does.

Both real servers run on loopback ports from the session's store: MLflow's scoring server on
``/invocations`` gives the same numbers, eligibility and warnings as ``/v1/predict``, and
refuses what the API refuses, naming the field and rule, with no stack trace and no value of
the patient's sent back.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port, running_server
from tests.registry.helpers import BIN, CHAMPION, clean_env, read_export, wait_for
from womac.data.contract import PREDICTOR_NAMES, as_request
from womac.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def model_server(
    trained: Any, store: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """MLflow's scoring server on the champion, in this environment (``--env-manager local``)."""
    folder = tmp_path_factory.mktemp("model-server")
    port = free_port()
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(str(BIN / "mlflow"), "models", "serve", "-m", CHAMPION),
                *("--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)),
            ],
            cwd=folder,
            env=clean_env(
                PATH=f"{BIN}:{os.environ['PATH']}",
                MLFLOW_TRACKING_URI=store.resolved_tracking_uri(),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/ping", process, log_path)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def womac_server(
    trained: Any, store: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with running_server(store, tmp_path_factory.mktemp("womac-server")) as url:
        yield url


@pytest.fixture(scope="module")
def requests_(cohort_export: Path) -> list[dict[str, Any]]:
    """Forty patients of the export as JSON requests (unknown optional fields as null)."""
    return [as_request(row) for row in read_export(cohort_export).head(40).to_dict("records")]


def invocations(url: str, records: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json={"dataframe_records": records}, timeout=60)


def test_invocations_give_the_numbers_of_v1_predict(
    model_server: str, womac_server: str, requests_: list[dict[str, Any]]
) -> None:
    scored = invocations(model_server, requests_)
    assert scored.status_code == 200, scored.text
    rows = scored.json()["predictions"]
    answered = httpx.post(
        f"{womac_server}/v1/predict/batch", json={"patients": requests_}, timeout=60
    )
    assert answered.status_code == 200, answered.text

    for row, answer in zip(rows, answered.json()["predictions"], strict=True):
        assert row["expected_improvement"] == answer["expected_improvement"]
        assert row["interval_lower"] == answer["interval"]["lower"]
        assert row["interval_upper"] == answer["interval"]["upper"]
        assert row["level"] == answer["interval"]["level"]
        assert row["p_clinically_important"] == answer["p_clinically_important"]
        assert row["candidate"] is answer["eligibility"]["candidate"]
        assert row["reasons"] == answer["eligibility"]["reasons"]
        assert row["warnings"] == answer["warnings"]
        assert row["base_value"] == answer["explanation"]["base_value"]
        by_field = {
            c["feature"]: c["contribution"] for c in answer["explanation"]["contributions"]
        }
        assert {name: row[f"contribution_{name}"] for name in PREDICTOR_NAMES} == by_field


def test_optional_fields_may_be_left_out(
    model_server: str, requests_: list[dict[str, Any]]
) -> None:
    required = {"age", "sex", "bmi", "joint", "kl_grade"} | {
        n for n in requests_[0] if n.startswith("womac_") and n.endswith("_0")
    }
    sparse = [{k: v for k, v in r.items() if k in required} for r in requests_[:3]]
    scored = invocations(model_server, sparse)
    assert scored.status_code == 200, scored.text
    assert len(scored.json()["predictions"]) == 3


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"age": 300}, "age: out of range"),
        ({"joint": "elbow"}, "joint: not an allowed value"),
        ({"kl_grade": 7}, "kl_grade: out of range"),
        ({"bmi": None}, "bmi: must not be blank"),
        ({"age": "sixty"}, "age: not a number"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field_without_a_stack_trace_or_the_value(
    model_server: str, requests_: list[dict[str, Any]], change: dict[str, Any], named: str
) -> None:
    patient = requests_[0] | {"patient_id": "CANARY-0042"} | change
    refused = invocations(model_server, [patient])
    assert refused.status_code == 400
    body = refused.json()
    assert named in body["message"]
    assert "stack_trace" not in body
    assert "Traceback" not in refused.text
    assert "CANARY" not in refused.text
    for value in change.values():
        if isinstance(value, str):
            assert value not in refused.text


def test_a_missing_required_field_is_refused_by_name(
    model_server: str, requests_: list[dict[str, Any]]
) -> None:
    patient = {k: v for k, v in requests_[0].items() if k != "womac_function_0"}
    refused = invocations(model_server, [patient | {"patient_id": "CANARY-0043"}])
    assert refused.status_code == 400
    assert "womac_function_0: required column is missing" in refused.json()["message"]
    assert "stack_trace" not in refused.json()
    assert "CANARY" not in refused.text
