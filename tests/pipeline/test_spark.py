"""``womac predict --engine spark``: the same scores as ``womac predict``, at registry scale.

Every comparison is with the single-process file for the same patients, column by column and
exactly (both engines format rows with one function). Spark runs ``local[2]``, the test
session's one Spark session; a few patients cut into pieces of 40 rows give several tasks per
job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.helpers import FRESH_SEED
from womac.data.contract import FIELDS, FOLLOW_UP_SUBSCALES, Role
from womac.data.problems import CohortError
from womac.data.simulate import simulate_cohort
from womac.models.eligibility import protocol_from
from womac.pipeline.detail import Detail
from womac.pipeline.predict import LIST_SEPARATORS, BatchSummary, score_cohort, score_columns
from womac.settings import Settings

CHAMPION_URI = "models:/womac-improvement@champion"
PIECE = 40  # rows per Spark task in these tests
BLANK_AGE_ROW, KL4_ROW, HIGH_BMI_ROW, SECOND_JOINT_ROW, ALIAS_ROW = 3, 7, 11, 15, 20
REQUIRED = [f.name for f in FIELDS if f.required and f.role is not Role.OUTCOME]
OPTIONAL = [f.name for f in FIELDS if not f.required and f.role is not Role.OUTCOME]
SCORE_COLUMNS = score_columns(Detail.top3)
TEXT_COLUMNS = {name: str for name, kind in SCORE_COLUMNS if kind != "double"}


def patients(n: int, seed: int) -> pd.DataFrame:
    """Simulated patients to score (no 12-month outcomes), with the cases a file must carry:
    a blank required field, KL grade 4, a BMI beyond training, a patient's second joint and
    a category written as clinics abbreviate it."""
    frame, _ = simulate_cohort(n, seed)
    frame = frame.drop(columns=list(FOLLOW_UP_SUBSCALES))
    frame.loc[BLANK_AGE_ROW, "age"] = np.nan
    frame.loc[KL4_ROW, "kl_grade"] = 4
    frame.loc[HIGH_BMI_ROW, "bmi"] = 60.0
    frame.loc[SECOND_JOINT_ROW, "patient_id"] = frame.loc[SECOND_JOINT_ROW - 1, "patient_id"]
    frame.loc[SECOND_JOINT_ROW, "joint"] = "hip"
    frame.loc[ALIAS_ROW, "sex"] = "F"
    return frame


def single_process_file(
    frame: pd.DataFrame, folder: Path, store: Settings
) -> tuple[pd.DataFrame, BatchSummary]:
    """The patients exported as a CSV and scored by ``womac predict`` (single process)."""
    data, out = folder / "single-input.csv", folder / "single-scores.csv"
    frame.to_csv(data, index=False)
    summary = score_cohort(
        data, out, CHAMPION_URI, store.resolved_tracking_uri(), protocol_from(store)
    )
    return read_scores_csv(out), summary


def read_scores_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=TEXT_COLUMNS)


def export(frame: pd.DataFrame, path: Path) -> Path:
    """Write the patients as a CSV or Parquet export (several row groups), by suffix."""
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False, row_group_size=50)
    else:
        frame.to_csv(path, index=False)
    return path


def score_on_spark(spark: Any, data: Path, out: Path, store: Settings) -> BatchSummary:
    from womac.pipeline.spark import score_cohort_spark

    return score_cohort_spark(
        data,
        out,
        CHAMPION_URI,
        store.resolved_tracking_uri(),
        protocol_from(store),
        spark=spark,
        chunk_rows=PIECE,
    )


def text(value: object) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def flag(value: object) -> bool | None:
    if value is None or pd.isna(value):
        return None
    return value if isinstance(value, bool) else {"True": True, "False": False}[str(value)]


def assert_same_scores(spark_output: Path, single: pd.DataFrame) -> None:
    """Same rows in the same order, same columns, every value equal."""
    scores = pd.read_parquet(spark_output)
    assert list(scores.columns) == [name for name, _ in SCORE_COLUMNS] == list(single.columns)
    assert len(scores) == len(single)
    for name, kind in SCORE_COLUMNS:
        if kind == "double":
            np.testing.assert_array_equal(
                scores[name].to_numpy(dtype=float), single[name].to_numpy(dtype=float), name
            )
        elif kind == "boolean":
            assert [flag(v) for v in scores[name]] == [flag(v) for v in single[name]], name
        elif kind == "array<string>":  # a list in Parquet, joined in a CSV cell
            joined = [None if v is None else LIST_SEPARATORS[name].join(v) for v in scores[name]]
            assert [text(v) for v in joined] == [text(v) for v in single[name]], name
        else:
            assert [text(v) for v in scores[name]] == [text(v) for v in single[name]], name


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders a run left beside its output."""
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.mark.spark
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_spark_scores_equal_the_single_process_file(
    spark: Any, trained: Any, store: Settings, tmp_path: Path, suffix: str
) -> None:
    frame = patients(130, FRESH_SEED + 3)
    single, single_summary = single_process_file(frame, tmp_path, store)
    out = tmp_path / "scores.parquet"

    summary = score_on_spark(spark, export(frame, tmp_path / f"cohort{suffix}"), out, store)

    assert_same_scores(out, single)
    assert (summary.rows, summary.scored, summary.candidates) == (
        single_summary.rows,
        single_summary.scored,
        single_summary.candidates,
    )
    assert summary.scored == summary.rows - 1  # the blank age
    assert len(list(out.glob("part-*.parquet"))) >= 4  # 130 rows, 40 per task, in order
    assert leftovers(tmp_path) == []


@pytest.mark.spark
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("cohort", ["required columns only", "blank optional fields"])
def test_sparse_cohorts_score_the_same(
    spark: Any, trained: Any, store: Settings, tmp_path: Path, suffix: str, cohort: str
) -> None:
    frame = patients(90, FRESH_SEED + 4)
    rng = np.random.default_rng(5)
    frame.loc[rng.random(len(frame)) < 0.2, "kl_grade"] = np.nan  # may be blank
    if cohort == "required columns only":
        frame = frame[REQUIRED]
    else:
        for name in OPTIONAL:
            frame.loc[rng.random(len(frame)) < 0.4, name] = None
    single, _ = single_process_file(frame, tmp_path, store)
    out = tmp_path / "scores.parquet"

    score_on_spark(spark, export(frame, tmp_path / f"cohort{suffix}"), out, store)

    assert_same_scores(out, single)


@pytest.mark.spark
def test_a_csv_breaking_the_contract_is_refused_by_line_and_nothing_is_written(
    spark: Any, trained: Any, store: Settings, tmp_path: Path
) -> None:
    frame = patients(120, FRESH_SEED + 5).astype({"bmi": object, "sex": object})
    frame.loc[5, "bmi"] = "abc"  # file line 7 (the header is line 1)
    frame.loc[[8, 110], "sex"] = "robot"  # lines 10 and 112: in two different pieces
    out = tmp_path / "scores.parquet"

    with pytest.raises(CohortError) as refused:
        score_on_spark(spark, export(frame, tmp_path / "cohort.csv"), out, store)

    message = str(refused.value)
    assert "bmi: not a number" in message
    assert "(line 7)" in message
    assert "sex: not an allowed value" in message
    assert "(lines 10, 112)" in message
    assert "abc" not in message
    assert "robot" not in message
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.spark
def test_a_parquet_breaking_the_contract_is_refused_by_row_and_nothing_is_written(
    spark: Any, trained: Any, store: Settings, tmp_path: Path
) -> None:
    frame = patients(150, FRESH_SEED + 6)
    frame.loc[[10, 76], "age"] = 150.0  # rows 11 and 77: checked in two different tasks
    frame.loc[9, "patient_id"] = None  # row 10
    out = tmp_path / "scores.parquet"

    with pytest.raises(CohortError) as refused:
        score_on_spark(spark, export(frame, tmp_path / "cohort.parquet"), out, store)

    problems = [str(problem) for problem in refused.value.problems]
    assert problems == [
        "patient_id: must not be blank (row 10)",
        f"age: out of range: {_rule('age')} (rows 11, 77)",
    ]
    assert "150" not in str(refused.value)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def _rule(name: str) -> str:
    return next(spec.rule for spec in FIELDS if spec.name == name)


@pytest.mark.spark
def test_a_failed_job_leaves_the_previous_output_and_no_partial_one(
    spark: Any, trained: Any, store: Settings, tmp_path: Path
) -> None:
    from womac.pipeline.spark import SparkEngineError

    data = export(patients(150, FRESH_SEED + 7), tmp_path / "cohort.parquet")
    _corrupt_last_row_group(data)  # the footer is intact: the last of three tasks fails
    out = tmp_path / "scores.parquet"
    out.mkdir()
    pd.DataFrame({"patient_id": ["earlier"]}).to_parquet(out / "part-00000-a.snappy.parquet")
    (out / "_SUCCESS").touch()
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    with pytest.raises(SparkEngineError) as failed:
        score_on_spark(spark, data, out, store)

    assert "nothing was written" in str(failed.value)
    assert "OSError" in str(failed.value)  # the reason by type and place, no message
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert leftovers(tmp_path) == []


def _corrupt_last_row_group(path: Path) -> None:
    metadata = pq.ParquetFile(path).metadata
    chunk = metadata.row_group(metadata.num_row_groups - 1).column(1)
    content = bytearray(path.read_bytes())
    start = chunk.data_page_offset + 8
    content[start : chunk.data_page_offset + chunk.total_compressed_size] = b"\xff" * (
        chunk.total_compressed_size - 8
    )
    path.write_bytes(bytes(content))


@pytest.mark.spark
def test_a_folder_it_did_not_write_is_never_replaced(
    spark: Any, trained: Any, store: Settings, tmp_path: Path
) -> None:
    from womac.pipeline.spark import SparkEngineError

    data = export(patients(20, FRESH_SEED + 8), tmp_path / "cohort.csv")
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")

    with pytest.raises(SparkEngineError, match="not a scores directory"):
        score_on_spark(spark, data, out, store)

    assert (out / "notes.txt").read_text() == "keep me"
    assert leftovers(tmp_path) == []


def test_engine_spark_without_pyspark_says_how_to_install_it(tmp_path: Path) -> None:
    """Without the extra, a clear refusal (the rest of the product works without it)."""
    blocked = (
        "import sys; sys.modules['pyspark'] = None; from womac.pipeline.cli import main; "
        "sys.argv = ['womac', 'predict', '--engine', 'spark', '--data', 'cohort.csv', "
        "'--out', 'scores.parquet']; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked],
        cwd=tmp_path,
        env=os.environ | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1
    assert "pip install '.[spark]'" in done.stderr
    assert "make setup-spark" in done.stderr
    assert not (tmp_path / "scores.parquet").exists()


def test_spark_master_comes_from_settings_then_spark_then_every_local_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def master() -> str:
        return Settings(_env_file=None).resolved_spark_master()  # type: ignore[call-arg]

    monkeypatch.delenv("WOMAC_SPARK_MASTER", raising=False)
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    assert master() == "local[*]"
    monkeypatch.setenv("SPARK_MASTER", "spark://registry:7077")
    assert master() == "spark://registry:7077"
    monkeypatch.setenv("WOMAC_SPARK_MASTER", "local[2]")
    assert master() == "local[2]"
