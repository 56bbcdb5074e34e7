"""Request size limits (head and body), answered like every other refusal where we answer."""

from __future__ import annotations

import json

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_HEAD_BYTES = 16_384
"""The request line and headers, buffered while incomplete (uvicorn's h11 answers 400
beyond; a head that arrives whole in one read, at most 64 KB, is parsed as it is). Room for
any client's headers and an API key, not for an attack; nginx's default buffers are 4 x 8 KB.
"""


def too_large_message(max_bytes: int) -> str:
    """What a client is told when its request body is over the limit."""
    return (
        f"Request body too large: the limit is {max_bytes:,} bytes (WOMAC_MAX_BODY_BYTES). "
        "Send fewer patients per request."
    )


class _BodyTooLarge(HTTPException):
    # An HTTPException, so FastAPI's body parsing lets it through to the JSON error handler
    # (anything else raised while reading the body would become a 400).
    def __init__(self, max_bytes: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, detail=too_large_message(max_bytes))


NOT_UTF8 = "The body must be JSON encoded as UTF-8 (RFC 8259); this one is not."


class _NotUtf8(HTTPException):
    def __init__(self) -> None:
        super().__init__(status.HTTP_400_BAD_REQUEST, detail=NOT_UTF8)


def _wide_encoding(start: bytes) -> bool:
    """Whether a JSON text starts as UTF-16 or UTF-32 do (RFC 8259 allows only UTF-8): a
    byte-order mark, or a NUL among the first bytes (JSON text begins with ASCII)."""
    return start.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in start[:4]


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, declared or streamed; 400 for a
    body in UTF-16 or UTF-32, which the API does not speak (the JSON parser would take it).

    A declared ``Content-Length`` over the limit is refused before anything is read; a
    chunked body is counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if received == 0 and _wide_encoding(chunk):
                    raise _NotUtf8()
                received += len(chunk)
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": too_large_message(self.max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_413_CONTENT_TOO_LARGE,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is not read: the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
