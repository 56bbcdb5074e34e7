"""Soak: POST /v1/predict at concurrency 32 for 60 s on a real server; errors, latency, memory.

A real ``womac serve`` on 127.0.0.1 serves the champion of a store: the one in ``--store``
(trained there first if it holds none), else a throwaway store trained for the run. ``wrk``
(Debian package) sends predictions for 16 simulated patients in turn, at fixed concurrency,
after a short warm-up; without wrk, an asyncio + httpx generator does the same (slower: it
shares the two cores with the server). The server's resident memory is read from
/proc/PID/status when it is ready, after the warm-up, every second of the soak and at the
end. Exits 1 if any request failed (non-2xx answer, socket error or timeout).

    .venv/bin/python bench/soak.py [--seconds 60] [--connections 32] [--store DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from common import print_table, server, womac, write_result

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def patients(count: int = 16, seed: int = 20261130) -> list[dict[str, Any]]:
    """Simulated patients as a client sends them: JSON types, unknown optional fields left
    out (an unknown required one, the KL grade, is sent as null)."""
    from womac.data.contract import FIELD_BY_NAME, as_request
    from womac.data.simulate import simulate_cohort

    cohort, _ = simulate_cohort(count, seed)
    return [
        {
            name: value
            for name, value in as_request(row).items()
            if value is not None or FIELD_BY_NAME[name].required
        }
        for row in cohort.to_dict("records")
    ]


def store_env(folder: Path) -> dict[str, str]:
    """Environment pointing ``womac`` at the store in ``folder``."""
    return {
        "WOMAC_TRACKING_URI": f"sqlite:///{folder.resolve()}/mlflow.db",
        "WOMAC_ARTIFACT_ROOT": str(folder.resolve() / "mlruns"),
        "WOMAC_GENERATED_DIR": str(folder.resolve() / "generated"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def ensure_champion(folder: Path) -> None:
    """Train into ``folder`` unless it already holds a store."""
    if (folder / "mlflow.db").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    print(f"training a champion into {folder} (womac train, ~20 s) ...", flush=True)
    subprocess.run(
        [womac(), "train"],
        env=_environment(store_env(folder)),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _environment(extra: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WOMAC_")} | extra


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc/PID/status (VmRSS), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.M)
    if match is None:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return int(match.group(1)) / 1024


class MemorySampler:
    """Reads a process's RSS every ``interval`` seconds in a thread, until stopped."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.interval):
            self.samples.append((time.monotonic() - started, rss_mib(self.pid)))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_wrk(url: str, bodies: list[dict[str, Any]], connections: int, seconds: int) -> dict:
    """One wrk run rotating through ``bodies``; counts, rate and latency percentiles."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "predict.lua"
        encoded = ",\n".join(json.dumps(json.dumps(body)) for body in bodies)
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"local bodies = {{\n{encoded}\n}}\n"
            "local i = 0\n"
            "request = function()\n"
            "  i = (i % #bodies) + 1\n"
            "  return wrk.format(nil, nil, nil, bodies[i])\n"
            "end\n"
        )
        command = [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            f"{url}/v1/predict",
        ]
        finished = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=seconds + 60
        )
    output = finished.stdout

    def found(pattern: str) -> str:
        match = re.search(pattern, output, re.M)
        if match is None:
            raise RuntimeError(f"unexpected wrk output:\n{output}")
        return match.group(1)

    requests = int(found(r"(\d+) requests in"))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = sum(int(n) for n in socket.groups()) if socket else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    percentiles = {
        int(p): float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\b", output, re.M)
    }
    return {
        "requests": requests,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors,
        "req_per_s": float(found(r"Requests/sec:\s+([\d.]+)")),
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
    }


def run_httpx(url: str, bodies: list[dict[str, Any]], connections: int, seconds: int) -> dict:
    """The same load from asyncio + httpx, when wrk is not installed."""

    async def load() -> dict:
        latencies: list[float] = []
        statuses: list[int] = []
        socket_errors = 0
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:

            async def worker(offset: int) -> None:
                nonlocal socket_errors
                index = offset
                while time.monotonic() < deadline:
                    body = bodies[index % len(bodies)]
                    index += 1
                    started = time.perf_counter()
                    try:
                        response = await client.post("/v1/predict", json=body)
                    except httpx.HTTPError:
                        socket_errors += 1
                        continue
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses.append(response.status_code)

            began = time.monotonic()
            await asyncio.gather(*(worker(i) for i in range(connections)))
            elapsed = time.monotonic() - began
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        return {
            "requests": len(statuses) + socket_errors,
            "non_2xx": sum(1 for status in statuses if not 200 <= status < 300),
            "socket_errors": socket_errors,
            "req_per_s": len(statuses) / elapsed,
            "p50_ms": cuts[49],
            "p99_ms": cuts[98],
        }

    return asyncio.run(load())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the soak")
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of load before it")
    parser.add_argument(
        "--store", type=Path, help="folder of the MLflow store to serve (trained if empty)"
    )
    parser.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto")
    args = parser.parse_args()
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "httpx"
    if generator == "wrk" and shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk (or --generator httpx)")
    load = run_wrk if generator == "wrk" else run_httpx

    throwaway = None if args.store else tempfile.TemporaryDirectory(prefix="womac-soak-")
    folder = args.store or Path(throwaway.name)  # type: ignore[union-attr]
    try:
        ensure_champion(folder)
        bodies = patients()
        with server(store_env(folder)) as (url, process, _):
            ready = rss_mib(process.pid)
            warmup = load(url, bodies, args.connections, args.warmup)
            start = rss_mib(process.pid)
            with MemorySampler(process.pid) as memory:
                soak = load(url, bodies, args.connections, args.seconds)
            end = rss_mib(process.pid)
            if process.poll() is not None:
                sys.exit("the server died during the soak")
    finally:
        if throwaway is not None:
            throwaway.cleanup()

    errors = soak["non_2xx"] + soak["socket_errors"]
    warmup_errors = warmup["non_2xx"] + warmup["socket_errors"]
    peak = max([start, end, *(rss for _, rss in memory.samples)])
    growth = end - start
    print_table(
        ["POST /v1/predict", "value"],
        [
            ["load generator", generator],
            ["concurrency", args.connections],
            ["seconds", args.seconds],
            ["requests", soak["requests"]],
            ["errors (non-2xx)", soak["non_2xx"]],
            ["errors (socket/timeout)", soak["socket_errors"]],
            ["req/s", soak["req_per_s"]],
            ["p50 ms", soak["p50_ms"]],
            ["p99 ms", soak["p99_ms"]],
            ["server RSS ready MiB", ready],
            ["server RSS start MiB (after warm-up)", start],
            ["server RSS end MiB", end],
            ["server RSS peak MiB", peak],
            ["RSS growth MiB", f"{growth:+.1f} ({growth / start:+.1%})"],
        ],
    )
    result = {
        "generator": generator,
        "connections": args.connections,
        "seconds": args.seconds,
        "warmup": warmup,
        "soak": soak,
        "errors": errors,
        "rss_mib": {
            "ready": ready,
            "start": start,
            "end": end,
            "peak": peak,
            "growth": growth,
            "samples": [[round(t, 1), round(rss, 1)] for t, rss in memory.samples],
        },
    }
    print(f"written to {write_result('soak', result)}")
    if errors or warmup_errors:
        sys.exit(f"{errors + warmup_errors} request(s) failed")


if __name__ == "__main__":
    main()
