"""Reading a clinic's cohort export: typing, refusing bad files, tolerating real exports."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from womac.data.cohort import inspect_cohort, read_cohort
from womac.data.contract import FIELD_BY_NAME, FIELDS, FOLLOW_UP_SUBSCALES, Kind
from womac.data.problems import CohortError
from womac.data.simulate import simulate_cohort, simulated_fields

REQUIRED = tuple(spec.name for spec in FIELDS if spec.required)
HEADER = ",".join(REQUIRED)
OUTCOMES = ",".join(FOLLOW_UP_SUBSCALES)


def row(patient_id: str = "QX-48213", **values: str) -> str:
    """One CSV row of the required columns; ``values`` override the defaults."""
    defaults = {
        "patient_id": patient_id,
        "age": "61",
        "sex": "female",
        "bmi": "29.5",
        "joint": "knee",
        "kl_grade": "2",
        "womac_pain_0": "8",
        "womac_stiffness_0": "3",
        "womac_function_0": "30",
    }
    defaults.update(values)
    return ",".join(defaults[name] for name in REQUIRED)


def is_text_field(name: str) -> bool:
    return FIELD_BY_NAME[name].kind in (Kind.CATEGORY, Kind.IDENTIFIER)


# -- a simulated export read back --------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """A simulated cohort written with ``DataFrame.to_csv``, as a user would save it."""
    cohort, _ = simulate_cohort(600, seed=11)
    path = tmp_path_factory.mktemp("export") / "cohort.csv"
    cohort.to_csv(path, index=False)
    return cohort, path


def test_simulated_export_reads_back_with_every_contract_column_typed(
    simulated_export: tuple[pd.DataFrame, Path],
) -> None:
    original, path = simulated_export
    cohort = read_cohort(path, require_outcomes=True)

    assert list(cohort.frame.columns) == [spec.name for spec in FIELDS]
    assert cohort.present == frozenset(spec.name for spec in FIELDS)
    assert len(cohort) == len(original)
    for spec in FIELDS:
        column = cohort.frame[spec.name]
        # A field the simulator has no figures for is exported as a blank column.
        assert column.notna().any() == (spec.name in simulated_fields()), spec.name
        if is_text_field(spec.name):
            assert column.dtype == object, spec.name
            assert all(isinstance(value, str) for value in column.dropna()), spec.name
            pd.testing.assert_series_equal(
                column.isna(), original[spec.name].isna(), check_names=False
            )
            assert (column.dropna() == original[spec.name].dropna()).all(), spec.name
        else:
            assert column.dtype == np.float64, spec.name
            if spec.kind is Kind.BOOLEAN:
                assert set(column.dropna().unique()) <= {0.0, 1.0}, spec.name
            np.testing.assert_array_equal(
                column.to_numpy(), original[spec.name].astype(float).to_numpy(), err_msg=spec.name
            )


def test_lost_to_follow_up_rows_have_no_target_rather_than_a_huge_improvement(
    simulated_export: tuple[pd.DataFrame, Path],
) -> None:
    original, path = simulated_export
    cohort = read_cohort(path, require_outcomes=True)
    lost = original[list(FOLLOW_UP_SUBSCALES)].isna().any(axis=1).to_numpy()
    assert lost.any(), "the simulated cohort should have rows lost to follow-up"

    assert cohort.lost_to_follow_up.to_numpy().tolist() == lost.tolist()
    assert cohort.target[lost].isna().all()
    assert not cohort.trainable[lost].any()

    followed = original[~lost]
    expected = followed[["womac_pain_0", "womac_stiffness_0", "womac_function_0"]].to_numpy().sum(
        axis=1
    ) - followed[list(FOLLOW_UP_SUBSCALES)].to_numpy().sum(axis=1)
    np.testing.assert_allclose(cohort.target[~lost].to_numpy(), expected)
    assert cohort.target.abs().max() <= 96


# -- a file with several problems -------------------------------------------------------

BAD_FILE = (
    # age is missing from the header; line 3 has a BMI of "abc", line 4 a KL grade of 7
    "patient_id,sex,bmi,joint,kl_grade,womac_pain_0,womac_stiffness_0,womac_function_0\n"
    "QX-48213,female,31.2,knee,2,8,3,30\n"
    "QX-59027,male,abc,hip,3,9,4,35\n"
    "QX-60318,female,27.4,knee,7,6,2,25\n"
)
BAD_FILE_IDS = ("QX-48213", "QX-59027", "QX-60318")


def assert_no_patient_values(message: str) -> None:
    """The message names fields and rules only: no bad value, no patient_id."""
    assert "abc" not in message
    assert re.search(r"(?<![\d.])7(?![\d.])", message) is None, message
    for patient_id in BAD_FILE_IDS:
        assert patient_id not in message


def test_every_problem_of_a_bad_file_is_listed_at_once(write_file) -> None:
    path = write_file("bad.csv", BAD_FILE)

    with pytest.raises(CohortError) as caught:
        read_cohort(path)

    problems = {problem.column: problem for problem in caught.value.problems}
    assert set(problems) == {"age", "bmi", "kl_grade"}
    assert "required column is missing" in problems["age"].rule
    assert problems["bmi"].lines == (3,)
    assert FIELD_BY_NAME["bmi"].rule in problems["bmi"].rule
    assert problems["kl_grade"].lines == (4,)
    assert FIELD_BY_NAME["kl_grade"].rule in problems["kl_grade"].rule

    message = str(caught.value)
    assert "bad.csv" in message
    for expected in ("age", "bmi", "line 3", "kl_grade", "line 4"):
        assert expected in message
    assert_no_patient_values(message)


def test_inspecting_a_bad_file_types_broken_values_as_unknown(write_file) -> None:
    cohort, problems = inspect_cohort(write_file("bad.csv", BAD_FILE))

    assert {problem.column for problem in problems} == {"age", "bmi", "kl_grade"}
    assert cohort.frame["bmi"].isna().tolist() == [False, True, False]
    assert cohort.frame["kl_grade"].isna().tolist() == [False, False, True]
    assert cohort.frame["age"].isna().all()
    assert_no_patient_values("\n".join(str(problem) for problem in problems))


@pytest.mark.parametrize(
    ("content", "column", "rule", "lines", "secret"),
    [
        pytest.param(
            f"{HEADER}\n{row(sex='unknown-sex')}\n",
            "sex",
            "one of female, male",
            (2,),
            "unknown-sex",
            id="category-not-allowed",
        ),
        pytest.param(
            f"{HEADER},diabetes\n{row()},no\n{row('QX-2')},maybe\n",
            "diabetes",
            "yes/no",
            (3,),
            "maybe",
            id="boolean-maybe",
        ),
        pytest.param(
            f"{HEADER}\n{row(kl_grade='2.5')}\n",
            "kl_grade",
            "whole number",
            (2,),
            "2.5",
            id="kl-2.5",
        ),
        pytest.param(f"{HEADER}\n{row(age='inf')}\n", "age", "number", (2,), "inf", id="inf"),
        pytest.param(
            f"{HEADER}\n{row(womac_pain_0='-Infinity')}\n",
            "womac_pain_0",
            "number",
            (2,),
            "Infinity",
            id="minus-infinity",
        ),
        pytest.param(
            f"{HEADER}\n{row(bmi='1e999')}\n", "bmi", "number", (2,), "1e999", id="overflow"
        ),
        pytest.param(
            f"{HEADER}\n{row(age='17')}\n", "age", "18 to 100", (2,), "17", id="age-below-range"
        ),
        pytest.param(
            f"{HEADER}\n{row(womac_function_0='69')}\n",
            "womac_function_0",
            "0 to 68",
            (2,),
            "69",
            id="subscale-above-range",
        ),
        pytest.param(f"{HEADER}\n{row(patient_id='')}\n", "patient_id", "blank", (2,), None),
        pytest.param("", "file", "empty", (), None, id="empty-file"),
        pytest.param("\n   \n\n", "file", "empty", (), None, id="whitespace-only"),
        pytest.param(f"{HEADER}\n", "file", "no data rows", (), None, id="header-only"),
        pytest.param(
            f"{HEADER}\n{row()}\n{row('QX-2')},extra\n{row('QX-3').rsplit(',', 1)[0]}\n",
            "file",
            "number of cells",
            (3, 4),
            None,
            id="ragged-rows",
        ),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
            "file",
            "binary|not a text",
            (),
            None,
            id="binary-png",
        ),
        pytest.param(
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml",
            "file",
            "binary|not a text",
            (),
            None,
            id="binary-xlsx",
        ),
        pytest.param(
            f"{HEADER},age\n{row()},62\n",
            "age",
            "more than once",
            (),
            None,
            id="duplicated-column",
        ),
        pytest.param(
            f"{HEADER},Age \n{row()},62\n",
            "age",
            "more than once",
            (),
            None,
            id="duplicated-after-normalising",
        ),
        pytest.param(
            "name,years,gender\nAnna,61,f\n", "header", "header", (), None, id="no-contract-column"
        ),
        pytest.param(
            f"{HEADER}\n{row()}\n{row(patient_id='P' * 65)}\n",
            "patient_id",
            "too long: must be a non-empty identifier of at most 64 characters",
            (3,),
            "P" * 65,
            id="patient-id-longer-than-the-api-allows",
        ),
        pytest.param(
            f"{HEADER}\n{row(sex=chr(34) + 'female')}\n",
            "file",
            "CSV",
            (2,),
            None,
            id="open-quote",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_problem(
    write_file,
    content: str | bytes,
    column: str,
    rule: str,
    lines: tuple[int, ...],
    secret: str | None,
) -> None:
    path = write_file("export.csv", content)

    with pytest.raises(CohortError) as caught:
        read_cohort(path)

    matching = [problem for problem in caught.value.problems if problem.column == column]
    assert matching, caught.value.problems
    assert re.search(rule, matching[0].rule), matching[0].rule
    assert matching[0].lines == lines
    message = str(caught.value)
    assert column in message
    assert "QX-48213" not in message
    if secret is not None:
        assert not re.search(rf"(?<![\w.]){re.escape(secret)}(?![\w.])", message), message


def test_the_patient_id_limit_is_the_contracts_and_the_apis(write_file) -> None:
    """One limit everywhere: the longest id a file may hold is the longest the API takes."""
    from womac.serve.schemas import PatientRequest

    longest = FIELD_BY_NAME["patient_id"].max_length
    assert longest == 64
    cohort = read_cohort(write_file("export.csv", f"{HEADER}\n{row(patient_id='P' * longest)}\n"))
    assert cohort.frame["patient_id"].tolist() == ["P" * longest]
    schema = PatientRequest.model_json_schema()["properties"]["patient_id"]
    assert longest in [option.get("maxLength") for option in schema.get("anyOf", [schema])]


def test_a_headerless_export_is_refused_as_missing_its_header(write_file) -> None:
    # The first patient's row ends up as the header; its values repeat (KL 2, stiffness 2),
    # which must not be reported as a duplicated column named after a patient's value.
    path = write_file(
        "no-header.csv",
        "QX-48213,61,female,29.5,knee,2,8,2,30\nQX-59027,58,male,31.0,hip,3,9,4,35\n",
    )

    with pytest.raises(CohortError) as caught:
        read_cohort(path)

    assert [problem.column for problem in caught.value.problems] == ["header"]
    assert "header" in caught.value.problems[0].rule
    assert "QX-48213" not in str(caught.value)


def test_a_missing_file_is_a_cohort_error(tmp_path: Path) -> None:
    with pytest.raises(CohortError) as caught:
        read_cohort(tmp_path / "absent.csv")

    assert [problem.column for problem in caught.value.problems] == ["file"]
    assert "cannot be read" in caught.value.problems[0].rule


def test_training_needs_the_twelve_month_columns(write_file) -> None:
    path = write_file("baseline-only.csv", f"{HEADER}\n{row()}\n")

    assert len(read_cohort(path)) == 1
    with pytest.raises(CohortError) as caught:
        read_cohort(path, require_outcomes=True)

    assert {(p.column, p.rule) for p in caught.value.problems} == {
        (name, "required column is missing") for name in FOLLOW_UP_SUBSCALES
    }


def test_a_problem_on_many_lines_lists_them_all_but_shows_a_few(write_file) -> None:
    rows = "".join(f"{row(f'QX-{i}', kl_grade='9')}\n" for i in range(20))
    path = write_file("many.csv", f"{HEADER}\n{rows}")

    with pytest.raises(CohortError) as caught:
        read_cohort(path)

    (problem,) = caught.value.problems
    assert problem.lines == tuple(range(2, 22))
    assert "and 8 more" in str(caught.value)


def test_problem_lines_are_file_lines_even_with_blank_lines_in_the_export(write_file) -> None:
    # Line 1 header, 2 a patient, 3 blank, 4 an empty spreadsheet row, 5 a bad KL grade.
    content = f"{HEADER}\n{row()}\n\n,,,,,,,,\n{row('QX-2', kl_grade='9')}\n"
    cohort, problems = inspect_cohort(write_file("gaps.csv", content))

    assert [(p.column, p.lines) for p in problems] == [("kl_grade", (5,))]
    assert cohort.lines.tolist() == [2, 5]


# -- tolerance of real exports ----------------------------------------------------------


def test_utf8_byte_order_mark_is_ignored(write_file) -> None:
    path = write_file("bom.csv", f"\ufeff{HEADER}\n{row()}\n".encode())

    cohort = read_cohort(path)

    assert "patient_id" in cohort.present
    assert cohort.frame["patient_id"].tolist() == ["QX-48213"]


def test_semicolon_separated_export_with_decimal_commas(write_file) -> None:
    content = (
        HEADER.replace(",", ";")
        + "\nQX-1;61,5;female;29,5;knee;2;8;3;30,5\nQX-2;70;male;31;hip;;9;4;35\n"
    )

    cohort = read_cohort(write_file("semicolon.csv", content))

    assert cohort.frame["age"].tolist() == [61.5, 70.0]
    assert cohort.frame["bmi"].tolist() == [29.5, 31.0]
    assert cohort.frame["womac_function_0"].tolist() == [30.5, 35.0]
    assert cohort.frame["joint"].tolist() == ["knee", "hip"]


def test_tab_separated_export(write_file) -> None:
    content = HEADER.replace(",", "\t") + "\n" + row().replace(",", "\t") + "\n"

    cohort = read_cohort(write_file("tabs.tsv", content))

    assert cohort.frame["bmi"].tolist() == [29.5]


def test_latin1_export_is_read(write_file) -> None:
    content = f"{HEADER},remarque\n{row()},genou opéré à droite\n".encode("latin-1")

    cohort = read_cohort(write_file("latin1.csv", content))

    assert cohort.frame["sex"].tolist() == ["female"]
    assert any("latin-1" in note.lower() for note in cohort.notes)


def test_header_case_and_spacing_are_normalised(write_file) -> None:
    header = (
        "Patient_ID, Age ,SEX, BMI ,Joint,KL grade,WOMAC_Pain_0,Womac_Stiffness_0,womac_function_0"
    )

    cohort = read_cohort(write_file("headers.csv", f"{header}\n{row()}\n"))

    assert cohort.present == frozenset(REQUIRED)
    assert cohort.frame.loc[0, "age"] == 61.0
    assert cohort.frame.loc[0, "bmi"] == 29.5
    assert cohort.frame.loc[0, "kl_grade"] == 2.0


@pytest.mark.parametrize("token", ["", "NA", "null", "N/A", "nan", "NULL", "  "])
def test_blank_tokens_are_unknown_values(write_file, token: str) -> None:
    content = (
        f"{HEADER},symptom_years,activity_level,diabetes\n"
        f"{row(kl_grade=token)},{token},{token},{token}\n"
        f"{row('QX-2')},4.5,low,yes\n"
    )

    cohort = read_cohort(write_file("blanks.csv", content))

    for name in ("kl_grade", "symptom_years", "activity_level", "diabetes"):
        assert cohort.frame[name].isna().tolist() == [True, False], name
    # KL grade may be blank: the row stays usable.
    assert cohort.complete.tolist() == [True, True]


@pytest.mark.parametrize(
    ("spelling", "sex"),
    [("F", "female"), ("M", "male"), ("f", "female"), ("Female", "female"), ("MALE", "male")],
)
def test_sex_spellings(write_file, spelling: str, sex: str) -> None:
    cohort = read_cohort(write_file("sex.csv", f"{HEADER}\n{row(sex=spelling)}\n"))

    assert cohort.frame["sex"].tolist() == [sex]


@pytest.mark.parametrize(
    ("spelling", "value"),
    [
        ("yes", 1.0),
        ("no", 0.0),
        ("Yes", 1.0),
        ("NO", 0.0),
        ("TRUE", 1.0),
        ("false", 0.0),
        ("1", 1.0),
        ("0", 0.0),
        ("1.0", 1.0),
        ("0.0", 0.0),
    ],
)
def test_boolean_spellings(write_file, spelling: str, value: float) -> None:
    content = f"{HEADER},diabetes,prp\n{row()},{spelling},{spelling}\n"

    cohort = read_cohort(write_file("flags.csv", content))

    assert cohort.frame["diabetes"].tolist() == [value]
    assert cohort.frame["prp"].tolist() == [value]


def test_extra_columns_are_ignored_with_a_note_naming_them(write_file) -> None:
    content = f"{HEADER},surgeon,clinic_notes\n{row()},Dr A,fine\n"

    cohort = read_cohort(write_file("extra.csv", content))

    assert "surgeon" not in cohort.frame.columns
    assert "clinic_notes" not in cohort.frame.columns
    assert cohort.present == frozenset(REQUIRED)
    notes = [note for note in cohort.notes if "surgeon" in note]
    assert notes, cohort.notes
    assert "clinic_notes" in notes[0]


def test_trailing_empty_columns_of_a_spreadsheet_export_are_ignored(write_file) -> None:
    # Spreadsheets often export a couple of empty columns after the last used one.
    content = f"{HEADER},,\n{row()},,\n{row('QX-2')},,\n"

    cohort = read_cohort(write_file("trailing.csv", content))

    assert len(cohort) == 2
    assert cohort.present == frozenset(REQUIRED)


def test_a_file_with_only_the_required_columns_validates(write_file) -> None:
    cohort = read_cohort(write_file("required.csv", f"{HEADER}\n{row()}\n{row('QX-2')}\n"))

    assert cohort.present == frozenset(REQUIRED)
    assert cohort.complete.all()
    assert not cohort.has_outcomes
    for spec in FIELDS:
        if spec.name in REQUIRED:
            continue
        column = cohort.frame[spec.name]
        assert column.isna().all(), spec.name
        assert column.dtype == (object if is_text_field(spec.name) else np.float64), spec.name


def test_a_blank_required_predictor_makes_the_row_unusable_not_the_file(write_file) -> None:
    content = (
        f"{HEADER},{OUTCOMES}\n"
        f"{row()},4,1,15\n"
        f"{row('QX-2', bmi='')},5,2,20\n"
        f"{row('QX-3')},6,2,22\n"
    )

    cohort = read_cohort(write_file("blank-bmi.csv", content), require_outcomes=True)

    assert cohort.complete.tolist() == [True, False, True]
    assert cohort.trainable.tolist() == [True, False, True]
    notes = [note for note in cohort.notes if "bmi" in note]
    assert len(notes) == 1, cohort.notes
    assert "line 3" in notes[0]
    assert "QX-2" not in notes[0]
