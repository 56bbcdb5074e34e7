"""Serving throughput and latency: POST /v1/predict (with explanations) against GET /health.

A real ``womac serve`` process on 127.0.0.1 (the champion of the store in the working
directory), loaded by ``wrk`` (Debian package) at fixed concurrency and duration. The trivial
``/health`` route measured in the same run is the framework's ceiling.

    .venv/bin/python bench/serve_load.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import PATIENT, print_table, server, write_result

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str, path: str, connections: int, seconds: int, body: dict | None
) -> dict[str, float]:
    """Run wrk once; requests per second and latency percentiles in milliseconds."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            "wrk",
            f"-t{min(connections, 2)}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            f"{url}{path}",
        ]
        if body is not None:
            script = Path(folder) / "post.lua"
            script.write_text(
                'wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(json.dumps(body))}\n"
            )
            command[1:1] = ["-s", str(script)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    percentiles = {
        int(p): float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", output, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "req_per_s": rate,
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")

    rows, result = [], {}
    with server() as (url, _, _):
        wrk(url, "/health", 4, 2, None)  # warm-up
        wrk(url, "/v1/predict", 4, 2, PATIENT)
        for connections in (1, 16):
            health = wrk(url, "/health", connections, args.seconds, None)
            predict = wrk(url, "/v1/predict", connections, args.seconds, PATIENT)
            ratio = predict["req_per_s"] / health["req_per_s"]
            result[f"c{connections}"] = {"health": health, "predict": predict, "ratio": ratio}
            for name, figures in (("GET /health", health), ("POST /v1/predict", predict)):
                rows.append(
                    [
                        name,
                        connections,
                        figures["req_per_s"],
                        figures["p50_ms"],
                        figures["p99_ms"],
                        figures["non_2xx"],
                    ]
                )
            rows.append(["predict / health", connections, f"{ratio:.0%}", "", "", ""])
    print_table(["route", "concurrency", "req/s", "p50 ms", "p99 ms", "errors"], rows)
    print(f"written to {write_result('serve_load', result)}")


if __name__ == "__main__":
    main()
