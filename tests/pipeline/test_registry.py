"""Training against the registry: promotion only on merit, nothing registered on failure,
and the smallest export the contract allows still gives a working model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.helpers import registry_client, store_settings
from womac.data.cohort import model_input, read_cohort
from womac.data.contract import FIELDS, PREDICTOR_NAMES, Role
from womac.data.problems import CohortError
from womac.data.simulate import simulate_cohort
from womac.models.explain import explain
from womac.models.store import connect, load_pipeline
from womac.pipeline.train import train
from womac.serve.model import load_champion
from womac.settings import Settings

MODEL_NAME = "womac-improvement"
SMALL = 600


def versions(client: MlflowClient) -> set[str]:
    return {str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")}


def test_retrained_model_that_does_not_beat_the_champion_is_registered_not_promoted(
    tmp_path: Path,
) -> None:
    """Retraining on the same export gives the champion's own model, which cannot beat it.

    (A cohort with shuffled 12-month scores does not work for this: the champion, scored
    against shuffled outcomes, does worse than a model that predicts their mean.)
    """
    settings = store_settings(tmp_path)
    data = tmp_path / "cohort.csv"
    simulate_cohort(SMALL, 31)[0].to_csv(data, index=False)
    first = train(data, settings)
    assert first.promotion.promoted

    second = train(data, settings)

    client = registry_client(settings)
    assert versions(client) == {first.model_version, second.model_version}
    assert second.model_version != first.model_version
    assert not second.promotion.promoted
    assert f"does not beat champion v{first.model_version}" in second.promotion.reason
    tags = client.get_model_version(MODEL_NAME, second.model_version).tags
    assert tags["promotion"] == "not promoted"
    assert tags["promotion_reason"]
    assert tags["promotion_reason"] == second.promotion.reason
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == first.model_version
    assert load_champion(settings).version == first.model_version


def test_cohort_breaking_the_contract_is_refused_whole_and_registers_nothing(
    trained: Any, store: Settings, tmp_path: Path
) -> None:
    cohort, _ = simulate_cohort(120, 77)
    cohort = cohort.drop(columns=["joint"]).astype({"kl_grade": object, "bmi": object})
    cohort.loc[3, "kl_grade"] = 7
    cohort.loc[5, "bmi"] = "abc"
    data = tmp_path / "broken.csv"
    cohort.to_csv(data, index=False)

    client = registry_client(store)
    versions_before = versions(client)
    champion_before = client.get_model_version_by_alias(MODEL_NAME, "champion").version
    runs_before = len(client.search_runs([trained.experiment_id], max_results=1000))

    with pytest.raises(CohortError) as refused:
        train(data, store)

    problems = {problem.column: problem for problem in refused.value.problems}
    assert {"kl_grade", "bmi", "joint"} <= set(problems)
    assert problems["kl_grade"].lines == (5,)  # the header is line 1
    assert problems["bmi"].lines == (7,)
    message = str(refused.value)
    for column in ("kl_grade", "bmi", "joint"):
        assert column in message
    assert "abc" not in message  # values are never echoed

    assert versions(client) == versions_before
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == champion_before
    assert len(client.search_runs([trained.experiment_id], max_results=1000)) == runs_before


def test_export_with_only_the_required_columns_trains_registers_and_predicts(
    tmp_path: Path,
) -> None:
    settings = store_settings(tmp_path)
    required = [f.name for f in FIELDS if f.required or f.role is Role.OUTCOME]
    data = tmp_path / "required-only.csv"
    simulate_cohort(SMALL, 41)[0][required].to_csv(data, index=False)

    result = train(data, settings)

    client = registry_client(settings)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == result.model_version
    required_predictors = [name for name in PREDICTOR_NAMES if name in required]
    params = client.get_run(result.run_id).data.params
    assert params["fields_used"].split(",") == required_predictors

    connect(settings.resolved_tracking_uri())
    pipeline = load_pipeline(f"models:/{MODEL_NAME}@champion")
    cohort = read_cohort(data)
    patients = model_input(cohort.frame[cohort.complete])
    explanation = explain(pipeline, patients)
    predicted = pipeline.predict(patients)
    assert np.isfinite(predicted).all()
    np.testing.assert_allclose(
        explanation.base_value + explanation.contributions.sum(axis=1), predicted, atol=1e-6
    )
    # (That fields absent from the file contribute nothing holds by construction, as their
    # columns are dropped; tests/model/test_explanations.py probes trees given a field they
    # never split on.)

    # Served: a clinician who sends a field the model cannot use is told so.
    served = load_champion(settings)
    patient = {name: cohort.frame.at[0, name] for name in required_predictors}
    patient = {k: (v.item() if hasattr(v, "item") else v) for k, v in patient.items()}
    answer = served.predict([patient | {"prp": True}])[0]
    prp = next(c for c in answer["explanation"]["contributions"] if c["feature"] == "prp")
    assert prp["contribution"] == 0
    assert prp["note"].startswith("not")
    assert any("PRP" in warning and "not used" in warning for warning in answer["warnings"])
