"""Faults a running clinic will meet, over a real uvicorn process: no registry, a damaged
model file, a champion moved while patients are being scored, a reload onto a damaged model.

In every case the process stays up, says plainly what is wrong in one log line (no
traceback, nothing a request sent), and never drops a request it could answer.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Server, registry_client, serving, store_settings
from womac.data.cohort import model_input
from womac.data.contract import PREDICTOR_NAMES
from womac.data.patients import patients_frame
from womac.data.simulate import simulate_cohort
from womac.settings import Settings

pytestmark = pytest.mark.e2e

MODEL = "womac-improvement"
GARBAGE = b"\x00not a model\xff" * 4096


@dataclass
class Registry:
    """A store of its own with two registered versions of the session's pipeline."""

    settings: Settings
    model_files: dict[str, Path]  # version -> its model.skops

    def client(self) -> Any:
        return registry_client(self.settings)

    def point_champion_at(self, version: str) -> None:
        self.client().set_registered_model_alias(MODEL, "champion", version)


def register_versions(pipeline: Any, settings: Settings, count: int) -> dict[str, Path]:
    """Log ``pipeline`` ``count`` times and register each; version -> model file.

    Cheaper than training twice; MLflow's process-wide URIs are put back afterwards so the
    rest of the session still talks to its own store.
    """
    import mlflow

    from womac.models.eligibility import Protocol
    from womac.models.store import PIPELINE_ARTIFACT, connect, log_model

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    simulated, _ = simulate_cohort(2, 7)
    records = [
        {str(name): value for name, value in row.items()}
        for row in simulated[list(PREDICTOR_NAMES)].to_dict("records")
    ]
    example = model_input(patients_frame(records))
    files = {}
    try:
        client = connect(settings.resolved_tracking_uri())
        experiment = client.create_experiment(
            "womac", artifact_location=settings.resolved_artifact_root()
        )
        for _ in range(count):
            with mlflow.start_run(experiment_id=experiment):
                info = log_model(pipeline, example, Protocol())
            version = str(mlflow.register_model(info.model_uri, MODEL).version)
            (files[version],) = settings.artifact_root.rglob(
                f"{info.model_id}/**/{PIPELINE_ARTIFACT}.skops"
            )
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    return files


@pytest.fixture(scope="module")
def registry(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    settings = store_settings(tmp_path_factory.mktemp("registry"))
    found = Registry(settings, register_versions(trained.pipeline, settings, 2))
    found.point_champion_at("1")
    return found


@pytest.fixture
def champion_v1(registry: Registry) -> Iterator[Registry]:
    """The registry with the alias on version 1, put back there after the test."""
    registry.point_champion_at("1")
    yield registry
    registry.point_champion_at("1")


class Damaged:
    """Overwrite a model file, and put the original back on leaving."""

    def __init__(self, path: Path, content: bytes | None) -> None:
        self.path, self.content = path, content
        self.original = path.read_bytes()

    def __enter__(self) -> Damaged:
        if self.content is None:
            self.path.unlink()
        else:
            self.path.write_bytes(self.content)
        return self

    def __exit__(self, *_: object) -> None:
        self.path.write_bytes(self.original)


def log_entries(server: Server) -> list[dict[str, Any]]:
    """The server's structured log lines (each a JSON object)."""
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


def assert_plain_log(server: Server) -> None:
    """No traceback, and every line the service wrote is one JSON object."""
    output = server.output()
    assert "Traceback" not in output
    assert 'File "' not in output
    for line in output.splitlines():
        if line.startswith("{"):
            json.loads(line)


# -- no registry ------------------------------------------------------------------------


def test_without_a_registry_the_service_runs_says_so_and_answers_503_with_the_command(
    tmp_path: Path, patient: dict[str, Any]
) -> None:
    settings = store_settings(tmp_path / "nothing-here")
    with serving(settings, tmp_path) as server, httpx.Client(base_url=server.url) as http:
        health = http.get("/health").json()
        predicted = http.post("/v1/predict", json=patient)
        reloaded = http.post("/v1/admin/reload")
        time.sleep(2)  # a crash loop would have ended the process by now
        still_up = server.process.poll() is None
        after = http.get("/health")

    assert health["model_loaded"] is False
    assert health["model_version"] is None
    assert predicted.status_code == 503
    assert "`womac train`" in predicted.json()["detail"]
    assert reloaded.status_code == 503
    assert still_up
    assert after.status_code == 200
    errors = [e for e in log_entries(server) if e["level"] == "error"]
    assert any(
        "serving without a model" in e["event"] and "womac train" in e["event"] for e in errors
    )
    assert_plain_log(server)
    # Starting the service does not create an empty tracking store as a side effect.
    assert not (tmp_path / "nothing-here" / "mlflow.db").exists()


# -- a damaged model file at start-up ---------------------------------------------------


def test_a_damaged_champion_at_start_up_is_reported_and_the_service_stays_up(
    champion_v1: Registry, tmp_path: Path, patient: dict[str, Any]
) -> None:
    with (
        Damaged(champion_v1.model_files["1"], GARBAGE),
        serving(champion_v1.settings, tmp_path) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        health = http.get("/health").json()
        predicted = http.post("/v1/predict", json=patient)
        time.sleep(1)
        still_up = server.process.poll() is None

    assert health["model_loaded"] is False
    assert predicted.status_code == 503
    detail = predicted.json()["detail"]
    assert "version 1" in detail
    assert "cannot be loaded" in detail
    assert "womac train" in detail
    assert still_up
    (error,) = [e for e in log_entries(server) if e["level"] == "error"]
    assert "serving without a model" in error["event"]
    assert "cannot be loaded" in error["event"]
    assert len(error["event"]) < 400
    assert_plain_log(server)


# -- the champion moved while serving ---------------------------------------------------


@dataclass
class Traffic:
    """A client sending predictions back to back until stopped, recording every answer."""

    url: str
    patient: dict[str, Any]
    answers: list[tuple[float, int, str | None]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as http:
            while not self.stop.is_set():
                try:
                    response = http.post("/v1/predict", json=self.patient)
                except httpx.HTTPError as error:
                    self.failures.append(type(error).__name__)
                    continue
                version = response.json()["model"]["version"] if response.is_success else None
                self.answers.append((time.monotonic(), response.status_code, version))
                if not response.is_success:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")


@pytest.fixture
def traffic(patient: dict[str, Any]) -> Iterator[Any]:
    """Start clients against a server URL; they stop when the test ends."""
    started: list[tuple[Traffic, threading.Thread]] = []

    def start(url: str, clients: int = 1) -> list[Traffic]:
        for _ in range(clients):
            load = Traffic(url, patient)
            thread = threading.Thread(target=load.run, daemon=True)
            thread.start()
            started.append((load, thread))
        return [load for load, _ in started]

    yield start
    for load, thread in started:
        load.stop.set()
        thread.join(timeout=30)


def wait_for_version(http: httpx.Client, version: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while http.get("/health").json()["model_version"] != version:
        assert time.monotonic() < deadline, f"still not serving version {version}"
        time.sleep(0.1)


def test_moving_the_champion_switches_without_a_failed_request_by_route_and_by_sighup(
    champion_v1: Registry, tmp_path: Path, traffic: Any
) -> None:
    with serving(champion_v1.settings, tmp_path) as server:
        http = httpx.Client(base_url=server.url, timeout=60.0)
        loads = traffic(server.url)
        time.sleep(0.3)

        champion_v1.point_champion_at("2")
        reloaded = http.post("/v1/admin/reload")
        switched_by_route = time.monotonic()
        time.sleep(0.8)

        champion_v1.point_champion_at("1")
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGHUP)
        wait_for_version(http, "1")
        switched_by_signal = time.monotonic()
        time.sleep(0.8)
        for load in loads:
            load.stop.set()
        time.sleep(0.3)
        still_up = server.process.poll() is None
        http.close()

    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json() == {"reloaded": True, "serving_version": "2", "previous_version": "1"}
    answers = [answer for load in loads for answer in load.answers]
    failures = [failure for load in loads for failure in load.failures]
    assert failures == []
    assert len(answers) > 30
    assert {status for _, status, _ in answers} == {200}
    # Version 1 answered before the route's reload returned, only version 2 from then until
    # the signal, and only version 1 once the signal's reload is done. (A request already
    # in flight at a switch may still be answered by the model it started with: 0.25 s.)
    assert min(answers)[2] == "1"
    between = {v for at, _, v in answers if switched_by_route + 0.25 < at < signalled}
    assert between == {"2"}
    assert {v for at, _, v in answers if at > switched_by_signal + 0.25} == {"1"}
    assert still_up
    events = [e["event"] for e in log_entries(server)]
    assert any("reloaded: serving version 2 (was 1)" in event for event in events)
    assert any("reloaded: serving version 1 (was 2)" in event for event in events)
    assert_plain_log(server)


def test_a_reload_onto_a_damaged_model_keeps_the_old_one_serving_and_says_why(
    champion_v1: Registry, tmp_path: Path, traffic: Any
) -> None:
    with serving(champion_v1.settings, tmp_path) as server:
        http = httpx.Client(base_url=server.url, timeout=60.0)
        loads = traffic(server.url)
        champion_v1.point_champion_at("2")
        with Damaged(champion_v1.model_files["2"], GARBAGE):
            refused = http.post("/v1/admin/reload")
        health = http.get("/health").json()
        time.sleep(0.5)
        loads[0].stop.set()
        http.close()

    assert refused.status_code == 503
    assert "version 2" in refused.json()["detail"]
    assert "cannot be loaded" in refused.json()["detail"]
    assert health["model_loaded"] is True
    assert health["model_version"] == "1"
    (load,) = loads
    assert load.failures == []
    assert len(load.answers) > 20
    assert {version for _, _, version in load.answers} == {"1"}
    (failed,) = [e for e in log_entries(server) if "reload failed" in e["event"]]
    assert "still serving version 1" in failed["event"]
    assert failed["level"] == "error"
    assert_plain_log(server)


def test_a_sighup_before_the_model_has_loaded_reloads_instead_of_killing(
    champion_v1: Registry, tmp_path: Path
) -> None:
    """SIGHUP is documented as "reload": so from the start, not only once the model is in."""
    import subprocess

    from tests.helpers import free_port, settings_env, womac_command

    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [womac_command(), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=settings_env(champion_v1.settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            # Our code runs (the command has printed its line) but the model is not in yet.
            deadline = time.monotonic() + 30
            while b"womac service on" not in log.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.02)
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5)
            process.send_signal(signal.SIGHUP)
            health = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).json()
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            # The reload the signal asked for runs once loading is done.
            deadline = time.monotonic() + 60
            while b"reloaded:" not in log.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.1)
            alive = process.poll() is None
        finally:
            process.terminate()
            process.wait(timeout=30)
    text = log.read_text()
    assert alive, text
    assert health is not None, text
    assert health["model_loaded"] is True
    assert "reloaded: serving version 1 (was 1)" in text, text


def test_twenty_reloads_at_once_cost_one_registry_lookup(
    champion_v1: Registry, tmp_path: Path
) -> None:
    """Single flight: callers that come while a reload runs share it (and its answer)."""
    import concurrent.futures

    with serving(champion_v1.settings, tmp_path) as server:
        champion_v1.point_champion_at("2")
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.post(f"{server.url}/v1/admin/reload", timeout=120.0),
                    range(20),
                )
            )
        seconds = time.monotonic() - started
        health = httpx.get(f"{server.url}/health").json()
        events = [e["event"] for e in log_entries(server)]

    assert [a.status_code for a in answers] == [200] * 20
    assert {a.json()["serving_version"] for a in answers} == {"2"}
    assert health["model_version"] == "2"
    lookups = [event for event in events if event.startswith("reloaded:")]
    assert 1 <= len(lookups) <= 2, lookups  # one, or one more for a caller after it ended
    assert seconds < 30
    assert_plain_log(server)
