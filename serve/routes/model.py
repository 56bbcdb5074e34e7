"""The serving model and its evaluation figures."""

from __future__ import annotations

from fastapi import APIRouter

from serve.dependencies import ModelDep
from serve.schemas import ModelCard

router = APIRouter(prefix="/v1", tags=["model"])


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in sorted(metrics.items()) if k.startswith(prefix)}


@router.get("/model", response_model=ModelCard)
def model_card(model: ModelDep) -> ModelCard:
    """Which model is serving, and how it did on held-out patients."""
    return ModelCard(
        name=model.name,
        version=model.version,
        run_id=model.run_id,
        alias=model.alias,
        candidate=model.candidate,
        fields_used=model.fields_used,
        held_out=_prefixed(model.metrics, "test_"),
        comparator_held_out=_prefixed(model.metrics, "comparator_test_"),
        oracle_held_out=_prefixed(model.metrics, "oracle_test_"),
        cross_validation=_prefixed(model.metrics, "cv_"),
    )
