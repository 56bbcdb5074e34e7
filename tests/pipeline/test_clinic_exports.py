"""Training on a clinic's export as it comes: a workbook, an OpenDocument sheet or Parquet; a
renamed and coded CSV through the mapping ``womac validate --suggest-mapping`` starts; a
REDCap project's raw export with its data dictionary; a KOOS item-level export. Each trains
the same model as the equivalent contract CSV (a KOOS export: trains, from WOMAC computed as
the KOOS guide says)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import (
    redcap_project,
    registry_client,
    run_womac,
    settings_env,
    store_settings,
)
from womac.data.cohort import AS_CONTRACT, Layout, model_input, read_cohort
from womac.data.koos import KOOS_ITEMS, WOMAC_IN_KOOS
from womac.data.mapping import ColumnMapping
from womac.data.simulate import simulate_cohort
from womac.data.suggest import mapping_from_dictionary
from womac.models.store import connect, load_pipeline
from womac.pipeline.train import train

PATIENTS = 400
SEED = 4711
MODEL = "models:/womac-improvement/1"


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return simulate_cohort(PATIENTS, SEED)[0]


@pytest.fixture(scope="module")
def contract_model(cohort: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The model trained on the contract CSV, and the patients every model is compared on."""
    folder = tmp_path_factory.mktemp("contract")
    cohort.to_csv(folder / "cohort.csv", index=False)
    return trained_pipeline(folder, folder / "cohort.csv")


def trained_pipeline(folder: Path, data: Path, layout: Layout = AS_CONTRACT) -> Any:
    settings = store_settings(folder / "store", cv_folds=2)
    train(data, settings, layout=layout)
    connect(settings.resolved_tracking_uri())
    return load_pipeline(MODEL)


def assert_same_model(pipeline: Any, expected: Any, cohort: pd.DataFrame) -> None:
    patients = model_input(cohort.dropna(subset=["age", "bmi", "womac_function_0"]))
    np.testing.assert_array_equal(pipeline.predict(patients), expected.predict(patients))


def written(cohort: pd.DataFrame, data: Path) -> Path:
    """The cohort saved as a clinic would save it, in the format ``data``'s suffix names."""
    if data.suffix == ".parquet":
        cohort.to_parquet(data, index=False)
    else:
        cohort.to_excel(data, index=False, engine="odf" if data.suffix == ".ods" else "xlsxwriter")
    return data


def test_a_workbook_trains_the_same_model_as_the_csv(
    cohort: pd.DataFrame, contract_model: Any, tmp_path: Path
) -> None:
    data = written(cohort, tmp_path / "cohort.xlsx")
    assert_same_model(trained_pipeline(tmp_path, data), contract_model, cohort)


@pytest.mark.parametrize("suffix", [".xlsx", ".ods", ".parquet"])
def test_a_workbook_or_parquet_is_read_as_the_same_cohort_as_the_csv(
    cohort: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    """Training reads every format through ``read_cohort`` and is deterministic given what it
    reads, so the same frame is the same model (the workbook above is trained end to end)."""
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    expected = read_cohort(tmp_path / "cohort.csv", require_outcomes=True)
    read = read_cohort(written(cohort, tmp_path / f"cohort{suffix}"), require_outcomes=True)
    pd.testing.assert_frame_equal(read.frame, expected.frame)
    pd.testing.assert_series_equal(read.target, expected.target)
    assert read.trainable.equals(expected.trainable)


def test_suggest_a_mapping_then_train_with_it_gives_the_contract_model(
    cohort: pd.DataFrame, contract_model: Any, tmp_path: Path
) -> None:
    clinic = cohort.rename(
        columns={
            "patient_id": "Patient",
            "age": "Age",
            "sex": "Sex (1=M,2=F)",
            "bmi": "BMI (kg/m2)",
            "kl_grade": "KL",
            "womac_pain_0": "WOMAC pain (baseline)",
            "womac_pain_12": "WOMAC pain 12m",
        }
    )
    clinic["Sex (1=M,2=F)"] = clinic["Sex (1=M,2=F)"].map({"male": 1, "female": 2})
    clinic["KL"] = clinic["KL"].map({0: "0", 1: "I", 2: "II", 3: "III", 4: "IV"})
    clinic["Surgeon"] = "Dr A"
    clinic.to_csv(tmp_path / "clinic.csv", index=False)
    settings = store_settings(tmp_path / "store", cv_folds=2)
    env = settings_env(settings)

    suggested = run_womac(
        "validate", "clinic.csv", "--suggest-mapping", "mapping.toml", cwd=tmp_path, env=env
    )
    assert suggested.returncode == 0, suggested.stderr
    trained = run_womac(
        "train",
        "--data",
        "clinic.csv",
        "--mapping",
        "mapping.toml",
        cwd=tmp_path,
        env=env,
        columns=80,
    )
    assert trained.returncode == 0, trained.stderr
    # Not a terminal: one line per step, with the time since the start.
    assert re.search(r"^\[ +\d+\.\d s\] Validating cohort$", trained.stdout, re.MULTILINE)
    assert "baseline_womac" in trained.stdout  # a model's name whole at 80 columns
    connect(settings.resolved_tracking_uri())
    assert_same_model(load_pipeline(MODEL), contract_model, cohort)
    run = registry_client(settings).get_model_version("womac-improvement", "1").run_id
    logged = registry_client(settings).list_artifacts(run, "data")
    assert "data/mapping.toml" in [artifact.path for artifact in logged]  # the file, not data


def test_a_redcap_export_with_its_data_dictionary_trains_the_contract_model(
    cohort: pd.DataFrame, tmp_path: Path
) -> None:
    contract, export, dictionary = redcap_project(cohort)
    contract.to_csv(tmp_path / "contract.csv", index=False)
    export.to_csv(tmp_path / "export.csv", index=False)
    dictionary.to_csv(tmp_path / "dictionary.csv", index=False)
    settings = store_settings(tmp_path / "store", cv_folds=2)
    trained = run_womac(
        "train",
        "--data",
        "export.csv",
        "--dictionary",
        "dictionary.csv",
        "--no-promote",
        cwd=tmp_path,
        env=settings_env(settings),
    )
    assert trained.returncode == 0, trained.stderr
    client = registry_client(settings)
    assert not client.get_registered_model("womac-improvement").aliases  # registered only
    reason = client.get_model_version("womac-improvement", "1").tags["promotion_reason"]
    assert reason.startswith("not promoted, as asked (--no-promote)")
    # The export and its dictionary are read as the contract frame, so train the same model
    # (training is deterministic given what it reads); this one trained and registered.
    dictionary_file = tmp_path / "dictionary.csv"
    redcap = Layout(None, mapping_from_dictionary(tmp_path / "export.csv", None, dictionary_file))
    read = read_cohort(tmp_path / "export.csv", require_outcomes=True, layout=redcap)
    expected = read_cohort(tmp_path / "contract.csv", require_outcomes=True)
    pd.testing.assert_frame_equal(read.frame, expected.frame)
    connect(settings.resolved_tracking_uri())
    patients = model_input(read.frame[read.complete])
    assert np.isfinite(load_pipeline(MODEL).predict(patients)).all()


def test_a_koos_item_export_trains_on_womac_computed_as_the_koos_guide_says(
    cohort: pd.DataFrame, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    export = cohort.drop(
        columns=[f"womac_{s}_{t}" for s in ("pain", "stiffness", "function") for t in (0, 12)]
    )
    for time in ("0", "12"):
        scores = rng.integers(0, 5, size=(len(cohort), len(KOOS_ITEMS))).astype(float)
        scores[rng.random(scores.shape) < 0.05] = np.nan  # a few items left unanswered
        for column, item in enumerate(KOOS_ITEMS):
            export[f"koos_{item.lower()}_{time}"] = scores[:, column]
    export.to_csv(tmp_path / "koos.csv", index=False)
    text = "[columns]\n" + "".join(f'{c} = "{c}"\n' for c in export.columns if "koos" not in c)
    text += '[koos]\nbaseline = "koos_{item}_0"\nfollow_up = "koos_{item}_12"\n'
    (tmp_path / "mapping.toml").write_text(text)
    layout = Layout(mapping=ColumnMapping.read(tmp_path / "mapping.toml"), mapping_file=None)

    read = read_cohort(tmp_path / "koos.csv", require_outcomes=True, layout=layout)
    for subscale in WOMAC_IN_KOOS:  # by hand: the mean of the answered items, x item count
        items = export[[f"koos_{i.lower()}_0" for i in subscale.items]]
        by_hand = items.mean(axis=1) * len(subscale.items)
        by_hand = by_hand.where(items.notna().sum(axis=1) >= subscale.needed)
        np.testing.assert_allclose(read.frame[f"womac_{subscale.name}_0"], by_hand)
    pipeline = trained_pipeline(tmp_path, tmp_path / "koos.csv", layout)
    assert np.isfinite(pipeline.predict(model_input(read.frame[read.complete]))).all()
