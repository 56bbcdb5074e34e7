"""What a command killed outright (SIGKILL, lost power) leaves behind, found and cleaned later.

An interrupt that Python sees is handled where it lands (``womac.pipeline.safety``): the run
is closed as killed, a registration under way is undone, temporary files are removed. A
SIGKILL or a power cut skips all of that and leaves:

- a training run, and its candidates' runs, RUNNING for ever;
- a registered version with no promotion verdict (training records it last, so a version
  without one was cut short);
- a hidden temporary file beside an output (``womac predict``'s holds scored rows with
  patient ids; the Spark engine's is a folder holding the staged cohort too).

Each carries the process that made it, so that a later command can tell a dead writer's
leftovers from a live writer's work: a training run is tagged with the host name, PID, boot
and start time of its process (:func:`process_tags`); a temporary file's name holds the
writer's PID, start time and a digest of its host name (:func:`temporary_prefix`). A
process counts as dead when its host is this one and the PID is gone, is a zombie, or now
belongs to a process started at another time (PID reuse), or when this machine has booted
since. Work from another host is never judged: its processes cannot be seen from here.

:func:`clean_store` closes orphaned runs as FAILED and tags cut-short versions
``abandoned`` (never deleted, never promoted); :func:`clean_folder` removes dead writers'
temporary files. Neither raises: a command that cannot clean (a read-only store, a folder it
cannot list) goes on as if there were nothing to clean. :func:`describe` says what was
cleaned in one line per kind, naming runs, versions and our own file names, never a patient.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from womac.models.registry import (
    ABANDONED,
    ABANDONED_AT_TAG,
    ABANDONED_TAG,
    CHAMPION,
    PROMOTION_TAG,
    RUN_ID_TAG,
)

if TYPE_CHECKING:
    from womac.settings import Settings

logger = logging.getLogger(__name__)

# Tags on a training's MLflow run: the process that runs it.
HOST_TAG = "womac.host"
PID_TAG = "womac.pid"
BOOT_TAG = "womac.boot_id"
STARTED_TAG = "womac.started"  # the process's start time, in clock ticks after boot
CLOSED_TAG = "womac.closed_because"
# Set on every training run by releases before the process tags (womac.pipeline.train).
LEGACY_TAG = "code.womac_version"
PARENT_TAG = "mlflow.parentRunId"
CUT_SHORT = ("FAILED", "KILLED")  # a run whose training never reached its end

TEMPORARY_SUFFIXES = (".tmp", ".spark", ".creating")
# ".<target>.womac-<pid>-<start ticks>-<host digest>.<mkstemp's 8 random characters><suffix>"
_OURS = re.compile(
    r"\.(?P<target>.+)\.womac-(?P<pid>\d+)-(?P<started>\d+)-(?P<host>[0-9a-f]{8})"
    r"\.[a-z0-9_]+(?:\.tmp|\.spark|\.creating)"
)
# Older releases named them ".<target>.<8 random characters><suffix>", with no writer.
_UNMARKED = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}(?:\.tmp|\.spark|\.creating)")
UNMARKED_AGE_S = 3600.0
"""An unmarked temporary file is removed once untouched this long: a live writer adds to it
every chunk (a Spark job, to its folder), far more often than that."""


@dataclass(frozen=True, slots=True)
class Process:
    """A process as seen from its own machine (``started`` is 0 where ``/proc`` is absent)."""

    host: str
    pid: int
    boot_id: str
    started: int


def this_process() -> Process:
    """The running process."""
    return Process(socket.gethostname(), os.getpid(), _boot_id(), _start_ticks(os.getpid()))


def process_tags() -> dict[str, str]:
    """Tags that let a later command tell whether the training of a run is still alive."""
    process = this_process()
    return {
        HOST_TAG: process.host,
        PID_TAG: str(process.pid),
        BOOT_TAG: process.boot_id,
        STARTED_TAG: str(process.started),
    }


def is_dead(process: Process) -> bool:
    """Whether ``process`` is provably gone; ``False`` for one on another host (unknowable).

    PID reuse is caught by the start time on Linux (``/proc/<pid>/stat``); elsewhere a PID
    taken by a new process counts as alive, which only delays a cleaning.
    """
    if process.host != socket.gethostname():
        return False
    if process.pid == os.getpid():
        return False
    boot = _boot_id()
    if process.boot_id and boot and process.boot_id != boot:
        return True  # this machine has started again since
    return _pid_is_dead(process.pid, process.started)


def _pid_is_dead(pid: int, started: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's: alive
    stat = _stat(pid)
    if stat is None:
        return False  # cannot look closer (hidden /proc, another system)
    state, ticks = stat
    return state == "Z" or (started > 0 and ticks != started)


def _stat(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks after boot) from ``/proc/<pid>/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: fields are counted after it.
    fields = text[text.rindex(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _start_ticks(pid: int) -> int:
    stat = _stat(pid)
    return 0 if stat is None else stat[1]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _host_digest(host: str) -> str:
    return hashlib.sha256(host.encode()).hexdigest()[:8]


# -- temporary files ---------------------------------------------------------------------


def temporary_prefix(target: str, writer: Process | None = None) -> str:
    """The start of the name of a hidden temporary file (or folder) that becomes ``target``.

    For ``tempfile.mkstemp``/``mkdtemp`` with ``dir`` the target's folder and a suffix of
    :data:`TEMPORARY_SUFFIXES`: ``.scores.csv.womac-4242-812345-1a2b3c4d.`` (PID, start
    time, host digest), so that :func:`clean_folder` removes it only once its writer is dead.
    Characters other than letters, digits, ``.``, ``-`` and ``_`` become ``_`` (Spark's
    paths refuse some). ``writer`` is this process unless given.
    """
    process = writer or this_process()
    name = re.sub(r"[^\w.-]", "_", target)
    return f".{name}.womac-{process.pid}-{process.started}-{_host_digest(process.host)}."


def _dead_writer(name: str) -> bool:
    found = _OURS.fullmatch(name)
    if found is None or found["host"] != _host_digest(socket.gethostname()):
        return False
    pid = int(found["pid"])
    return pid != os.getpid() and _pid_is_dead(pid, int(found["started"]))


def _unmarked_and_stale(entry: os.DirEntry[str], targets: set[str], now: float) -> bool:
    found = _UNMARKED.fullmatch(entry.name)
    if found is None or _OURS.fullmatch(entry.name) or found["target"] not in targets:
        return False
    return now - _newest_change(Path(entry.path)) > UNMARKED_AGE_S


def _newest_change(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for folder, _, files in os.walk(path):
            for name in (".", *files):
                try:
                    newest = max(newest, (Path(folder) / name).lstat().st_mtime)
                except OSError:
                    continue
    return newest


# -- what was cleaned --------------------------------------------------------------------


class LeftoverKind(StrEnum):
    """What kind of leftover was cleaned."""

    run = "run"  # a training run closed as FAILED (with its RUNNING candidate runs)
    version = "version"  # a registered version tagged abandoned
    champion = "champion"  # a version the alias had already moved to: its verdict recorded
    file = "file"  # a hidden temporary file or folder removed


@dataclass(frozen=True, slots=True)
class Leftover:
    """One thing a killed command left, and the next one cleaned.

    ``name`` is a run id, a version number, or a temporary file's name (ours: it holds the
    name of the output it was to become, never its contents); ``folder`` is a file's folder.
    """

    kind: LeftoverKind
    name: str
    folder: Path | None = None
    candidate_runs: int = 0

    @property
    def target(self) -> str:
        """For a temporary file, the name of the output it was to become."""
        found = _OURS.fullmatch(self.name) or _UNMARKED.fullmatch(self.name)
        return found["target"] if found else self.name


def describe(leftovers: Iterable[Leftover]) -> list[str]:
    """One line per kind of thing cleaned (the store, then each folder); none if nothing was.

    For example ``cleaned up after a killed training: run 3f2a1b2c closed as FAILED; version
    7 tagged abandoned (it will never be promoted)``.
    """
    found = list(leftovers)
    lines = []
    store = []
    runs = [item for item in found if item.kind is LeftoverKind.run]
    if runs:
        candidates = sum(item.candidate_runs for item in runs)
        with_candidates = (
            f" (with {candidates} candidate run{'s' if candidates > 1 else ''})"
            if candidates
            else ""
        )
        store.append(
            f"{_counted('run', [item.name for item in runs])}{with_candidates} closed as FAILED"
        )
    abandoned = [item.name for item in found if item.kind is LeftoverKind.version]
    if abandoned:
        they = "it" if len(abandoned) == 1 else "they"
        store.append(
            f"{_counted('version', abandoned)} tagged abandoned ({they} will never be promoted)"
        )
    champions = [item.name for item in found if item.kind is LeftoverKind.champion]
    if champions:
        store.append(
            f"{_counted('version', champions)}, already made champion before the kill, "
            "recorded as champion"
        )
    if store:
        lines.append("cleaned up after a killed training: " + "; ".join(store))
    folders: dict[Path, list[Leftover]] = {}
    for item in found:
        if item.kind is LeftoverKind.file and item.folder is not None:
            folders.setdefault(item.folder, []).append(item)
    for folder, files in folders.items():
        shown = "the current folder" if str(folder) == "." else f"{folder}/"
        targets = ", ".join(sorted({item.target for item in files}))
        if len(files) == 1:
            lines.append(
                f"removed 1 temporary file left by a killed womac command in {shown} "
                f"(an unfinished {targets})"
            )
        else:
            lines.append(
                f"removed {len(files)} temporary files left by killed womac commands in "
                f"{shown} (unfinished {targets})"
            )
    return lines


def _counted(noun: str, names: list[str]) -> str:
    return f"{noun}{'s' if len(names) > 1 else ''} {', '.join(names)}"


# -- cleaning ----------------------------------------------------------------------------


def clean_folder(folder: Path, writing: Iterable[str] = ()) -> list[Leftover]:
    """Remove the hidden temporary files in ``folder`` whose writer is dead.

    Ours (named by :func:`temporary_prefix`) go once their writer is dead (never a live
    writer's, nor one from another host). Unmarked ones, from releases before, go only when
    they were to become one of the outputs in ``writing`` (file names in ``folder``) and
    have not changed for :data:`UNMARKED_AGE_S`. Never raises.
    """
    targets = {name for target in writing for name in (target, re.sub(r"[^\w.-]", "_", target))}
    removed: list[Leftover] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError as error:
        logger.debug("cannot look for leftovers in %s: %s", folder, type(error).__name__)
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not entry.name.endswith(TEMPORARY_SUFFIXES):
            continue
        try:
            if not (_dead_writer(entry.name) or _unmarked_and_stale(entry, targets, now)):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as error:
            logger.debug("cannot remove %s: %s", entry.path, type(error).__name__)
            continue
        removed.append(Leftover(LeftoverKind.file, entry.name, folder=folder))
    return removed


def clean_store(client: Any, settings: Settings, *, store_locked: bool, by: str) -> list[Leftover]:
    """Close orphaned training runs as FAILED, then settle the versions they cut short.

    Parameters
    ----------
    client
        An ``MlflowClient`` of the store (:func:`womac.models.store.connect`).
    settings
        Experiment, registered model and alias names.
    store_locked
        The caller holds the store lock of a local SQLite store
        (:func:`womac.pipeline.safety.store_lock`): no training can be in its MLflow phase,
        so runs from releases without process tags are orphaned too.
    by
        The command cleaning (``"womac predict"``), recorded on what it changes.

    Returns
    -------
    list of Leftover
        What was cleaned; what could not be cleaned (an error of the store) is skipped and
        logged at debug level, never raised.
    """
    from womac.models.tracking import few_retries

    cleaned: list[Leftover] = []
    try:
        with few_retries():
            cleaned += _close_orphaned_runs(client, settings, store_locked=store_locked, by=by)
            cleaned += _settle_cut_versions(client, settings)
    except Exception as error:  # cleaning never makes a command fail
        logger.debug("leftovers not cleaned: %s", type(error).__name__)
    return cleaned


def _close_orphaned_runs(
    client: Any, settings: Settings, *, store_locked: bool, by: str
) -> list[Leftover]:
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        return []
    running = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    children: dict[str, list[str]] = {}
    for run in running:
        parent = run.data.tags.get(PARENT_TAG)
        if parent:
            children.setdefault(parent, []).append(run.info.run_id)
    closed = []
    for run in running:
        tags = run.data.tags
        if PARENT_TAG in tags:
            continue
        why = _why_orphaned(tags, store_locked)
        if why is None:
            continue
        reason = f"{why}; closed as FAILED by `{by}` at {_now()}"
        for run_id in (*children.get(run.info.run_id, []), run.info.run_id):
            client.set_tag(run_id, CLOSED_TAG, reason)
            client.set_terminated(run_id, "FAILED")
        closed.append(
            Leftover(
                LeftoverKind.run,
                run.info.run_id,
                candidate_runs=len(children.get(run.info.run_id, [])),
            )
        )
        logger.info("closed orphaned training run %s as FAILED", run.info.run_id)
    return closed


def _why_orphaned(tags: dict[str, str], store_locked: bool) -> str | None:
    """Why a RUNNING run's training is known to be dead, or ``None`` (alive, or not ours)."""
    if PID_TAG in tags:
        try:
            process = Process(
                tags.get(HOST_TAG, ""),
                int(tags[PID_TAG]),
                tags.get(BOOT_TAG, ""),
                int(tags.get(STARTED_TAG) or 0),
            )
        except ValueError:
            return None
        if not is_dead(process):
            return None
        return f"its training (PID {process.pid} on {process.host}) was killed"
    if LEGACY_TAG in tags and store_locked:
        return "its training was killed (the store was free, so no training was running)"
    return None


def _settle_cut_versions(client: Any, settings: Settings) -> list[Leftover]:
    """Versions whose training died before recording a verdict: abandoned (or, when the
    alias already points at one, recorded as the champion it was made)."""
    from mlflow.exceptions import MlflowException

    from womac.models.store import champion_version

    name = settings.model_name.replace("'", "\\'")
    cut = [v for v in client.search_model_versions(f"name='{name}'") if not _has_verdict(v)]
    if not cut:
        return []
    champion = champion_version(client, settings.model_name, settings.champion_alias)
    settled = []
    for version in sorted(cut, key=lambda found: int(found.version)):
        run_id = version.tags.get(RUN_ID_TAG) or version.run_id
        if not run_id:
            continue  # registered otherwise than by a training: not ours
        try:
            run = client.get_run(run_id)
        except MlflowException:
            continue
        tags = run.data.tags
        if not (PID_TAG in tags or LEGACY_TAG in tags) or run.info.status not in CUT_SHORT:
            # Not ours; or its training may still be registering it (RUNNING); or it
            # finished, so a person registered this version from its run afterwards.
            continue
        number = str(version.version)
        if champion is not None and str(champion.version) == number:
            # The alias moves only for a promoted version, just before the verdict is written.
            client.set_model_version_tag(settings.model_name, number, PROMOTION_TAG, CHAMPION)
            settled.append(Leftover(LeftoverKind.champion, number))
            continue
        reason = f"its training was killed before it finished registering it (run {run_id})"
        client.set_model_version_tag(settings.model_name, number, ABANDONED_TAG, reason)
        client.set_model_version_tag(settings.model_name, number, ABANDONED_AT_TAG, _now())
        client.set_model_version_tag(settings.model_name, number, PROMOTION_TAG, ABANDONED)
        settled.append(Leftover(LeftoverKind.version, number))
        logger.info("tagged version %s of %s abandoned", number, settings.model_name)
    return settled


def _has_verdict(version: Any) -> bool:
    return PROMOTION_TAG in version.tags


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
