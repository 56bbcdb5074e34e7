"""Training that can be interrupted or run twice at once without leaving a mess.

- :func:`store_lock`: one training at a time writes to a local SQLite store; a second one
  waits for the first to finish its MLflow phase, or gives up cleanly after a timeout.
- :func:`interrupts_as_keyboard_interrupt`: SIGTERM unwinds like Ctrl+C, so every ``finally``
  and MLflow's run context close properly (the run is marked killed, nothing registered).
- :func:`deferred_interrupts`: the registration (version, tags, alias) is not cut halfway;
  an interrupt that arrives during it is handled right after, by undoing it.
"""

from __future__ import annotations

import fcntl
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


class StoreBusyError(RuntimeError):
    """Another training holds the store for longer than we are willing to wait."""


@contextmanager
def store_lock(tracking_uri: str, timeout_s: float) -> Iterator[None]:
    """Exclusive use of a local SQLite tracking store (a lock file beside it).

    Server-backed stores serialize writes themselves; no lock is taken for them.
    """
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    path = Path(tracking_uri.removeprefix("sqlite:///") + ".lock")
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


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as SIGINT does) for the duration."""
    if not threading_main():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(slots=True)
class Deferred:
    """Whether an interrupt arrived while deferred."""

    interrupted: bool = False


@contextmanager
def deferred_interrupts() -> Iterator[Deferred]:
    """Hold SIGINT and SIGTERM back while the block runs; say if one arrived.

    The caller undoes the block's effect when ``interrupted`` is set; the held signal is
    delivered (and raises) when the block is left.
    """
    state = Deferred()
    if not threading_main():
        yield state
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield state
    finally:
        state.interrupted = bool(signal.sigpending() & INTERRUPTS)
        if not state.interrupted:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)


def release_deferred() -> None:
    """Deliver an interrupt held by :func:`deferred_interrupts` (it raises here)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)


def threading_main() -> bool:
    """Signals can only be handled by the main thread."""
    return threading.current_thread() is threading.main_thread()
