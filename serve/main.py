"""The FastAPI application: the champion is loaded once, at start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from data.settings import Settings, get_settings
from serve.champion import ChampionLookup
from serve.dependencies import require_api_key
from serve.logs import RequestLog
from serve.routes import health, model, page, predict
from serve.routes.page import STATIC_DIR

logger = logging.getLogger("womac.serve")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; ``uvicorn serve.main:create_app --factory`` runs it."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Start the registry lookup first: it runs in a child process while this one
        # imports the scoring stack (scikit-learn, skops, LightGBM) below.
        lookup = ChampionLookup(settings)
        from serve.model import ModelUnavailableError, load_champion

        try:
            app.state.model = load_champion(settings, lookup)
        except ModelUnavailableError as problem:
            logger.error("serving without a model: %s", problem)
            app.state.model_problem = str(problem)
        yield

    app = FastAPI(
        title="womac",
        summary="Expected 12-month WOMAC improvement after MSC therapy, explained.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(RequestLog)
    app.state.model = None
    app.state.model_problem = "The model is still loading."
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(health.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    protected = [Depends(require_api_key)]
    app.include_router(model.router, dependencies=protected)
    app.include_router(predict.router, dependencies=protected)
    return app


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """422 naming each bad field and the rule it broke, without echoing what was sent."""
    assert isinstance(error, RequestValidationError)
    detail = [
        {
            "field": ".".join(str(part) for part in issue["loc"] if part != "body") or "body",
            "loc": list(issue["loc"]),
            "msg": issue["msg"],
            "type": issue["type"],
        }
        for issue in error.errors()
    ]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": detail}
    )
