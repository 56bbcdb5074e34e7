"""Request bodies read with bounded work: large ones parsed and validated off the event loop.

FastAPI validates a body on the event loop and hands every error on, so a 1 MB body of 5,000
wrong patients (55,000 errors) held the whole service, ``/health`` included, for over half a
second. Here a body is parsed and validated by pydantic's own JSON parser in one pass, in a
worker thread once it is larger than :data:`LARGE_BODY_BYTES`, and refused with at most
:data:`MAX_PROBLEMS` problems listed (the rest counted). The routes declare the body with
:func:`body_of`; its schema is published as if FastAPI had read it (see :func:`publish`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request, status
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from pydantic_core import ErrorDetails
from starlette.concurrency import run_in_threadpool

from womac.serve.limits import NOT_UTF8

Model = TypeVar("Model", bound=BaseModel)

LARGE_BODY_BYTES = 16_384
"""Bodies larger than this are parsed and validated in a worker thread (a patient is ~300)."""

MAX_PROBLEMS = 20
"""At most this many problems in a 422; the rest are counted, not listed."""

UNREADABLE_JSON = (
    "The body is JSON this service does not read: a number of more than 4,300 digits, or "
    "nesting deeper than a patient record needs."
)


class RefusedBodyError(Exception):
    """A body refused, with the answer ready: status and JSON content (never its values)."""

    def __init__(self, status_code: int, content: dict[str, Any]) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.content = content


def body_of(model: type[Model]) -> Callable[[Request], Awaitable[Model]]:
    """A dependency reading the request body as ``model``; use as ``Depends(body_of(M))``."""

    async def read(request: Request) -> Model:
        body = await request.body()
        content_type = request.headers.get("content-type")
        if len(body) <= LARGE_BODY_BYTES:
            return validated(model, body, content_type)
        return await run_in_threadpool(validated, model, body, content_type)

    return read


def validated(model: type[Model], body: bytes, content_type: str | None) -> Model:
    """``body`` as ``model``, or :class:`RefusedBodyError`: 400 unless UTF-8, else 422."""
    if content_type is not None and not _is_json(content_type):
        raise RefusedBodyError(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {"detail": [_body_problem("Send JSON, with Content-Type: application/json.", "type")]},
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedBodyError(status.HTTP_400_BAD_REQUEST, {"detail": NOT_UTF8}) from None
    try:
        return model.model_validate_json(body)
    except ValidationError as invalid:
        issues = invalid.errors(include_url=False, include_context=False, include_input=False)
        content = problems(issues, within=("body",))
        raise RefusedBodyError(status.HTTP_422_UNPROCESSABLE_CONTENT, content) from None


def problems(issues: Sequence[ErrorDetails], within: tuple[str, ...] = ()) -> dict[str, Any]:
    """A 422's content: each bad field and the rule it broke, never the value sent.

    A key that is not a contract field is not named either (a key can hold anything a client
    typed): all of them at one place are one problem, with their count. At most
    :data:`MAX_PROBLEMS` problems are built, the rest counted in ``more_problems``.
    ``within`` is put before each location (pydantic's start inside the body).
    """
    unknown = Counter(
        tuple(issue["loc"][:-1]) for issue in issues if issue["type"] == "extra_forbidden"
    )
    total = len(issues) - unknown.total() + len(unknown)
    detail: list[dict[str, Any]] = []
    for issue in issues:
        if len(detail) == MAX_PROBLEMS:
            break
        location = (*within, *issue["loc"])
        if issue["type"] == "extra_forbidden":
            location = location[:-1]  # the key itself is not named
            if location[len(within) :] not in unknown:
                continue  # that place is listed already
            count = unknown.pop(location[len(within) :])
            message = (
                f"{count} unknown field{'s' if count != 1 else ''}: only the contract's "
                "fields are accepted (see /openapi.json)"
            )
        elif issue["type"] == "json_invalid":
            # Located by character offset, which is not a field.
            detail.append(_body_problem(_json_message(issue["msg"])))
            continue
        else:
            message = issue["msg"]
        detail.append(
            {
                "field": ".".join(str(part) for part in location if part != "body") or "body",
                "loc": list(location),
                "msg": message,
                "type": issue["type"],
            }
        )
    content: dict[str, Any] = {"detail": detail}
    if total > len(detail):
        content["more_problems"] = total - len(detail)
    return content


def publish(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Publish the body models in the app's OpenAPI components, where FastAPI would have put
    them had it read the bodies itself (the routes' requestBody refers to them by name)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _, definitions = models_json_schema(
                [(model, "validation") for model in models],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(definitions.get("$defs", {}))
            schema["components"]["schemas"] = dict(sorted(components.items()))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose body :func:`body_of` reads."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}, "required": True}}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _json_message(message: str) -> str:
    if "recursion limit" in message or "number out of range" in message:
        return UNREADABLE_JSON
    return "The body is not valid JSON."


def _body_problem(message: str, kind: str = "json_invalid") -> dict[str, Any]:
    return {"field": "body", "loc": ["body"], "msg": message, "type": kind}
