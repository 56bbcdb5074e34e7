"""Operating the service."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from womac.serve.reloading import reload_model
from womac.serve.schemas import ErrorMessage, Reloaded

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reload",
    responses={
        503: {
            "model": ErrorMessage,
            "description": "The new champion cannot be loaded; the old one serves on.",
        }
    },
)
async def reload(request: Request) -> Reloaded:
    """Pick up a moved champion alias without a restart (no request fails meanwhile)."""
    outcome = await reload_model(request.app)
    if not outcome.reloaded or outcome.serving_version is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=outcome.reason)
    return Reloaded(
        serving_version=outcome.serving_version, previous_version=outcome.previous_version
    )
