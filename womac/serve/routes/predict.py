"""Predictions for patients."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic_core import to_json

from womac.serve.bodies import body_of, request_body
from womac.serve.dependencies import ModelDep, SettingsDep
from womac.serve.schemas import (
    BODY_REFUSALS,
    BatchPrediction,
    BatchRequest,
    PatientRequest,
    Prediction,
)

router = APIRouter(prefix="/v1", tags=["predict"])


PatientBody = Annotated[PatientRequest, Depends(body_of(PatientRequest))]
BatchBody = Annotated[BatchRequest, Depends(body_of(BatchRequest, rows="patients"))]


@router.post(
    "/predict",
    response_model=Prediction,
    responses=BODY_REFUSALS,
    openapi_extra=request_body(PatientRequest),
)
async def predict(model: ModelDep, patient: PatientBody) -> Response:
    """Expected 12-month WOMAC improvement for one patient, explained per field."""
    # About a millisecond of NumPy: cheaper on the event loop than a thread hand-off. The
    # batch route below stays a plain function, so large batches run in the thread pool.
    return _json(model.predict([patient.model_dump()])[0])


@router.post(
    "/predict/batch",
    response_model=BatchPrediction,
    responses=BODY_REFUSALS,
    openapi_extra=request_body(BatchRequest),
)
def predict_batch(model: ModelDep, settings: SettingsDep, batch: BatchBody) -> Response:
    """Predictions for several patients, in the order sent."""
    if len(batch.patients) > settings.max_batch_size:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=too_many_patients(settings.max_batch_size, len(batch.patients)),
        )
    answers = model.predict([patient.model_dump() for patient in batch.patients])
    return _json({"predictions": answers})


def too_many_patients(limit: int, count: int) -> str:
    """What a client is told when its batch holds more patients than the service takes."""
    return (
        f"Too many patients: at most {limit} per batch (WOMAC_MAX_BATCH_SIZE); "
        f"this one has {count}. Split it."
    )


def _json(answer: dict[str, Any]) -> Response:
    """The scorer's answer serialized by pydantic's own (Rust) encoder, as it is.

    The scorer builds it in the response model's shape from plain Python values (the tests
    check every answer against it); validating it again per request, or FastAPI's
    ``jsonable_encoder``, would cost more than the JSON itself.
    """
    return Response(to_json(answer), media_type="application/json")
