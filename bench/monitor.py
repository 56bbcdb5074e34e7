"""``womac monitor`` on 10,000 and 100,000 later patients: wall time against the 30 s budget.

Issue 16's budget: judging the champion on 100,000 patients treated since its training takes
under 30 s. The store of ``--store`` (default: the working directory, as ``bench/run`` runs
it) must hold a champion (``womac train``). For each size, patients of the same process are
simulated with a seed training does not use, into a CSV in a temporary folder, then

- the whole command as a user runs it, ``womac monitor --data later.csv --json``, as its own
  process (wall time, peak memory, exit code, verdict), ``--repeat`` times: median and max;
- in this process, its phases called as ``monitor()`` calls them: opening the store, reading
  the export, loading the model, judging, hashing the export, recording in MLflow (median).

Each run, of the command or in process, logs an MLflow run and tags the champion's version:
fine for a bench store. Exits 1 if a command fails or the budget is broken.

    .venv/bin/python bench/monitor.py [--sizes 10000 100000] [--repeat 3] [--store DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import print_table, womac, write_result

BUDGET_SECONDS = 30.0
BUDGET_PATIENTS = 100_000
# Training's default cohort is simulated with the settings' seed; these are other patients.
LATER_SEED = 20270101
PHASES = ["store", "read", "load", "judge", "hash", "record"]


def later_cohort(n: int, folder: Path) -> Path:
    """``n`` patients treated after the training cohort, written as ``womac simulate`` does."""
    from womac.data.simulate import simulate_cohort
    from womac.pipeline.files import atomic_write_csv
    from womac.settings import get_settings

    if get_settings().seed == LATER_SEED:
        raise SystemExit("the later patients' seed is the training seed: change LATER_SEED")
    cohort, _ = simulate_cohort(n, LATER_SEED)
    path = folder / f"later-{n}.csv"
    atomic_write_csv(cohort, path)
    return path


def command(data: Path, folder: Path) -> dict[str, Any]:
    """One ``womac monitor --json`` process: wall seconds, peak RSS, exit code, verdict."""
    # To a file, not a pipe: the JSON can outgrow a pipe's buffer while we wait for the exit.
    out, err = folder / "monitor.json", folder / "monitor.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            [womac(), "monitor", "--data", str(data), "--json"],
            env=os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"},
            stdout=stdout,
            stderr=stderr,
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code not in (0, 3):  # 0 holds or not judged yet, 3 degraded, else refused
        raise SystemExit(f"womac monitor exited {exit_code}:\n{err.read_text()[-2000:]}")
    verdict = json.loads(out.read_text())["verdict"]
    return {
        "seconds": seconds,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "exit_code": exit_code,
        "verdict": verdict,
    }


def phases(data: Path) -> dict[str, float]:
    """Seconds of each phase of ``monitor()``, called in its order, in this process."""
    from womac.data.cohort import AS_CONTRACT, read_cohort
    from womac.models.store import connect
    from womac.models.tracking import check_store
    from womac.pipeline.monitor import judge_cohort, load_monitored
    from womac.pipeline.monitor_record import record
    from womac.settings import get_settings

    settings = get_settings()
    seconds: dict[str, float] = {}

    def timed(phase: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = call()
        seconds[phase] = time.perf_counter() - started
        return value

    def open_store() -> Any:
        check_store(uri)
        return connect(uri)

    def sha256() -> str:
        with data.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()

    uri = settings.resolved_tracking_uri()
    client = timed("store", open_store)
    cohort = timed("read", lambda: read_cohort(data, layout=AS_CONTRACT))
    model = timed("load", lambda: load_monitored(client, settings.model_uri, uri))
    result = timed("judge", lambda: judge_cohort(model, cohort, settings))
    result.data["sha256"] = timed("hash", sha256)
    timed("record", lambda: record(client, settings, model, result, AS_CONTRACT))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, BUDGET_PATIENTS])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--store", type=Path, default=Path("."), help="folder of the MLflow store (a champion)"
    )
    args = parser.parse_args()
    store = args.store.resolve()
    if not (store / "mlflow.db").exists():
        sys.exit(f"no MLflow store in {store}: run `womac train` there first")
    # The command and the phases find the store as a user's command does: in the working folder.
    os.chdir(store)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    command_rows, phase_rows = [], []
    result: dict[str, Any] = {
        "budget_seconds": BUDGET_SECONDS,
        "budget_patients": BUDGET_PATIENTS,
        "seed": LATER_SEED,
        "sizes": {},
    }
    broken = False
    with tempfile.TemporaryDirectory(prefix="womac-bench-monitor-") as name:
        folder = Path(name)
        for n in args.sizes:
            print(f"{n:,} later patients: simulating, then {args.repeat} runs ...", flush=True)
            data = later_cohort(n, folder)
            runs = [command(data, folder) for _ in range(args.repeat)]
            walls = [run["seconds"] for run in runs]
            median_s, max_s = statistics.median(walls), max(walls)
            verdicts = sorted({run["verdict"] for run in runs})
            peak = max(run["peak_rss_mib"] for run in runs)
            passed = max_s < BUDGET_SECONDS if n == BUDGET_PATIENTS else None
            broken = broken or passed is False
            timings = [phases(data) for _ in range(args.repeat)]
            phase_s = {p: statistics.median(t[p] for t in timings) for p in PHASES}
            command_rows.append(
                [
                    n,
                    median_s,
                    max_s,
                    n / median_s,
                    peak,
                    "/".join(verdicts),
                    {None: "-", True: "pass", False: "FAIL"}[passed],
                ]
            )
            phase_rows.append([n, *phase_s.values(), sum(phase_s.values())])
            result["sizes"][str(n)] = {
                "command": {
                    "runs": runs,
                    "median_seconds": median_s,
                    "max_seconds": max_s,
                    "patients_per_s": n / median_s,
                    "peak_rss_mib": peak,
                    "verdicts": verdicts,
                    "within_budget": passed,
                },
                "phases_median_seconds": phase_s,
                "phases_runs": timings,
            }
    print(f"\nwomac monitor --data later.csv --json ({args.repeat} runs, wall time)")
    headers = ["patients", "median s", "max s", "patients/s", "peak RSS MiB", "verdict"]
    print_table([*headers, f"< {BUDGET_SECONDS:.0f} s"], command_rows)
    print(f"\nphases in process (median of {args.repeat}, seconds)")
    print_table(["patients", *PHASES, "total"], phase_rows)
    print(f"written to {write_result('monitor', result)}")
    if broken:
        sys.exit(f"budget broken: {BUDGET_PATIENTS:,} patients took over {BUDGET_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
