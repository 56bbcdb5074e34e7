"""Structured logs: one JSON object per line, and never anything a request contains.

Every request gets one line: request id, method, route (the route's template, never a query
string or body), status and duration. Errors carry the exception's type and where it was
raised, not its message: messages of numeric libraries can quote the values they choked on.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS = logging.getLogger("womac.access")
# A caller's own request id is kept only if it is a UUID (hex, dashes optional): anything
# freer could carry a patient identifier into the logs. Otherwise we make one.
_SAFE_REQUEST_ID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
# uvicorn adds a copy of its message with terminal colour codes: not for a JSON log.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, event and structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, trace = record.exc_info
            entry["error"] = kind.__name__
            entry["where"] = [
                f"{frame.filename}:{frame.lineno}" for frame in traceback.extract_tb(trace)[-5:]
            ]
        return json.dumps(entry, default=str)


def log_config(level: str = "info") -> dict[str, Any]:
    """``logging.config.dictConfig`` for uvicorn and the app: everything as JSON on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = ("uvicorn", "uvicorn.error", "womac", "serve", "models", "data", "features")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "loggers": {
            **{
                name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
                for name in loggers
            },
            # uvicorn's access line would log the raw path and client; ours replaces it.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }


class RequestLog:
    """ASGI middleware: a request id on every response, one structured line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            ACCESS.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "route": getattr(route, "path", None) or _route_of(scope.get("path", "")),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )


ASSET_PREFIXES = ("/static/", "/docs/assets/")
"""Where the app's own files are served (the page's, Swagger UI's): logged by prefix."""


def _route_of(path: str) -> str:
    """A path no route matched: none of it is logged (even its first segment could be a
    patient's name), except the prefix of the app's own files."""
    prefix = next((prefix for prefix in ASSET_PREFIXES if path.startswith(prefix)), None)
    return f"{prefix}…" if prefix else "(no route)"
