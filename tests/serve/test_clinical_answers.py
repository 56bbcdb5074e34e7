"""What every answer tells a clinician beyond the number: its range, the chance of a
clinically important improvement, eligibility under the protocol, and warnings."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.serve.helpers import (
    assert_answer_shape,
    assert_clinical_case,
    bmi_training_range,
    clinical_cases,
)
from womac.data.contract import ELIGIBILITY_FLAGS, FIELD_BY_NAME
from womac.data.patients import patients_frame
from womac.features.encoding import frame_columns
from womac.models.scoring import Scorer

PREDICT = "/v1/predict"
CASES = ["ordinary", "kl_grade_4", "active_infection", "bmi_60"]


@pytest.mark.parametrize("case", CASES)
def test_clinical_case_is_answered_with_what_the_clinician_must_know(
    client: TestClient, patient: dict[str, Any], trained: Any, case: str
) -> None:
    response = client.post(PREDICT, json=clinical_cases(patient)[case])
    assert response.status_code == 200, response.text
    assert_clinical_case(case, response.json(), bmi_training_range(trained))


@pytest.mark.parametrize("flag", [flag.name for flag in ELIGIBILITY_FLAGS])
def test_each_protocol_exclusion_is_refused_with_its_reason(
    client: TestClient, patient: dict[str, Any], flag: str
) -> None:
    request = clinical_cases(patient)["ordinary"] | {flag: True}
    answer = client.post(PREDICT, json=request).json()
    assert answer["eligibility"] == {
        "candidate": False,
        "reasons": [f"{FIELD_BY_NAME[flag].label}: outside the protocol"],
    }


def test_exclusion_does_not_change_the_estimate_range_or_chance(
    client: TestClient, patient: dict[str, Any]
) -> None:
    cases = clinical_cases(patient)
    ordinary = client.post(PREDICT, json=cases["ordinary"]).json()
    infected = client.post(PREDICT, json=cases["active_infection"]).json()
    for key in ("expected_improvement", "interval", "p_clinically_important", "explanation"):
        assert infected[key] == ordinary[key], key


def test_unrecorded_kl_grade_and_flags_keep_the_patient_a_candidate_with_a_warning(
    client: TestClient, patient: dict[str, Any]
) -> None:
    request = patient | {"kl_grade": None} | {flag.name: None for flag in ELIGIBILITY_FLAGS}
    answer = client.post(PREDICT, json=request).json()
    assert_answer_shape(answer)
    assert answer["eligibility"] == {"candidate": True, "reasons": []}
    (unchecked,) = [w for w in answer["warnings"] if w.startswith("Not recorded")]
    assert "Kellgren-Lawrence grade" in unchecked
    for flag in ELIGIBILITY_FLAGS:
        assert flag.label.lower() in unchecked


def test_served_range_and_chance_are_the_trained_models(
    client: TestClient, patients: list[dict[str, Any]], trained: Any
) -> None:
    batch = patients[:5]
    expected = Scorer(trained.pipeline).answer_columns(frame_columns(patients_frame(batch)))
    for row, patient in enumerate(batch):
        answer = client.post(PREDICT, json=patient).json()
        assert_answer_shape(answer)
        assert answer["interval"]["lower"] == pytest.approx(expected.lower[row], abs=1e-9)
        assert answer["interval"]["upper"] == pytest.approx(expected.upper[row], abs=1e-9)
        assert answer["p_clinically_important"] == pytest.approx(
            expected.p_clinically_important[row], abs=1e-12
        )


def test_batch_answers_carry_the_same_range_chance_eligibility_and_warnings(
    client: TestClient, patient: dict[str, Any], trained: Any
) -> None:
    cases = clinical_cases(patient)
    response = client.post(f"{PREDICT}/batch", json={"patients": list(cases.values())})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(cases)
    for (case, request), answer in zip(cases.items(), predictions, strict=True):
        assert_clinical_case(case, answer, bmi_training_range(trained))
        single = client.post(PREDICT, json=request).json()
        for key in ("interval", "p_clinically_important", "eligibility", "warnings"):
            assert answer[key] == single[key], (case, key)


def test_model_card_shows_interval_and_responder_figures(client: TestClient, trained: Any) -> None:
    card = client.get("/v1/model").json()
    evaluation = trained.evaluation
    assert card["interval_level"] == 0.8
    assert card["interval"]["coverage"] == pytest.approx(evaluation.coverage)
    assert card["interval"]["interval_width"] == pytest.approx(evaluation.mean_width)
    assert card["responder_definition"] == {"min_points": 9.0, "min_fraction": 0.2}
    for key in ("auroc", "brier", "calibration_slope", "calibration_intercept"):
        assert card["responder"][key] == pytest.approx(evaluation.responder[key]), key
    # Interval and responder figures are not mixed into the point-estimate figures.
    assert "coverage" not in card["held_out"]
    assert not any(key.startswith("responder_") for key in card["held_out"])


def test_model_report_is_served_as_one_html_page(client: TestClient) -> None:
    response = client.get("/v1/model/report")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().lower().startswith("<!doctype html")
    assert "TRIPOD" in response.text
