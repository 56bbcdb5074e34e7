"""Shared helpers of the benchmarks: a real server, peak memory, result files."""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"
PATIENT: dict[str, Any] = {
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


def machine() -> str:
    """One line about the machine the figures come from."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def womac() -> str:
    """The installed console script of this environment."""
    return str(Path(sys.executable).parent / "womac")


@contextmanager
def server(
    env: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """``womac serve`` on 127.0.0.1 with the store of the working directory.

    Yields the base URL, the process and the seconds from start to its first 200 from
    ``POST /v1/predict`` (sent with ``headers``: the API key, when ``env`` sets one). Stopped
    by PID at the end.
    """
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [womac(), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"} | (env or {}),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=url, timeout=10.0) as client:
            while True:
                if process.poll() is not None:
                    sys.exit("server exited; is a champion registered? run `womac train`")
                if time.monotonic() > deadline:
                    # Up but answering 503: no champion in this store.
                    sys.exit("no answer from POST /v1/predict; is a champion registered?")
                try:
                    answer = client.post("/v1/predict", json=PATIENT, headers=headers)
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        yield url, process, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=15)


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine line added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    return path


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(value.rjust(width) for value, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)
