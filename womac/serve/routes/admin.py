"""Operating the service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from womac.serve.reloading import reload_model
from womac.serve.schemas import ErrorMessage

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
async def reload(request: Request) -> dict[str, Any]:
    """Pick up a moved champion alias without a restart (no request fails meanwhile)."""
    outcome = await reload_model(request.app)
    if not outcome["reloaded"]:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=outcome["reason"])
    return outcome
