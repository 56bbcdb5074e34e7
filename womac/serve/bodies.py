"""Request bodies read with bounded work: large ones parsed and validated off the event loop.

FastAPI validates a body on the event loop and builds every error, so a 1 MB body of 5,000
wrong patients (55,000 errors) held the whole service, ``/health`` included, for over half a
second, and 5,000 patients with 32 unknown keys each for 1.5 s. Here a body is parsed by
pydantic's JSON parser, unknown keys are counted per place without an error object each, and
a batch's patients are validated one at a time, in a worker thread once the body is larger
than :data:`LARGE_BODY_BYTES` (a thread alone is not enough: pydantic holds the interpreter
while it validates, so one long validation stalls the loop as surely as running on it).
At most :data:`MAX_PROBLEMS` problems are built, every one counted. The routes declare the
body with :func:`body_of`; its schema is published as FastAPI would (see :func:`publish`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

from annotated_types import MaxLen, MinLen
from fastapi import FastAPI, Request, status
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from pydantic_core import ErrorDetails, from_json
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


def body_of(model: type[Model], rows: str | None = None) -> Callable[[Request], Awaitable[Model]]:
    """A dependency reading the request body as ``model``; use as ``Depends(body_of(M))``.

    ``rows`` names a list field of ``model`` whose items are models too (a batch's
    patients): they are then validated one at a time (see :func:`validated`).
    """

    async def read(request: Request) -> Model:
        body = await request.body()
        content_type = request.headers.get("content-type")
        if len(body) <= LARGE_BODY_BYTES:
            return validated(model, body, content_type, rows)
        return await run_in_threadpool(validated, model, body, content_type, rows)

    return read


def validated(
    model: type[Model], body: bytes, content_type: str | None, rows: str | None = None
) -> Model:
    """``body`` as ``model``, or :class:`RefusedBodyError`: 400 unless UTF-8, else 422.

    Work in proportion to the body, with every problem counted but only the first few built:
    unknown keys are counted per place by a set difference (never one error object each),
    and rows are validated one at a time, each a short hold of the interpreter, so the event
    loop answers ``/health`` between them even while a 1 MB batch is refused.
    """
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
        data = from_json(body, allow_inf_nan=False)
    except ValueError as unreadable:
        problem = _body_problem(_json_message(str(unreadable)))
        raise RefusedBodyError(
            status.HTTP_422_UNPROCESSABLE_CONTENT, {"detail": [problem]}
        ) from None
    tally = _Tally()
    found = _rows(model, rows, data, tally) if rows else _one(model, data, ("body",), tally)
    if tally.total or found is None:
        raise RefusedBodyError(status.HTTP_422_UNPROCESSABLE_CONTENT, tally.content())
    return found


def _one(model: type[Model], value: Any, within: Location, tally: _Tally) -> Model | None:
    """``value`` as ``model``, its problems tallied; keys that are not fields counted once."""
    if isinstance(value, dict):
        unknown = value.keys() - model.model_fields.keys()
        if unknown:
            tally.unknown(within, len(unknown))
            value = {key: item for key, item in value.items() if key not in unknown}
    try:
        return model.model_validate(value)
    except ValidationError as invalid:
        tally.invalid(invalid, within)
        return None


def _rows(model: type[Model], rows: str, value: Any, tally: _Tally) -> Model | None:
    """A container whose ``rows`` list is validated an item at a time."""
    items = value.get(rows) if isinstance(value, dict) else None
    spec = model.model_fields[rows]
    low = min((m.min_length for m in spec.metadata if isinstance(m, MinLen)), default=0)
    high = min((m.max_length for m in spec.metadata if isinstance(m, MaxLen)), default=None)
    if not isinstance(items, list) or len(items) < low or (high is not None and len(items) > high):
        return _one(model, value, ("body",), tally)  # one cheap problem (length checked first)
    unknown = value.keys() - model.model_fields.keys()
    if unknown:
        tally.unknown(("body",), len(unknown))
    item_model = get_args(spec.annotation)[0]
    checked = [_one(item_model, item, ("body", rows, i), tally) for i, item in enumerate(items)]
    if tally.total:
        return None
    rest = {key: item for key, item in value.items() if key not in unknown}
    # The rows are models already, taken as they are (pydantic does not revalidate them).
    return model.model_validate(rest | {rows: checked})


Location = tuple[str | int, ...]


@dataclass
class _Tally:
    """Problems counted exactly and built for the first :data:`MAX_PROBLEMS` only."""

    listed: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def unknown(self, within: Location, count: int) -> None:
        self.total += 1
        if len(self.listed) < MAX_PROBLEMS:
            self.listed.append(_unknown_keys(within, count))

    def invalid(self, error: ValidationError, within: Location) -> None:
        self.total += error.error_count()
        room = MAX_PROBLEMS - len(self.listed)
        if room > 0:
            issues = error.errors(include_url=False, include_context=False, include_input=False)
            self.listed += [_problem(issue, within) for issue in issues[:room]]

    def content(self) -> dict[str, Any]:
        content: dict[str, Any] = {"detail": self.listed}
        if self.total > len(self.listed):
            content["more_problems"] = self.total - len(self.listed)
        return content


def problems(issues: Sequence[ErrorDetails]) -> dict[str, Any]:
    """A 422's content for errors FastAPI found itself, the same way as for a body's: unknown
    keys one problem per place, never named; the first :data:`MAX_PROBLEMS` built."""
    unknown = Counter(
        tuple(issue["loc"][:-1]) for issue in issues if issue["type"] == "extra_forbidden"
    )
    tally = _Tally()
    for issue in issues:
        if issue["type"] != "extra_forbidden":
            tally.total += 1
            if len(tally.listed) < MAX_PROBLEMS:
                tally.listed.append(_problem(issue, ()))
        elif (place := tuple(issue["loc"][:-1])) in unknown:
            tally.unknown(place, unknown.pop(place))
    return tally.content()


def _problem(issue: ErrorDetails, within: Location) -> dict[str, Any]:
    """One problem: the field as a dotted path and the rule broken, never the value."""
    if issue["type"] == "json_invalid":
        return _body_problem(_json_message(issue["msg"]))
    location = (*within, *issue["loc"])
    return {
        "field": _dotted(location),
        "loc": list(location),
        "msg": issue["msg"],
        "type": issue["type"],
    }


def _unknown_keys(within: Location, count: int) -> dict[str, Any]:
    # The keys themselves are not named: a key can hold anything a client typed.
    return {
        "field": _dotted(within),
        "loc": list(within),
        "msg": f"{count} unknown field{'s' if count != 1 else ''}: only the contract's "
        "fields are accepted (see /openapi.json)",
        "type": "extra_forbidden",
    }


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


def _dotted(location: Location) -> str:
    """A location as the field's dotted path (``patients.0.age``); the body itself as ``body``."""
    return ".".join(str(part) for part in location if part != "body") or "body"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _json_message(message: str) -> str:
    if "recursion limit" in message or "number out of range" in message:
        return UNREADABLE_JSON
    return "The body is not valid JSON."


def _body_problem(message: str, kind: str = "json_invalid") -> dict[str, Any]:
    return {"field": "body", "loc": ["body"], "msg": message, "type": kind}
