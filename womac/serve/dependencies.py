"""Typed dependencies of the routes (coroutines: no thread hand-off per request)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from womac.settings import Settings

if TYPE_CHECKING:
    from womac.serve.model import ServedModel

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


async def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def require_api_key(
    request: Request, api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None
) -> None:
    """401 unless the request carries the configured API key (compared in constant time)."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    if not api_key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="API key required: send it in the X-API-Key header.",
            headers={"WWW-Authenticate": "APIKey"},
        )
    if not secrets.compare_digest(api_key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="API key not accepted.",
            headers={"WWW-Authenticate": "APIKey"},
        )


async def get_model(request: Request) -> ServedModel:
    """The champion loaded at start-up; 503 with the command that makes one when absent."""
    model: ServedModel | None = request.app.state.model
    if model is None:
        detail: str = request.app.state.model_problem
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail)
    return model


SettingsDep = Annotated[Settings, Depends(get_settings)]
if TYPE_CHECKING:
    ModelDep = ServedModel
else:
    # The scoring stack is imported only once start-up has begun the registry lookup (see
    # serve.main); at run time the dependency is all FastAPI needs from this alias.
    ModelDep = Annotated[Any, Depends(get_model)]
