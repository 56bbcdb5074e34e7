"""WOMAC totals and the 12-month improvement: blank means unknown, never zero."""

from __future__ import annotations

import numpy as np
import pandas as pd

from womac.data.cohort import read_cohort, womac_improvement, womac_total
from womac.data.contract import BASELINE_SUBSCALES, FOLLOW_UP_SUBSCALES, TARGET

NAN = np.nan


def subscales(rows: list[tuple[float, ...]]) -> pd.DataFrame:
    """Baseline then 12-month pain, stiffness, function for each row."""
    return pd.DataFrame(rows, columns=[*BASELINE_SUBSCALES, *FOLLOW_UP_SUBSCALES])


def test_total_is_blank_when_any_subscale_is_blank() -> None:
    frame = subscales(
        [
            (8, 3, 30, 4, 1, 15),
            (NAN, 3, 30, 4, 1, 15),
            (8, 3, 30, NAN, NAN, NAN),
            (8, 3, 30, 4, NAN, 15),
        ]
    )

    baseline = womac_total(frame)
    follow_up = womac_total(frame, FOLLOW_UP_SUBSCALES)

    assert baseline.tolist()[0] == 41.0
    assert np.isnan(baseline.tolist()[1])
    assert baseline.tolist()[2:] == [41.0, 41.0]
    assert follow_up.tolist()[:2] == [20.0, 20.0]
    assert np.isnan(follow_up.tolist()[2:]).all()


def test_improvement_is_baseline_minus_twelve_months_and_blank_when_either_is_unknown() -> None:
    frame = subscales(
        [
            (8, 3, 30, 4, 1, 15),  # 41 -> 20: improved by 21
            (4, 1, 15, 8, 3, 30),  # 20 -> 41: worse by 21
            (8, 3, 30, NAN, NAN, NAN),  # lost to follow-up: pandas would sum 41 - 0
            (8, 3, 30, 4, NAN, 15),  # one 12-month subscale missing
            (8, NAN, 30, 4, 1, 15),  # one baseline subscale missing
        ]
    )

    improvement = womac_improvement(frame)

    assert improvement.name == TARGET
    assert improvement.tolist()[:2] == [21.0, -21.0]
    assert improvement.iloc[2:].isna().all()


def test_improvement_is_unknown_without_twelve_month_columns() -> None:
    frame = subscales([(8, 3, 30, 4, 1, 15)])[list(BASELINE_SUBSCALES)]

    assert womac_improvement(frame).isna().all()


def test_cohort_target_of_partly_lost_rows_is_unknown(write_file) -> None:
    header = (
        "patient_id,age,sex,bmi,joint,kl_grade,"
        + ",".join(BASELINE_SUBSCALES)
        + ","
        + ",".join(FOLLOW_UP_SUBSCALES)
    )
    content = (
        f"{header}\n"
        "QX-1,61,female,29.5,knee,2,8,3,30,4,1,15\n"
        "QX-2,61,female,29.5,knee,2,8,3,30,,,\n"
        "QX-3,61,female,29.5,knee,2,8,3,30,NA,1,15\n"
    )

    cohort = read_cohort(write_file("follow-up.csv", content), require_outcomes=True)

    assert cohort.target.iloc[0] == 21.0
    assert cohort.target.iloc[1:].isna().all()
    assert cohort.lost_to_follow_up.tolist() == [False, True, True]
    assert cohort.trainable.tolist() == [True, False, False]
