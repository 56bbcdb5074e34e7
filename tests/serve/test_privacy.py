"""Nothing a patient's record holds ends up in a log, an error or a refusal.

A canary patient (an id and values no code, model or log line would produce by chance) is
sent through every path a record can take: successful and refused predictions, batches,
malformed and oversized bodies, query strings and unknown paths, and CSV files through
``womac validate``, ``womac train --data`` and ``womac predict``. Everything the server
process and the commands print is captured, and every response body: none may contain the
canary, except a successful prediction, whose explanation rightly gives the patient's own
values back to the client who sent them.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.helpers import run_womac, serving, settings_env, store_settings
from womac.settings import Settings

pytestmark = pytest.mark.e2e

CANARY_ID = "CANARY-7f3e9"
# Four decimals: a duration (three decimals) or a timestamp cannot contain these by chance.
CANARY_VALUES = {
    "age": 71.3179,
    "bmi": 37.7731,
    "womac_function_0": 47.2913,
    "symptom_years": 13.5791,
    "cell_dose_millions": 123.4567,
}
BAD_SEX = "CANARY-sex-7f3e9"
BAD_EXTRA = "CANARY-extra-7f3e9"
SECRETS = [CANARY_ID, BAD_SEX, BAD_EXTRA, "7f3e9", *(str(v) for v in CANARY_VALUES.values())]
# The refused values too: out of range, not a number.
SECRETS += ["737.7731", "71.3179abc"]


def leaked(text: str) -> list[str]:
    """The canary's values found in ``text``."""
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
def canary(patient: dict[str, Any]) -> dict[str, Any]:
    return patient | {"patient_id": CANARY_ID} | CANARY_VALUES


def test_no_canary_value_in_any_server_log_or_refusal(
    trained: Any, store: Settings, canary: dict[str, Any], tmp_path: Path
) -> None:
    answered: list[httpx.Response] = []  # successful: may echo the patient's own values
    checked: list[httpx.Response] = []  # every other answer
    bad = canary | {"bmi": 737.7731, "sex": BAD_SEX, "favourite_colour": BAD_EXTRA}
    with serving(store, tmp_path) as server, httpx.Client(base_url=server.url) as http:
        answered.append(http.post("/v1/predict", json=canary))
        answered.append(http.post("/v1/predict/batch", json={"patients": [canary, canary]}))
        checked += [
            http.post("/v1/predict", json=bad),
            http.post("/v1/predict", json=canary | {"age": "71.3179abc"}),
            http.post("/v1/predict", json=canary | {"patient_id": CANARY_ID + "x" * 64}),
            http.post("/v1/predict/batch", json={"patients": [canary, bad]}),
            http.post(
                "/v1/predict",
                content=json.dumps(canary)[:-20],  # cut short: not JSON
                headers={"Content-Type": "application/json"},
            ),
            http.post(
                "/v1/predict", content=json.dumps(canary), headers={"Content-Type": "text/plain"}
            ),
            http.post(
                "/v1/predict/batch",
                json={"patients": [canary] * 1000, "note": "x" * 1_000_000},
            ),
            http.get("/v1/model", params={"patient_id": CANARY_ID, "bmi": 37.7731}),
            http.get("/v1/model", headers={"X-Request-ID": CANARY_ID}),  # an id as request id
            http.get(f"/v1/patients/{CANARY_ID}/bmi/37.7731"),
            http.post(f"/v1/predict?patient={CANARY_ID}", json=bad),
            # A key can hold anything a client typed; so can the first segment of a path.
            http.post("/v1/predict", json=canary | {f"{CANARY_ID}-key": 1}),
            http.get(f"/{CANARY_ID}.1962-03-04"),
            # A request head far over 16 KB is refused by the server before any route runs.
            http.get("/health", headers={"X-Note": CANARY_ID * 20_000}),
        ]
    log = server.output()

    assert [response.status_code for response in answered] == [200, 200]
    assert CANARY_ID in answered[0].text  # the client's own answer names its patient
    assert [response.status_code for response in checked] == [
        422,
        422,
        422,
        422,
        422,
        422,
        413,
        200,
        200,
        404,
        422,
        422,
        404,
        400,
    ]
    for response in checked:
        assert leaked(response.text) == [], (response.request.url.path, response.text)
        assert leaked(str(response.headers)) == []
    requests = [json.loads(line) for line in log.splitlines() if '"event": "request"' in line]
    assert len(requests) >= len(answered) + len(checked)  # every request was logged...
    assert leaked(log) == [], log  # ...and nothing any of them sent


def write_canary_csv(path: Path, with_outcomes: bool) -> None:
    """A cohort export with the canary on every row: some values refused, some fine."""
    header = [
        "patient_id",
        "age",
        "sex",
        "bmi",
        "joint",
        "kl_grade",
        "womac_pain_0",
        "womac_stiffness_0",
        "womac_function_0",
        "symptom_years",
        "cell_dose_millions",
    ]
    good = [CANARY_ID, "71.3179", "female", "37.7731", "knee", "2", "8", "3", "47.2913"]
    good += ["13.5791", "123.4567"]
    rows = [
        good,
        [f"{CANARY_ID}-2", "71.3179abc", BAD_SEX, "737.7731", *good[4:]],
        [f"{CANARY_ID}-3", *good[1:3], "737.7731", *good[4:]],
    ]
    if with_outcomes:
        header += ["womac_pain_12", "womac_stiffness_12", "womac_function_12"]
        rows = [[*row, "4", "2", "20"] for row in rows]
    path.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")


def test_no_canary_value_in_what_the_commands_print_or_store(
    trained: Any, store: Settings, tmp_path: Path
) -> None:
    cohort, training = tmp_path / "cohort.csv", tmp_path / "training.csv"
    write_canary_csv(cohort, with_outcomes=False)
    write_canary_csv(training, with_outcomes=True)
    own_store = store_settings(tmp_path / "store")

    validated = run_womac("validate", str(cohort), cwd=tmp_path, env=settings_env(own_store))
    trained_run = run_womac(
        "train", "--data", str(training), cwd=tmp_path, env=settings_env(own_store)
    )
    scored = run_womac(
        "predict",
        "--data",
        str(cohort),
        "--out",
        str(tmp_path / "scores.csv"),
        cwd=tmp_path,
        env=settings_env(store),  # the session's champion
    )

    for finished in (validated, trained_run, scored):
        assert finished.returncode == 1, finished.stdout + finished.stderr
        printed = finished.stdout + finished.stderr
        assert "Traceback" not in printed
        assert "bmi" in printed  # the problem is named...
        assert leaked(printed) == [], printed  # ...never the value
    assert not (tmp_path / "scores.csv").exists()
    # A refused training leaves no trace of the data anywhere in its store.
    for stored in (tmp_path / "store").rglob("*"):
        if stored.is_file():
            assert leaked(stored.read_bytes().decode("latin-1")) == [], stored


def test_a_callers_uuid_request_id_is_kept_and_anything_else_replaced(
    client: TestClient,
) -> None:
    """Correlation ids survive; a free-form id (which could be a patient's) never does."""
    mine = str(uuid.uuid4())
    assert client.get("/health", headers={"X-Request-ID": mine}).headers["x-request-id"] == mine
    replaced = client.get("/health", headers={"X-Request-ID": CANARY_ID}).headers["x-request-id"]
    assert replaced != CANARY_ID
    assert uuid.UUID(replaced)
