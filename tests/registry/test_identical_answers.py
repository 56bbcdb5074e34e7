"""One scorer: the API, both batch engines and the registered model answer alike.

For the same ~2,900 simulated patients (a quarter with their optional fields unknown, some
with no KL grade): the API (batch route, and the one-patient route for a sample, which
takes the scorer's fast path), ``womac predict --explanation full`` on one process and on
Spark, and the MLflow pyfunc, compared column by column, exactly. The clinician page shows
what the API answers (``tests/serve/test_page_browser.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.registry.helpers import CHAMPION, read_export
from womac.data.cohort import read_cohort
from womac.data.contract import PREDICTOR_NAMES, as_request
from womac.models.answers import ANSWER_COLUMNS
from womac.models.eligibility import protocol_from
from womac.models.store import connect
from womac.pipeline.detail import Detail
from womac.pipeline.predict import LIST_SEPARATORS, score_cohort
from womac.serve.main import create_app
from womac.settings import Settings

NAMES = [name for name, _ in ANSWER_COLUMNS]
BATCH = 1000  # the service's default batch limit
SINGLE_SAMPLE = 150


def api_row(answer: dict[str, Any]) -> dict[str, Any]:
    """An API answer in the registered model's columns."""
    row = {
        "expected_improvement": answer["expected_improvement"],
        "interval_lower": answer["interval"]["lower"],
        "interval_upper": answer["interval"]["upper"],
        "level": answer["interval"]["level"],
        "p_clinically_important": answer["p_clinically_important"],
        "candidate": answer["eligibility"]["candidate"],
        "reasons": answer["eligibility"]["reasons"],
        "warnings": answer["warnings"],
        "base_value": answer["explanation"]["base_value"],
    }
    by_field = {c["feature"]: c["contribution"] for c in answer["explanation"]["contributions"]}
    return row | {f"contribution_{name}": by_field[name] for name in PREDICTOR_NAMES}


def listed(cell: Any, name: str) -> list[str]:
    """A list column from any file: a list, an array (Parquet) or joined text (CSV)."""
    if isinstance(cell, list | np.ndarray):
        return [str(item) for item in cell]
    return [] if pd.isna(cell) or cell == "" else str(cell).split(LIST_SEPARATORS[name])


def comparable(frame: pd.DataFrame) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, kind in ANSWER_COLUMNS:
        if kind == "double":
            out[name] = frame[name].to_numpy(dtype=float).tolist()
        elif kind == "boolean":
            out[name] = [bool(v) for v in frame[name]]
        else:
            out[name] = [listed(v, name) for v in frame[name]]
    return out


@pytest.fixture(scope="module")
def client(trained: Any, store: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def by_pyfunc(trained: Any, store: Settings, cohort_export: Path) -> pd.DataFrame:
    connect(store.resolved_tracking_uri())
    return mlflow.pyfunc.load_model(CHAMPION).predict(read_export(cohort_export))


def test_the_api_and_the_registered_model_give_the_same_answers(
    client: TestClient, cohort_export: Path, by_pyfunc: pd.DataFrame
) -> None:
    requests = [as_request(row) for row in read_cohort(cohort_export).frame.to_dict("records")]
    assert len(requests) > 2500
    answers = []
    for start in range(0, len(requests), BATCH):
        response = client.post(
            "/v1/predict/batch", json={"patients": requests[start : start + BATCH]}
        )
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]

    assert comparable(pd.DataFrame([api_row(a) for a in answers])) == comparable(by_pyfunc)

    sample = np.random.default_rng(3).choice(len(requests), SINGLE_SAMPLE, replace=False)
    singles = [api_row(client.post("/v1/predict", json=requests[i]).json()) for i in sample]
    assert comparable(pd.DataFrame(singles)) == comparable(by_pyfunc.iloc[sample])


def test_both_batch_engines_and_the_registered_model_give_the_same_answers(
    spark: Any,
    trained: Any,
    store: Settings,
    cohort_export: Path,
    by_pyfunc: pd.DataFrame,
    tmp_path: Path,
) -> None:
    from womac.pipeline.spark import score_cohort_spark

    protocol = protocol_from(store)
    uri = store.resolved_tracking_uri()
    single = tmp_path / "scores.csv"
    score_cohort(cohort_export, single, CHAMPION, uri, protocol, detail=Detail.full)
    on_spark = tmp_path / "scores.parquet"
    score_cohort_spark(
        cohort_export, on_spark, CHAMPION, uri, protocol, spark=spark, detail=Detail.full
    )

    from_file = pd.read_csv(single, keep_default_na=False, na_values=[""])
    from_spark = pd.read_parquet(on_spark)
    assert list(from_file.columns) == ["patient_id", *NAMES, "note"] == list(from_spark.columns)
    assert comparable(from_file) == comparable(by_pyfunc)
    assert comparable(from_spark) == comparable(by_pyfunc)
