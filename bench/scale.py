"""Batch scoring and training at scale: wall time, patients/s and peak memory.

Each job runs as its own ``womac`` process (batch: ``womac predict`` with explanations,
range, chance and eligibility; training: ``womac train`` into a throwaway MLflow store), so
its peak resident memory is its own. Simulated cohorts are written under
``bench/results/data`` once and reused.

    .venv/bin/python bench/scale.py batch [--sizes 1000 100000 1000000]
    .venv/bin/python bench/scale.py train [--sizes 5000 50000 500000]
    .venv/bin/python bench/scale.py formats [--sizes 1000000]

``formats`` scores the same cohort read from CSV, .xlsx and Parquet (each written once from
the CSV) with ``womac predict``, so the reading of each format is what differs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import RESULTS, print_table, womac, write_result

if TYPE_CHECKING:
    import pandas as pd

DATA = RESULTS / "data"


def cohort(n: int, seed: int = 4242) -> Path:
    """A simulated cohort of ``n`` joints (written once)."""
    path = DATA / f"cohort-{n}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [womac(), "simulate", "--n", str(n), "--seed", str(seed), "--out", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return path


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"} | (env or {}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def batch(sizes: list[int]) -> None:
    rows, result = [], {}
    for n in sizes:
        data = cohort(n)
        with tempfile.TemporaryDirectory() as folder:
            seconds, peak = run(
                [womac(), "predict", "--data", str(data), "--out", f"{folder}/scores.csv"]
            )
        rows.append([n, seconds, n / seconds, peak])
        result[str(n)] = {"seconds": seconds, "patients_per_s": n / seconds, "peak_rss_mib": peak}
    print_table(["patients", "seconds", "patients/s", "peak RSS MiB"], rows)
    print(f"written to {write_result('batch', result)}")


def train(sizes: list[int]) -> None:
    rows, result = [], {}
    for n in sizes:
        data = cohort(n, seed=777)
        with tempfile.TemporaryDirectory() as folder:
            env = {
                "WOMAC_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
                "WOMAC_ARTIFACT_ROOT": f"{folder}/mlruns",
            }
            seconds, peak = run([womac(), "train", "--data", str(data)], env)
        rows.append([n, seconds, peak])
        result[str(n)] = {"seconds": seconds, "peak_rss_mib": peak}
    print_table(["patients", "seconds", "peak RSS MiB"], rows)
    print(f"written to {write_result('train', result)}")


def formats(sizes: list[int]) -> None:
    import pandas as pd

    rows, result = [], {}
    for n in sizes:
        csv = cohort(n)
        inputs = {".csv": csv}
        for suffix in (".xlsx", ".parquet"):
            path = csv.with_suffix(suffix)
            if not path.exists():
                frame = pd.read_csv(csv)
                if suffix == ".parquet":
                    frame.to_parquet(path, index=False)
                else:
                    _write_workbook(frame, path)
            inputs[suffix] = path
        timings = {}
        for suffix, data in inputs.items():
            with tempfile.TemporaryDirectory() as folder:
                command = [womac(), "predict", "--data", str(data), "--out", f"{folder}/s.csv"]
                timings[suffix] = run(command)
        for suffix, (seconds, peak) in timings.items():
            ratio = seconds / timings[".csv"][0]
            rows.append([n, suffix, seconds, n / seconds, ratio, peak])
            result[f"{n}{suffix}"] = {
                "seconds": seconds,
                "patients_per_s": n / seconds,
                "times_csv": ratio,
                "peak_rss_mib": peak,
            }
    print_table(["patients", "input", "seconds", "patients/s", "x CSV", "peak RSS MiB"], rows)
    print(f"written to {write_result('formats', result)}")


def _write_workbook(frame: pd.DataFrame, path: Path) -> None:
    """The frame as one sheet, written row by row in xlsxwriter's constant-memory mode (which
    keeps only the current row: pandas' ``to_excel`` writes by column and would lose data)."""
    import math

    import xlsxwriter

    with xlsxwriter.Workbook(str(path), {"constant_memory": True}) as book:
        sheet = book.add_worksheet()
        sheet.write_row(0, 0, list(frame.columns))
        for number, row in enumerate(frame.itertuples(index=False), start=1):
            sheet.write_row(
                number,
                0,
                ["" if isinstance(v, float) and math.isnan(v) else v for v in row],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=["batch", "train", "formats"])
    parser.add_argument("--sizes", type=int, nargs="+")
    args = parser.parse_args()
    if args.job == "batch":
        batch(args.sizes or [1_000, 100_000, 1_000_000])
    elif args.job == "formats":
        formats(args.sizes or [1_000_000])
    else:
        train(args.sizes or [5_000, 50_000, 500_000])


if __name__ == "__main__":
    main()
