"""Predictions for patients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from serve.dependencies import ModelDep, SettingsDep
from serve.schemas import BatchPrediction, BatchRequest, PatientRequest, Prediction

router = APIRouter(prefix="/v1", tags=["predict"])


@router.post("/predict", response_model=Prediction)
def predict(patient: PatientRequest, model: ModelDep) -> dict[str, Any]:
    """Expected 12-month WOMAC improvement for one patient, explained per field."""
    return model.predict([patient.model_dump()])[0]


@router.post(
    "/predict/batch",
    response_model=BatchPrediction,
    responses={413: {"description": "More patients than the batch limit."}},
)
def predict_batch(batch: BatchRequest, model: ModelDep, settings: SettingsDep) -> dict[str, Any]:
    """Predictions for several patients, in the order sent."""
    if len(batch.patients) > settings.max_batch_size:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"at most {settings.max_batch_size} patients per batch",
        )
    return {"predictions": model.predict([patient.model_dump() for patient in batch.patients])}
