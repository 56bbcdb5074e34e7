"""Loading a moved champion while the service runs: one lookup at a time, the swap atomic."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from womac.serve.champion import ChampionLookup
from womac.settings import Settings

logger = logging.getLogger("womac.serve")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did: the version serving after it, and why not the new one if it failed."""

    reloaded: bool
    serving_version: str | None
    previous_version: str | None
    reason: str | None = None


async def reload_model(app: FastAPI) -> ReloadOutcome:
    """Load the model the champion alias points to now, then swap it in.

    Requests keep being answered by the current model while the new one loads (in a worker
    thread); the swap is a single assignment, so no request fails or sees half a model. If
    the new champion cannot be loaded, the current model keeps serving.

    Single flight: a reload asked for (by the route or SIGHUP) while one is under way joins
    it and gets its outcome, so twenty at once cost one registry lookup, and a caller that
    goes away cancels nothing and adds nothing.
    """
    running: asyncio.Task[ReloadOutcome] | None = app.state.reload_task
    if running is None or running.done():
        running = asyncio.ensure_future(_reload(app))
        app.state.reload_task = running
    return await asyncio.shield(running)


async def _reload(app: FastAPI) -> ReloadOutcome:
    from womac.serve.model import ModelUnavailableError, load_champion

    settings: Settings = app.state.settings
    previous = app.state.model
    before = previous.version if previous is not None else None
    try:
        # The same version is kept, not loaded again: a reload then only refreshes what the
        # registry says of it (its latest monitoring verdict, written by `womac monitor`).
        loaded = await run_in_threadpool(
            lambda: load_champion(settings, ChampionLookup(settings), current=previous)
        )
    except ModelUnavailableError as problem:
        logger.error("reload failed; still serving version %s: %s", before, problem)
        return ReloadOutcome(
            False, serving_version=before, previous_version=before, reason=str(problem)
        )
    app.state.model = loaded
    logger.info("reloaded: serving version %s (was %s)", loaded.version, before)
    return ReloadOutcome(True, serving_version=loaded.version, previous_version=before)
