"""The cohort reader never falls over: whatever the bytes, a typed cohort or a CohortError.

Hypothesis writes files a clinic's export could plausibly be, and files nobody meant to
write: random bytes, wrong or broken encodings, a BOM, other separators and line endings,
ragged rows and stray quotes, absurd magnitudes, NaN and inf spelt every way, duplicated
patient ids, cells of a megabyte. Every time the answer is either a cohort whose every
value is inside the contract, or a :class:`CohortError` whose problems name a column (or the
file or its header), the rule, and file lines that exist, without echoing a value. The
``womac validate`` command says the same without a traceback.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.helpers import womac_command
from womac.data.cohort import Cohort, inspect_cohort, read_cohort
from womac.data.contract import FIELD_BY_NAME, FIELDS, Kind
from womac.data.problems import CohortError, Problem
from womac.pipeline.cli import app

# A value no rule may echo: it stands for a patient's data in any cell.
CANARY = "Zq-canary-7731"
REQUIRED = [f.name for f in FIELDS if f.required]
CONTRACT = [f.name for f in FIELDS]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Cells that break or bend the contract, next to well-formed ones.
NASTY_CELLS = [
    "",
    " ",
    "NA",
    ".",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "1e308",
    "-1e308",
    "1e-320",
    "1e999",
    "9" * 400,
    "0x1F",
    "١٢",  # Arabic-Indic digits
    "6_1",
    "2,5",
    "29,5",
    "-0",
    "+5",
    "yes",
    "NO",
    "maybe",
    "F",
    "femme",
    "Knee ",
    "bone-marrow",
    '"',
    '""',
    "a\nb",
    "é",
    "\u200b",
    "\ufeff",
    CANARY,
]


def good_cell(name: str) -> st.SearchStrategy[str]:
    """A value of the field as a clinic would write it."""
    spec = FIELD_BY_NAME[name]
    if spec.kind is Kind.IDENTIFIER:
        return st.sampled_from(["QX-1", "QX-2", "QX-3"])  # repeats: duplicated patient ids
    if spec.kind is Kind.CATEGORY:
        return st.sampled_from(list(spec.categories))
    if spec.kind is Kind.BOOLEAN:
        return st.sampled_from(["yes", "no", "TRUE", "0"])
    low = spec.minimum if spec.minimum is not None else 0.0
    high = spec.maximum if spec.maximum is not None else 100.0
    if spec.kind is Kind.INTEGER:
        return st.integers(int(low), int(high)).map(str)
    return st.floats(low, high, allow_nan=False).map(lambda x: f"{x:.6g}")


@st.composite
def exports(draw: st.DrawFn) -> bytes:
    """A CSV export: contract columns (some missing, some repeated, some extra), rows of good
    and nasty cells, any separator, line ending, quoting and encoding.

    A third of the exports are clean (every required column once, well-formed values), so
    valid cohorts are generated too and checked to be typed inside the contract.
    """
    clean = draw(st.integers(0, 2)) == 0
    optional = [name for name in CONTRACT if name not in REQUIRED]
    if clean:
        columns = REQUIRED + draw(st.lists(st.sampled_from(optional), unique=True, max_size=8))
    else:
        columns = [name for name in REQUIRED if draw(st.integers(0, 9))]  # each kept 90%
        columns += draw(st.lists(st.sampled_from(CONTRACT), max_size=6))
        extra = st.sampled_from(["remarks", "", " Age ", "KL-Grade"])
        columns += draw(st.lists(extra, max_size=2))
    columns = draw(st.permutations(columns))
    n_rows = draw(st.integers(0 if not clean else 1, 6))
    rows = []
    for _ in range(n_rows):
        row = []
        for column in columns:
            name = column.strip().lower().replace("-", "_")
            if name in FIELD_BY_NAME and (clean or draw(st.integers(0, 3))):
                row.append(draw(good_cell(name)))
            else:
                row.append(draw(st.one_of(st.sampled_from(NASTY_CELLS), st.text(max_size=12))))
        if not clean and draw(st.integers(0, 9)) == 0:  # now and then a ragged row
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(st.just("x"), max_size=2))
        rows.append(row)
    separator = draw(st.sampled_from([",", ";", "\t"]))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    buffer = io.StringIO()
    if draw(st.booleans()):
        writer = csv.writer(buffer, delimiter=separator, lineterminator=ending)
        writer.writerow(columns)
        writer.writerows(rows)
    else:  # written by hand, without quoting: separators and quotes inside cells break it
        buffer.write(ending.join(separator.join(line) for line in [columns, *rows]) + ending)
    text = buffer.getvalue()
    if draw(st.booleans()):
        text = "\ufeff" + text
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "cp1252", "utf-16"]))
    return text.encode(encoding, errors="replace")


def check_outcome(path: Path, content: bytes) -> Cohort | CohortError:
    """Read ``path``; assert the answer is one of the two allowed, and a sound one."""
    try:
        cohort = read_cohort(path)
    except CohortError as error:
        assert_clear(error, content)
        return error
    assert_inside_contract(cohort, content)
    return cohort


def inspect_or_refusal(path: Path) -> tuple[Cohort, list[Problem]] | CohortError:
    """:func:`inspect_cohort`'s answer, or its refusal of a file it cannot read at all."""
    try:
        return inspect_cohort(path)
    except CohortError as error:
        return error


def file_lines(content: bytes) -> int:
    """An upper bound of the file's line count, whatever its encoding and line endings
    (a lone CR ends a line, as in old Mac exports)."""
    return content.count(b"\n") + content.count(b"\r") + 1


def assert_clear(error: CohortError, content: bytes) -> None:
    assert error.problems
    for problem in error.problems:
        assert problem.column in CONTRACT or problem.column in ("file", "header"), problem
        assert problem.rule.strip(), problem
        assert all(1 <= line <= file_lines(content) for line in problem.lines), problem
    message = str(error)
    assert message.startswith(f"{error.source} breaks the cohort contract")
    assert CANARY not in message


def assert_inside_contract(cohort: Cohort, content: bytes) -> None:
    frame = cohort.frame
    assert list(frame.columns) == CONTRACT
    assert len(cohort.lines) == len(frame)
    assert all(2 <= line <= file_lines(content) for line in cohort.lines)
    for spec in FIELDS:
        values = frame[spec.name]
        known = values.dropna()
        if spec.kind is Kind.CATEGORY:
            assert set(known) <= set(spec.categories), spec.name
        elif spec.kind is Kind.BOOLEAN:
            assert set(known) <= {0.0, 1.0}, spec.name
        elif spec.kind in (Kind.NUMBER, Kind.INTEGER):
            numbers = known.to_numpy(dtype=float)
            assert np.isfinite(numbers).all(), spec.name
            if spec.minimum is not None:
                assert (numbers >= spec.minimum).all(), spec.name
            if spec.maximum is not None:
                assert (numbers <= spec.maximum).all(), spec.name
            if spec.kind is Kind.INTEGER:
                assert (np.round(numbers) == numbers).all(), spec.name
    assert not any(CANARY in note for note in cohort.notes)


@given(content=st.binary(max_size=3_000))
@FUZZ
def test_random_bytes_are_a_cohort_or_a_clear_refusal(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)

    check_outcome(path, content)


@given(content=st.binary(max_size=400).map(lambda tail: b"\xff\xfe" + tail))
@FUZZ
def test_anything_after_a_utf16_byte_order_mark_is_read_or_refused(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)

    check_outcome(path, content)


@given(content=exports())
@FUZZ
def test_any_export_is_a_cohort_inside_the_contract_or_a_clear_refusal(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)

    outcome = check_outcome(path, content)

    # The data report reads the same file the same way, refusing only what cannot be read.
    inspected = inspect_or_refusal(path)
    if isinstance(inspected, CohortError):
        assert isinstance(outcome, CohortError)
        assert inspected.problems == outcome.problems
        return
    cohort, problems = inspected
    if isinstance(outcome, Cohort):
        assert not problems
        pd.testing.assert_frame_equal(cohort.frame, outcome.frame)
    else:
        assert tuple(problems) == outcome.problems
        assert_inside_contract(cohort, content)


@given(content=exports())
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_validate_reports_any_export_and_never_crashes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)

    result = CliRunner().invoke(app, ["validate", str(path)], env={"COLUMNS": "200"})

    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert CANARY not in result.output
    try:
        read_cohort(path)
    except CohortError:
        assert result.exit_code == 1
    else:
        assert result.exit_code == 0, result.output


# -- the cases named in the issue, each once -------------------------------------------

HEADER = ",".join(REQUIRED)
ROW = "QX-48213,61,female,29.5,knee,2,8,3,30"
MEGABYTE = "9" * 1_000_000


@pytest.mark.parametrize(
    ("content", "rule", "lines"),
    [
        pytest.param(
            f"{HEADER}\n{ROW.replace('QX-48213', 'X' * 1_000_000)}\n",
            "longer than 131,072 characters",
            (2,),
            id="1MB-patient-id",
        ),
        pytest.param(
            f"{HEADER}\n{ROW}\n{ROW.replace('29.5', MEGABYTE)}\n",
            "longer than 131,072 characters",
            (3,),
            id="1MB-number",
        ),
        pytest.param(
            f"{'h' * 1_000_000},{HEADER}\n{ROW},1\n",
            "longer than 131,072 characters",
            (1,),
            id="1MB-header-cell",
        ),
        pytest.param(
            f"{HEADER}\n{ROW}\n{ROW.replace('knee', chr(34) + 'knee')}\n{ROW}\n",
            'quote \\(".*never closed',
            (3,),
            id="quote-never-closed",
        ),
    ],
)
def test_a_file_that_is_not_csv_is_refused_naming_the_line(
    tmp_path: Path, content: str, rule: str, lines: tuple[int, ...]
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(content, newline="")

    with pytest.raises(CohortError) as caught:
        read_cohort(path)

    (problem,) = caught.value.problems
    assert problem.column == "file"
    assert re.search(rule, problem.rule), problem.rule
    assert problem.lines == lines
    assert "48213" not in str(caught.value)
    assert len(str(caught.value)) < 500


@pytest.mark.parametrize(
    "content",
    [
        pytest.param((f"{HEADER}\n{ROW}\n").encode("utf-16") + b"A", id="truncated"),
        pytest.param((f"{HEADER}\n").encode("utf-16") + b"\x00\xd8\x41\x00", id="surrogate"),
        pytest.param(b"\xff\xfe" + bytes(range(256)) * 2, id="binary-after-bom"),
    ],
)
def test_a_broken_utf16_file_is_refused_not_a_crash(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)

    with pytest.raises(CohortError) as caught:
        read_cohort(path)

    assert [p.column for p in caught.value.problems] == ["file"]
    assert "UTF-16" in caught.value.problems[0].rule


@pytest.mark.parametrize("magnitude", ["1e308", "-1e308", "1.7976931348623157e308", "1e-320"])
def test_absurd_magnitudes_are_out_of_range_not_overflows(tmp_path: Path, magnitude: str) -> None:
    path = tmp_path / "export.csv"
    path.write_text(f"{HEADER}\n{ROW.replace('29.5', magnitude)}\n")

    with pytest.raises(CohortError) as caught:
        read_cohort(path)

    (problem,) = caught.value.problems
    assert (problem.column, problem.lines) == ("bmi", (2,))
    assert problem.rule.startswith("out of range")
    assert magnitude not in str(caught.value)


def test_duplicated_patient_ids_are_kept_together_with_a_note_not_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "export.csv"
    hip = ROW.replace("knee", "hip")
    path.write_text(f"{HEADER}\n{ROW}\n{hip}\n{ROW}\n")

    cohort = read_cohort(path)

    assert len(cohort) == 3
    (note,) = [n for n in cohort.notes if "patient_id" in n]
    assert "1 patient_id value(s) occur on more than one row" in note
    assert "2 row(s) repeat the same patient and joint" in note
    assert "48213" not in note


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\xff\xfe" + bytes(range(256)) * 2, id="broken-utf16"),
        pytest.param(f"{HEADER}\n{ROW.replace('29.5', MEGABYTE)}\n".encode(), id="1MB-cell"),
        pytest.param(f"{HEADER}\n{ROW.replace('29.5', '-1e308')}\n".encode(), id="-1e308"),
        pytest.param(f"{HEADER}\n".encode("utf-16"), id="utf16-header-only"),
        pytest.param(b"\xef\xbb\xbf", id="bom-only"),
        pytest.param(
            f"{HEADER.replace(',', ';')};x;x\n{ROW};1;2\n".encode(), id="mixed-separators"
        ),
    ],
)
def test_womac_validate_refuses_with_exit_1_and_no_traceback(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)

    finished = subprocess.run(
        [womac_command(), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )

    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "Traceback" not in finished.stderr
    assert "export.csv" in finished.stdout + finished.stderr
    assert "48213" not in finished.stdout + finished.stderr
