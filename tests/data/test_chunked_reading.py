"""Large exports are read a chunk at a time; nothing about the result may depend on it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from womac.data.cohort import CohortReader, inspect_cohort, read_cohort
from womac.data.problems import CohortError
from womac.data.simulate import simulate_cohort


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chunks") / "cohort.csv"
    simulate_cohort(1000, 8)[0].to_csv(path, index=False)
    return path


def test_chunks_hold_every_row_once_with_its_file_line(export: Path) -> None:
    reader = CohortReader(export, chunk_rows=97)
    chunks = list(reader.chunks())
    assert [len(c) for c in chunks[:-1]] == [97] * (len(chunks) - 1)
    whole = read_cohort(export)
    joined = pd.concat([c.frame for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.frame)
    assert [line for c in chunks for line in c.lines] == list(range(2, 1002))


def test_problems_in_different_chunks_are_listed_together_with_their_lines(
    export: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(export, dtype=str, keep_default_na=False)
    frame.loc[3, "kl_grade"] = "7"
    frame.loc[950, "kl_grade"] = "9"
    frame.loc[500, "bmi"] = "abc"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)

    reader = CohortReader(bad, chunk_rows=100)
    for _ in reader.chunks():
        pass
    problems = {(p.column, p.rule.split(":")[0]): p.lines for p in reader.problems()}
    assert problems[("kl_grade", "out of range")] == (5, 952)
    assert problems[("bmi", "not a number")] == (502,)
    with pytest.raises(CohortError) as caught:
        read_cohort(bad)
    assert len(caught.value.problems) == 2


def test_notes_are_counted_over_the_whole_file(export: Path) -> None:
    cohort, problems = inspect_cohort(export)
    assert not problems
    lost = int(cohort.lost_to_follow_up.sum())
    assert f"{lost} row(s) lost to follow-up" in " ".join(cohort.notes)
