"""Behaviour of the served model and of every candidate on patients they never saw:
invariance, direction, minimum functionality, and how unknown fields are explained.

Answers as a clinician reads them come from the served pipeline (``trained.pipeline``: the
chosen model with its predictive distribution); candidates are checked through
:func:`models.explain.explain`, the attribution every served answer is built on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from womac.data.cohort import Cohort
from womac.data.contract import ELIGIBILITY_FLAGS, FIELD_BY_NAME, PREDICTOR_NAMES, Role, as_request
from womac.models.explain import explain
from womac.models.wording import field_notes
from womac.serve.model import ServedModel

LOW_FUNCTION, HIGH_FUNCTION = 10.0, 50.0  # WOMAC function, 0-68: mild and severe limitation


CANDIDATE_NAMES = ["baseline_womac", "ridge", "lightgbm", "blend"]


def pipeline_of(trained: Any, name: str) -> Pipeline:
    """The served pipeline (``"served"``) or one candidate of the session's training run."""
    if name == "served":
        served_pipeline: Pipeline = trained.pipeline
        return served_pipeline
    pipeline: Pipeline = next(c for c in trained.candidates if c.name == name).pipeline
    return pipeline


def served(pipeline: Pipeline) -> ServedModel:
    """A pipeline as the service wraps it (notes need only its encoder; answers need the
    served pipeline), so answers read as a clinician sees them."""
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
    return [as_request(row) for _, row in fresh_cohort.frame.iterrows()]


def contributions_by_field(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["feature"]: c for c in answer["explanation"]["contributions"]}


# -- invariance -------------------------------------------------------------------------


def test_patient_id_does_not_change_the_answer(
    trained: Any, records: list[dict[str, Any]]
) -> None:
    model = served(trained.pipeline)
    patients = records[:50]
    renamed = [record | {"patient_id": f"OTHER-{i:04d}"} for i, record in enumerate(patients)]
    anonymous = [record | {"patient_id": None} for record in patients]
    before = model.predict(patients)
    for variant in (renamed, anonymous):
        after = model.predict(variant)
        for old, new in zip(before, after, strict=True):
            assert new["expected_improvement"] == old["expected_improvement"]
            assert new["interval"] == old["interval"]
            assert new["p_clinically_important"] == old["p_clinically_important"]
            assert new["explanation"] == old["explanation"]


@pytest.mark.parametrize("flag", [f.name for f in ELIGIBILITY_FLAGS])
def test_eligibility_flags_do_not_change_the_prediction(
    trained: Any, records: list[dict[str, Any]], flag: str
) -> None:
    assert FIELD_BY_NAME[flag].role is Role.ELIGIBILITY
    model = served(trained.pipeline)
    patients = records[:50]
    before = model.predict([record | {flag: False} for record in patients])
    after = model.predict([record | {flag: True} for record in patients])
    for old, new in zip(before, after, strict=True):
        assert new["expected_improvement"] == old["expected_improvement"]
        assert new["interval"] == old["interval"]
        assert new["p_clinically_important"] == old["p_clinically_important"]
        assert new["explanation"]["contributions"] == old["explanation"]["contributions"]
        # ... only the eligibility does.
        assert not new["eligibility"]["candidate"]
        assert any(FIELD_BY_NAME[flag].label in r for r in new["eligibility"]["reasons"])


# -- direction --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["served", *CANDIDATE_NAMES])
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


def sparse_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A patient with only the required fields, and no radiograph on file."""
    sparse = {key: value for key, value in records[0].items() if FIELD_BY_NAME[key].required}
    sparse["kl_grade"] = None  # required but may be blank: no radiograph on file
    return sparse


def test_patient_with_every_optional_field_unknown_gets_a_finite_explained_answer(
    trained: Any, records: list[dict[str, Any]]
) -> None:
    answer = served(trained.pipeline).predict([sparse_record(records)])[0]

    expected = answer["expected_improvement"]
    contributions = [c["contribution"] for c in answer["explanation"]["contributions"]]
    assert np.isfinite(expected)
    assert np.isfinite(contributions).all()
    assert answer["explanation"]["base_value"] + sum(contributions) == pytest.approx(
        expected, abs=1e-6
    )
    interval = answer["interval"]
    assert np.isfinite([interval["lower"], interval["upper"]]).all()
    assert interval["lower"] <= interval["upper"]
    assert 0.0 <= answer["p_clinically_important"] <= 1.0
    # Not knowing the KL grade or the flags is said, not silently taken as "eligible".
    assert answer["eligibility"]["candidate"] is True
    unchecked = next(w for w in answer["warnings"] if w.startswith("Not recorded"))
    assert "Kellgren-Lawrence grade" in unchecked
    for flag in ELIGIBILITY_FLAGS:
        assert flag.label.lower() in unchecked, flag.name


@pytest.mark.parametrize("name", CANDIDATE_NAMES)
def test_candidate_explains_a_patient_with_every_optional_field_unknown(
    trained: Any, records: list[dict[str, Any]], name: str
) -> None:
    pipeline = pipeline_of(trained, name)
    sparse = sparse_record(records)
    frame = pd.DataFrame([{field: sparse.get(field) for field in PREDICTOR_NAMES}])
    frame = frame.astype({"kl_grade": float})
    explanation = explain(pipeline, frame)
    predicted = pipeline.predict(frame)

    assert np.isfinite(predicted).all()
    assert np.isfinite(explanation.contributions).all()
    np.testing.assert_allclose(
        explanation.base_value + explanation.contributions.sum(axis=1), predicted, atol=1e-6
    )


# -- explanations of unknown fields -----------------------------------------------------


def test_unknown_optional_field_is_labelled_as_unknown_in_the_explanation(
    trained: Any, records: list[dict[str, Any]]
) -> None:
    """A clinician leaving a field empty is told the estimate treats it as unknown."""
    patient = next(r for r in records if r["symptom_years"] is not None)
    answer = served(trained.pipeline).predict([patient | {"symptom_years": None}])[0]
    symptom_years = contributions_by_field(answer)["symptom_years"]
    assert symptom_years["value"] is None
    assert symptom_years["note"] is not None
    assert "unknown" in symptom_years["note"]
    label = FIELD_BY_NAME["symptom_years"].label
    assert any(label in warning for warning in answer["warnings"]), answer["warnings"]


@pytest.mark.parametrize("name", ["ridge", "lightgbm", "blend"])
def test_candidate_would_label_an_unknown_field_as_unknown(
    trained: Any, records: list[dict[str, Any]], name: str
) -> None:
    """Whichever candidate is chosen, its notes call an unknown field unknown."""
    pipeline = pipeline_of(trained, name)
    known_note, unknown_note = field_notes(pipeline.named_steps["preprocess"])["symptom_years"]
    assert known_note is None
    assert "unknown" in unknown_note
    patient = next(r for r in records if r["symptom_years"] is not None)
    frame = pd.DataFrame([{field: patient.get(field) for field in PREDICTOR_NAMES}])
    frame["symptom_years"] = np.nan
    frame = frame.astype({n: float for n in PREDICTOR_NAMES if frame[n].dtype == bool})
    assert np.isfinite(explain(pipeline, frame).contributions).all()


def test_known_fields_carry_the_patients_value_and_no_unknown_note(
    trained: Any, records: list[dict[str, Any]]
) -> None:
    patient = next(r for r in records if all(r[name] is not None for name in PREDICTOR_NAMES))
    answer = served(trained.pipeline).predict([patient])[0]
    for name, contribution in contributions_by_field(answer).items():
        assert contribution["value"] == patient[name], name
    assert not any("Not known" in warning for warning in answer["warnings"])


def test_field_a_model_leaves_out_by_design_is_not_called_unknown_in_training(
    trained: Any, records: list[dict[str, Any]]
) -> None:
    """The comparator ignores symptom years by design, though training patients had them."""
    known_note, unknown_note = field_notes(
        pipeline_of(trained, "baseline_womac").named_steps["preprocess"]
    )["symptom_years"]
    for note in (known_note, unknown_note):
        assert note is not None
        assert "not an input of this model" in note, note
        assert "training cohort did not record" not in note, note
