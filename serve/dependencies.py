"""Typed dependencies of the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from data.settings import Settings
from serve.model import ServedModel


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_model(request: Request) -> ServedModel:
    """The champion loaded at start-up; 503 with the command that makes one when absent."""
    model: ServedModel | None = request.app.state.model
    if model is None:
        detail: str = request.app.state.model_problem
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail)
    return model


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[ServedModel, Depends(get_model)]
