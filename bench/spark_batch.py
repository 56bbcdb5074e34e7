"""Registry-scale batch scoring: ``womac predict`` in one process vs on Spark.

Scores the same simulated cohort three ways, each as its own ``womac predict`` process with
the champion of the working directory's store: the single process (CSV in, CSV out), Spark
with the CSV (read and checked on the driver, scored in the tasks) and Spark with the same
cohort as Parquet (read and checked in the tasks). Prints wall time, patients/s and the peak
memory of the whole process tree (the command, Spark's JVM and its Python workers), sampled
from /proc: the sum of resident sizes (RSS, what ``ps`` shows, counting pages shared by
forked workers once per process) and of proportional sizes (PSS, shared pages split
between their processes, so the sum is the memory the tree really held).

    .venv/bin/python bench/spark_batch.py [--n 1000000] [--master local[2]]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import RESULTS, machine, print_table, womac, write_result
from scale import cohort

DATA = RESULTS / "data"
SAMPLE_S = 0.1


def as_parquet(csv: Path) -> Path:
    """The cohort as a Parquet file (written once; pyarrow's default row groups)."""
    path = csv.with_suffix(".parquet")
    if not path.exists():
        import pandas as pd

        pd.read_csv(csv).to_parquet(path, index=False)
    return path


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                # The command name may hold spaces: fields after its closing parenthesis.
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def _tree(root: int) -> list[int]:
    children, tree, stack = _children(), [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def _memory_kib(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process (KiB); zero once it has gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            values = dict(line.split(":", 1) for line in rollup if ":" in line)
        return int(values["Rss"].split()[0]), int(values["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


class TreeMemory:
    """Samples a process tree's summed RSS and PSS until stopped; keeps the peaks (MiB)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_rss = self.peak_pss = 0.0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            tree = _tree(self.root)
            sizes = [_memory_kib(pid) for pid in tree]
            self.peak_rss = max(self.peak_rss, sum(rss for rss, _ in sizes) / 1024)
            self.peak_pss = max(self.peak_pss, sum(pss for _, pss in sizes) / 1024)
            self.processes = max(self.processes, len(tree))
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(command: list[str]) -> dict[str, float]:
    """Wall seconds and peak tree memory of one ``womac`` command."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    memory = TreeMemory(process.pid)
    _, errors = process.communicate()
    seconds = time.perf_counter() - started
    memory.stop()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{errors.decode()[-2000:]}")
    return {
        "seconds": seconds,
        "peak_rss_mib": memory.peak_rss,
        "peak_pss_mib": memory.peak_pss,
        "processes": memory.processes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="patients to score")
    parser.add_argument("--master", default="local[2]", help="Spark master")
    args = parser.parse_args()
    csv = cohort(args.n)
    parquet = as_parquet(csv)
    single = [womac(), "predict"]
    spark = [womac(), "predict", "--engine", "spark", "--master", args.master]
    runs = [
        ("single process, CSV", single, csv, "scores.csv"),
        (f"spark {args.master}, CSV", spark, csv, "scores.parquet"),
        (f"spark {args.master}, Parquet", spark, parquet, "scores.parquet"),
    ]
    rows, result = [], {"patients": args.n, "master": args.master, "runs": {}}
    for name, command, data, scores in runs:
        with tempfile.TemporaryDirectory(dir=DATA) as folder:
            figures = run([*command, "--data", str(data), "--out", f"{folder}/{scores}"])
        figures["patients_per_s"] = args.n / figures["seconds"]
        result["runs"][name] = figures
        rows.append(
            [
                name,
                figures["seconds"],
                figures["patients_per_s"],
                figures["peak_rss_mib"],
                figures["peak_pss_mib"],
                int(figures["processes"]),
            ]
        )
    print(f"{args.n:,} simulated patients; {machine()}")
    print_table(
        ["engine, input", "seconds", "patients/s", "peak RSS MiB", "peak PSS MiB", "processes"],
        rows,
    )
    print(f"written to {write_result('spark_batch', result)}")


if __name__ == "__main__":
    main()
