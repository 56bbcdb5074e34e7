"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from womac.serve.schemas import Health

router = APIRouter(tags=["health"])


@router.api_route("/health", methods=["GET", "HEAD"], response_model=Health)
async def health(request: Request) -> Health:
    """Whether the service is up and a model is loaded."""
    model = request.app.state.model
    return Health(
        model_loaded=model is not None,
        model_version=model.version if model else None,
        auth_required=request.app.state.settings.api_key is not None,
    )
