"""Training that can be interrupted or run twice at once without leaving a mess.

- :func:`store_lock`: one training at a time writes to a local SQLite store; a second one
  waits for the first to finish its MLflow phase, or gives up cleanly after a timeout.
- :func:`interrupts_handled`: SIGINT and SIGTERM both unwind as ``KeyboardInterrupt``, so every
  ``finally`` and MLflow's run context close properly (the run is closed, nothing registered).
- :func:`clean_leftovers`: what a command killed outright (SIGKILL, lost power) left, found
  and cleaned by the next one (:mod:`womac.models.leftovers`), never blocking on the store.
- :func:`held_interrupts`: while MLflow writes, an interrupt waits for the next
  :func:`checkpoint` instead of landing inside a database transaction. One that lands there
  leaves the SQLite write lock held by a connection nobody rolls back, and closing the run
  then fails with "database is locked". A second interrupt does not wait.

Interrupts are recorded by a Python-level handler, which always runs in the main thread,
rather than by blocking signals: threads started earlier (LightGBM's OpenMP pool) keep their
own signal masks and would otherwise receive the signal and raise at once.
"""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from womac.models.tracking import sqlite_file

if TYPE_CHECKING:
    from womac.models.leftovers import Leftover
    from womac.settings import Settings

logger = logging.getLogger(__name__)

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class StoreBusyError(RuntimeError):
    """Another training holds the store for longer than we are willing to wait."""


@contextmanager
def store_lock(tracking_uri: str, timeout_s: float) -> Iterator[None]:
    """Exclusive use of a local SQLite tracking store (a lock file beside it).

    Server-backed stores serialize writes themselves; no lock is taken for them.
    """
    if sqlite_file(tracking_uri) is None:
        yield
        return
    path = _lock_path(tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreBusyError(
                        f"another training has been using {tracking_uri} for over "
                        f"{timeout_s:.0f} s; nothing was logged or registered, try again later"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def store_lock_if_free(tracking_uri: str) -> Iterator[bool]:
    """The lock of a local SQLite store if nobody holds it: yields whether it was taken.

    Never waits (and never creates the store's folder); for a store that is not a local
    SQLite file, yields ``False``: there is no lock to take.
    """
    if sqlite_file(tracking_uri) is None:
        yield False
        return
    path = _lock_path(tracking_uri)
    try:
        handle = path.open("a+")
    except OSError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process (or locks unsupported here)
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_path(tracking_uri: str) -> Path:
    database = sqlite_file(tracking_uri)
    assert database is not None, "only a local SQLite store has a lock file"
    return database.with_name(database.name + ".lock")


def clean_leftovers(
    settings: Settings, writing: Iterable[Path] = (), *, store: bool, by: str
) -> list[Leftover]:
    """Clean what commands killed outright left beside ``writing`` and, with ``store``, in
    the tracking store; say what (:func:`womac.models.leftovers.describe`). Never raises.

    The folder of each output in ``writing`` loses the temporary files of dead writers. A
    local SQLite store is cleaned only if its lock is free at once (a training holding it
    may be alive; we do not wait for it), and only if it exists; any other store by its
    runs' host and PID (runs started on another machine are left alone).
    """
    from womac.models.leftovers import clean_folder

    cleaned: list[Leftover] = []
    folders: dict[Path, list[str]] = {}
    for path in writing:
        folders.setdefault(Path(path).parent, []).append(Path(path).name)
    for folder, names in folders.items():
        cleaned += clean_folder(folder, names)
    if not store:
        return cleaned
    uri = settings.resolved_tracking_uri()
    try:
        database = sqlite_file(uri)
        if database is not None:
            if not database.is_file():
                return cleaned
            with store_lock_if_free(uri) as held:
                if held:
                    cleaned += _clean_store(settings, uri, store_locked=True, by=by)
        else:
            cleaned += _clean_store(settings, uri, store_locked=False, by=by)
    except Exception as error:  # cleaning never makes a command fail
        logger.debug("leftovers in the store not cleaned: %s", type(error).__name__)
    return cleaned


def _clean_store(settings: Settings, uri: str, *, store_locked: bool, by: str) -> list[Leftover]:
    from womac.models.leftovers import clean_store
    from womac.models.store import connect

    return clean_store(connect(uri), settings, store_locked=store_locked, by=by)


@dataclass(slots=True)
class _Interrupts:
    """Whether interrupts are being held, the name of one that arrived meanwhile, and of one
    raised (which Python may have swallowed, see :func:`stop_if_interrupted`)."""

    held: bool = False
    pending: str | None = None
    raised: str | None = None


_state = _Interrupts()


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _state.held and _state.pending is None:
        _state.pending = name
        return
    _state.raised = name
    raise KeyboardInterrupt(f"stopped by {name}")


@contextmanager
def interrupts_handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` for the duration (main thread only)."""
    if not threading_main():
        yield
        return
    previous = {number: signal.signal(number, _on_interrupt) for number in INTERRUPTS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _state.pending = _state.raised = None


@contextmanager
def held_interrupts() -> Iterator[None]:
    """Inside the block an interrupt waits for :func:`checkpoint`; a second one does not.

    One that arrives after the last checkpoint is dropped: the work it would have stopped
    is already done.
    """
    was_held = _state.held
    _state.held = True
    try:
        yield
    finally:
        _state.held = was_held
        if not was_held:
            _state.pending = None


def interrupt_pending() -> bool:
    """An interrupt is waiting for the next :func:`checkpoint`."""
    return _state.pending is not None


def stop_if_interrupted() -> None:
    """Raise again an interrupt that was raised but never unwound the command.

    A signal that arrives while Python runs a garbage-collection or weakref callback (a
    thread pool's, say) raises ``KeyboardInterrupt`` inside that callback, where Python
    prints "Exception ignored" and carries on. Call this before making work final (renaming
    an output into place), so that such an interrupt still stops it.
    """
    if _state.raised is not None:
        raise KeyboardInterrupt(f"stopped by {_state.raised}")


def checkpoint() -> None:
    """Raise the interrupt that is waiting, if one is."""
    name, _state.pending = _state.pending, None
    if name is not None:
        raise KeyboardInterrupt(f"stopped by {name}")


def threading_main() -> bool:
    """Signals can only be handled by the main thread."""
    return threading.current_thread() is threading.main_thread()
