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


def test_a_process_with_mlflow_imported_looks_up_in_place_and_keeps_its_mlflow_settings(
    trained: Any, store: Any, tmp_path: Path
) -> None:
    """A notebook that imported MLflow and points it at its own store creates the app: the
    champion is found in a thread, not a child process, and the notebook's MLflow still
    points where it did."""
    import mlflow

    from womac.serve.champion import ChampionLookup
    from womac.serve.model import load_champion

    own = f"sqlite:///{tmp_path / 'notebook.db'}"
    mlflow.set_tracking_uri(own)
    mlflow.set_registry_uri(own)
    try:
        lookup = ChampionLookup(store)
        assert lookup.process is None  # no child started
        served = load_champion(store, lookup)
        assert served.version == trained.model_version
        assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (own, own)
    finally:
        mlflow.set_tracking_uri(store.resolved_tracking_uri())
        mlflow.set_registry_uri(store.resolved_tracking_uri())
