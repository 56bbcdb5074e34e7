"""Scoring a cohort file with the registered champion, as ``womac predict`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from data.cohort import model_input, read_cohort
from data.contract import FOLLOW_UP_SUBSCALES, PREDICTOR_NAMES
from data.settings import Settings
from data.simulate import simulate_cohort
from models.explain import explain
from pipeline.predict import score_cohort

from .conftest import FRESH_SEED

CHAMPION_URI = "models:/womac-improvement@champion"
TOP = 3
ROUNDING = 5e-4 + 1e-9  # the file carries three decimals
BLANK_AGE_ROW, BLANK_FUNCTION_ROW = 3, 7


@pytest.fixture(scope="module")
def scored(
    trained: Any, store: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame, Any]:
    """A 40-patient export (two rows with a blank required field), scored with the champion."""
    folder = tmp_path_factory.mktemp("batch")
    cohort, _ = simulate_cohort(40, FRESH_SEED + 1)
    cohort = cohort.drop(columns=list(FOLLOW_UP_SUBSCALES))
    cohort.loc[BLANK_AGE_ROW, "age"] = np.nan
    cohort.loc[BLANK_FUNCTION_ROW, "womac_function_0"] = np.nan
    data, out = folder / "to-score.csv", folder / "scores.csv"
    cohort.to_csv(data, index=False)
    summary = score_cohort(data, out, CHAMPION_URI, store.resolved_tracking_uri())
    return data, pd.read_csv(out, keep_default_na=False, na_values=[""]), summary


def test_every_row_is_written_in_order_with_the_promised_columns(
    scored: tuple[Path, pd.DataFrame, Any],
) -> None:
    data, scores, summary = scored
    expected_columns = ["patient_id", "expected_improvement"]
    for rank in range(1, TOP + 1):
        expected_columns += [f"top{rank}_field", f"top{rank}_contribution"]
    assert all(column in scores.columns for column in expected_columns)
    exported = pd.read_csv(data)
    assert scores["patient_id"].tolist() == exported["patient_id"].tolist()
    assert summary.rows == len(exported)
    assert summary.scored == len(exported) - 2


def test_row_with_a_blank_required_field_is_not_scored_and_says_why(
    scored: tuple[Path, pd.DataFrame, Any],
) -> None:
    _, scores, _ = scored
    for row, field in ((BLANK_AGE_ROW, "age"), (BLANK_FUNCTION_ROW, "womac_function_0")):
        assert np.isnan(scores.loc[row, "expected_improvement"])
        assert pd.isna(scores.loc[row, "top1_field"])
        note = str(scores.loc[row, "note"])
        assert "not scored" in note
        assert field in note
    others = scores.drop(index=[BLANK_AGE_ROW, BLANK_FUNCTION_ROW])
    assert np.isfinite(others["expected_improvement"]).all()
    assert others["note"].isna().all()


def test_scores_and_top_contributions_are_those_of_the_explanation(
    trained: Any, scored: tuple[Path, pd.DataFrame, Any]
) -> None:
    data, scores, _ = scored
    cohort = read_cohort(data)
    rows = np.flatnonzero(cohort.complete.to_numpy())
    explanation = explain(trained.chosen_result.pipeline, model_input(cohort.frame.iloc[rows]))

    np.testing.assert_allclose(
        scores.loc[rows, "expected_improvement"],
        explanation.expected_improvement,
        rtol=0,
        atol=ROUNDING,
    )
    for i, row in enumerate(rows):
        for rank, (field, contribution) in enumerate(explanation.top(i, TOP), start=1):
            assert field in PREDICTOR_NAMES
            assert scores.loc[row, f"top{rank}_field"] == field
            assert scores.loc[row, f"top{rank}_contribution"] == pytest.approx(
                contribution, abs=ROUNDING
            )
