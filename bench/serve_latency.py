"""Single-request latency of POST /v1/predict against a real uvicorn process.

Serves the champion of the MLflow store in the working directory (run ``make run`` or
``womac train`` first), sends requests one at a time over one keep-alive connection, prints
p50/p90/p99 and writes ``bench/results/serve_latency.json``.

    .venv/bin/python bench/serve_latency.py [--requests 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

PATIENT = {
    "age": 64,
    "sex": "female",
    "bmi": 31.0,
    "joint": "knee",
    "kl_grade": 3,
    "womac_pain_0": 9,
    "womac_stiffness_0": 4,
    "womac_function_0": 30,
    "prp": True,
    "rehab": False,
    "injections": 2,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    womac = str(Path(sys.executable).parent / "womac")
    started = time.perf_counter()
    server = subprocess.Popen(
        [womac, "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10.0) as client:
            while True:
                if server.poll() is not None:
                    sys.exit("server exited; is a champion registered? run `womac train`")
                try:
                    if client.post("/v1/predict", json=PATIENT).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            cold_start = time.perf_counter() - started
            for _ in range(args.warmup):
                client.post("/v1/predict", json=PATIENT)
            timings = []
            for _ in range(args.requests):
                begin = time.perf_counter()
                response = client.post("/v1/predict", json=PATIENT)
                timings.append((time.perf_counter() - begin) * 1000)
                response.raise_for_status()
    finally:
        server.terminate()
        server.wait(timeout=15)

    quantiles = statistics.quantiles(timings, n=100)
    result = {
        "requests": args.requests,
        "p50_ms": round(quantiles[49], 2),
        "p90_ms": round(quantiles[89], 2),
        "p99_ms": round(quantiles[98], 2),
        "mean_ms": round(statistics.fmean(timings), 2),
        "cold_start_s": round(cold_start, 2),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
    }
    print(f"{'metric':<14}{'value':>10}")
    for key, value in result.items():
        if key != "machine":
            print(f"{key:<14}{value:>10}")
    print(result["machine"])
    out = Path("bench/results/serve_latency.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
