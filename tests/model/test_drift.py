"""Input drift against the training data's summary: quiet on the same process, loud on a
changed case mix, a shifted age or a field left blank; a summary that holds no patient."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from womac.data.cohort import Cohort, read_cohort
from womac.data.contract import FOLLOW_UP_SUBSCALES, ID_FIELD, OUTCOMES, PREDICTORS, Kind
from womac.data.simulate import simulate_cohort
from womac.models.drift import FieldDrift, field_drift
from womac.models.reference import (
    MIN_BIN_PATIENTS,
    Binning,
    TrainingReference,
    read_reference,
    reference_of,
    write_reference,
)
from womac.settings import Settings

TRAINING_SIZE = 5000
NEW_SIZE = 2000
TRAINING_SEED = 1601
# The thresholds monitoring uses unless configured otherwise.
ALPHA = Settings.model_fields["monitor_false_alarm"].default
MIN_PSI = Settings.model_fields["drift_min_psi"].default


def _read(path: Path, n: int, seed: int) -> Cohort:
    cohort, _ = simulate_cohort(n, seed)
    cohort.to_csv(path, index=False)
    return read_cohort(path)


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return _read(
        tmp_path_factory.mktemp("training") / "cohort.csv", TRAINING_SIZE, TRAINING_SEED
    ).frame


@pytest.fixture(scope="module")
def reference(training: pd.DataFrame) -> TrainingReference:
    return reference_of(training)


@pytest.fixture(scope="module")
def new_patients(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return _read(tmp_path_factory.mktemp("new") / "cohort.csv", NEW_SIZE, 77).frame


def _by_field(drifts: list[FieldDrift]) -> dict[str, FieldDrift]:
    return {drift.field: drift for drift in drifts}


def _drift(reference: TrainingReference, frame: pd.DataFrame) -> dict[str, FieldDrift]:
    return _by_field(field_drift(reference, frame, alpha=ALPHA, min_psi=MIN_PSI))


def _with_share(frame: pd.DataFrame, chosen: pd.Series, share: float, seed: int) -> pd.DataFrame:
    """Resample rows so that the ``chosen`` ones are ``share`` of the patients."""
    rng = np.random.default_rng(seed)
    inside = np.flatnonzero(chosen.to_numpy())
    outside = np.flatnonzero(~chosen.to_numpy())
    n_inside = round(share * len(frame))
    rows = np.concatenate(
        [rng.choice(inside, n_inside), rng.choice(outside, len(frame) - n_inside)]
    )
    return frame.iloc[rows].reset_index(drop=True)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_same_process_does_not_drift(
    reference: TrainingReference, tmp_path: Path, seed: int
) -> None:
    new = _read(tmp_path / "new.csv", NEW_SIZE, seed)
    drifts = field_drift(reference, new.frame, alpha=ALPHA, min_psi=MIN_PSI, present=new.present)
    assert [d.field for d in drifts] == [f.name for f in PREDICTORS]
    assert [d.sentence for d in drifts if d.drifted] == []
    assert all(d.psi < MIN_PSI / 2 for d in drifts)


def test_more_kl_grade_3_is_drift_named_by_grade(
    reference: TrainingReference, new_patients: pd.DataFrame
) -> None:
    # Grade 3 is about 38% of the simulated patients: doubled to 76%.
    mix = _with_share(new_patients, new_patients["kl_grade"] == 3, 0.76, seed=1)
    kl = _drift(reference, mix)["kl_grade"]
    assert kl.drifted
    assert kl.psi >= 0.25  # a major shift by the PSI convention
    assert kl.sentence.startswith("Kellgren-Lawrence grade: drifted")
    assert "3 (moderate) is 76% of new patients" in kl.sentence
    shares = {share.category: share for share in kl.shares}
    assert shares["3 (moderate)"].new_share == pytest.approx(0.76)
    assert sum(share.new_share for share in kl.shares) == pytest.approx(1.0)


def test_hips_doubled_is_significant_and_tripled_is_drift(
    reference: TrainingReference, new_patients: pd.DataFrame
) -> None:
    hip = new_patients["joint"] == "hip"  # about 10% of simulated joints
    doubled = _drift(reference, _with_share(new_patients, hip, 0.20, seed=2))["joint"]
    # A rare level doubled moves the PSI to about 0.08 only: significant, yet below 0.1.
    assert doubled.p_value < ALPHA
    assert "hip is 20% of new patients" in doubled.sentence
    tripled = _drift(reference, _with_share(new_patients, hip, 0.30, seed=3))["joint"]
    assert tripled.drifted
    assert tripled.sentence.startswith("Treated joint: drifted")
    assert "hip is 30% of new patients, 10% in training" in tripled.sentence


def test_older_patients_drift_in_age_only(
    reference: TrainingReference, new_patients: pd.DataFrame
) -> None:
    older = new_patients.assign(age=new_patients["age"] + 8)
    drifts = _drift(reference, older)
    assert drifts["age"].drifted
    assert "years is" in drifts["age"].sentence  # a decile bin, in the field's unit
    assert [name for name, drift in drifts.items() if drift.drifted] == ["age"]


def test_a_field_left_blank_is_drift(
    reference: TrainingReference, new_patients: pd.DataFrame
) -> None:
    blank = new_patients.assign(cell_dose_millions=np.nan)
    dose = _drift(reference, blank)["cell_dose_millions"]
    assert dose.drifted
    assert "blank is 100% of new patients" in dose.sentence


def test_a_level_unseen_in_training_counts_as_other(
    reference: TrainingReference, new_patients: pd.DataFrame
) -> None:
    renamed = new_patients.assign(
        cell_source=new_patients["cell_source"].replace("adipose", "stromal_vascular")
    )
    source = _drift(reference, renamed)["cell_source"]
    assert source.drifted
    shares = {share.category: share.new_share for share in source.shares}
    assert shares["adipose"] == 0
    assert shares["a value not seen in training"] > 0.3


def test_a_field_absent_from_the_export_is_reported_not_judged(
    reference: TrainingReference, tmp_path: Path
) -> None:
    cohort, _ = simulate_cohort(300, 5)
    path = tmp_path / "no_dose.csv"
    cohort.drop(columns=["cell_dose_millions"]).to_csv(path, index=False)
    new = read_cohort(path)  # fills the absent optional column with blanks
    drifts = _by_field(
        field_drift(reference, new.frame, alpha=ALPHA, min_psi=MIN_PSI, present=new.present)
    )
    dose = drifts["cell_dose_millions"]
    assert not dose.present
    assert not dose.drifted
    assert dose.sentence == "Cell dose: not in the new export (not judged)"
    assert drifts["age"].present
    without_column = _drift(reference, new.frame.drop(columns=["cell_dose_millions"]))
    assert not without_column["cell_dose_millions"].present


def test_json_round_trip_is_exact(reference: TrainingReference, tmp_path: Path) -> None:
    path = write_reference(reference, tmp_path / "reference.json")
    again = read_reference(path)
    assert again == reference
    assert write_reference(again, tmp_path / "again.json").read_text() == path.read_text()
    assert json.loads(path.read_text())["version"] == reference.version


def test_the_reference_is_deterministic_and_ignores_row_order(training: pd.DataFrame) -> None:
    shuffled = training.sample(frac=1.0, random_state=3)
    assert reference_of(shuffled).as_dict() == reference_of(training).as_dict()


def test_an_unknown_format_version_is_refused(reference: TrainingReference) -> None:
    data = reference.as_dict() | {"version": 99}
    with pytest.raises(ValueError, match="version 99"):
        TrainingReference.from_dict(data)


def test_the_reference_holds_no_patient_column(reference: TrainingReference) -> None:
    text = json.dumps(reference.as_dict())
    for name in (ID_FIELD.name, *(f.name for f in OUTCOMES), *FOLLOW_UP_SUBSCALES):
        assert name not in text
    assert "SIM-" not in text
    assert [item["name"] for item in reference.as_dict()["fields"]] == [f.name for f in PREDICTORS]


def test_a_tiny_cohort_gets_no_bins(tmp_path: Path) -> None:
    tiny = reference_of(_read(tmp_path / "tiny.csv", 30, 8).frame)
    for spec in PREDICTORS:
        field_reference = tiny.field(spec.name)
        assert sum(field_reference.counts) == 30
        if spec.kind is Kind.NUMBER:
            assert field_reference.binning is Binning.KNOWN
            assert field_reference.edges == ()


def test_every_bin_holds_enough_training_patients(tmp_path: Path) -> None:
    small = reference_of(_read(tmp_path / "small.csv", 120, 9).frame)
    binned = [f for f in small.fields if f.binning is Binning.BINS]
    assert binned
    for field_reference in binned:
        known = field_reference.counts[:-1]
        assert min(known) >= MIN_BIN_PATIENTS, field_reference.name


def test_nothing_to_compare_is_not_judged(
    reference: TrainingReference, new_patients: pd.DataFrame
) -> None:
    no_new = _drift(reference, new_patients.iloc[:0])
    assert not any(drift.drifted for drift in no_new.values())
    assert no_new["age"].sentence == "Age: no new patients (not judged)"
    no_training = _drift(reference_of(new_patients.iloc[:0]), new_patients)
    assert not any(drift.drifted for drift in no_training.values())
    assert all(np.isnan(drift.psi) for drift in no_training.values())
