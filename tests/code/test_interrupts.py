"""SIGINT and SIGTERM stop a training, but never in the middle of a store write."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import pytest

from womac.pipeline.files import written_whole
from womac.pipeline.safety import (
    checkpoint,
    held_interrupts,
    interrupt_pending,
    interrupts_handled,
    stop_if_interrupted,
)


def deliver(signum: signal.Signals) -> None:
    """Send a signal to this process and give Python the chance to run its handler."""
    os.kill(os.getpid(), signum)
    for _ in range(1000):  # handlers run between bytecodes
        pass


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_raises_at_once_outside_held_sections(signum: signal.Signals) -> None:
    with interrupts_handled(), pytest.raises(KeyboardInterrupt, match=signum.name):
        deliver(signum)


def test_a_held_interrupt_waits_for_the_next_checkpoint() -> None:
    reached = []
    with interrupts_handled(), held_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the signal")  # a store write here would not be cut
        assert interrupt_pending()
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            checkpoint()
        assert not interrupt_pending()
        checkpoint()  # raised once only
    assert reached == ["after the signal"]


def test_a_second_interrupt_does_not_wait() -> None:
    """A user pressing Ctrl+C twice means it, even when the store hangs."""
    with interrupts_handled(), held_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            deliver(signal.SIGINT)


def test_held_even_when_other_threads_could_take_the_signal() -> None:
    """Threads started earlier (e.g. an OpenMP pool) do not make the interrupt land early."""
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        with interrupts_handled(), held_interrupts():
            deliver(signal.SIGTERM)
            assert interrupt_pending()
        assert not interrupt_pending()  # left without a checkpoint: the work was done
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def test_the_previous_handlers_come_back() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with interrupts_handled():
        pass
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_an_interrupt_python_swallowed_still_stops_an_output_being_made_final(
    tmp_path: Path,
) -> None:
    """Delivered inside a weakref or garbage-collection callback, ``KeyboardInterrupt`` is
    printed as "Exception ignored" and the command carries on; the output is still not
    renamed into place."""
    out = tmp_path / "scores.csv"

    def write_carrying_on_after_a_swallowed_interrupt() -> None:
        with written_whole(out) as stream:
            stream.write("patient_id\n")
            with contextlib.suppress(KeyboardInterrupt):  # as Python does in a callback
                deliver(signal.SIGTERM)
            stream.write("p1\n")  # the command carried on

    with interrupts_handled(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        write_carrying_on_after_a_swallowed_interrupt()
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary file
    with interrupts_handled():
        stop_if_interrupted()  # a later command starts afresh
