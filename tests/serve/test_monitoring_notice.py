"""The champion's latest monitoring verdict, served: in ``GET /v1/model`` and, when degraded,
as a notice on the clinician page; picked up by a reload of the same version.

The verdict is written as ``womac monitor`` writes it, as tags on the session's champion
version; the tags are deleted again afterwards, so the rest of the session sees a champion
that was never monitored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import registry_client
from womac.models.status import (
    TAG_LAST_MONITORED,
    TAG_PATIENTS,
    TAG_REASONS,
    TAG_RUN_ID,
    TAG_VERDICT,
    MonitoringStatus,
    Verdict,
    status_tags,
)
from womac.serve.main import create_app
from womac.settings import Settings

NOTICE = 'id="monitoring-notice"'
DEGRADED = MonitoringStatus(
    verdict=Verdict.degraded,
    last_monitored="2027-03-12T09:30:00+00:00",
    patients=412,
    reasons=[
        "Predicted improvement is 6.1 points above the observed on average.",
        "Calibration <b>drifted</b> & the interval covers 64% instead of 80%.",
    ],
    run_id="0123456789abcdef",
)

WriteTags = Callable[[dict[str, str]], None]


@pytest.fixture(scope="module")
def service(trained: Any, store: Settings) -> Iterator[TestClient]:
    """A service of its own on the session's store (the shared one is never reloaded here)."""
    with TestClient(create_app(store)) as test_client:
        yield test_client


def _reload(service: TestClient) -> None:
    response = service.post("/v1/admin/reload")
    assert response.status_code == 200, response.text


@pytest.fixture
def champion_tags(trained: Any, store: Settings, service: TestClient) -> Iterator[WriteTags]:
    """Write tags on the champion version, then reload; every monitoring tag is deleted after
    (the next write reloads: a reload costs a registry lookup in a child process)."""
    registry = registry_client(store)
    version = trained.model_version

    def write(tags: dict[str, str]) -> None:
        for key, value in tags.items():
            registry.set_model_version_tag(store.model_name, version, key, value)
        _reload(service)

    yield write
    present = registry.get_model_version(store.model_name, version).tags
    for key in (TAG_VERDICT, TAG_LAST_MONITORED, TAG_PATIENTS, TAG_RUN_ID, TAG_REASONS):
        if key in present:
            registry.delete_model_version_tag(store.model_name, version, key)


def test_the_model_card_shows_the_latest_verdict_once_reloaded(
    service: TestClient, champion_tags: WriteTags, trained: Any
) -> None:
    _reload(service)  # whatever ran before, the champion as never monitored
    never = service.get("/v1/model")
    assert never.status_code == 200
    assert never.json()["monitoring"] is None
    loaded = service.app.state.model  # type: ignore[attr-defined]

    champion_tags(status_tags(DEGRADED))
    card = service.get("/v1/model").json()

    assert card["version"] == trained.model_version
    assert card["monitoring"] == {
        "verdict": "degraded",
        "last_monitored": "2027-03-12T09:30:00+00:00",
        "patients": 412,
        "reasons": DEGRADED.reasons,
        "run_id": "0123456789abcdef",
    }
    # The same version is kept, not loaded again: only what the registry says of it changed.
    assert service.app.state.model.pipeline is loaded.pipeline  # type: ignore[attr-defined]

    later = DEGRADED.model_copy(update={"verdict": Verdict.holds, "reasons": [], "patients": 530})
    champion_tags(status_tags(later))
    monitoring = service.get("/v1/model").json()["monitoring"]
    assert (monitoring["verdict"], monitoring["patients"]) == ("holds", 530)
    assert monitoring["reasons"] == []


def test_a_degraded_model_gets_a_plain_notice_on_the_page(
    service: TestClient, champion_tags: WriteTags
) -> None:
    assert NOTICE not in service.get("/").text

    champion_tags(status_tags(DEGRADED))
    page = service.get("/")

    assert page.status_code == 200
    assert NOTICE in page.text
    assert (
        "Checked on 412 patients treated since training (12 March 2027): this model's "
        "predictions no longer hold as well as when it was trained. Use them with extra "
        "caution until it is updated."
    ) in page.text
    assert f"<li>{DEGRADED.reasons[0]}</li>" in page.text
    # Our own sentences, escaped all the same.
    assert "Calibration &lt;b&gt;drifted&lt;/b&gt; &amp; the interval covers" in page.text
    assert "<b>drifted</b>" not in page.text


@pytest.mark.parametrize("verdict", [Verdict.holds, Verdict.not_judged])
def test_no_notice_when_the_model_holds_or_was_not_judged(
    service: TestClient, champion_tags: WriteTags, verdict: Verdict
) -> None:
    champion_tags(status_tags(DEGRADED.model_copy(update={"verdict": verdict})))

    page = service.get("/")

    assert page.status_code == 200
    assert service.get("/v1/model").json()["monitoring"]["verdict"] == verdict.value
    assert NOTICE not in page.text
    assert "treated since training" not in page.text


@pytest.mark.parametrize(
    "garbage",
    [{TAG_VERDICT: "splendid"}, {TAG_VERDICT: "degraded", TAG_PATIENTS: "a few hundred"}],
    ids=["unknown verdict", "patients not a number"],
)
def test_tags_edited_by_hand_into_garbage_read_as_never_monitored(
    service: TestClient, champion_tags: WriteTags, garbage: dict[str, str]
) -> None:
    champion_tags(status_tags(DEGRADED) | garbage)

    card = service.get("/v1/model")
    page = service.get("/")

    assert card.status_code == 200
    assert card.json()["monitoring"] is None
    assert page.status_code == 200
    assert NOTICE not in page.text


def test_the_api_description_documents_the_verdict(service: TestClient) -> None:
    schemas = service.get("/openapi.json").json()["components"]["schemas"]

    monitoring = schemas["ModelCard"]["properties"]["monitoring"]
    assert "monitor" in monitoring["description"]
    assert {"$ref": "#/components/schemas/MonitoringStatus"} in monitoring["anyOf"]
    assert {"type": "null"} in monitoring["anyOf"]
    assert "monitoring" in schemas["ModelCard"]["required"]
    assert set(schemas["Verdict"]["enum"]) == {"holds", "degraded", "not_judged"}
    assert set(schemas["MonitoringStatus"]["properties"]) >= {
        "verdict",
        "last_monitored",
        "patients",
        "reasons",
    }
