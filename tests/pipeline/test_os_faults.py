"""A full disk or a read-only folder: one line naming the path, exit 1, nothing half-written.

Real faults, not mocks: each command runs in a private mount namespace over a tiny tmpfs
(full after a few kilobytes) or a read-only one, which hold for root too, as CI runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import registry_client, settings_env, store_settings, womac_command
from womac.settings import Settings

UNSHARE = shutil.which("unshare")


def _namespaces_work() -> bool:
    if UNSHARE is None:
        return False
    probe = [UNSHARE, "--mount", "--map-root-user", "sh", "-c", "mount -t tmpfs tmpfs /mnt"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(
    not _namespaces_work(), reason="needs unshare and mount namespaces for a real small disk"
)

# $1: the folder to mount over, $2: size, $3: ro or rw, $4: a file to copy in first; the rest
# is the command, run in that folder. The folder's listing afterwards goes to stderr's end.
_ON_SMALL_DISK = r"""
set -e
folder=$1; size=$2; mode=$3; seed=$4; shift 4
mount -t tmpfs -o size=$size tmpfs "$folder"
if [ -n "$seed" ]; then cp "$seed" "$folder/"; fi
if [ "$mode" = ro ]; then mount -o remount,ro "$folder"; fi
cd "$folder"
set +e
"$@"
status=$?
echo "LISTING: $(ls -A "$folder" | tr '\n' ' ')" >&2
exit $status
"""


def on_small_disk(
    folder: Path,
    args: list[str],
    env: dict[str, str],
    *,
    size: str = "64k",
    read_only: bool = False,
    seed: Path | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``womac args`` in ``folder`` over a fresh tmpfs; the result and the files left."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [UNSHARE or "unshare", "--mount", "--map-root-user", "sh", "-c", _ON_SMALL_DISK]
    command += ["sh", str(folder), size, "ro" if read_only else "rw", str(seed or "")]
    command += [womac_command(), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    listing = done.stderr.rsplit("LISTING:", 1)[-1].split()
    done.stderr = done.stderr.rsplit("LISTING:", 1)[0]
    return done, listing


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 1 with one line on stderr, holding each of ``words``, and no traceback."""
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in done.stdout + done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    path = tmp_path / "cohort.csv"
    subprocess.run(
        [womac_command(), "simulate", "--n", "300", "--out", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def test_simulate_into_a_read_only_folder(tmp_path: Path) -> None:
    env = settings_env(store_settings(tmp_path))
    done, left = on_small_disk(
        tmp_path / "ro", ["simulate", "--n", "100", "--out", "cohort.csv"], env, read_only=True
    )
    assert_one_line(done, "read-only file system", str(tmp_path / "ro"), "no file")
    assert left == []


def test_simulate_onto_a_full_disk(tmp_path: Path) -> None:
    env = settings_env(store_settings(tmp_path))
    done, left = on_small_disk(
        tmp_path / "full", ["simulate", "--n", "5000", "--out", "cohort.csv"], env
    )
    assert_one_line(done, "no space left", "cohort.csv", "free some space")
    assert left == []  # no half file, no hidden temporary


def test_predict_onto_a_full_disk(tmp_path: Path, trained: object, store: Settings) -> None:
    """Scores of real patients never stay behind half-written, even in a hidden file."""
    done, left = on_small_disk(
        tmp_path / "full",
        ["predict", "--data", "cohort.csv", "--out", "scores.csv", "--explanation", "full"],
        settings_env(store),
        size="400k",  # the cohort (about 290 KB) fits, its scores do not
        seed=_cohort_of(tmp_path, 2000),
    )
    assert_one_line(done, "no space left", "scores.csv", "nothing was written to scores.csv")
    assert left == ["cohort.csv"]


def test_training_whose_artifacts_fill_the_disk(tmp_path: Path, cohort: Path) -> None:
    """The store is elsewhere and sound; the artifacts' disk fills: nothing is registered."""
    settings = store_settings(tmp_path / "store", artifact_root=tmp_path / "full" / "mlruns")
    done, _ = on_small_disk(
        tmp_path / "full", ["train", "--data", str(cohort)], settings_env(settings), size="300k"
    )
    assert_one_line(done, "no space left", "nothing was registered and no alias moved")
    client = registry_client(settings)
    assert client.search_model_versions() == []
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="attributes.run_name = 'train'",
    )
    assert [run.info.status for run in runs] == ["FAILED"]


def _cohort_of(folder: Path, n: int) -> Path:
    """A simulated cohort of ``n`` patients, as ``cohort.csv`` (the name commands are given)."""
    path = folder / "seed" / "cohort.csv"
    subprocess.run(
        [womac_command(), "simulate", "--n", str(n), "--out", str(path)],
        check=True,
        capture_output=True,
    )
    return path
