"""``mlflow.models.evaluate`` on the champion with held-out patients, as the README shows it.

MLflow's default evaluator takes the champion's ``expected_improvement`` column as the
prediction. Its SHAP step is switched off: it fails on pandas' string dtype (what
``pd.read_csv`` gives for text) and would re-explain a model whose answers already carry
exact per-field SHAP values.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.registry.helpers import CHAMPION
from womac.data.cohort import womac_improvement
from womac.data.contract import FOLLOW_UP_SUBSCALES, TARGET
from womac.data.simulate import simulate_cohort
from womac.models.metrics import regression_metrics
from womac.models.store import connect
from womac.settings import Settings


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """New patients with their 12-month outcome, as a data scientist prepares them."""
    path = tmp_path_factory.mktemp("evaluate") / "followed-up.csv"
    simulate_cohort(1200, 606060)[0].to_csv(path, index=False)
    frame = pd.read_csv(path)
    frame[TARGET] = womac_improvement(frame)
    frame = frame.dropna(subset=[TARGET, "age", "bmi", "womac_function_0"])
    return frame.drop(columns=list(FOLLOW_UP_SUBSCALES)).reset_index(drop=True)


def test_mlflow_evaluate_scores_the_champion_on_held_out_patients(
    trained: Any, store: Settings, held_out: pd.DataFrame
) -> None:
    client = connect(store.resolved_tracking_uri())
    experiment = client.create_experiment("womac-evaluation")
    with mlflow.start_run(experiment_id=experiment):
        result = mlflow.models.evaluate(
            CHAMPION,
            held_out,
            targets=TARGET,
            model_type="regressor",
            predictions="expected_improvement",
            evaluator_config={"log_model_explainability": False},
        )

    answers = mlflow.pyfunc.load_model(CHAMPION).predict(held_out.drop(columns=[TARGET]))
    ours = regression_metrics(
        held_out[TARGET].to_numpy(), answers["expected_improvement"].to_numpy()
    )
    assert result.metrics["example_count"] == len(held_out)
    assert result.metrics["root_mean_squared_error"] == pytest.approx(ours["rmse"])
    assert result.metrics["r2_score"] == pytest.approx(ours["r2"])
    assert np.isfinite(result.metrics["mean_absolute_error"])
