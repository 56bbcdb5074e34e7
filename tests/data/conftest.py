"""Fixtures of the cohort-contract tests: cohort files written the way clinics export them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

WriteFile = Callable[..., Path]


@pytest.fixture
def write_file(tmp_path: Path) -> WriteFile:
    """Write ``content`` (text or raw bytes) to ``tmp_path / name`` and return the path."""

    def write(name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            # newline="" keeps the line endings exactly as written in the test.
            with path.open("w", encoding=encoding, newline="") as stream:
                stream.write(content)
        return path

    return write
