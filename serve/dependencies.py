"""Typed dependencies of the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from data.settings import Settings
from serve.model import ServedModel

NO_MODEL = (
    "No model is registered as champion yet. Train one with `womac train` "
    "(or `make run`), then restart the service."
)


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_model(request: Request) -> ServedModel:
    """The champion loaded at start-up; 503 with the command that makes one when absent."""
    model: ServedModel | None = request.app.state.model
    if model is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NO_MODEL)
    return model


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[ServedModel, Depends(get_model)]
