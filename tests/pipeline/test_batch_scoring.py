"""Scoring a cohort file with the registered champion, as ``womac predict`` does."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import FRESH_SEED, settings_env, womac_command
from womac.data.cohort import model_input, read_cohort
from womac.data.contract import FIELD_BY_NAME, FOLLOW_UP_SUBSCALES, PREDICTOR_NAMES, as_request
from womac.data.simulate import simulate_cohort
from womac.features.encoding import frame_columns
from womac.models.eligibility import protocol_from
from womac.models.explain import explain
from womac.models.scoring import Scorer
from womac.pipeline.predict import LIST_SEPARATORS, score_cohort
from womac.serve.model import load_champion
from womac.settings import Settings

CHAMPION_URI = "models:/womac-improvement@champion"
TOP = 3
EXACT = 1e-9  # the file carries every digit
WARNING_SEPARATOR = LIST_SEPARATORS["warnings"]
BLANK_AGE_ROW, BLANK_FUNCTION_ROW = 3, 7
KL4_ROW, INFECTION_ROW, HIGH_BMI_ROW = 10, 11, 12
SCORE_COLUMNS = (
    "patient_id",
    "expected_improvement",
    "interval_lower",
    "interval_upper",
    "level",
    "p_clinically_important",
    "candidate",
    "reasons",
    "warnings",
    "note",
)


@pytest.fixture(scope="module")
def scored(
    trained: Any, store: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame, Any]:
    """A 40-patient export scored with the champion: two rows with a blank required field,
    one KL grade 4, one with an active infection and one with a BMI of 60."""
    folder = tmp_path_factory.mktemp("batch")
    cohort, _ = simulate_cohort(40, FRESH_SEED + 1)
    cohort = cohort.drop(columns=list(FOLLOW_UP_SUBSCALES))
    cohort.loc[BLANK_AGE_ROW, "age"] = np.nan
    cohort.loc[BLANK_FUNCTION_ROW, "womac_function_0"] = np.nan
    flags = ["avascular_necrosis", "active_infection", "immune_disorder"]
    for row in (KL4_ROW, INFECTION_ROW, HIGH_BMI_ROW):
        cohort.loc[row, flags] = False
        cohort.loc[row, "kl_grade"] = 2
    cohort.loc[KL4_ROW, "kl_grade"] = 4
    cohort.loc[INFECTION_ROW, "active_infection"] = True
    cohort.loc[HIGH_BMI_ROW, "bmi"] = 60.0
    data, out = folder / "to-score.csv", folder / "scores.csv"
    cohort.to_csv(data, index=False)
    summary = score_cohort(
        data, out, CHAMPION_URI, store.resolved_tracking_uri(), protocol_from(store)
    )
    return data, pd.read_csv(out, keep_default_na=False, na_values=[""]), summary


def text(value: object) -> str:
    """A text cell of the file; an empty cell reads as missing."""
    return "" if pd.isna(value) else str(value)


def flag(value: object) -> bool | None:
    """A true/false cell of the file; an empty cell (a row not scored) reads as ``None``."""
    return None if pd.isna(value) else bool(value)


def scored_rows(data: Path) -> np.ndarray:
    cohort = read_cohort(data)
    return np.flatnonzero(cohort.complete.to_numpy())


def test_every_row_is_written_in_order_with_the_promised_columns(
    scored: tuple[Path, pd.DataFrame, Any],
) -> None:
    data, scores, summary = scored
    expected_columns = list(SCORE_COLUMNS)
    for rank in range(1, TOP + 1):
        expected_columns += [f"top{rank}_field", f"top{rank}_contribution"]
    missing = [column for column in expected_columns if column not in scores.columns]
    assert not missing
    exported = pd.read_csv(data)
    assert scores["patient_id"].tolist() == exported["patient_id"].tolist()
    assert summary.rows == len(exported)
    assert summary.scored == len(exported) - 2
    assert summary.candidates == sum(flag(value) is True for value in scores["candidate"])


def test_row_with_a_blank_required_field_is_not_scored_and_says_why(
    scored: tuple[Path, pd.DataFrame, Any],
) -> None:
    _, scores, _ = scored
    for row, field in ((BLANK_AGE_ROW, "age"), (BLANK_FUNCTION_ROW, "womac_function_0")):
        for column in ("expected_improvement", "interval_lower", "p_clinically_important"):
            assert np.isnan(scores.loc[row, column]), column
        assert pd.isna(scores.loc[row, "top1_field"])
        assert flag(scores.loc[row, "candidate"]) is None
        note = str(scores.loc[row, "note"])
        assert "not scored" in note
        assert field in note
    others = scores.drop(index=[BLANK_AGE_ROW, BLANK_FUNCTION_ROW])
    for column in ("expected_improvement", "interval_lower", "interval_upper"):
        assert np.isfinite(others[column]).all(), column
    assert others["p_clinically_important"].between(0, 1).all()
    assert (others["interval_lower"] <= others["interval_upper"]).all()
    assert all(flag(value) is not None for value in others["candidate"])
    assert others["note"].isna().all()


def test_scores_and_top_contributions_are_those_of_the_explanation(
    trained: Any, scored: tuple[Path, pd.DataFrame, Any]
) -> None:
    data, scores, _ = scored
    cohort = read_cohort(data)
    rows = scored_rows(data)
    explanation = explain(trained.pipeline, model_input(cohort.frame.iloc[rows]))

    np.testing.assert_allclose(
        scores.loc[rows, "expected_improvement"],
        explanation.expected_improvement,
        rtol=0,
        atol=EXACT,
    )
    for i, row in enumerate(rows):
        for rank, (field, contribution) in enumerate(explanation.top(i, TOP), start=1):
            assert field in PREDICTOR_NAMES
            assert scores.loc[row, f"top{rank}_field"] == field
            assert scores.loc[row, f"top{rank}_contribution"] == pytest.approx(
                contribution, abs=EXACT
            )


def test_interval_probability_and_eligibility_are_those_of_the_served_scoring(
    trained: Any, store: Settings, scored: tuple[Path, pd.DataFrame, Any]
) -> None:
    data, scores, _ = scored
    cohort = read_cohort(data)
    rows = scored_rows(data)
    scorer = Scorer(trained.pipeline, protocol_from(store))
    expected = scorer.answer_columns(frame_columns(cohort.frame.iloc[rows]))

    for column, values, tolerance in (
        ("interval_lower", expected.lower, EXACT),
        ("interval_upper", expected.upper, EXACT),
        ("p_clinically_important", expected.p_clinically_important, EXACT),
    ):
        np.testing.assert_allclose(scores.loc[rows, column], values, rtol=0, atol=tolerance)
    assert [flag(value) for value in scores.loc[rows, "candidate"]] == (
        expected.candidate.tolist()
    )
    for i, row in enumerate(rows):
        assert text(scores.loc[row, "warnings"]) == WARNING_SEPARATOR.join(expected.warnings[i])


def test_protocol_exclusions_and_a_bmi_outside_training_are_in_the_file(
    trained: Any, scored: tuple[Path, pd.DataFrame, Any]
) -> None:
    _, scores, _ = scored
    kl4, infection, high_bmi = (scores.loc[row] for row in (KL4_ROW, INFECTION_ROW, HIGH_BMI_ROW))

    assert flag(kl4["candidate"]) is False
    assert "Kellgren-Lawrence grade 4" in kl4["reasons"]
    assert flag(infection["candidate"]) is False
    assert FIELD_BY_NAME["active_infection"].label in infection["reasons"]
    # Still scored: the answer says the patient is outside the protocol, not nothing at all.
    for row in (kl4, infection):
        assert np.isfinite(row["expected_improvement"])

    assert flag(high_bmi["candidate"]) is True
    assert pd.isna(high_bmi["reasons"])
    bmi = trained.pipeline.named_steps["preprocess"].encoding_of("bmi")
    bmi_warning = next(
        w for w in text(high_bmi["warnings"]).split(WARNING_SEPARATOR) if w.startswith("BMI")
    )
    assert f"{bmi.minimum:g}-{bmi.maximum:g}" in bmi_warning
    assert "60" not in bmi_warning


def test_file_has_the_same_numbers_as_the_api_for_the_same_patient(
    trained: Any, store: Settings, scored: tuple[Path, pd.DataFrame, Any]
) -> None:
    """``womac predict`` and ``POST /v1/predict`` answer from the same champion the same way
    (the service's model object, as loaded from the registry by the running service)."""
    data, scores, _ = scored
    cohort = read_cohort(data)
    rows = scored_rows(data)
    records = [as_request(cohort.frame.iloc[row]) for row in rows]
    answers = load_champion(store).predict(records)

    for row, answer in zip(rows, answers, strict=True):
        file_row = scores.loc[row]
        assert file_row["expected_improvement"] == pytest.approx(
            answer["expected_improvement"], abs=EXACT
        )
        assert file_row["interval_lower"] == pytest.approx(answer["interval"]["lower"], abs=EXACT)
        assert file_row["interval_upper"] == pytest.approx(answer["interval"]["upper"], abs=EXACT)
        assert file_row["p_clinically_important"] == pytest.approx(
            answer["p_clinically_important"], abs=EXACT
        )
        assert flag(file_row["candidate"]) is answer["eligibility"]["candidate"]
        reasons = LIST_SEPARATORS["reasons"].join(answer["eligibility"]["reasons"])
        assert text(file_row["reasons"]) == reasons
        assert text(file_row["warnings"]) == WARNING_SEPARATOR.join(answer["warnings"])


def test_a_file_scored_in_chunks_gives_the_same_file(
    trained: Any, store: Any, tmp_path: Path
) -> None:
    from womac.pipeline.predict import score_cohort

    data = tmp_path / "cohort.csv"
    simulate_cohort(450, 2024)[0].to_csv(data, index=False)
    uri = "models:/womac-improvement@champion"
    whole = score_cohort(
        data, tmp_path / "whole.csv", uri, store.resolved_tracking_uri(), protocol_from(store)
    )
    chunked = score_cohort(
        data,
        tmp_path / "chunked.csv",
        uri,
        store.resolved_tracking_uri(),
        protocol_from(store),
        chunk_rows=64,
    )
    assert whole.rows == chunked.rows == 450
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "whole.csv"), pd.read_csv(tmp_path / "chunked.csv")
    )


def test_a_chunk_where_no_row_can_be_scored_is_written_unscored(
    trained: Any, store: Any, tmp_path: Path
) -> None:
    """A whole chunk without a required field (a workbook's column left blank halfway down)
    is written as rows not scored, saying why, not a crash of the whole file."""
    from womac.pipeline.predict import score_cohort

    cohort, _ = simulate_cohort(120, 2025)
    cohort.loc[:59, "age"] = np.nan  # the first chunk of 60 has no age at all
    data = tmp_path / "cohort.csv"
    cohort.to_csv(data, index=False)
    out = tmp_path / "scores.csv"
    summary = score_cohort(
        data, out, CHAMPION_URI, store.resolved_tracking_uri(), protocol_from(store), chunk_rows=60
    )
    written = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert summary.rows == len(written) == 120
    assert written["expected_improvement"].iloc[:60].isna().all()
    assert written["note"].iloc[:60].str.contains("age").all()
    assert written["expected_improvement"].iloc[60:].notna().all()


def test_a_bad_row_in_a_late_chunk_leaves_no_output(
    trained: Any, store: Any, tmp_path: Path
) -> None:
    from womac.data.problems import CohortError
    from womac.pipeline.predict import score_cohort

    frame = simulate_cohort(300, 2025)[0]
    frame = frame.astype({"bmi": object})
    frame.loc[290, "bmi"] = "abc"
    data = tmp_path / "late.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "scores.csv"
    out.write_text("previous scores\n")
    with pytest.raises(CohortError):
        score_cohort(
            data,
            out,
            "models:/womac-improvement@champion",
            store.resolved_tracking_uri(),
            protocol_from(store),
            chunk_rows=50,
        )
    assert out.read_text() == "previous scores\n"
    assert list(tmp_path.glob(".scores.csv.*")) == []


@pytest.mark.e2e
def test_a_batch_stopped_by_sigterm_leaves_no_output_and_no_temporary_file(
    trained: Any, store: Settings, tmp_path: Path
) -> None:
    """A scheduler stopping a long job: the previous output stays, no partial file appears."""
    cohort = tmp_path / "registry.csv"
    simulate_cohort(200_000, FRESH_SEED + 2)[0].to_csv(cohort, index=False)
    out = tmp_path / "scores" / "scores.csv"
    out.parent.mkdir()
    out.write_text("yesterday's scores\n")
    process = subprocess.Popen(
        [womac_command(), "predict", "--data", str(cohort), "--out", str(out)],
        cwd=tmp_path,
        env=settings_env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(out.parent.glob("*.tmp")) and process.poll() is None:
        assert time.monotonic() < deadline, "scoring never started writing"
        time.sleep(0.05)
    time.sleep(0.5)  # some chunks are written
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr.decode()[-1500:]
    assert f"nothing was written to {out}" in " ".join(stderr.decode().split())
    assert [path.name for path in out.parent.iterdir()] == ["scores.csv"]
    assert out.read_text() == "yesterday's scores\n"


def test_womac_predict_can_write_the_full_explanation(
    trained: Any, store: Settings, scored: tuple[Path, pd.DataFrame, Any], tmp_path: Path
) -> None:
    """``--explanation full``: the base value and one contribution per contract field, adding
    up to the estimate, instead of the top three."""
    from tests.helpers import run_womac

    data, summary_scores, _ = scored
    out = tmp_path / "full.csv"
    done = run_womac(
        "predict",
        "--data",
        str(data),
        "--out",
        str(out),
        "--explanation",
        "full",
        cwd=tmp_path,
        env=settings_env(store),
    )
    assert done.returncode == 0, done.stderr
    full = pd.read_csv(out, keep_default_na=False, na_values=[""])
    contributions = [f"contribution_{name}" for name in PREDICTOR_NAMES]
    assert list(full.columns[-len(contributions) - 2 :]) == ["base_value", *contributions, "note"]
    assert "top1_field" not in full.columns
    rows = scored_rows(data)
    np.testing.assert_allclose(
        full.loc[rows, "base_value"] + full.loc[rows, contributions].sum(axis=1),
        full.loc[rows, "expected_improvement"],
        atol=1e-9,
    )
    np.testing.assert_array_equal(
        full["expected_improvement"].to_numpy(), summary_scores["expected_improvement"].to_numpy()
    )
    for i, row in enumerate(rows[:10]):
        top = (
            full.loc[row, contributions].abs().astype(float).idxmax().removeprefix("contribution_")
        )
        assert summary_scores.loc[row, "top1_field"] == top, i


def test_a_patient_id_a_spreadsheet_would_run_is_written_as_text(
    trained: Any, store: Settings, tmp_path: Path
) -> None:
    """OWASP's CSV injection: the file a clinic opens in Excel never holds a live formula."""
    import csv

    cohort, _ = simulate_cohort(4, FRESH_SEED + 2)
    hostile = ['=HYPERLINK("http://evil.example","open")', "+1+1", "@SUM(A1:A9)", "QX-7"]
    cohort["patient_id"] = hostile
    data, out = tmp_path / "export.csv", tmp_path / "scores.csv"
    cohort.drop(columns=list(FOLLOW_UP_SUBSCALES)).to_csv(data, index=False)

    score_cohort(data, out, CHAMPION_URI, store.resolved_tracking_uri(), protocol_from(store))

    with out.open(newline="", encoding="utf-8") as stream:
        ids = [line[0] for line in csv.reader(stream)][1:]
    assert ids == ["'" + hostile[0], "'+1+1", "'@SUM(A1:A9)", "QX-7"]
