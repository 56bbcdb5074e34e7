"""The scores directory: whole or none, and never over something that is not ours.

Spark writes a Parquet directory into a work folder beside the target; it is renamed into
place only when the job succeeded, replacing a previous output of this command (and nothing
else) as one rename.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from womac.models.leftovers import temporary_prefix
from womac.pipeline.predict import Counts
from womac.pipeline.spark.errors import SparkEngineError


@dataclass(frozen=True, slots=True)
class Target:
    """The output directory: absolute (executors run elsewhere, a worker's own folder or
    another machine) and as the user wrote it (for the summary)."""

    path: Path
    shown: Path

    @classmethod
    def checked(cls, out: Path) -> Target:
        """The target ``out``, refused now if something not ours to replace is there."""
        target = cls(path=Path(out).absolute(), shown=Path(out))
        check_replaceable(target.path)
        return target


class Workspace:
    """The job's work folder beside the output: the staged cohort and the scores.

    Named after this process, so that if it is killed outright the next command writing
    here removes it (models.leftovers). Created by :meth:`create` (the output's folder too,
    if need be), removed with everything in it when the ``with`` block ends.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path: Path | None = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def create(self) -> Path:
        """Make the work folder (and the output's parent folder); its path."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        prefix = temporary_prefix(self.out.name)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=".spark", dir=self.out.parent))
        return self.path

    @property
    def scores(self) -> Path:
        """Where Spark writes the scores directory."""
        assert self.path is not None, "create the work folder first"
        return self.path / "scores"

    def publish(self) -> Counts:
        """Count the finished scores and move them into place (see :func:`replace`)."""
        written = count(self.scores)
        assert self.path is not None
        replace(self.scores, self.out, self.path)
        return written


def count(scores: Path) -> Counts:
    """Rows, scored rows and protocol candidates of a written output."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(scores, columns=["expected_improvement", "candidate"])
    scored = pc.sum(pc.is_finite(table.column("expected_improvement"))).as_py() or 0
    candidates = pc.sum(table.column("candidate")).as_py() or 0
    return Counts(rows=table.num_rows, scored=int(scored), candidates=int(candidates))


def is_scores_directory(path: Path) -> bool:
    """Whether ``path`` looks like a finished output of this command (safe to replace)."""
    if not path.is_dir() or path.is_symlink() or not (path / "_SUCCESS").is_file():
        return False
    return all(
        re.fullmatch(r"\.?(part-.*\.parquet|_SUCCESS)(\.crc)?", entry.name) and entry.is_file()
        for entry in path.iterdir()
    )


def check_replaceable(out: Path) -> None:
    """Refuse an ``out`` that exists and is not a scores directory of this command."""
    if (out.exists() or out.is_symlink()) and not is_scores_directory(out):
        raise SparkEngineError(
            f"{out} exists and is not a scores directory written by `womac predict --engine "
            "spark`; choose another --out (nothing was replaced)"
        )


def replace(scores: Path, out: Path, work: Path) -> None:
    """Move the finished output into place, replacing a previous one as one rename."""
    from womac.pipeline.safety import stop_if_interrupted

    check_replaceable(out)
    stop_if_interrupted()
    if not (out.exists() or out.is_symlink()):
        os.replace(scores, out)
        return
    previous = work / "previous"
    os.replace(out, previous)
    try:
        os.replace(scores, out)
    except BaseException:
        os.replace(previous, out)
        raise
