"""``womac simulate`` and ``womac validate`` as a data scientist runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from womac.data.cohort import read_cohort
from womac.data.simulate import ORACLE
from womac.pipeline.cli import app

WIDE = {"COLUMNS": "200"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")

BAD_FILE = (
    "patient_id,sex,bmi,joint,kl_grade,womac_pain_0,womac_stiffness_0,womac_function_0\n"
    "QX-48213,female,31.2,knee,2,8,3,30\n"
    "QX-59027,male,abc,hip,3,9,4,35\n"
    "QX-60318,female,27.4,knee,7,6,2,25\n"
)


def run(*args: str | Path) -> tuple[int, str, BaseException | None]:
    """Run the CLI; return its exit code, everything it printed, and any exception."""
    result = CliRunner().invoke(app, [str(arg) for arg in args], env=WIDE)
    return result.exit_code, ANSI.sub("", result.output), result.exception


def simulate(tmp_path: Path, seed: int, name: str) -> tuple[Path, Path]:
    out, oracle = tmp_path / f"{name}.csv", tmp_path / f"{name}-oracle.csv"
    code, output, _ = run(
        "simulate", "--n", "200", "--seed", seed, "--out", out, "--oracle", oracle
    )
    assert code == 0, output
    return out, oracle


def test_simulate_writes_the_cohort_and_its_oracle(tmp_path: Path) -> None:
    out, oracle = simulate(tmp_path, 3, "cohort")

    cohort = read_cohort(out, require_outcomes=True)
    expected = pd.read_csv(oracle)
    assert len(cohort) == 200
    assert list(expected.columns) == ["patient_id", ORACLE]
    assert expected["patient_id"].tolist() == cohort.frame["patient_id"].tolist()
    assert expected[ORACLE].notna().all()


def test_simulate_is_reproducible_by_seed(tmp_path: Path) -> None:
    first = simulate(tmp_path, 3, "first")
    again = simulate(tmp_path, 3, "again")
    other = simulate(tmp_path, 4, "other")

    assert first[0].read_bytes() == again[0].read_bytes()
    assert first[1].read_bytes() == again[1].read_bytes()
    assert first[0].read_bytes() != other[0].read_bytes()


def test_validate_a_good_file_prints_rows_and_follow_up(tmp_path: Path) -> None:
    out, _ = simulate(tmp_path, 3, "cohort")
    lost = int(read_cohort(out).lost_to_follow_up.sum())

    code, output, _ = run("validate", out)

    assert code == 0, output
    assert "200 rows" in output
    assert re.search(rf"lost to follow-up: {lost}\b", output), output
    assert "SIM-" not in output


def test_validate_a_bad_file_lists_every_problem_without_values(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_FILE)

    code, output, exception = run("validate", path)

    assert code != 0
    assert exception is None or isinstance(exception, SystemExit)
    assert re.search(r"age\b.*required column is missing", output), output
    assert re.search(r"bmi\b.*line 3\b", output), output
    assert re.search(r"kl_grade\b.*line 4\b", output), output
    assert "abc" not in output
    assert re.search(r"(?<![\d.])7(?![\d.%])", output) is None, output
    for patient_id in ("QX-48213", "QX-59027", "QX-60318"):
        assert patient_id not in output


@pytest.mark.parametrize(
    "content", [b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"name,years\nAnna,61\n"]
)
def test_validate_refuses_unreadable_files_without_a_traceback(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(content)

    code, output, exception = run("validate", path)

    assert code != 0
    assert exception is None or isinstance(exception, SystemExit)
    assert "Traceback" not in output
    assert "odd.csv" in output


def test_validate_a_missing_file(tmp_path: Path) -> None:
    code, output, exception = run("validate", tmp_path / "absent.csv")

    assert code != 0
    assert exception is None or isinstance(exception, SystemExit)
    assert "cannot be read" in output
