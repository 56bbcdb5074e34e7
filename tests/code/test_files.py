"""Output files are written whole or not at all."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from womac.pipeline.files import atomic_write_csv, spreadsheet_safe

PREVIOUS = "patient_id,expected_improvement\nQX-1,12.5\n"


@pytest.fixture
def scores() -> pd.DataFrame:
    return pd.DataFrame({"patient_id": ["QX-1", "QX-2"], "expected_improvement": [14.0, 3.5]})


def test_writes_the_table_creating_folders(tmp_path: Path, scores: pd.DataFrame) -> None:
    path = tmp_path / "out" / "nested" / "scores.csv"

    atomic_write_csv(scores, path)

    pd.testing.assert_frame_equal(pd.read_csv(path), scores)
    assert [p.name for p in path.parent.iterdir()] == ["scores.csv"]


def test_replaces_an_existing_file(tmp_path: Path, scores: pd.DataFrame) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(PREVIOUS)

    atomic_write_csv(scores, path)

    pd.testing.assert_frame_equal(pd.read_csv(path), scores)
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failure_midway_leaves_the_previous_file_and_no_temporary(
    tmp_path: Path,
    scores: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(PREVIOUS)

    def fail_midway(self: pd.DataFrame, stream, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        stream.write("patient_id,expected_improvement\nQX-1,")
        raise failure

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_midway)

    with pytest.raises(type(failure)):
        atomic_write_csv(scores, path)

    assert path.read_text() == PREVIOUS
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_a_failure_with_no_previous_file_leaves_nothing(
    tmp_path: Path, scores: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_midway(self: pd.DataFrame, stream, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        stream.write("patient_id")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_midway)

    with pytest.raises(OSError, match="disk full"):
        atomic_write_csv(scores, tmp_path / "scores.csv")

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "hostile",
    ["=1+1", "+1-1", "-2+3", "@SUM(A1)", "\t=cmd", "\r=cmd", '=HYPERLINK("http://x")', "\uff1d1"],
)
def test_a_cell_a_spreadsheet_would_run_is_written_as_text(tmp_path: Path, hostile: str) -> None:
    """OWASP's CSV-injection advice: a leading quote, so the cell is shown, never run."""
    path = tmp_path / "scores.csv"
    frame = pd.DataFrame({"patient_id": [hostile, "QX-2"], "expected_improvement": [-4.0, 3.5]})

    atomic_write_csv(frame, path)

    with path.open(newline="", encoding="utf-8") as stream:
        cells = [row[0] for row in csv.reader(stream)]
    assert cells == ["patient_id", "'" + hostile, "QX-2"]
    back = pd.read_csv(path, keep_default_na=False)
    # Numbers are numbers: a negative improvement is not a formula.
    assert back["expected_improvement"].tolist() == [-4.0, 3.5]


def test_text_that_does_not_start_like_a_formula_is_left_alone() -> None:
    frame = pd.DataFrame({"patient_id": ["QX-1", "a=b", "Jane-Doe", None]})
    pd.testing.assert_frame_equal(spreadsheet_safe(frame), frame)
