"""Behaviour of the chosen model on patients it never saw: invariance, direction, minimum
functionality, and how unknown fields are explained to a clinician."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from data.cohort import Cohort
from data.contract import ELIGIBILITY_FLAGS, FIELD_BY_NAME, PREDICTOR_NAMES, Role
from serve.model import ServedModel

from .conftest import request_record

LOW_FUNCTION, HIGH_FUNCTION = 10.0, 50.0  # WOMAC function, 0-68: mild and severe limitation


def pipeline_of(trained: Any, name: str) -> Pipeline:
    """The chosen pipeline (``"chosen"``) or one candidate of the session's training run."""
    result = (
        trained.chosen_result
        if name == "chosen"
        else next(c for c in trained.candidates if c.name == name)
    )
    pipeline: Pipeline = result.pipeline
    return pipeline


def served(pipeline: Pipeline) -> ServedModel:
    """The pipeline as the service wraps it, so answers read as a clinician sees them."""
    return ServedModel(
        pipeline=pipeline,
        name="womac-improvement",
        version="test",
        run_id="test",
        alias="champion",
        candidate="test",
    )


@pytest.fixture(scope="module")
def records(fresh_cohort: Cohort) -> list[dict[str, Any]]:
    """The fresh patients as API requests."""
    return [request_record(row) for _, row in fresh_cohort.frame.iterrows()]


def contributions_by_field(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["feature"]: c for c in answer["explanation"]["contributions"]}


# -- invariance -------------------------------------------------------------------------


def test_patient_id_does_not_change_the_answer(
    trained: Any, records: list[dict[str, Any]]
) -> None:
    model = served(trained.chosen_result.pipeline)
    patients = records[:50]
    renamed = [record | {"patient_id": f"OTHER-{i:04d}"} for i, record in enumerate(patients)]
    anonymous = [record | {"patient_id": None} for record in patients]
    before = model.predict(patients)
    for variant in (renamed, anonymous):
        after = model.predict(variant)
        for old, new in zip(before, after, strict=True):
            assert new["expected_improvement"] == old["expected_improvement"]
            assert new["explanation"] == old["explanation"]


@pytest.mark.parametrize("flag", [f.name for f in ELIGIBILITY_FLAGS])
def test_eligibility_flags_do_not_change_the_prediction(
    trained: Any, records: list[dict[str, Any]], flag: str
) -> None:
    assert FIELD_BY_NAME[flag].role is Role.ELIGIBILITY
    model = served(trained.chosen_result.pipeline)
    patients = records[:50]
    before = model.predict([record | {flag: False} for record in patients])
    after = model.predict([record | {flag: True} for record in patients])
    for old, new in zip(before, after, strict=True):
        assert new["expected_improvement"] == old["expected_improvement"]
        assert new["explanation"]["contributions"] == old["explanation"]["contributions"]


# -- direction --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["chosen", "baseline_womac", "ridge", "lightgbm"])
def test_worse_baseline_function_raises_expected_improvement(
    trained: Any, fresh_patients: pd.DataFrame, name: str
) -> None:
    """More limited patients have more to gain (DESIGN.md: MSC effect ~0.24 x baseline)."""
    pipeline = pipeline_of(trained, name)
    low = pipeline.predict(fresh_patients.assign(womac_function_0=LOW_FUNCTION))
    high = pipeline.predict(fresh_patients.assign(womac_function_0=HIGH_FUNCTION))
    assert np.all(high >= low), f"{int(np.sum(high < low))} patients would gain less"
    assert np.mean(high - low) > 5.0


# -- minimum functionality --------------------------------------------------------------


@pytest.mark.parametrize("name", ["chosen", "baseline_womac", "ridge", "lightgbm"])
def test_patient_with_every_optional_field_unknown_gets_a_finite_explained_prediction(
    trained: Any, records: list[dict[str, Any]], name: str
) -> None:
    pipeline = pipeline_of(trained, name)
    sparse = {key: value for key, value in records[0].items() if FIELD_BY_NAME[key].required}
    sparse["kl_grade"] = None  # required but may be blank: no radiograph on file
    answer = served(pipeline).predict([sparse])[0]

    expected = answer["expected_improvement"]
    contributions = [c["contribution"] for c in answer["explanation"]["contributions"]]
    assert np.isfinite(expected)
    assert np.isfinite(contributions).all()
    assert answer["explanation"]["base_value"] + sum(contributions) == pytest.approx(
        expected, abs=1e-6
    )
    frame = pd.DataFrame([{name: sparse.get(name) for name in PREDICTOR_NAMES}])
    assert np.isfinite(pipeline.predict(frame.astype({"kl_grade": float}))).all()


# -- explanations of unknown fields -----------------------------------------------------


@pytest.mark.parametrize("name", ["chosen", "ridge", "lightgbm"])
def test_unknown_optional_field_is_labelled_as_unknown_in_the_explanation(
    trained: Any, records: list[dict[str, Any]], name: str
) -> None:
    """A clinician leaving a field empty is told the estimate treats it as unknown."""
    patient = next(r for r in records if r["symptom_years"] is not None)
    answer = served(pipeline_of(trained, name)).predict([patient | {"symptom_years": None}])[0]
    symptom_years = contributions_by_field(answer)["symptom_years"]
    assert symptom_years["value"] is None
    assert symptom_years["note"] is not None
    assert "unknown" in symptom_years["note"]
    label = FIELD_BY_NAME["symptom_years"].label
    assert any(label in warning for warning in answer["warnings"]), answer["warnings"]


def test_known_fields_carry_the_patients_value_and_no_unknown_note(
    trained: Any, records: list[dict[str, Any]]
) -> None:
    patient = next(r for r in records if all(r[name] is not None for name in PREDICTOR_NAMES))
    answer = served(trained.chosen_result.pipeline).predict([patient])[0]
    for name, contribution in contributions_by_field(answer).items():
        assert contribution["value"] == patient[name], name
    assert not any("Not known" in warning for warning in answer["warnings"])


def test_field_a_model_leaves_out_by_design_is_not_called_unknown_in_training(
    trained: Any, records: list[dict[str, Any]]
) -> None:
    """The comparator ignores symptom years by design, though training patients had them."""
    patient = next(r for r in records if r["symptom_years"] is not None)
    answer = served(pipeline_of(trained, "baseline_womac")).predict([patient])[0]
    note = contributions_by_field(answer)["symptom_years"]["note"]
    assert note is not None
    assert "unknown in all its training data" not in note, note
