"""The serving model and its evaluation figures."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import HTMLResponse, Response

from womac.serve.dependencies import ModelDep
from womac.serve.schemas import ErrorMessage, ModelCard

router = APIRouter(prefix="/v1", tags=["model"])


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in sorted(metrics.items()) if k.startswith(prefix)}


@router.get("/model", response_model=ModelCard)
def model_card(model: ModelDep) -> ModelCard:
    """Which model is serving, and how it did on held-out patients."""
    outcome = model.pipeline.named_steps["model"]
    return ModelCard(
        name=model.name,
        version=model.version,
        run_id=model.run_id,
        alias=model.alias,
        candidate=model.candidate,
        fields_used=model.fields_used,
        held_out={
            k: v
            for k, v in _prefixed(model.metrics, "test_").items()
            if not k.startswith("responder_") and k not in ("coverage", "interval_width")
        },
        comparator_held_out=_prefixed(model.metrics, "comparator_test_"),
        oracle_held_out=_prefixed(model.metrics, "oracle_test_"),
        cross_validation=_prefixed(model.metrics, "cv_"),
        interval={
            key: model.metrics[f"test_{key}"]
            for key in ("coverage", "interval_width")
            if f"test_{key}" in model.metrics
        },
        responder=_prefixed(model.metrics, "test_responder_"),
        interval_level=outcome.level,
        responder_definition={
            "min_points": outcome.responder_min_points,
            "min_fraction": outcome.responder_min_fraction,
        },
        monitoring=model.monitoring,
    )


@router.get(
    "/model/report",
    # Not HTMLResponse here: FastAPI would then document the JSON refusals as text/html too.
    response_class=Response,
    responses={
        200: {
            "description": "The report, one self-contained HTML page.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        404: {"model": ErrorMessage, "description": "The model's run has no report."},
    },
)
def model_report(model: ModelDep) -> HTMLResponse:
    """The champion's model report (TRIPOD+AI items), as one self-contained HTML page."""
    if model.report_html is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this model's run has no report")
    return HTMLResponse(model.report_html)
