"""``POST /v1/predict`` as a clinician's client uses it."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from womac.data.contract import FIELD_BY_NAME, PREDICTOR_NAMES
from womac.serve.main import create_app
from womac.settings import Settings

PREDICT = "/v1/predict"


def test_prediction_is_explained_by_one_contribution_per_field(
    client: TestClient, patient: dict[str, Any], trained: Any
) -> None:
    response = client.post(PREDICT, json=patient)

    assert response.status_code == 200, response.text
    answer = response.json()
    expected = answer["expected_improvement"]
    explanation = answer["explanation"]
    contributions = explanation["contributions"]
    assert np.isfinite(expected)
    total = explanation["base_value"] + sum(c["contribution"] for c in contributions)
    assert total == pytest.approx(expected, abs=1e-6)
    assert Counter(c["feature"] for c in contributions) == Counter(PREDICTOR_NAMES)
    for contribution in contributions:
        name = contribution["feature"]
        assert contribution["value"] == patient[name], name
        assert contribution["label"] == FIELD_BY_NAME[name].label
    assert answer["model"] == {
        "name": "womac-improvement",
        "version": trained.model_version,
        "run_id": trained.run_id,
    }


def test_served_prediction_is_the_trained_models(
    client: TestClient, patients: list[dict[str, Any]], trained: Any
) -> None:
    pipeline = trained.pipeline
    for patient in patients[:5]:
        answer = client.post(PREDICT, json=patient).json()
        frame = pd.DataFrame([{name: patient[name] for name in PREDICTOR_NAMES}])
        frame = frame.astype({n: float for n in PREDICTOR_NAMES if frame[n].dtype == bool})
        assert answer["expected_improvement"] == pytest.approx(
            float(pipeline.predict(frame)[0]), abs=1e-9
        )


def test_patient_with_only_the_required_fields_is_answered(
    client: TestClient, patient: dict[str, Any]
) -> None:
    required = {k: v for k, v in patient.items() if FIELD_BY_NAME[k].required}
    required["kl_grade"] = None  # must be sent, may be unknown
    response = client.post(PREDICT, json=required)
    assert response.status_code == 200, response.text
    answer = response.json()
    contributions = answer["explanation"]["contributions"]
    total = answer["explanation"]["base_value"] + sum(c["contribution"] for c in contributions)
    assert total == pytest.approx(answer["expected_improvement"], abs=1e-6)
    by_field = {c["feature"]: c for c in contributions}
    assert by_field["kl_grade"]["value"] is None
    assert by_field["symptom_years"]["value"] is None


# -- bad input --------------------------------------------------------------------------

EXTRA_FIELD, EXTRA_VALUE = "favourite_colour", "teal-7731"
BAD_REQUESTS: dict[str, tuple[dict[str, Any], str]] = {
    "age out of range": ({"age": 640}, "age"),
    "sex not a category": ({"sex": "F"}, "sex"),
    "bmi not a number": ({"bmi": "abc"}, "bmi"),
    # A key that is not a field is not named (it could hold anything): the body is.
    "unknown field": ({EXTRA_FIELD: EXTRA_VALUE}, "body"),
}


def _strings(node: Any) -> list[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [str(key), *_strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [str(node)]


def assert_values_not_echoed(body: dict[str, Any], values: list[str]) -> None:
    """A 422 body names fields, never what was sent for them (it may be patient data)."""
    text = json.dumps(body)
    strings = _strings(body)
    for value in values:
        assert value not in strings, value
        assert f"'{value}'" not in text, value
        assert f'"{value}"' not in text, value
        if len(value) > 2:
            assert value not in text, value


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_value_is_refused_naming_the_field_without_echoing_it(
    client: TestClient, patient: dict[str, Any], case: str
) -> None:
    change, field = BAD_REQUESTS[case]
    response = client.post(PREDICT, json=patient | change)
    assert response.status_code == 422
    body = response.json()
    assert [issue["field"] for issue in body["detail"]] == [field]
    assert all(issue["msg"] for issue in body["detail"])
    unknown_keys = [key for key in change if key not in patient]
    assert_values_not_echoed(body, [str(v) for v in change.values()] + unknown_keys)


def test_unknown_keys_are_one_problem_with_their_count_whatever_their_number(
    client: TestClient, patient: dict[str, Any]
) -> None:
    """Half a million unknown keys would once make half a million errors (and echo each)."""
    extra = {f"note-{i}": i for i in range(5000)}
    response = client.post(PREDICT, json=patient | extra)

    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == [
        {
            "field": "body",
            "loc": ["body"],
            "msg": "5000 unknown fields: only the contract's fields are accepted "
            "(see /openapi.json)",
            "type": "extra_forbidden",
        }
    ]
    assert len(response.content) < 1000


def test_a_422_lists_at_most_twenty_problems_and_counts_the_rest(
    client: TestClient, patient: dict[str, Any]
) -> None:
    bad = patient | {"age": 640}
    response = client.post("/v1/predict/batch", json={"patients": [bad] * 60})

    assert response.status_code == 422
    body = response.json()
    assert len(body["detail"]) == 20
    assert body["more_problems"] == 40
    assert {issue["field"] for issue in body["detail"]} == {f"patients.{i}.age" for i in range(20)}


def test_missing_required_field_is_refused_naming_it(
    client: TestClient, patient: dict[str, Any]
) -> None:
    request = {k: v for k, v in patient.items() if k != "kl_grade"}
    response = client.post(PREDICT, json=request)
    assert response.status_code == 422
    assert [issue["field"] for issue in response.json()["detail"]] == ["kl_grade"]


def test_every_bad_field_is_named_at_once(client: TestClient, patient: dict[str, Any]) -> None:
    request = {k: v for k, v in patient.items() if k != "kl_grade"}
    for change, _ in BAD_REQUESTS.values():
        request |= change
    response = client.post(PREDICT, json=request)
    assert response.status_code == 422
    body = response.json()
    named = {issue["field"] for issue in body["detail"]}
    assert named == {"age", "sex", "bmi", "kl_grade", "body"}  # "body": the unknown key
    sent = [str(v) for change, _ in BAD_REQUESTS.values() for v in change.values()]
    assert_values_not_echoed(body, [*sent, EXTRA_FIELD])


# -- batches ----------------------------------------------------------------------------


def test_batch_answers_each_patient_in_order_as_single_requests_do(
    client: TestClient, patients: list[dict[str, Any]]
) -> None:
    batch = patients[:3]
    response = client.post(f"{PREDICT}/batch", json={"patients": batch})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["patient_id"] for p in predictions] == [p["patient_id"] for p in batch]
    for patient, prediction in zip(batch, predictions, strict=True):
        single = client.post(PREDICT, json=patient).json()
        assert prediction["expected_improvement"] == pytest.approx(
            single["expected_improvement"], abs=1e-9
        )


def test_batch_over_the_size_limit_is_refused(
    store: Settings, trained: Any, patients: list[dict[str, Any]]
) -> None:
    limited = store.model_copy(update={"max_batch_size": 2})
    with TestClient(create_app(limited)) as service:
        response = service.post(f"{PREDICT}/batch", json={"patients": patients[:3]})
    assert response.status_code == 413
    assert "2" in response.json()["detail"]


def test_every_answer_is_exactly_the_documented_response_model(
    client: TestClient, patients: list[dict[str, Any]]
) -> None:
    """Answers are serialized as the scorer builds them: each must be the response model,
    field for field (nothing missing, nothing extra, the same JSON once validated)."""
    from womac.serve.schemas import BatchPrediction, Prediction

    sparse = {k: v for k, v in patients[1].items() if FIELD_BY_NAME[k].required}
    cases = [patients[0], sparse | {"kl_grade": None}, patients[2] | {"bmi": 69.0}]
    for request in cases:
        answer = client.post(PREDICT, json=request).json()
        assert Prediction.model_validate(answer).model_dump(mode="json") == answer
    batch = client.post(f"{PREDICT}/batch", json={"patients": cases}).json()
    assert BatchPrediction.model_validate(batch).model_dump(mode="json") == batch


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"age": ' + b"9" * 5000 + b"}", id="5000-digit-integer"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100000-deep"),
    ],
)
def test_valid_json_the_parser_cannot_take_is_a_422_as_documented(
    client: TestClient, body: bytes
) -> None:
    response = client.post(PREDICT, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body"
    assert "9999" not in response.text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_a_body_not_in_utf8_is_refused_as_the_api_says(
    client: TestClient, patient: dict[str, Any], encoding: str
) -> None:
    body = json.dumps(patient).encode(encoding)
    response = client.post(PREDICT, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400  # as for any body that is not UTF-8 (README)
    assert "UTF-8" in response.json()["detail"]


def test_the_same_patient_in_utf8_is_answered(client: TestClient, patient: dict[str, Any]) -> None:
    body = json.dumps(patient).encode("utf-8")
    response = client.post(PREDICT, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200


def test_a_batch_of_half_a_million_tiny_elements_is_refused_before_any_is_validated(
    client: TestClient,
) -> None:
    """The count is checked first (the schema's maxItems): no per-element work, one problem."""
    body = '{"patients": [' + ",".join(["1"] * 400_000) + "]}"
    started = time.perf_counter()
    response = client.post(
        f"{PREDICT}/batch", content=body, headers={"Content-Type": "application/json"}
    )
    seconds = time.perf_counter() - started

    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["field"] == "patients"
    assert "at most 5000 items" in problem["msg"]
    assert len(response.content) < 500
    assert seconds < 0.5
