"""The simulated default cohort: reproducible, literature figures, inside the contract."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from womac.data import simulate
from womac.data.cohort import read_cohort, womac_total
from womac.data.contract import FIELD_BY_NAME, FIELDS, FOLLOW_UP_SUBSCALES, Kind, PatientField
from womac.data.simulate import ORACLE, simulate_cohort, simulated_fields

LARGE = 20_000


@pytest.fixture(scope="module")
def large() -> tuple[pd.DataFrame, pd.Series]:
    return simulate_cohort(LARGE, seed=2026)


def test_same_seed_gives_the_same_cohort_and_oracle() -> None:
    first, first_oracle = simulate_cohort(300, seed=7)
    second, second_oracle = simulate_cohort(300, seed=7)

    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_series_equal(first_oracle, second_oracle)


def test_different_seeds_give_different_cohorts() -> None:
    first, first_oracle = simulate_cohort(300, seed=7)
    second, second_oracle = simulate_cohort(300, seed=8)

    assert not first["age"].equals(second["age"])
    assert not first["bmi"].equals(second["bmi"])
    assert not first_oracle.equals(second_oracle)


def test_cohort_and_oracle_line_up(large: tuple[pd.DataFrame, pd.Series]) -> None:
    cohort, oracle = large

    assert len(cohort) == len(oracle) == LARGE
    assert oracle.name == ORACLE
    assert oracle.index.equals(cohort.index)
    assert np.isfinite(oracle).all()
    assert cohort["patient_id"].is_unique
    assert list(cohort.columns) == [field.name for field in FIELDS]


def test_the_fields_simulated_are_contract_fields_in_contract_order() -> None:
    names = [field.name for field in FIELDS]
    simulated = simulated_fields()

    assert simulated == tuple(name for name in names if name in simulated)
    # Every required field is drawn, so a simulated cohort is a valid training export.
    assert {field.name for field in FIELDS if field.required} <= set(simulated)
    assert set(FOLLOW_UP_SUBSCALES) <= set(simulated)


def test_a_field_without_figures_is_a_blank_column_typed_as_its_kind(
    large: tuple[pd.DataFrame, pd.Series],
) -> None:
    cohort, _ = large
    for field in FIELDS:
        column = cohort[field.name]
        if field.name in simulated_fields():
            assert column.notna().any(), field.name
        else:
            assert_blank_as_its_kind(column, field)


def test_a_field_new_to_the_contract_comes_out_blank_and_changes_no_other_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before, before_oracle = simulate_cohort(500, seed=7)
    # An optional flag, number and category, new to the contract and placed in its middle
    # as an edit of data/contract.py would place them.
    kinds = ("prp", "cell_dose_millions", "donor")
    new = [replace(FIELD_BY_NAME[name], name=f"new_{name}") for name in kinds]
    at = len(FIELDS) // 2
    contract = (*FIELDS[:at], *new, *FIELDS[at:])
    monkeypatch.setattr(simulate, "FIELDS", contract)

    after, after_oracle = simulate_cohort(500, seed=7)

    assert list(after.columns) == [field.name for field in contract]
    pd.testing.assert_frame_equal(after.drop(columns=[field.name for field in new]), before)
    pd.testing.assert_series_equal(after_oracle, before_oracle)
    for field in new:
        assert_blank_as_its_kind(after[field.name], field)


def assert_blank_as_its_kind(column: pd.Series, field: PatientField) -> None:
    """All blank, typed as the simulator types a drawn column of the field's kind."""
    assert column.isna().all(), field.name
    if field.is_numeric:
        assert column.dtype == np.float64, field.name
    elif field.kind is Kind.BOOLEAN:
        assert column.dtype == object, field.name  # drawn flags with blanks are objects
    else:
        assert pd.api.types.is_string_dtype(column), field.name


def test_figures_match_the_design(large: tuple[pd.DataFrame, pd.Series]) -> None:
    cohort, _ = large
    known_kl = cohort["kl_grade"].dropna()
    lost = cohort[list(FOLLOW_UP_SUBSCALES)].isna().any(axis=1)

    assert (cohort["sex"] == "female").mean() == pytest.approx(0.58, abs=0.015)
    assert cohort["age"].mean() == pytest.approx(60, abs=0.5)
    assert cohort["age"].between(40, 80).all()
    assert cohort["bmi"].mean() == pytest.approx(29.5, abs=0.3)
    assert cohort["bmi"].between(18, 45).all()
    shares = known_kl.value_counts(normalize=True)
    for grade, share in {1: 0.08, 2: 0.34, 3: 0.40, 4: 0.18}.items():
        assert shares.get(float(grade), 0.0) == pytest.approx(share, abs=0.015), grade
    assert (cohort["joint"] == "knee").mean() == pytest.approx(0.90, abs=0.01)
    assert lost.mean() == pytest.approx(0.12, abs=0.01)
    assert cohort["kl_grade"].isna().mean() == pytest.approx(0.05, abs=0.01)


def test_oracle_improves_with_baseline_severity(large: tuple[pd.DataFrame, pd.Series]) -> None:
    cohort, oracle = large
    baseline = womac_total(cohort)

    assert np.corrcoef(baseline, oracle)[0, 1] > 0.5
    # Within patients alike in joint and KL grade, a worse baseline means more improvement.
    for (joint, grade), group in cohort.groupby(["joint", "kl_grade"]):
        if len(group) < 200:
            continue
        slope = np.polyfit(baseline[group.index], oracle[group.index], 1)[0]
        assert slope > 0.2, (joint, grade, slope)


def test_lost_to_follow_up_are_more_often_non_improvers(
    large: tuple[pd.DataFrame, pd.Series],
) -> None:
    cohort, oracle = large
    lost = cohort[list(FOLLOW_UP_SUBSCALES)].isna().any(axis=1)

    assert oracle[lost].mean() < oracle[~lost].mean()


def test_every_simulated_value_is_inside_the_contract(
    large: tuple[pd.DataFrame, pd.Series],
) -> None:
    cohort, _ = large
    for field in FIELDS:
        values = cohort[field.name].dropna()
        if field.is_numeric:
            numbers = values.astype(float)
            assert numbers.between(field.minimum, field.maximum).all(), field.name
            if field.kind is Kind.INTEGER:
                assert (numbers == numbers.round()).all(), field.name
        elif field.kind is Kind.CATEGORY:
            assert values.isin(field.categories).all(), field.name
        elif field.kind is Kind.BOOLEAN:
            assert values.isin([True, False]).all(), field.name
        else:
            assert (values.str.len() > 0).all(), field.name
        if field.required and not field.blank_allowed:
            assert cohort[field.name].notna().all(), field.name


def test_simulated_cohort_passes_validation(
    large: tuple[pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    cohort, _ = large
    path = tmp_path / "simulated.csv"
    cohort.to_csv(path, index=False)

    read = read_cohort(path, require_outcomes=True)

    assert len(read) == LARGE
    assert read.complete.all()
    assert int(read.lost_to_follow_up.sum()) == int(
        cohort[list(FOLLOW_UP_SUBSCALES)].isna().any(axis=1).sum()
    )


def test_a_cohort_needs_at_least_one_patient() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        simulate_cohort(0, seed=1)
