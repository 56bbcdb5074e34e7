"""Who can reach the service: the API key, the bind address, CORS and the size limits."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.helpers import free_port, run_womac, settings_env, store_settings, womac_command
from womac.data.contract import FIELD_BY_NAME
from womac.serve.main import create_app
from womac.settings import Settings

KEY = "clinic-key-5d0b8e2a9f4c41e7b3a6d1c8e0f2a4b6"
OPEN_PATHS = ("/health", "/", "/static/page.js", "/static/page.css")
# The key with one character changed, shorter, longer, a prefix, other case, empty, and
# bytes outside ASCII: all refused the same way, none a server error.
WRONG_KEYS: dict[str, str | bytes] = {
    "same length": KEY[:-1] + ("0" if KEY[-1] != "0" else "1"),
    "shorter": KEY[:8],
    "longer": KEY + "0",
    "much longer": KEY * 40,
    "upper case": KEY.upper(),
    "one character": "x",
    "non-ASCII bytes": "clé-é".encode("latin-1"),
}


def api_operations() -> list[tuple[str, str]]:
    """Every (method, path) of the API description: routes added later are covered too."""
    description = create_app(Settings(_env_file=None, api_key=None)).openapi()
    return sorted(
        (method.upper(), path)
        for path, item in description["paths"].items()
        for method in item
        if path not in OPEN_PATHS
    )


OPERATIONS = api_operations()


def body_for(path: str, patient: dict[str, Any]) -> dict[str, Any] | None:
    """A valid body for each operation that takes one."""
    return {"/v1/predict": patient, "/v1/predict/batch": {"patients": [patient]}}.get(path)


@pytest.fixture(scope="module")
def keyed(trained: Any, store: Settings) -> Iterator[TestClient]:
    """The service on the session's champion with an API key configured."""
    with TestClient(create_app(store.model_copy(update={"api_key": SecretStr(KEY)}))) as service:
        yield service


# -- the API key ------------------------------------------------------------------------


def test_the_description_lists_the_routes_the_key_protects() -> None:
    # Guards the enumeration below: if it came back empty, every loop would pass vacuously.
    assert {("POST", "/v1/predict"), ("POST", "/v1/predict/batch"), ("GET", "/v1/model")} <= set(
        OPERATIONS
    )
    assert ("POST", "/v1/admin/reload") in OPERATIONS


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_api_route_refuses_a_request_without_the_key(
    keyed: TestClient, patient: dict[str, Any], method: str, path: str
) -> None:
    response = keyed.request(method, path, json=body_for(path, patient))

    assert response.status_code == 401, (method, path, response.text)
    assert "X-API-Key" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "APIKey"


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
@pytest.mark.parametrize("wrong", list(WRONG_KEYS))
def test_every_api_route_refuses_a_wrong_key(
    keyed: TestClient, patient: dict[str, Any], method: str, path: str, wrong: str
) -> None:
    response = keyed.request(
        method, path, json=body_for(path, patient), headers={"X-API-Key": WRONG_KEYS[wrong]}
    )

    assert response.status_code == 401, (method, path, response.text)
    assert response.json() == {"detail": "API key not accepted."}
    assert KEY not in response.text


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_api_route_answers_with_the_right_key(
    keyed: TestClient, patient: dict[str, Any], method: str, path: str, trained: Any
) -> None:
    response = keyed.request(
        method, path, json=body_for(path, patient), headers={"X-API-Key": KEY}
    )

    assert response.status_code == 200, (method, path, response.text)
    if path == "/v1/predict":
        assert response.json()["model"]["version"] == trained.model_version


def test_without_the_key_a_bad_request_is_refused_before_it_is_examined(
    keyed: TestClient, patient: dict[str, Any]
) -> None:
    # 401, not a 422 that would tell a stranger which fields the API takes.
    response = keyed.post("/v1/predict", json=patient | {"age": 640, "colour": "teal"})

    assert response.status_code == 401


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_health_and_the_page_stay_open_with_a_key(keyed: TestClient, path: str) -> None:
    # The page holds no patient data; it asks the clinician for the key (auth_required).
    response = keyed.get(path)

    assert response.status_code == 200, path
    if path == "/health":
        assert response.json()["auth_required"] is True
        assert response.json()["model_loaded"] is True
    if path == "/":
        assert 'id="api-key"' in response.text


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_the_api_description_is_closed_without_the_key(keyed: TestClient, path: str) -> None:
    response = keyed.get(path)

    assert response.status_code in (401, 404), path
    assert "openapi" not in response.text.lower()


def test_authenticated_clients_get_the_api_description(keyed: TestClient) -> None:
    """A client generator needs /openapi.json; with the key it is served."""
    response = keyed.get("/openapi.json", headers={"X-API-Key": KEY})

    assert response.status_code == 200
    description = response.json()
    assert "/v1/predict" in description["paths"]
    assert "/openapi.json" not in description["paths"]
    assert keyed.get("/openapi.json", headers={"X-API-Key": "wrong"}).status_code == 401


def test_health_answers_head_as_health_checkers_send_it(keyed: TestClient) -> None:
    response = keyed.head("/health")

    assert response.status_code == 200
    assert response.content == b""


def test_an_empty_api_key_is_refused_at_start_up_in_one_line(tmp_path: Path) -> None:
    """An empty WOMAC_API_KEY would lock every route without a word: refused, not served."""
    env = settings_env(store_settings(tmp_path)) | {"WOMAC_API_KEY": "  "}
    result = run_womac("serve", cwd=tmp_path, env=env)

    assert result.returncode == 1
    assert "WOMAC_API_KEY" in result.stderr
    assert "empty" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "womac service on" not in result.stdout


def test_without_a_key_the_description_is_open(tmp_path: Path) -> None:
    service = TestClient(create_app(store_settings(tmp_path)))  # no lifespan: no model needed

    assert service.get("/openapi.json").status_code == 200
    assert service.get("/docs").status_code == 200


# -- the bind address -------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a listening TCP socket on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def serve_and_look(
    tmp_path: Path, host: str, extra_env: dict[str, str]
) -> tuple[set[str], str, str]:
    """Start ``womac serve --host host``; the addresses it listens on and what it printed."""
    port = free_port()
    env = settings_env(store_settings(tmp_path)) | {"COLUMNS": "250"} | extra_env
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [womac_command(), "serve", "--host", host, "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, err.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.1)
            addresses = listening_addresses(port)
        finally:
            process.terminate()
            process.wait(timeout=15)
    return addresses, out.read_text(), err.read_text()


@pytest.mark.e2e
def test_without_a_key_the_service_binds_to_loopback_and_says_so(tmp_path: Path) -> None:
    addresses, printed, _ = serve_and_look(tmp_path, "127.0.0.1", {})

    assert addresses == {"127.0.0.1"}
    assert "No API key set" in printed
    assert "127.0.0.1" in printed


@pytest.mark.e2e
def test_asked_for_the_network_without_a_key_it_stays_on_loopback_and_says_why(
    tmp_path: Path,
) -> None:
    addresses, _, warned = serve_and_look(tmp_path, "0.0.0.0", {})

    assert addresses == {"127.0.0.1"}
    assert "binds to 127.0.0.1 only, not 0.0.0.0" in warned
    assert "WOMAC_API_KEY" in warned
    assert "WOMAC_ALLOW_NETWORK_WITHOUT_KEY" in warned


@pytest.mark.e2e
def test_network_without_a_key_only_when_explicitly_allowed_and_with_a_warning(
    tmp_path: Path,
) -> None:
    addresses, _, warned = serve_and_look(
        tmp_path, "0.0.0.0", {"WOMAC_ALLOW_NETWORK_WITHOUT_KEY": "true"}
    )

    assert addresses == {"0.0.0.0"}
    assert "WITHOUT an API key" in warned


@pytest.mark.e2e
def test_with_a_key_the_network_is_served(tmp_path: Path) -> None:
    addresses, printed, warned = serve_and_look(tmp_path, "0.0.0.0", {"WOMAC_API_KEY": KEY})

    assert addresses == {"0.0.0.0"}
    assert "binds to 127.0.0.1 only" not in warned
    assert KEY not in printed + warned


# -- CORS -------------------------------------------------------------------------------

CLINIC = "https://portal.clinic.example"


def preflight(service: TestClient, origin: str) -> httpx.Response:
    return service.options(
        "/v1/predict",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )


def test_no_origin_is_allowed_by_default(client: TestClient, patient: dict[str, Any]) -> None:
    answered = client.post("/v1/predict", json=patient, headers={"Origin": CLINIC})
    checked = preflight(client, CLINIC)

    assert answered.status_code == 200
    for response in (answered, checked):
        assert not any(name.startswith("access-control-") for name in response.headers)


def test_only_configured_origins_are_allowed(
    store: Settings, trained: Any, patient: dict[str, Any]
) -> None:
    settings = store.model_copy(update={"cors_origins": [CLINIC]})
    with TestClient(create_app(settings)) as service:
        allowed = service.post("/v1/predict", json=patient, headers={"Origin": CLINIC})
        allowed_preflight = preflight(service, CLINIC)
        other = "https://elsewhere.example"
        refused = service.post("/v1/predict", json=patient, headers={"Origin": other})
        refused_preflight = preflight(service, other)

    assert allowed.headers["access-control-allow-origin"] == CLINIC
    assert allowed_preflight.status_code == 200
    assert allowed_preflight.headers["access-control-allow-origin"] == CLINIC
    assert "x-api-key" in allowed_preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in refused.headers
    assert refused_preflight.status_code == 400
    assert "access-control-allow-origin" not in refused_preflight.headers


# -- size limits ------------------------------------------------------------------------

BODY_LIMIT = 2_000


@pytest.fixture(scope="module")
def limited(trained: Any, store: Settings) -> Iterator[TestClient]:
    """The service with a 2,000-byte body limit and a batch limit of 3 patients."""
    settings = store.model_copy(update={"max_body_bytes": BODY_LIMIT, "max_batch_size": 3})
    with TestClient(create_app(settings)) as service:
        yield service


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "2,000 bytes" in detail
    assert "WOMAC_MAX_BODY_BYTES" in detail


def test_a_body_within_the_limit_is_answered(limited: TestClient, patient: dict[str, Any]) -> None:
    assert len(httpx.Request("POST", "/", json=patient).content) < BODY_LIMIT
    assert limited.post("/v1/predict", json=patient).status_code == 200


def test_a_body_over_the_limit_gets_413_naming_the_limit(
    limited: TestClient, patient: dict[str, Any]
) -> None:
    padded = patient | {"patient_id": "p" * 64, "note": "n" * BODY_LIMIT}

    assert_too_large(limited.post("/v1/predict", json=padded))
    assert_too_large(limited.post("/v1/predict/batch", json={"patients": [padded]}))


def test_a_streamed_body_without_a_length_is_refused_at_the_limit(limited: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"patients": ['
        for _ in range(1_000):  # 1 MB in all
            yield b'{"age": 61, "sex": "female", "bmi": 29.5, "joint": "knee"},' * 16

    response = limited.post(
        "/v1/predict/batch", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert_too_large(response)


def test_a_batch_over_the_size_limit_gets_413_naming_the_limit(
    limited: TestClient, patients: list[dict[str, Any]]
) -> None:
    # Required fields only, so four patients stay well inside the body limit.
    small = [{k: v for k, v in p.items() if FIELD_BY_NAME[k].required} for p in patients]
    assert len(httpx.Request("POST", "/", json={"patients": small[:4]}).content) < BODY_LIMIT
    at_limit = limited.post("/v1/predict/batch", json={"patients": small[:3]})
    over = limited.post("/v1/predict/batch", json={"patients": small[:4]})

    assert at_limit.status_code == 200, at_limit.text
    assert len(at_limit.json()["predictions"]) == 3
    assert over.status_code == 413
    assert "at most 3" in over.json()["detail"]
    assert "WOMAC_MAX_BATCH_SIZE" in over.json()["detail"]


# -- bodies that are not JSON -----------------------------------------------------------


def test_a_body_that_is_not_json_is_refused_as_such(
    client: TestClient, patient: dict[str, Any]
) -> None:
    cut_short = json.dumps(patient)[:-10]
    not_json = client.post(
        "/v1/predict", content=cut_short, headers={"Content-Type": "application/json"}
    )
    not_text = client.post(
        "/v1/predict", content=b'{"age": \xe9}', headers={"Content-Type": "application/json"}
    )

    assert not_json.status_code == 422
    (problem,) = not_json.json()["detail"]
    assert problem["field"] == "body"  # not the character offset where parsing stopped
    assert problem["msg"] == "The body is not valid JSON."
    assert problem["loc"][0] == "body"
    # Bytes that are no text at all: the documented 400, a sentence saying so.
    assert not_text.status_code == 400
    assert "UTF-8" in not_text.json()["detail"]
