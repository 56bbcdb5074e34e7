"""Operating-system faults (a full disk, a read-only folder) told in one line, not a traceback.

A command that cannot write its output, its store or its artifacts fails the same way
whichever library met the fault: Python's own file calls raise :class:`OSError`, SQLite
answers "database or disk is full" through SQLAlchemy, MLflow wraps either in its own
exception. :func:`os_fault` finds the fault in the chain of causes and says which path and
what to do. Nothing is half-written by then: outputs are written beside their destination
and renamed into place, and a failed training registers nothing.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM)

# SQLite's own words for the same faults, which reach us as text inside a database error.
_SQLITE_FULL = re.compile(r"database or disk is full", re.IGNORECASE)
_SQLITE_READ_ONLY = re.compile(
    r"attempt to write a readonly database|unable to open database file", re.IGNORECASE
)


def os_fault(error: BaseException, writing: str | None = None) -> str | None:
    """One line for the operating-system fault behind ``error``, or ``None`` if there is none.

    The line names the path (a file name, never file contents) and what to do; ``writing``
    names what the command was writing, for a fault that carries no file name (a write that
    fills the disk). A broken pipe (output piped into ``head``) is not a fault worth a message.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno not in (None, errno.EPIPE):
            return _explain(current, writing)
        text = str(current)
        if _SQLITE_FULL.search(text):
            return "the disk holding the MLflow store is full; free some space and run again"
        if _SQLITE_READ_ONLY.search(text):
            return (
                "the MLflow store cannot be written (a read-only file or folder); run from a "
                "folder you can write to, or set WOMAC_TRACKING_URI to a store you can write"
            )
        if current.__cause__ is not None:
            current = current.__cause__
        else:
            current = None if current.__suppress_context__ else current.__context__
    return None


class ToldInOneLine(logging.Filter):
    """Drops a library's log record of an operating-system fault (MLflow logs SQLite's "disk
    is full" with three chained tracebacks) that the command reports itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or os_fault(error) is None


# The loggers that report a fault we report ourselves (a logger's filter sees only the
# records logged on it, so each is named; none needs its library imported first).
_FAULT_LOGGERS = ("mlflow", "mlflow.store.db.utils", "mlflow.tracking.fluent")


def told_in_one_line() -> None:
    """Keep the libraries' tracebacks of operating-system faults out of a command's output."""
    for name in _FAULT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, ToldInOneLine) for existing in logger.filters):
            logger.addFilter(ToldInOneLine())


def _explain(error: OSError, writing: str | None) -> str:
    path = _shown(error.filename) if error.filename is not None else writing or "a file"
    code = error.errno
    if code in _FULL:
        return f"no space left on the disk holding {path}; free some space and run again"
    if code == errno.EFBIG:
        return (
            f"{path} grew past the largest file this system allows; write to another "
            "disk or raise the file-size limit (ulimit -f)"
        )
    if code == errno.EROFS:
        return (
            f"{path} is on a read-only file system; run from a folder you can write to, "
            "or choose another output path"
        )
    if code in _DENIED:
        return (
            f"permission denied: {path}; run from a folder you can write to, or choose "
            "another path"
        )
    if code == errno.ENOENT:
        return f"{path} does not exist"
    if code == errno.ENOTDIR:
        return f"{path}: a part of this path is a file, not a folder"
    if code == errno.EEXIST:
        return f"{path} is a file, not a folder; choose another output path"
    if code == errno.EISDIR:
        return f"{path} is a folder; give a file name"
    return f"{path}: {error.strerror or 'the operating system refused'}"


def _shown(filename: str | bytes | int) -> str:
    """The path to name: for one of our hidden temporary files (``.name.….tmp``, written
    beside an output and renamed into place), the folder it was being written in."""
    path = Path(os.fsdecode(filename)) if isinstance(filename, (str, bytes)) else None
    if path is None:
        return str(filename)
    if path.name.startswith(".") and path.suffix in {".tmp", ".creating"}:
        return f"the folder {path.parent}"
    return str(path)
