"""Health, the model card, and a service that has no model to serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import registry_client, store_settings
from womac.data.contract import PREDICTOR_NAMES
from womac.models.candidates import COMPARATOR
from womac.serve.main import create_app


def test_health_says_the_champion_is_loaded(client: TestClient, trained: Any) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model_loaded": True,
        "model_version": trained.model_version,
        "auth_required": False,
    }


def test_model_card_shows_the_champion_and_its_held_out_figures(
    client: TestClient, trained: Any
) -> None:
    response = client.get("/v1/model")
    assert response.status_code == 200
    card = response.json()
    assert card["name"] == "womac-improvement"
    assert card["version"] == trained.model_version
    assert card["run_id"] == trained.run_id
    assert card["alias"] == "champion"
    assert card["candidate"] == trained.chosen
    assert card["fields_used"]
    assert set(card["fields_used"]) <= set(PREDICTOR_NAMES)

    chosen = trained.chosen_result
    comparator = next(c for c in trained.candidates if c.name == COMPARATOR)
    for metric in ("rmse", "mae", "r2"):
        assert card["held_out"][metric] == pytest.approx(trained.evaluation.point[metric])
        assert card["held_out"][metric] == pytest.approx(chosen.test[metric], rel=1e-3)
        assert card["comparator_held_out"][metric] == pytest.approx(comparator.test[metric])
        assert card["oracle_held_out"][metric] == pytest.approx(trained.oracle_test[metric])
        assert card["cross_validation"][metric] == pytest.approx(chosen.cv[metric])


@pytest.mark.parametrize("store_state", ["no store yet", "store without a champion"])
def test_without_a_champion_predictions_are_503_with_the_command_that_makes_one(
    tmp_path: Path, patients: list[dict[str, Any]], store_state: str
) -> None:
    settings = store_settings(tmp_path)
    if store_state == "store without a champion":
        registry_client(settings).search_registered_models()

    with TestClient(create_app(settings)) as service:
        health = service.get("/health")
        predicted = service.post("/v1/predict", json=patients[0])
        card = service.get("/v1/model")

    assert health.status_code == 200
    assert health.json()["model_loaded"] is False
    assert health.json()["model_version"] is None
    for response in (predicted, card):
        assert response.status_code == 503
        assert "womac train" in response.json()["detail"]
