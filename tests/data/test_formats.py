"""One cohort written as CSV, .xlsx, .ods and Parquet reads as the same typed cohort, and a
bad value is reported where a person would look for it in each format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from womac.data.cohort import Layout, read_cohort
from womac.data.exports import column_letter
from womac.data.problems import CohortError
from womac.data.simulate import simulate_cohort

FORMATS = [".xlsx", ".ods", ".parquet"]


@pytest.fixture(scope="module")
def cohort_frame() -> pd.DataFrame:
    frame, _ = simulate_cohort(300, 808)
    frame.loc[frame.index % 7 == 3, "kl_grade"] = None  # blanks, as exports have them
    frame.loc[frame.index % 5 == 1, ["activity_level", "prp"]] = None
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        engine = "odf" if path.suffix == ".ods" else "xlsxwriter"
        frame.to_excel(path, index=False, sheet_name="Patients", engine=engine)
    return path


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_reads_as_the_same_cohort_as_csv(
    cohort_frame: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    expected = read_cohort(write(cohort_frame, tmp_path / "cohort.csv"), require_outcomes=True)
    cohort = read_cohort(write(cohort_frame, tmp_path / f"cohort{suffix}"), require_outcomes=True)
    pd.testing.assert_frame_equal(cohort.frame, expected.frame)
    assert cohort.present == expected.present
    offset = 1 if suffix == ".parquet" else 0  # Parquet rows count from 1, not the header
    np.testing.assert_array_equal(cohort.lines, expected.lines - offset)


@pytest.mark.parametrize("suffix", [".xlsx", ".ods"])
def test_a_bad_value_in_a_workbook_is_placed_by_sheet_row_and_column_letter(
    cohort_frame: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    frame = cohort_frame.copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[4, "age"] = 300
    frame.loc[9, "sex"] = "x"
    with pytest.raises(CohortError) as refused:
        read_cohort(write(frame, tmp_path / f"cohort{suffix}"))
    letter = column_letter(list(frame.columns).index("age"))
    text = str(refused.value)
    assert f"age (sheet 'Patients', column {letter}): out of range: must be a number" in text
    assert "to 100 years (row 6)" in text
    assert "sex (sheet 'Patients', column C): not an allowed value: must be one of" in text
    assert "female, male (row 11)" in text


def test_a_bad_value_in_parquet_is_placed_by_row(
    cohort_frame: pd.DataFrame, tmp_path: Path
) -> None:
    frame = cohort_frame.copy()
    frame.loc[4, "bmi"] = 500.0
    with pytest.raises(
        CohortError, match=r"bmi: out of range: must be a number from 12 to 70 kg/m2 \(row 5\)"
    ):
        read_cohort(write(frame, tmp_path / "cohort.parquet"))


def test_a_named_sheet_is_read_and_an_unknown_one_refused_naming_the_sheets(
    cohort_frame: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "clinic.xlsx"
    with pd.ExcelWriter(path, engine="xlsxwriter") as workbook:
        pd.DataFrame({"note": ["read me first"]}).to_excel(workbook, sheet_name="About")
        cohort_frame.to_excel(workbook, sheet_name="Patients", index=False)
    assert len(read_cohort(path, layout=Layout(sheet="Patients"))) == len(cohort_frame)
    with pytest.raises(
        CohortError, match=r"has no sheet 'Data' \(its sheets: 'About', 'Patients'\)"
    ):
        read_cohort(path, layout=Layout(sheet="Data"))


def test_column_letters_follow_spreadsheets() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 27, 701, 702)] == [
        "A",
        "Z",
        "AA",
        "AB",
        "ZZ",
        "AAA",
    ]


def test_a_file_that_is_not_a_workbook_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cohort.xlsx"
    path.write_text("patient_id,age\n")
    with pytest.raises(CohortError, match="cannot be read"):
        read_cohort(path)
