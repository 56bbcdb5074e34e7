"""Hostile requests against a real server: status, size and time of each; /health meanwhile.

Issue 13 (hardening). A real ``womac serve`` on 127.0.0.1 serves the champion of a store: the
one in ``--store`` (trained there first if it holds none), else a throwaway store trained for
the run on a small cohort. Each case below is a function building one request, or several
sent at once, written to a raw socket so that bodies can be chunked, trickled or not UTF-8
and headers malformed. While a case runs, a thread polls ``GET /health`` every 10 ms: its
worst and median latency show whether the case held the event loop. The serving process's
resident memory (VmRSS) is read when it is ready, after a warm-up, after every case and at
the end; the child processes it starts (registry lookups) are counted per case. A second
server, with WOMAC_API_KEY set, takes the access cases.

Budgets (issue 13): no case takes more than 0.5 s of request time (cases paced by the client,
or slow by design, are judged on /health alone) nor delays /health more than 0.5 s; no error
answer is over 64 KB; the server's RSS at the end is within 50 MiB of its RSS after the
warm-up. Also checked: no answer echoes the name or key a case sent, and twenty reloads at
once start one registry lookup. Exits 1 when one is broken: a benchmark's verdict, not a test.

    .venv/bin/python bench/attack.py [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from common import PATIENT, print_table, server, womac, write_result
from soak import store_env

from womac.data.contract import FIELDS, Kind, Role
from womac.settings import MAX_BATCH_CEILING, Settings

# The service's own defaults, pinned for the server the cases are written against.
BODY_LIMIT: int = Settings.model_fields["max_body_bytes"].default
BATCH_LIMIT: int = Settings.model_fields["max_batch_size"].default
LIMITS_ENV = {"WOMAC_MAX_BODY_BYTES": str(BODY_LIMIT), "WOMAC_MAX_BATCH_SIZE": str(BATCH_LIMIT)}
# A throwaway store: 2,000 patients and 2 folds train in ~14 s on 2 cores and pass the gates.
QUICK_TRAINING = {"WOMAC_DEFAULT_COHORT_SIZE": "2000", "WOMAC_CV_FOLDS": "2"}
API_KEY = "attack-bench-key-6f1d0c9e5b"

MAX_REQUEST_S = 0.5
MAX_HEALTH_S = 0.5
MAX_ERROR_BYTES = 64 * 1024
MAX_RSS_GROWTH_MIB = 50.0

NAME = "Jane.Doe.1962-03-04"
"""What a client might put in a path, header or key: it must never come back."""
SOCKET_TIMEOUT_S = 30.0
CHUNK = 64 * 1024


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP/1.1 request as bytes on its own connection, and how to send them."""

    head: bytes
    """Request line and headers; normally ending in the blank line."""
    body: bytes = b""
    chunked: bool = False
    """The body in 64 KiB chunks (the head says Transfer-Encoding: chunked)."""
    pace_s: float = 0.0
    """Seconds between body bytes: a body trickled by the client."""
    answered: bool = True
    """False: send, then hang up without waiting for an answer."""


def http(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    declared_length: int | None = None,
    chunked: bool = False,
    pace_s: float = 0.0,
) -> Request:
    """A request with ``Connection: close``; header values are latin-1, so any byte goes."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    fields = {"Content-Type": "application/json"} if method in ("POST", "PUT") else {}
    fields |= headers or {}
    lines += [f"{name}: {value}" for name, value in fields.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif body or declared_length is not None or method in ("POST", "PUT"):
        lines.append(
            f"Content-Length: {len(body) if declared_length is None else declared_length}"
        )
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Request(head, body, chunked=chunked, pace_s=pace_s)


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def patient_with(**fields: Any) -> bytes:
    """The bench's valid patient, some fields changed."""
    return compact(PATIENT | fields)


def substituted(placeholder_field: str, literal: bytes, **fields: Any) -> bytes:
    """A patient whose ``placeholder_field`` holds ``literal`` verbatim (JSON ``json`` cannot
    write: NaN, numbers of any length, bytes that are not UTF-8)."""
    marker = "\x00placeholder\x00"
    return patient_with(**{placeholder_field: marker}, **fields).replace(compact(marker), literal)


def listed(prefix: bytes, item: bytes, suffix: bytes, count: int | None = None) -> bytes:
    """``prefix item,item,... suffix``: ``count`` items, or as many as fit the body limit."""
    if count is None:
        count = (BODY_LIMIT - len(prefix) - len(suffix) + 1) // (len(item) + 1)
    return prefix + b",".join([item] * count) + suffix


def fitting(item: bytes, wanted: int) -> int:
    """How many of ``item`` a batch body holds under the limit, at most ``wanted``."""
    room = (BODY_LIMIT - len(b'{"patients":[]}') + 1) // (len(item) + 1)
    return min(wanted, room)


def batch(item: bytes, count: int | None = None) -> Request:
    return http("POST", "/v1/predict/batch", listed(b'{"patients":[', item, b"]}", count))


def wrong_patient() -> bytes:
    """Every field a request takes, each of a wrong JSON type (one problem per field)."""
    wrong: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.role is Role.OUTCOME:
            continue
        if spec.kind in (Kind.CATEGORY, Kind.BOOLEAN, Kind.IDENTIFIER):
            wrong[spec.name] = 0
        else:
            wrong[spec.name] = ""
    return compact(wrong)


def required_wrong_patient() -> bytes:
    """Only the fields a request must carry, each of a wrong JSON type (small enough for
    5,000 of them under the body limit)."""
    every = json.loads(wrong_patient())
    return compact({spec.name: every[spec.name] for spec in FIELDS if spec.required})


def unknown_keys_patient() -> bytes:
    """One-letter unknown keys, as many as the body limit holds in each of 5,000 patients."""
    room = (BODY_LIMIT - len(b'{"patients":[]}')) // MAX_BATCH_CEILING - 1
    count = min(len(string.ascii_letters), (room - 1) // len(b'"a":0,'))
    return compact(dict.fromkeys(string.ascii_letters[:count], 0))


def base36(number: int) -> str:
    digits = string.digits + string.ascii_lowercase
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if number == 0:
            return text


VALID = compact(PATIENT)
WRONG = wrong_patient()
REQUIRED_WRONG = required_wrong_patient()
UNKNOWN_KEYS = unknown_keys_patient()
BIG_INT = b"9" * 4300  # the longest integer Python's int() takes (CVE-2020-10735)
BIG_AGE = b'{"age":' + BIG_INT + b"}"


# Batch route: element counts, objects, every field wrong.
def zeros_filling_limit() -> Request:
    return batch(b"0")


def empty_objects_filling_limit() -> Request:
    return batch(b"{}")


def empty_objects_at_ceiling() -> Request:
    return batch(b"{}", MAX_BATCH_CEILING)


def valid_over_ceiling() -> Request:
    return batch(VALID, fitting(VALID, MAX_BATCH_CEILING + 1))


def valid_at_ceiling() -> Request:
    return batch(VALID, fitting(VALID, MAX_BATCH_CEILING))


def valid_at_batch_limit() -> Request:
    return batch(VALID, BATCH_LIMIT)


def every_field_wrong() -> Request:
    return batch(WRONG, fitting(WRONG, MAX_BATCH_CEILING))


def required_fields_wrong() -> Request:
    return batch(REQUIRED_WRONG, fitting(REQUIRED_WRONG, MAX_BATCH_CEILING))


def unknown_keys_in_every_patient() -> Request:
    return batch(UNKNOWN_KEYS, fitting(UNKNOWN_KEYS, MAX_BATCH_CEILING))


def longest_integers() -> Request:
    return batch(BIG_AGE, fitting(BIG_AGE, MAX_BATCH_CEILING))


# One patient: keys, strings, numbers, nesting, encodings.
def unknown_keys_100k() -> Request:
    keys = b",".join(b'"%s":0' % base36(36**3 + i).encode() for i in range(100_000))
    return http("POST", "/v1/predict", VALID[:-1] + b"," + keys + b"}")


def string_900kb() -> Request:
    return http("POST", "/v1/predict", patient_with(patient_id=NAME + "x" * 900_000))


def key_900kb() -> Request:
    return http("POST", "/v1/predict", compact(PATIENT | {NAME + "x" * 900_000: 0}))


def integer_5000_digits() -> Request:
    return http("POST", "/v1/predict", substituted("age", b"6" + b"0" * 4999))


def decimal_900kb() -> Request:
    return http("POST", "/v1/predict", substituted("age", b"0." + b"1" * 900_000))


def nan_and_infinity() -> Request:
    body = substituted("age", b"NaN").replace(b'"bmi":31.0', b'"bmi":Infinity')
    return http("POST", "/v1/predict", body)


def lists_100k_deep() -> Request:
    return http("POST", "/v1/predict", b"[" * 100_000 + b"]" * 100_000)


def objects_100k_deep() -> Request:
    return http("POST", "/v1/predict", b'{"a":' * 100_000 + b"0" + b"}" * 100_000)


def utf16() -> Request:
    return http("POST", "/v1/predict", json.dumps(PATIENT).encode("utf-16"))


def utf16_without_bom() -> Request:
    return http("POST", "/v1/predict", json.dumps(PATIENT).encode("utf-16-le"))


def utf32() -> Request:
    return http("POST", "/v1/predict", json.dumps(PATIENT).encode("utf-32"))


def invalid_utf8() -> Request:
    return http("POST", "/v1/predict", substituted("patient_id", b'"\xc3\x28\xa0\xa1\xff"'))


def text_plain() -> Request:
    return http("POST", "/v1/predict", VALID, {"Content-Type": "text/plain"})


def over_limit_declared() -> Request:
    return http("POST", "/v1/predict/batch", declared_length=2 * BODY_LIMIT)


def over_limit_chunked() -> Request:
    body = listed(b'{"patients":[', b"0", b"]}", int(0.75 * BODY_LIMIT))
    return http("POST", "/v1/predict/batch", body, chunked=True)


def slow_body() -> Request:
    # ~165 bytes, one every 10 ms: under 2 s, and uvicorn has no body timeout to meet.
    return http("POST", "/v1/predict", VALID, pace_s=0.01)


# Paths, methods, headers, framing.
def name_in_path() -> Request:
    return http("GET", f"/{NAME}")


def name_in_api_path() -> Request:
    return http("GET", f"/v1/patients/{NAME}")


def static_traversal() -> Request:
    return http("GET", "/static/../../../../../../etc/passwd")


def static_traversal_encoded() -> Request:
    return http("GET", "/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd")


def head_health() -> Request:
    return http("HEAD", "/health")


def put_predict() -> Request:
    return http("PUT", "/v1/predict", VALID)


def query_8kb() -> Request:
    return http("GET", f"/health?patient={NAME}{'x' * 8000}")


def query_1mb() -> Request:
    return http("GET", f"/health?patient={NAME}{'x' * 1_000_000}")


def header_15kb() -> Request:
    return http("GET", "/health", headers={"X-Note": NAME + "x" * 15_000})


def header_1mb() -> Request:
    return http("GET", "/health", headers={"X-Note": NAME + "x" * 1_000_000})


def header_32mb() -> Request:
    # uvicorn's 16 KiB head limit is h11's; with httptools (installed here) there is none.
    return http("GET", "/health", headers={"X-Note": NAME + "x" * 32_000_000})


def headers_1000() -> Request:
    return http("GET", "/health", headers={f"X-H{i}": "v" for i in range(1000)})


def name_as_request_id() -> Request:
    return http("POST", "/v1/predict", VALID, {"X-Request-ID": NAME})


def length_and_chunked() -> Request:
    # Request smuggling's classic: both framings at once.
    head = http("POST", "/v1/predict", VALID).head.replace(
        b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return Request(head, VALID)


def two_lengths() -> Request:
    head = http("POST", "/v1/predict", VALID).head.replace(
        b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n"
    )
    return Request(head, VALID)


def slowloris() -> list[Request]:
    # 200 connections each holding half a request head, a byte every 0.1 s for 1.5 s.
    head = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    return [Request(head, b"a" * 15, pace_s=0.1, answered=False) for _ in range(200)]


def reloads(headers: dict[str, str] | None = None) -> list[Request]:
    return [http("POST", "/v1/admin/reload", headers=headers) for _ in range(20)]


# With WOMAC_API_KEY set.
KEY = {"X-API-Key": API_KEY}
WRONG_KEY = "wrong-" + NAME
LONG_KEY = NAME + "k" * 8000


@dataclass(frozen=True)
class Case:
    """A named attack: the function building its request(s), and how it is judged."""

    name: str
    build: Callable[[], Request | list[Request]]
    secret: str | None = None
    """Text the request carries that no answer may contain."""
    untimed: str | None = None
    """Why its request time is not judged (it is on /health all the same)."""
    max_lookups: int = 0
    """Registry lookups (child processes) it may start."""


PACED = "paced by the client"
OPEN_CASES = [
    Case("batch: 1 MB of 0s", zeros_filling_limit),
    Case("batch: 1 MB of {}", empty_objects_filling_limit),
    Case(f"batch: {MAX_BATCH_CEILING:,} x {{}}", empty_objects_at_ceiling),
    Case(f"batch: {fitting(VALID, MAX_BATCH_CEILING + 1):,} valid", valid_over_ceiling),
    Case(f"batch: {fitting(VALID, MAX_BATCH_CEILING):,} valid", valid_at_ceiling),
    Case(f"batch: {BATCH_LIMIT:,} valid (the limit)", valid_at_batch_limit),
    Case(f"batch: {fitting(WRONG, MAX_BATCH_CEILING):,} every field wrong", every_field_wrong),
    Case(
        f"batch: {fitting(REQUIRED_WRONG, MAX_BATCH_CEILING):,} required fields wrong",
        required_fields_wrong,
    ),
    Case(
        f"batch: {fitting(UNKNOWN_KEYS, MAX_BATCH_CEILING):,} x "
        f"{UNKNOWN_KEYS.count(b':')} unknown keys",
        unknown_keys_in_every_patient,
    ),
    Case(f"batch: {fitting(BIG_AGE, MAX_BATCH_CEILING)} x 4,300-digit age", longest_integers),
    Case("100k unknown keys", unknown_keys_100k),
    Case("900 KB string value", string_900kb, secret=NAME),
    Case("900 KB key", key_900kb, secret=NAME),
    Case("5,000-digit integer", integer_5000_digits),
    Case("900 KB decimal", decimal_900kb),
    Case("NaN and Infinity", nan_and_infinity),
    Case("100k-deep [[[...]]]", lists_100k_deep),
    Case('100k-deep {"a":{...}}', objects_100k_deep),
    Case("UTF-16 (BOM)", utf16),
    Case("UTF-16LE (no BOM)", utf16_without_bom),
    Case("UTF-32", utf32),
    Case("invalid UTF-8", invalid_utf8),
    Case("text/plain body", text_plain),
    Case("2 MB declared, none sent", over_limit_declared),
    Case("1.5 MB chunked, no length", over_limit_chunked),
    Case("slow body (10 ms/byte)", slow_body, untimed=PACED),
    Case("GET /<name>", name_in_path, secret=NAME),
    Case("GET /v1/patients/<name>", name_in_api_path, secret=NAME),
    Case("/static/../etc/passwd", static_traversal, secret="root:"),
    Case("/static/..%2f..%2fetc/passwd", static_traversal_encoded, secret="root:"),
    Case("HEAD /health", head_health),
    Case("PUT /v1/predict", put_predict),
    Case("8 KB query string", query_8kb, secret=NAME),
    Case("1 MB query string", query_1mb, secret=NAME),
    Case("15 KB header", header_15kb, secret=NAME),
    Case("1 MB header", header_1mb, secret=NAME),
    Case("32 MB header", header_32mb, secret=NAME),
    Case("1,000 headers", headers_1000),
    Case("X-Request-ID: <name>", name_as_request_id, secret=NAME),
    Case(
        "Content-Length + chunked",
        length_and_chunked,
        untimed="h11 takes the chunked framing (RFC 9112) and waits for a chunk that never "
        "comes; nothing runs meanwhile",
    ),
    Case("two Content-Lengths", two_lengths),
    Case("200 slowloris connections", slowloris, untimed=PACED),
    Case(
        "20 reloads at once",
        reloads,
        untimed="a registry lookup in a child process (~2 s of MLflow imports); "
        "judged on /health and lookups",
        max_lookups=1,
    ),
]
KEY_CASES = [
    Case("GET /health, no key", lambda: http("GET", "/health")),
    Case("HEAD /health, no key", head_health),
    Case("predict, no key", lambda: http("POST", "/v1/predict", VALID)),
    Case(
        "predict, wrong key",
        lambda: http("POST", "/v1/predict", VALID, {"X-API-Key": WRONG_KEY}),
        secret=WRONG_KEY,
    ),
    Case(
        "predict, 8 KB wrong key",
        lambda: http("POST", "/v1/predict", VALID, {"X-API-Key": LONG_KEY}),
        secret=NAME,
    ),
    Case(
        "predict, key not UTF-8",
        lambda: http("POST", "/v1/predict", VALID, {"X-API-Key": "\xff\xfe\xc3\x28"}),
    ),
    Case("predict, empty key", lambda: http("POST", "/v1/predict", VALID, {"X-API-Key": ""})),
    Case(
        "predict, key in query",
        lambda: http("POST", f"/v1/predict?api_key={API_KEY}", VALID),
        secret=API_KEY,
    ),
    Case("predict, key", lambda: http("POST", "/v1/predict", VALID, KEY)),
    Case("/openapi.json, no key", lambda: http("GET", "/openapi.json")),
    Case(
        "/openapi.json, wrong key",
        lambda: http("GET", "/openapi.json", headers={"X-API-Key": WRONG_KEY}),
    ),
    Case("/openapi.json, key", lambda: http("GET", "/openapi.json", headers=KEY)),
    Case("/docs, key", lambda: http("GET", "/docs", headers=KEY)),
    Case("/v1/model/report, no key", lambda: http("GET", "/v1/model/report")),
    Case(f"no key: batch {fitting(WRONG, MAX_BATCH_CEILING):,} wrong", every_field_wrong),
    Case("no key: 100k-deep [[[...]]]", lists_100k_deep),
    Case("no key: 2 MB declared", over_limit_declared),
    Case("20 reloads, wrong key", lambda: reloads({"X-API-Key": WRONG_KEY})),
]


# --- sending --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What came back on one connection (``status`` None: no answer, or not HTTP)."""

    status: int | None
    head: bytes
    body: bytes


def exchange(port: int, request: Request) -> Reply:
    """Send ``request`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as conn:
        sender = threading.Thread(target=_send, args=(conn, request), daemon=True)
        sender.start()
        if not request.answered:
            sender.join()
            return Reply(None, b"", b"")
        received = bytearray()
        try:
            while chunk := conn.recv(CHUNK):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass  # a refusal that closes before the rest of the body is read can end in RST
        sender.join(SOCKET_TIMEOUT_S)
    return _parse(bytes(received))


def _send(conn: socket.socket, request: Request) -> None:
    try:
        conn.sendall(request.head)
        if request.chunked:
            for start in range(0, len(request.body), CHUNK):
                piece = request.body[start : start + CHUNK]
                conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        elif request.pace_s:
            for index in range(len(request.body)):
                conn.sendall(request.body[index : index + 1])
                time.sleep(request.pace_s)
        else:
            conn.sendall(request.body)
    except OSError:
        pass  # the server answered, and closed, before reading it all


def _parse(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if status is None:
        return Reply(None, head, body)
    if re.search(rb"^transfer-encoding:\s*chunked", head, re.I | re.M):
        body = _dechunked(body)
    return Reply(int(status.group(1)), head, body)


def _dechunked(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def exchange_all(port: int, requests: list[Request]) -> list[Reply]:
    """Each request on its own connection, all at once (one thread each)."""
    if len(requests) == 1:
        return [exchange(port, requests[0])]
    replies: list[Reply | None] = [None] * len(requests)

    def one(index: int) -> None:
        try:
            replies[index] = exchange(port, requests[index])
        except OSError:
            replies[index] = Reply(None, b"", b"")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [reply or Reply(None, b"", b"") for reply in replies]


# --- watching the server --------------------------------------------------------------------


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a process from /proc/PID/status (VmRSS, VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", status, re.M)
    if match is None:
        raise RuntimeError(f"no {field} for process {pid}")
    return int(match.group(1)) / 1024


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (this kernel has no /proc/PID/task/TID/children)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(stat.rpartition(b")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def serving_pid(pid: int, port: int) -> int:
    """The process holding the listening socket: ``womac serve`` itself or a descendant."""
    sockets = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            sockets.add(f"socket:[{fields[9]}]")
    candidates, index = [pid], 0
    while index < len(candidates):
        candidates += children_of(candidates[index])
        index += 1
    for candidate in candidates:
        for descriptor in Path(f"/proc/{candidate}/fd").iterdir():
            try:
                if os.readlink(descriptor) in sockets:
                    return candidate
            except OSError:
                continue
    raise RuntimeError(f"no process under {pid} listens on port {port}")


class HealthProbe:
    """``GET /health`` every 10 ms from a thread, on one kept-alive connection."""

    def __init__(self, url: str, interval: float = 0.01) -> None:
        self.url, self.interval = url, interval
        self.polls: list[tuple[float, float, bool]] = []  # start, end, answered 200
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    answered = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    answered = False
                self.polls.append((started, time.perf_counter(), answered))
                self._stop.wait(self.interval)

    def during(self, start: float, end: float) -> dict[str, Any]:
        """Polls that overlapped ``[start, end]``, and the first one begun after it (the server
        may still be busy once it has answered, e.g. draining a refused body)."""
        deadline = time.monotonic() + 15
        while not any(poll[0] > end for poll in self.polls) and time.monotonic() < deadline:
            time.sleep(0.005)
        overlapping = [poll for poll in self.polls if poll[0] < end and poll[1] > start]
        after = next((poll for poll in self.polls if poll[0] > end), None)
        polls = overlapping + ([after] if after else [])
        latencies = [(finish - begun) * 1000 for begun, finish, _ in polls]
        return {
            "max_ms": max(latencies, default=float("nan")),
            "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "polls": len(polls),
            "failed": sum(1 for *_, answered in polls if not answered),
        }

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class ChildWatch:
    """The serving process's children (registry lookups), scanned every 20 ms from a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.first_seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.perf_counter()
            for child in children_of(self.pid):
                self.first_seen.setdefault(child, now)

    def started(self, start: float, end: float) -> int:
        """Children first seen between ``start`` and ``end``."""
        return sum(1 for seen in self.first_seen.values() if start <= seen <= end)

    def __enter__(self) -> ChildWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# --- running --------------------------------------------------------------------------------


def ensure_champion(folder: Path, quick: bool) -> None:
    """Train into ``folder`` unless it already holds a store."""
    if (folder / "mlflow.db").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    print(f"training a champion into {folder} (womac train) ...", flush=True)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("WOMAC_")}
    subprocess.run(
        [womac(), "train"],
        env=inherited | store_env(folder) | (QUICK_TRAINING if quick else {}),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def warm_up(url: str, headers: dict[str, str]) -> None:
    """What a clinic sends in normal use: single patients, a batch, a refused patient."""
    with httpx.Client(base_url=url, timeout=30.0, headers=headers) as client:
        for _ in range(20):
            client.post("/v1/predict", json=PATIENT).raise_for_status()
        client.post("/v1/predict/batch", json={"patients": [PATIENT] * 100}).raise_for_status()
        client.post("/v1/predict", json=PATIENT | {"age": "old"})
        client.get("/health").raise_for_status()


def status_summary(replies: list[Reply]) -> str:
    """``413``, or counts when there are several: ``200x19 503x1`` (``-``: no answer)."""
    counts = Counter("-" if reply.status is None else str(reply.status) for reply in replies)
    if len(replies) == 1:
        return next(iter(counts))
    return " ".join(f"{status}x{count}" for status, count in sorted(counts.items()))


def problems(replies: list[Reply]) -> dict[str, int] | None:
    """How many problems the first 422 lists, and how many more it counts."""
    for reply in replies:
        if reply.status == 422:
            try:
                answer = json.loads(reply.body)
                return {"listed": len(answer["detail"]), "more": answer.get("more_problems", 0)}
            except (ValueError, KeyError, TypeError):
                return None
    return None


def run_case(
    case: Case, port: int, pid: int, probe: HealthProbe, children: ChildWatch
) -> dict[str, Any]:
    """Build the case's request(s) (not timed), send them, and read what the server did."""
    built = case.build()
    requests = built if isinstance(built, list) else [built]
    start = time.perf_counter()
    replies = exchange_all(port, requests)
    end = time.perf_counter()
    health = probe.during(start, end)
    errors = [reply for reply in replies if reply.status is not None and reply.status >= 400]
    secret = case.secret.encode() if case.secret else None
    return {
        "case": case.name,
        "requests": len(requests),
        "request_bytes": sum(len(r.head) + len(r.body) for r in requests),
        "status": status_summary(replies),
        "bytes": max(len(reply.body) for reply in replies),
        "error_bytes": max((len(reply.body) for reply in errors), default=0),
        "ms": (end - start) * 1000,
        "health_max_ms": health["max_ms"],
        "health_p50_ms": health["p50_ms"],
        "health_polls": health["polls"],
        "health_failed": health["failed"],
        "lookups": children.started(start, time.perf_counter()),
        "max_lookups": case.max_lookups,
        "rss_mib": memory_mib(pid),
        "peak_rss_mib": memory_mib(pid, "VmHWM"),
        "problems": problems(replies),
        "echoed": secret is not None
        and any(secret in r.head or secret in r.body for r in replies),
        "untimed": case.untimed,
    }


def run_phase(name: str, cases: list[Case], env: dict[str, str], headers: dict[str, str]) -> dict:
    with server(env | LIMITS_ENV, headers=headers) as (url, process, startup_s):
        port = int(url.rsplit(":", 1)[1])
        pid = serving_pid(process.pid, port)
        ready = memory_mib(pid)
        warm_up(url, headers)
        warm = memory_mib(pid)
        rows = []
        with HealthProbe(url) as probe, ChildWatch(pid) as children:
            for case in cases:
                rows.append(run_case(case, port, pid, probe, children))
                if process.poll() is not None:
                    sys.exit(f"the server died during {case.name!r}")
            time.sleep(1.0)  # the last answers' buffers freed, the last polls in
        end = memory_mib(pid)
        peak = memory_mib(pid, "VmHWM")
    return {
        "phase": name,
        "startup_s": startup_s,
        "serving_pid_is_womac_serve": pid == process.pid,
        "cases": rows,
        "rss_mib": {"ready": ready, "after_warm_up": warm, "end": end, "peak": peak},
    }


@contextmanager
def store_folder(store: Path | None) -> Iterator[Path]:
    """``store`` (trained there if empty), else a throwaway store trained for the run."""
    if store is not None:
        ensure_champion(store, quick=False)
        yield store
        return
    with tempfile.TemporaryDirectory(prefix="womac-attack-") as folder:
        ensure_champion(Path(folder), quick=True)
        yield Path(folder)


BUDGETS = {
    "time": f"request time <= {MAX_REQUEST_S} s",
    "health": f"/health max latency <= {MAX_HEALTH_S} s (and every poll answered)",
    "errors": f"error bodies <= {MAX_ERROR_BYTES // 1024} KB",
    "rss": f"RSS at end - RSS after warm-up <= {MAX_RSS_GROWTH_MIB:.0f} MiB",
    "echo": "no answer echoes the name or key sent",
    "lookups": "registry lookups: one for 20 reloads at once, none otherwise",
}


def broken_budgets(phases: list[dict]) -> list[tuple[str, str]]:
    """``(budget, what)`` for every budget a case, or a phase's memory, broke."""
    broken = []
    for phase in phases:
        for row in phase["cases"]:
            where = f"{phase['phase']}: {row['case']}"
            if row["untimed"] is None and row["ms"] > MAX_REQUEST_S * 1000:
                broken.append(("time", f"{where}: {row['ms']:,.0f} ms"))
            if not row["health_max_ms"] <= MAX_HEALTH_S * 1000:  # NaN (no poll) is broken too
                broken.append(("health", f"{where}: {row['health_max_ms']:,.0f} ms"))
            if row["health_failed"]:
                broken.append(("health", f"{where}: {row['health_failed']} poll(s) failed"))
            if row["error_bytes"] > MAX_ERROR_BYTES:
                broken.append(("errors", f"{where}: {row['error_bytes']:,} bytes"))
            if row["echoed"]:
                broken.append(("echo", f"{where}: {row['status']}"))
            if row["lookups"] > row["max_lookups"]:
                broken.append(
                    ("lookups", f"{where}: {row['lookups']} (at most {row['max_lookups']})")
                )
        rss = phase["rss_mib"]
        growth = rss["end"] - rss["after_warm_up"]
        if growth > MAX_RSS_GROWTH_MIB:
            broken.append(("rss", f"{phase['phase']}: {growth:+.1f} MiB"))
    return broken


def print_phase(phase: dict) -> None:
    serving = "womac serve itself" if phase["serving_pid_is_womac_serve"] else "a child"
    print(f"\n== {phase['phase']} (server ready in {phase['startup_s']:.1f} s; serves: {serving})")
    print_table(
        [
            "case",
            "status",
            "bytes",
            "ms",
            "health max",
            "p50",
            "polls",
            "lookups",
            "RSS MiB",
            "peak MiB",
        ],
        [
            [
                row["case"] + (" *" if row["untimed"] else ""),
                row["status"],
                f"{row['bytes']:,}",
                row["ms"],
                row["health_max_ms"],
                row["health_p50_ms"],
                row["health_polls"],
                row["lookups"],
                row["rss_mib"],
                row["peak_rss_mib"],
            ]
            for row in phase["cases"]
        ],
    )
    rss = phase["rss_mib"]
    print(
        f"RSS MiB: ready {rss['ready']:.1f}, after warm-up {rss['after_warm_up']:.1f}, "
        f"end {rss['end']:.1f} ({rss['end'] - rss['after_warm_up']:+.1f}), "
        f"peak {rss['peak']:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, help="folder of the MLflow store to serve (trained if empty)"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    with store_folder(args.store) as folder:
        env = store_env(folder)
        phases = [
            run_phase("no API key", OPEN_CASES, env, {}),
            run_phase("WOMAC_API_KEY set", KEY_CASES, env | {"WOMAC_API_KEY": API_KEY}, KEY),
        ]
    for phase in phases:
        print_phase(phase)
    print("* request time not judged:")
    for case in OPEN_CASES + KEY_CASES:
        if case.untimed:
            print(f"  {case.name}: {case.untimed}")
    broken = broken_budgets(phases)
    print()
    for budget, wording in BUDGETS.items():
        failures = [what for kind, what in broken if kind == budget]
        print(f"{'BROKEN' if failures else 'ok':6}  {wording}")
        for what in failures:
            print(f"        {what}")
    took = time.perf_counter() - began
    result = {
        "budgets": {
            "max_request_s": MAX_REQUEST_S,
            "max_health_s": MAX_HEALTH_S,
            "max_error_bytes": MAX_ERROR_BYTES,
            "max_rss_growth_mib": MAX_RSS_GROWTH_MIB,
        },
        "limits": {"max_body_bytes": BODY_LIMIT, "max_batch_size": BATCH_LIMIT},
        "phases": phases,
        "broken": [{"budget": BUDGETS[kind], "what": what} for kind, what in broken],
        "seconds": took,
    }
    print(f"took {took:.0f} s; written to {write_result('attack', result)}")
    if broken:
        sys.exit(f"{len(broken)} budget(s) broken")


if __name__ == "__main__":
    main()
