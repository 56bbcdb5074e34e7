"""The data report: counts and missingness, never a patient's values."""

from __future__ import annotations

import hashlib
import json

import pytest

from womac.data.cohort import inspect_cohort, read_cohort
from womac.data.contract import FOLLOW_UP_SUBSCALES
from womac.data.report import summarise

HEADER = (
    "patient_id,age,sex,bmi,joint,kl_grade,womac_pain_0,womac_stiffness_0,womac_function_0,"
    "diabetes,surgeon," + ",".join(FOLLOW_UP_SUBSCALES)
)
# Five treated joints: one lost to follow-up, one partly lost, one with BMI blank,
# two with KL grade blank, one with diabetes blank; symptom_years etc. absent.
CONTENT = (
    f"{HEADER}\n"
    "ZK-70011,87.25,female,41.7,knee,2,8,3,30,yes,Dr Quill,4,1,15\n"
    "ZK-70012,55,male,27.5,hip,,10,4,40,no,Dr Quill,5,2,21\n"
    "ZK-70013,63,female,30.5,knee,3,9,3,33,no,Dr Quill,,,\n"
    "ZK-70014,71,male,26.5,knee,,7,2,28,,Dr Quill,6,,20\n"
    "ZK-70015,66,female,,knee,4,12,5,44,yes,Dr Quill,8,3,30\n"
)
PATIENT_IDS = ("ZK-70011", "ZK-70012", "ZK-70013", "ZK-70014", "ZK-70015")


@pytest.fixture
def export(write_file):
    return write_file("clinic.csv", CONTENT)


def test_report_counts_rows_follow_up_and_usable_rows(export) -> None:
    report = summarise(read_cohort(export, require_outcomes=True))

    assert report.source == "clinic.csv"
    assert report.rows == 5
    assert report.lost_to_follow_up == 2
    assert report.incomplete_predictors == 1
    assert report.usable_for_training == 2
    # Usable rows improved by 41 - 20 = 21 and 54 - 28 = 26.
    assert report.target_mean == pytest.approx(23.5)


def test_report_gives_missingness_per_field(export) -> None:
    report = summarise(read_cohort(export, require_outcomes=True))
    fields = {summary.name: summary for summary in report.fields}

    assert fields["age"].present
    assert fields["age"].blank == 0
    assert fields["bmi"].blank == 1
    assert fields["kl_grade"].blank == 2
    assert fields["kl_grade"].blank_fraction == pytest.approx(0.4)
    assert fields["diabetes"].present
    assert fields["diabetes"].blank == 1
    assert not fields["symptom_years"].present
    assert fields["symptom_years"].blank == 5
    assert fields["symptom_years"].blank_fraction == 1.0
    assert fields["womac_pain_12"].blank == 1
    assert fields["womac_stiffness_12"].blank == 2
    assert "surgeon" not in fields


def test_report_of_a_cohort_without_outcomes_leaves_them_out(write_file) -> None:
    content = "\n".join(",".join(line.split(",")[:11]) for line in CONTENT.strip().splitlines())
    report = summarise(read_cohort(write_file("baseline.csv", content)))

    assert report.rows == 5
    assert report.lost_to_follow_up == 0
    assert report.usable_for_training == 0
    assert not any(summary.name in FOLLOW_UP_SUBSCALES for summary in report.fields)


def test_report_holds_no_patient_values(export) -> None:
    cohort, problems = inspect_cohort(export, require_outcomes=True)
    text = json.dumps(summarise(cohort, problems, export).as_dict())

    for patient_id in PATIENT_IDS:
        assert patient_id not in text
    for value in ("87.25", "41.7", "female", "hip", "Dr Quill"):
        assert value not in text


def test_report_ties_itself_to_the_exact_file(export) -> None:
    report = summarise(read_cohort(export), path=export)

    assert report.sha256 == hashlib.sha256(export.read_bytes()).hexdigest()
