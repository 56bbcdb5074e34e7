"""Temporary files of a command killed outright are removed by the next one, and only theirs.

A writer's temporary file carries its PID, start time and host; the next command writing in
the folder removes it once that process is gone, never while it lives (a concurrent
``womac predict`` keeps its file), never one written from another machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from womac.models.leftovers import (
    UNMARKED_AGE_S,
    Leftover,
    LeftoverKind,
    Process,
    clean_folder,
    describe,
    is_dead,
    temporary_prefix,
    this_process,
)

# A writer that opens its temporary file beside the output, writes part of it and is
# killed outright, as SIGKILL or lost power would stop `womac predict`.
KILLED_WRITER = """
import os, signal, sys, tempfile
from womac.models.leftovers import temporary_prefix
handle, _ = tempfile.mkstemp(prefix=temporary_prefix("scores.csv"), suffix=".tmp", dir=sys.argv[1])
os.write(handle, b"patient_id,expected_improvement\\r\\nQX-1,12.5\\r\\n")
os.kill(os.getpid(), signal.SIGKILL)
"""


def dead_process() -> Process:
    """A process of this machine that has exited (and been waited for)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return replace(this_process(), pid=child.pid, started=1)


@pytest.fixture
def live_process() -> Iterator[Process]:
    """A process of this machine that is running, as it describes itself."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        started = int(stat[stat.rindex(")") + 2 :].split()[19])
        yield replace(this_process(), pid=child.pid, started=started)
    finally:
        child.kill()
        child.wait()


def temporary(folder: Path, writer: Process | None = None, target: str = "scores.csv") -> Path:
    handle, name = tempfile.mkstemp(
        prefix=temporary_prefix(target, writer), suffix=".tmp", dir=folder
    )
    os.close(handle)
    return Path(name)


def test_a_writer_killed_outright_leaves_a_file_the_next_command_removes(tmp_path: Path) -> None:
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], check=False)
    assert killed.returncode == -signal.SIGKILL
    [left] = list(tmp_path.iterdir())
    assert left.name.startswith(".scores.csv.womac-")
    assert left.name.endswith(".tmp")

    removed = clean_folder(tmp_path, ["scores.csv"])

    assert list(tmp_path.iterdir()) == []
    assert removed == [Leftover(LeftoverKind.file, left.name, folder=tmp_path)]
    assert describe(removed) == [
        f"removed 1 temporary file left by a killed womac command in {tmp_path}/ "
        "(an unfinished scores.csv)"
    ]


def test_a_live_writers_file_is_kept_and_a_dead_ones_removed(
    tmp_path: Path, live_process: Process
) -> None:
    mine = temporary(tmp_path)  # this process, writing right now
    concurrent = temporary(tmp_path, live_process)
    dead = temporary(tmp_path, dead_process())
    spark = Path(
        tempfile.mkdtemp(
            prefix=temporary_prefix("scores", dead_process()), suffix=".spark", dir=tmp_path
        )
    )
    (spark / "staged").mkdir()
    (spark / "staged" / "part-0.parquet").write_bytes(b"rows")

    removed = clean_folder(tmp_path)

    assert sorted(item.name for item in removed) == sorted([dead.name, spark.name])
    assert sorted(tmp_path.iterdir()) == sorted([mine, concurrent])


def test_a_reused_pid_does_not_keep_a_dead_writers_file(
    tmp_path: Path, live_process: Process
) -> None:
    """The PID now belongs to a process started at another time: the writer is gone."""
    reused = temporary(tmp_path, replace(live_process, started=live_process.started - 1))
    assert clean_folder(tmp_path) == [Leftover(LeftoverKind.file, reused.name, folder=tmp_path)]


def test_a_file_written_from_another_machine_is_never_removed(tmp_path: Path) -> None:
    """A folder shared between machines: their processes cannot be seen from here."""
    elsewhere = temporary(tmp_path, replace(dead_process(), host="another-machine"))
    assert clean_folder(tmp_path) == []
    assert list(tmp_path.iterdir()) == [elsewhere]


def test_unmarked_files_of_earlier_releases_go_only_when_stale_and_for_this_output(
    tmp_path: Path,
) -> None:
    stale, fresh, other = (
        tmp_path / ".scores.csv.ab12cd34.tmp",
        tmp_path / ".scores.csv.ef56gh78.tmp",
        tmp_path / ".notes.csv.ij90kl12.tmp",
    )
    for path in (stale, fresh, other):
        path.write_text("partial")
    old = os.stat(fresh).st_mtime - UNMARKED_AGE_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))

    removed = clean_folder(tmp_path, ["scores.csv"])

    assert [item.name for item in removed] == [stale.name]
    assert sorted(tmp_path.iterdir()) == sorted([fresh, other])


def test_cleaning_a_folder_never_fails(tmp_path: Path) -> None:
    assert clean_folder(tmp_path / "absent") == []
    (tmp_path / "scores.csv").write_text("scores")
    (tmp_path / ".hidden.tmp").write_text("not ours")
    assert clean_folder(tmp_path, ["scores.csv"]) == []
    assert len(list(tmp_path.iterdir())) == 2


def test_a_process_is_dead_once_gone_or_after_a_reboot_and_never_judged_elsewhere(
    live_process: Process,
) -> None:
    assert not is_dead(this_process())
    assert not is_dead(live_process)
    assert is_dead(dead_process())
    assert is_dead(replace(live_process, boot_id="an-earlier-boot"))
    assert is_dead(replace(live_process, started=live_process.started + 1))  # PID reused
    assert not is_dead(replace(dead_process(), host="another-machine"))


def test_one_line_per_kind_naming_runs_versions_and_folders(tmp_path: Path) -> None:
    lines = describe(
        [
            Leftover(LeftoverKind.run, "3f2a" * 8, candidate_runs=3),
            Leftover(LeftoverKind.version, "7"),
            Leftover(LeftoverKind.version, "8"),
            Leftover(LeftoverKind.file, ".scores.csv.womac-1-2-0a1b2c3d.x.tmp", folder=tmp_path),
            Leftover(LeftoverKind.file, ".cohort.csv.ab12cd34.tmp", folder=tmp_path),
        ]
    )
    assert lines == [
        f"cleaned up after a killed training: run {'3f2a' * 8} (with 3 candidate runs) closed "
        "as FAILED; versions 7, 8 tagged abandoned (they will never be promoted)",
        f"removed 2 temporary files left by killed womac commands in {tmp_path}/ "
        "(unfinished cohort.csv, scores.csv)",
    ]
    assert describe([]) == []


def test_womac_simulate_removes_a_killed_writers_file_before_writing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from womac.pipeline.cli import app

    left = temporary(tmp_path, dead_process(), target="cohort.csv")

    result = CliRunner().invoke(
        app,
        ["simulate", "--n", "20", "--out", str(tmp_path / "cohort.csv")],
        env={"COLUMNS": "400"},
    )

    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert (
        f"note: removed 1 temporary file left by a killed womac command in {tmp_path}/ "
        "(an unfinished cohort.csv)" in said
    )
    assert not left.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["cohort.csv"]
