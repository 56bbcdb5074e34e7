"""Request bodies cost work in proportion to what they are, and never hold the event loop."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, model_validator

from womac.serve.bodies import LARGE_BODY_BYTES, MAX_PROBLEMS, RefusedBodyError, body_of
from womac.serve.main import _refused_body


class Probe(BaseModel):
    """A body that records whether it was validated on a thread running the event loop."""

    model_config = ConfigDict(extra="forbid")
    note: str

    @model_validator(mode="before")
    @classmethod
    def _record(cls, value: Any) -> Any:
        try:
            asyncio.get_running_loop()
            ON_LOOP.append(True)
        except RuntimeError:
            ON_LOOP.append(False)
        return value


ON_LOOP: list[bool] = []


def probe_client() -> TestClient:
    app = FastAPI()
    app.add_exception_handler(RefusedBodyError, _refused_body)

    @app.post("/probe")
    async def probe(body: Annotated[Probe, Depends(body_of(Probe))]) -> dict[str, int]:
        return {"length": len(body.note)}

    return TestClient(app)


def test_a_large_body_is_parsed_and_validated_off_the_event_loop() -> None:
    ON_LOOP.clear()
    with probe_client() as client:
        small = client.post("/probe", json={"note": "x"})
        large = client.post("/probe", json={"note": "x" * (2 * LARGE_BODY_BYTES)})
    assert small.status_code == large.status_code == 200
    assert ON_LOOP == [True, False]  # the small one inline (no thread hand-off), not the large


def test_a_huge_refusal_is_bounded_and_counts_every_problem_exactly(
    client: TestClient, patient: dict[str, Any]
) -> None:
    """2,000 patients, each with two unknown keys and a bad age: 4,000 problems, 20 listed."""
    bad = patient | {"age": 640, "a": 1, "b": 2}
    body = json.dumps({"patients": [bad] * 2000}, separators=(",", ":"))
    assert len(body) > LARGE_BODY_BYTES
    response = client.post(
        "/v1/predict/batch", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    answer = response.json()
    assert len(answer["detail"]) == MAX_PROBLEMS
    assert answer["more_problems"] == 4_000 - MAX_PROBLEMS
    assert len(response.content) < 8_000
    first = answer["detail"][:2]
    assert {problem["field"] for problem in first} == {"patients.0", "patients.0.age"}
    assert all(problem["loc"][0] == "body" for problem in answer["detail"])


def test_a_body_sent_as_another_media_type_is_told_to_send_json(
    client: TestClient, patient: dict[str, Any]
) -> None:
    response = client.post(
        "/v1/predict", content=json.dumps(patient), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["field"] == "body"
    assert "application/json" in problem["msg"]
    # A JSON media type with parameters, or a +json one, is JSON.
    for media in ("application/json; charset=utf-8", "application/merge-patch+json"):
        answered = client.post(
            "/v1/predict", content=json.dumps(patient), headers={"Content-Type": media}
        )
        assert answered.status_code == 200, media


def test_the_api_description_still_documents_both_request_bodies(client: TestClient) -> None:
    description = client.get("/openapi.json").json()
    schemas = description["components"]["schemas"]
    for path, model in (("/v1/predict", "PatientRequest"), ("/v1/predict/batch", "BatchRequest")):
        body = description["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"
        }
        assert model in schemas
    assert schemas["BatchRequest"]["properties"]["patients"]["items"] == {
        "$ref": "#/components/schemas/PatientRequest"
    }
    assert "age" in schemas["PatientRequest"]["required"]
