"""The registered model as a data scientist uses it: ``mlflow.pyfunc`` predict on a frame.

Loads ``models:/womac-improvement@champion`` from the store in the working directory, reads a
simulated cohort export with plain ``pd.read_csv`` and times ``predict`` (contract checks,
features, prediction, full per-field TreeSHAP, interval, chance, eligibility, warnings) and
``explain`` (a ``shap.Explanation``), median of a few runs per size.

    .venv/bin/python bench/pyfunc.py [--sizes 1000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import print_table, womac, write_result


def export(n: int, folder: Path) -> Path:
    """A simulated cohort export of ``n`` joints to score (12-month scores dropped)."""
    path = folder / f"export-{n}.csv"
    subprocess.run(
        [womac(), "simulate", "--n", str(n), "--seed", "777", "--out", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    started = time.perf_counter()
    model = mlflow.pyfunc.load_model("models:/womac-improvement@champion")
    load_seconds = time.perf_counter() - started
    rows, result = [], {"load_seconds": load_seconds, "sizes": {}}
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            frame = pd.read_csv(export(n, Path(folder)))
            frame = frame.drop(columns=[c for c in frame.columns if c.endswith("_12")])
            frame = frame.dropna(subset=["age", "bmi", "womac_pain_0", "womac_function_0"])
            frame = frame.dropna(subset=["womac_stiffness_0"])
            timings: dict[str, list[float]] = {"predict": [], "explain": []}
            calls = {"predict": model.predict, "explain": model.unwrap_python_model().explain}
            for _ in range(args.repeat):
                for name, call in calls.items():
                    began = time.perf_counter()
                    call(frame)
                    timings[name].append(time.perf_counter() - began)
            predict_s = statistics.median(timings["predict"])
            explain_s = statistics.median(timings["explain"])
            rows.append([len(frame), predict_s, len(frame) / predict_s, len(frame) / explain_s])
            result["sizes"][str(len(frame))] = {
                "predict_seconds": predict_s,
                "predict_patients_per_s": len(frame) / predict_s,
                "explain_seconds": explain_s,
                "explain_patients_per_s": len(frame) / explain_s,
            }
    print(f"load_model: {load_seconds:.2f} s")
    print_table(["patients", "predict s", "predict patients/s", "explain patients/s"], rows)
    print(f"written to {write_result('pyfunc', result)}")


if __name__ == "__main__":
    main()
