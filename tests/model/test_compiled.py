"""The scorer's fast path for one patient gives what the sklearn pipeline and the array path
give: the same features, predictions, contributions, interval, probability, eligibility and
warnings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import assert_one_patient_answers_as_the_batch
from womac.data.cohort import model_input, read_cohort
from womac.data.contract import ELIGIBILITY_FLAGS, FIELDS, PREDICTOR_NAMES, Kind, Role
from womac.data.patients import patients_columns
from womac.data.simulate import simulate_cohort
from womac.models.compiled import CompiledPatient
from womac.models.explain import Attributor, explain
from womac.models.scoring import Scorer

PATIENTS = 2000
FLAGS = tuple(spec.name for spec in FIELDS if spec.kind is Kind.BOOLEAN)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Fresh simulated patients as API records, a third with every optional field unknown."""
    path = tmp_path_factory.mktemp("compiled") / "cohort.csv"
    simulate_cohort(PATIENTS, 31337)[0].to_csv(path, index=False)
    frame = read_cohort(path).frame
    names = [*PREDICTOR_NAMES, *(flag.name for flag in ELIGIBILITY_FLAGS)]
    out = []
    for i, row in enumerate(frame[names].to_dict("records")):
        record = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        if i % 3 == 0:
            for spec in FIELDS:
                if spec.name in record and not spec.required:
                    record[spec.name] = None
        # The API sends booleans and integers as such.
        for flag in FLAGS:
            if record.get(flag) is not None:
                record[flag] = bool(record[flag])
        out.append(record)
    return out


@pytest.fixture(scope="module")
def scorer(trained: Any) -> Scorer:
    return Scorer(trained.pipeline)


@pytest.fixture(scope="module")
def compiled(trained: Any) -> CompiledPatient:
    pipeline = trained.pipeline
    return CompiledPatient(
        pipeline.named_steps["preprocess"], pipeline.named_steps["model"], Attributor(pipeline)
    )


def test_features_predictions_and_contributions_match_the_pipeline(
    trained: Any, compiled: CompiledPatient, records: list[dict[str, Any]]
) -> None:
    pipeline = trained.pipeline
    patients = model_input(pd.DataFrame(patients_columns(records)))
    features = np.asarray(pipeline.named_steps["preprocess"].transform(patients), dtype=float)
    reference = explain(pipeline, patients)
    predicted = pipeline.predict(patients)
    for i, record in enumerate(records):
        row = compiled.encode(record)
        np.testing.assert_allclose(row, features[i], rtol=0, atol=1e-9)
        base, contributions = compiled.attribute(row)
        assert base == pytest.approx(reference.base_value, abs=1e-9)
        np.testing.assert_allclose(contributions, reference.contributions[i], rtol=0, atol=1e-9)
        assert base + contributions.sum() == pytest.approx(predicted[i], abs=1e-9)


def test_every_answer_matches_the_array_path(
    scorer: Scorer, records: list[dict[str, Any]]
) -> None:
    assert_one_patient_answers_as_the_batch(scorer, records)


def test_patients_outside_training_and_at_the_floor_match_too(
    scorer: Scorer, records: list[dict[str, Any]]
) -> None:
    """Out-of-range values, never-seen levels and capped estimates take the same path."""
    odd = [
        records[1] | {"bmi": 69.0, "age": 99.0},
        records[2] | {"womac_pain_0": 0.0, "womac_stiffness_0": 0.0, "womac_function_0": 0.0},
        records[4] | {"kl_grade": 4, "active_infection": True},
        records[5] | {"womac_pain_0": 20.0, "womac_stiffness_0": 8.0, "womac_function_0": 68.0},
    ]
    batch = scorer.answer_columns(patients_columns(odd))
    for i, record in enumerate(odd):
        one = scorer.answer_records([record])
        assert one.expected_improvement[0] == pytest.approx(
            batch.expected_improvement[i], abs=1e-9
        )
        assert one.lower[0] == pytest.approx(batch.lower[i], abs=1e-9)
        assert one.upper[0] == pytest.approx(batch.upper[i], abs=1e-9)
        assert one.p_clinically_important[0] == pytest.approx(
            batch.p_clinically_important[i], abs=1e-9
        )
        assert one.warnings[0] == batch.warnings[i]
    assert any("capped" in w for w in batch.warnings[1])
    assert any("BMI is above" in w for w in batch.warnings[0])
    assert not batch.candidate[2]


def test_identifier_and_outcome_fields_are_not_part_of_the_compiled_input(
    compiled: CompiledPatient, records: list[dict[str, Any]]
) -> None:
    record = records[7]
    with_extras = (
        record
        | {"patient_id": "CANARY-0001"}
        | {spec.name: 1.0 for spec in FIELDS if spec.role is Role.OUTCOME}
    )
    np.testing.assert_array_equal(compiled.encode(record), compiled.encode(with_extras))
