"""PatientEncoder: contract fields in, standardized model inputs out, one field at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from womac.data.cohort import model_input, read_cohort
from womac.data.contract import PREDICTOR_NAMES
from womac.data.patients import patients_frame
from womac.data.simulate import simulate_cohort, simulated_fields
from womac.features.encoding import PatientEncoder, field_of


@parametrize_with_checks([PatientEncoder(), PatientEncoder(spline_knots=4)])
def test_sklearn_compatible(estimator: PatientEncoder, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


@pytest.fixture(scope="module")
def patients(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Model input of a simulated cohort read back from CSV, as training sees it."""
    cohort, _ = simulate_cohort(400, seed=5)
    path = tmp_path_factory.mktemp("encoding") / "cohort.csv"
    cohort.to_csv(path, index=False)
    return read_cohort(path).predictors()


def encoded(encoder: PatientEncoder, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(encoder.transform(frame), columns=encoder.get_feature_names_out())


def one_patient(patients: pd.DataFrame, **values: object) -> pd.DataFrame:
    """The first training patient with some fields changed."""
    patient = patients.iloc[[0]].copy().reset_index(drop=True)
    for name, value in values.items():
        patient[name] = pd.Series([value], dtype=object if isinstance(value, str) else None)
    return patient


# The predictors a simulated cohort has values for; the others are blank columns in it.
SIMULATED_PREDICTORS = set(PREDICTOR_NAMES) & set(simulated_fields())
ENCODERS = [
    pytest.param(PatientEncoder(), id="linear"),
    pytest.param(PatientEncoder(spline_knots=4), id="splines"),
]


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_output_column_is_named_after_one_contract_field(
    encoder: PatientEncoder, patients: pd.DataFrame
) -> None:
    names = encoder.fit(patients).get_feature_names_out()

    assert len(names) == len(set(names))
    for name in names:
        field = field_of(name)
        assert field in PREDICTOR_NAMES, name
        assert name == field or name.startswith(f"{field}__"), name
    # Every predictor the simulator draws is known for most simulated patients, so each gets
    # an input; one it has no figures for is never known, so it gets none.
    assert {field_of(name) for name in names} == SIMULATED_PREDICTORS
    assert set(encoder.unused_fields_) == set(PREDICTOR_NAMES) - SIMULATED_PREDICTORS


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_output_column_is_centred_and_scaled_on_training_data(
    encoder: PatientEncoder, patients: pd.DataFrame
) -> None:
    Z = encoder.fit_transform(patients)

    assert Z.shape == (len(patients), len(encoder.get_feature_names_out()))
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-9)
    spread = Z.std(axis=0)
    assert np.all(np.isclose(spread, 1.0) | np.isclose(spread, 0.0))


def test_a_field_never_known_in_training_gets_no_column(patients: pd.DataFrame) -> None:
    training = patients.assign(symptom_years=np.nan, activity_level=None)

    encoder = PatientEncoder().fit(training)
    names = encoder.get_feature_names_out()

    never_simulated = set(PREDICTOR_NAMES) - SIMULATED_PREDICTORS
    assert set(encoder.unused_fields_) == {"symptom_years", "activity_level"} | never_simulated
    assert not any(field_of(name) in encoder.unused_fields_ for name in names)
    # A patient who does have a value there is encoded all the same.
    patient = one_patient(patients, symptom_years=5.0, activity_level="high")
    assert encoder.transform(patient).shape == (1, len(names))


def test_unknown_number_with_an_indicator_learned_in_training(patients: pd.DataFrame) -> None:
    assert patients["symptom_years"].isna().any()
    encoder = PatientEncoder().fit(patients)
    median = float(patients["symptom_years"].median())

    unknown = encoded(encoder, one_patient(patients, symptom_years=np.nan))
    typical = encoded(encoder, one_patient(patients, symptom_years=median))

    assert "symptom_years__unknown" in unknown.columns
    assert unknown["symptom_years__unknown"].iloc[0] > typical["symptom_years__unknown"].iloc[0]
    others = unknown.columns.drop("symptom_years__unknown")
    pd.testing.assert_frame_equal(unknown[others], typical[others])


def test_unknown_number_without_an_indicator_is_imputed_with_the_median(
    patients: pd.DataFrame,
) -> None:
    assert patients["bmi"].notna().all()
    encoder = PatientEncoder().fit(patients)
    median = float(patients["bmi"].median())

    unknown = encoded(encoder, one_patient(patients, bmi=np.nan))
    typical = encoded(encoder, one_patient(patients, bmi=median))

    assert not any(name.startswith("bmi__") for name in unknown.columns)
    pd.testing.assert_frame_equal(unknown, typical)


def test_unknown_category_with_an_indicator_learned_in_training(patients: pd.DataFrame) -> None:
    assert patients["activity_level"].isna().any()
    encoder = PatientEncoder().fit(patients)

    unknown = encoded(encoder, one_patient(patients, activity_level=np.nan))
    low = encoded(encoder, one_patient(patients, activity_level="low"))

    assert unknown["activity_level__unknown"].iloc[0] > low["activity_level__unknown"].iloc[0]
    assert unknown["activity_level__low"].iloc[0] < low["activity_level__low"].iloc[0]


def test_unknown_category_without_an_indicator_is_imputed_with_the_mode(
    patients: pd.DataFrame,
) -> None:
    assert patients["sex"].notna().all()
    encoder = PatientEncoder().fit(patients)
    mode = patients["sex"].mode().iloc[0]

    unknown = encoded(encoder, one_patient(patients, sex=np.nan))
    typical = encoded(encoder, one_patient(patients, sex=mode))

    assert "sex__unknown" not in unknown.columns
    pd.testing.assert_frame_equal(unknown, typical)


@pytest.mark.parametrize("unseen", ["umbilical_cord", "placenta"])
def test_a_level_never_seen_in_training_is_unknown(patients: pd.DataFrame, unseen: str) -> None:
    # Training saw bone marrow and adipose cells only (and some blanks).
    training = patients.assign(
        cell_source=patients["cell_source"].replace("umbilical_cord", "adipose")
    )
    encoder = PatientEncoder().fit(training)

    never_seen = encoded(encoder, one_patient(patients, cell_source=unseen))
    unknown = encoded(encoder, one_patient(patients, cell_source=np.nan))

    assert "cell_source__umbilical_cord" not in never_seen.columns
    pd.testing.assert_frame_equal(never_seen, unknown)


def test_a_level_never_seen_without_blanks_in_training_is_imputed(
    patients: pd.DataFrame,
) -> None:
    training = patients.assign(
        cell_source=patients["cell_source"].replace("umbilical_cord", "adipose").fillna("adipose")
    )
    encoder = PatientEncoder().fit(training)
    mode = training["cell_source"].mode().iloc[0]

    never_seen = encoded(encoder, one_patient(patients, cell_source="umbilical_cord"))
    typical = encoded(encoder, one_patient(patients, cell_source=mode))

    pd.testing.assert_frame_equal(never_seen, typical)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_patient_is_encoded_the_same_alone_or_in_a_batch(
    encoder: PatientEncoder, patients: pd.DataFrame
) -> None:
    encoder.fit(patients)
    batch = encoder.transform(patients)

    for row in range(0, len(patients), 23):
        alone = encoder.transform(patients.iloc[[row]])
        np.testing.assert_allclose(alone, batch[[row]], atol=1e-12)
        # As the service builds it: one record, unknowns as None.
        record = {
            name: (None if pd.isna(value) else value) for name, value in patients.iloc[row].items()
        }
        served = encoder.transform(model_input(patients_frame([record])))
        np.testing.assert_allclose(served, batch[[row]], atol=1e-12)


def test_transform_keeps_names_with_pandas_output(patients: pd.DataFrame) -> None:
    encoder = PatientEncoder().set_output(transform="pandas").fit(patients)

    out = encoder.transform(patients.iloc[:5])

    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(encoder.get_feature_names_out())


def test_fitting_does_not_change_the_training_table(patients: pd.DataFrame) -> None:
    before = patients.copy()

    PatientEncoder(spline_knots=4).fit(patients)

    pd.testing.assert_frame_equal(patients, before)


# -- outside the training data ----------------------------------------------------------


@pytest.mark.parametrize("encoder", ENCODERS)
def test_numbers_outside_the_training_range_are_flagged_per_field(
    encoder: PatientEncoder, patients: pd.DataFrame
) -> None:
    encoder.fit(patients)
    low, high = patients["bmi"].min(), patients["bmi"].max()
    oldest = patients["age"].max()
    table = pd.concat(
        [
            one_patient(patients, bmi=low),  # the edges are inside
            one_patient(patients, bmi=high),
            one_patient(patients, bmi=high + 0.1),
            one_patient(patients, bmi=low - 0.1),
            one_patient(patients, bmi=np.nan),  # unknown is not outside
            one_patient(patients, age=oldest + 1, bmi=60.0),
        ],
        ignore_index=True,
    )

    outside = encoder.outside_training(table)

    assert set(outside) == {"bmi", "age"}
    assert outside["bmi"].tolist() == [False, False, True, True, False, True]
    assert outside["age"].tolist() == [False, False, False, False, False, True]


def test_category_level_never_seen_in_training_is_flagged(patients: pd.DataFrame) -> None:
    training = patients.assign(
        cell_source=patients["cell_source"].replace("umbilical_cord", "adipose")
    )
    encoder = PatientEncoder().fit(training)
    table = pd.concat(
        [
            one_patient(patients, cell_source="adipose"),
            one_patient(patients, cell_source="umbilical_cord"),  # a contract level, never seen
            one_patient(patients, cell_source=np.nan),
        ],
        ignore_index=True,
    )

    outside = encoder.outside_training(table)

    assert list(outside) == ["cell_source"]
    assert outside["cell_source"].tolist() == [False, True, False]


def test_training_patients_are_never_outside_training(patients: pd.DataFrame) -> None:
    encoder = PatientEncoder(spline_knots=4).fit(patients)
    assert encoder.outside_training(patients) == {}


def test_a_field_the_model_has_no_input_for_is_never_flagged(patients: pd.DataFrame) -> None:
    encoder = PatientEncoder().fit(patients.assign(symptom_years=np.nan))
    assert encoder.outside_training(one_patient(patients, symptom_years=59.0)) == {}
