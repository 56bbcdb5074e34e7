"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from womac.serve.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    """Whether the service is up and a model is loaded."""
    model = request.app.state.model
    return Health(
        model_loaded=model is not None,
        model_version=model.version if model else None,
        auth_required=request.app.state.settings.api_key is not None,
    )


@router.head(
    "/health",
    operation_id="health_head",
    response_class=Response,
    responses={200: {"description": "The service is up (no body: health checkers send HEAD)."}},
)
async def health_head() -> Response:
    """Whether the service is up, for health checkers that send HEAD."""
    return Response(status_code=200)
