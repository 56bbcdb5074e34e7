"""The FastAPI application: the champion is loaded once at start-up, and on reload."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from womac.serve.bodies import RefusedBodyError, problems, publish
from womac.serve.champion import ChampionLookup
from womac.serve.dependencies import require_api_key
from womac.serve.limits import BodyLimit
from womac.serve.logs import RequestLog
from womac.serve.reloading import reload_model
from womac.serve.routes import admin, health, model, page, predict
from womac.serve.routes.page import STATIC_DIR
from womac.serve.schemas import BatchRequest, ErrorMessage, PatientRequest
from womac.settings import Settings, get_settings

logger = logging.getLogger("womac.serve")

HANGUP_BEFORE_START = threading.Event()
"""Set by ``womac serve``'s own SIGHUP handler, active until the service installs its own."""


def remember_hangup(signum: int, frame: Any) -> None:
    """SIGHUP before the service runs: reload once the model has loaded (not die)."""
    HANGUP_BEFORE_START.set()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; ``uvicorn serve.main:create_app --factory`` runs it."""
    settings = settings or get_settings()
    key_required = settings.api_key is not None
    app = FastAPI(
        title="womac",
        summary="Expected 12-month WOMAC improvement after MSC therapy, explained.",
        version="0.1.0",
        lifespan=_lifespan(settings),
        # With a key, nothing but the page and /health is open, the API description included.
        # /docs is ours (below): Swagger UI from the app's own assets, not a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=None if key_required else "/openapi.json",
    )
    app.state.settings = settings
    app.state.model = None
    app.state.model_problem = "The model is still loading."
    app.state.reload_task = None
    # Added first, so it runs inside the request log: a refused body is logged like any other.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestLog)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "X-Request-ID"],
        )
    app.add_exception_handler(RefusedBodyError, _refused_body)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(health.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if not key_required:
        _serve_docs(app)
    _include_api(app, key_required)
    return app


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start-up: the champion loaded once (a SIGHUP reloads it, from the first moment)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Start the registry lookup first: it runs in a child process while this one
        # imports the scoring stack (scikit-learn, skops, LightGBM) below.
        lookup = ChampionLookup(settings)
        loop = asyncio.get_running_loop()
        with suppress(NotImplementedError, RuntimeError, ValueError):
            # `kill -HUP <pid>` picks up a moved champion alias without a restart. Installed
            # before the model loads; one that came even earlier (`womac serve` catches it
            # from its first moment, see HANGUP_BEFORE_START) is honoured once loading ends.
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_model(app)))
        from womac.serve.model import ModelUnavailableError, load_champion

        try:
            app.state.model = load_champion(settings, lookup)
        except ModelUnavailableError as problem:
            logger.error("serving without a model: %s", problem)
            app.state.model_problem = str(problem)
        if HANGUP_BEFORE_START.is_set():
            HANGUP_BEFORE_START.clear()
            app.state.startup_reload = loop.create_task(reload_model(app))
        yield

    return lifespan


def _include_api(app: FastAPI, key_required: bool) -> None:
    """The model, prediction and admin routes, behind the key when one is set."""
    # Without a key the routes are open, and the API description must not claim otherwise.
    protected = [Depends(require_api_key)] if key_required else []
    refusals: dict[int | str, dict[str, Any]] = {
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": ErrorMessage,
            "description": "No model is loaded; the message gives the command that makes one.",
        },
    }
    if key_required:
        refusals[status.HTTP_401_UNAUTHORIZED] = {
            "model": ErrorMessage,
            "description": "The X-API-Key header is missing or not accepted.",
        }
    for router in (model.router, predict.router, admin.router):
        app.include_router(router, dependencies=protected, responses=refusals)
    publish(app, [PatientRequest, BatchRequest])
    if key_required:
        # The API description for authenticated clients (a client generator needs it).
        @app.get("/openapi.json", include_in_schema=False, dependencies=protected)
        async def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())


SWAGGER_ASSETS = "/docs/assets"  # one of logs.ASSET_PREFIXES


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its script and style served by the app itself, so the page
    works at a clinic with no internet (FastAPI's default loads them from a CDN)."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html

    assets = files("fastapi_offline") / "static"
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=str(assets)), name="swagger-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="womac API",
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon.png",
        )


async def _refused_body(request: Request, error: Exception) -> JSONResponse:
    """A body the routes' reader refused (see serve.bodies): its answer, as built."""
    assert isinstance(error, RefusedBodyError)
    return JSONResponse(status_code=error.status_code, content=error.content)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """422 for anything else FastAPI validates (none of it echoed), as a body's would be."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content=problems(error.errors())
    )
