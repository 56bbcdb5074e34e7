"""Which operating-system fault is behind an error, however deep a library wrapped it."""

from __future__ import annotations

import errno
import logging
import sqlite3

import pytest

from womac.pipeline.faults import ToldInOneLine, os_fault


def wrapped(inner: BaseException) -> Exception:
    """``inner`` as MLflow passes it on: raised from inside another library's exception."""
    try:
        try:
            raise inner
        except BaseException as error:
            raise RuntimeError("SQLAlchemy database error") from error
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on the disk holding /data/scores.csv"),
        (errno.EDQUOT, "no space left"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied: /data/scores.csv"),
        (errno.EFBIG, "ulimit -f"),
    ],
)
def test_the_fault_and_its_path_are_named(code: int, words: str) -> None:
    error = wrapped(OSError(code, "system words", "/data/scores.csv"))
    assert words in str(os_fault(error))


def test_a_hidden_temporary_file_is_shown_as_its_folder() -> None:
    message = str(os_fault(OSError(errno.EROFS, "Read-only", "/data/.scores.csv.x1y2.tmp")))
    assert "the folder /data" in message
    assert ".tmp" not in message


def test_a_write_without_a_file_name_names_what_was_being_written() -> None:
    assert "scores.csv" in str(os_fault(OSError(errno.ENOSPC, "No space left"), "scores.csv"))


def test_sqlite_words_for_a_full_or_read_only_store() -> None:
    full = os_fault(wrapped(sqlite3.OperationalError("database or disk is full")))
    read_only = os_fault(wrapped(sqlite3.OperationalError("attempt to write a readonly database")))
    assert "MLflow store is full" in str(full)
    assert "WOMAC_TRACKING_URI" in str(read_only)


def test_other_errors_and_a_broken_pipe_are_not_faults() -> None:
    assert os_fault(wrapped(ValueError("a bug"))) is None
    assert os_fault(BrokenPipeError(errno.EPIPE, "Broken pipe")) is None


def test_a_cause_suppressed_on_purpose_is_not_followed() -> None:
    def refuse() -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise ValueError("already told") from None

    with pytest.raises(ValueError, match="already told") as caught:
        refuse()
    assert os_fault(caught.value) is None


def test_library_tracebacks_of_a_fault_are_dropped_and_other_records_kept() -> None:
    keep = ToldInOneLine()

    def record(error: BaseException | None) -> logging.LogRecord:
        info = (type(error), error, None) if error is not None else None
        return logging.LogRecord("mlflow", logging.ERROR, __file__, 1, "x", None, info)

    assert not keep.filter(record(wrapped(OSError(errno.ENOSPC, "full"))))
    assert keep.filter(record(ValueError("a bug")))
    assert keep.filter(record(None))
