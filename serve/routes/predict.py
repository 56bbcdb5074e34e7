"""Predictions for patients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.dependencies import ModelDep
from serve.schemas import PatientRequest, Prediction

router = APIRouter(prefix="/v1", tags=["predict"])


@router.post("/predict", response_model=Prediction)
def predict(patient: PatientRequest, model: ModelDep) -> dict[str, Any]:
    """Expected 12-month WOMAC improvement for one patient, explained per field."""
    return model.predict([patient.model_dump()])[0]
