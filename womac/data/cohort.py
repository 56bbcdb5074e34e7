"""A cohort of treated joints: the validated, typed table, and reading it from a CSV export.

A :class:`Cohort` holds every contract column typed (numbers as floats, categories as
strings, yes/no as 1.0/0.0, unknown as NaN) with the file line of each row. It comes from a
CSV export (:func:`read_cohort`, or :class:`CohortReader` chunk by chunk) or from patients
already in hand (:func:`read_patients`, :func:`patients_columns`). The contract's rules for
each column are in :mod:`womac.data.values`; the problems found are reported as
:mod:`womac.data.problems` words them, by column, rule and file line, never by value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from womac.data.contract import (
    BASELINE_SUBSCALES,
    FIELD_BY_NAME,
    FIELDS,
    FOLLOW_UP_SUBSCALES,
    PREDICTOR_NAMES,
    TARGET,
    Role,
)
from womac.data.exports import open_export
from womac.data.mapping import KOOS_TOO_FEW, ColumnMapping
from womac.data.problems import CohortError, Problem, ProblemLog
from womac.data.values import normalise_header, parse_column, unknown_column

REQUIRED_PREDICTORS: tuple[str, ...] = tuple(
    f.name for f in FIELDS if f.role is Role.PREDICTOR and f.required and not f.blank_allowed
)
CHUNK_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class Layout:
    """How a clinic's export is laid out when it is not a contract CSV: the sheet of a
    workbook to read (the first by default), and the mapping of its columns and codes (with
    the file it was read from, which a training run logs)."""

    sheet: str | None = None
    mapping: ColumnMapping | None = None
    mapping_file: Path | None = None

    @classmethod
    def read(cls, sheet: str | None = None, mapping_file: Path | None = None) -> Layout:
        """The layout of these options; the mapping file is read and checked now.

        Raises
        ------
        womac.data.mapping.MappingError
            When the mapping file cannot be used.
        """
        mapping = ColumnMapping.read(mapping_file) if mapping_file is not None else None
        return cls(sheet, mapping, mapping_file)


AS_CONTRACT = Layout()
"""The layout of an export written as the contract: its first sheet, no mapping."""


@dataclass(slots=True)
class Cohort:
    """A validated cohort: typed contract columns, one row per treated joint.

    Attributes
    ----------
    frame
        Every contract column (absent optional columns are all-missing): numbers as floats,
        categories as strings, booleans as 1.0/0.0, unknown values as NaN.
    lines
        The file line each row came from, for messages that point back into the file.
    present
        The contract columns the file actually had.
    source
        The file's name, for messages.
    notes
        Warnings for the user: ignored columns, rows that cannot be used and why.
    layout
        How the file was read (its sheet and mapping), for the training run's record.
    """

    frame: pd.DataFrame
    lines: np.ndarray
    present: frozenset[str]
    source: str
    notes: list[str] = field(default_factory=list)
    layout: Layout = field(default_factory=Layout)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def has_outcomes(self) -> bool:
        """Whether the file carries the 12-month scores (a training cohort)."""
        return all(name in self.present for name in FOLLOW_UP_SUBSCALES)

    @property
    def complete(self) -> pd.Series:
        """Rows with every required predictor known (KL grade may be blank)."""
        return self.frame[list(REQUIRED_PREDICTORS)].notna().all(axis=1)

    @property
    def target(self) -> pd.Series:
        """12-month improvement; NaN when any subscale at either time is blank."""
        return womac_improvement(self.frame)

    @property
    def lost_to_follow_up(self) -> pd.Series:
        """Rows whose 12-month scores are (partly) blank."""
        if not self.has_outcomes:
            return pd.Series(False, index=self.frame.index)
        return self.frame[list(FOLLOW_UP_SUBSCALES)].isna().any(axis=1)

    @property
    def trainable(self) -> pd.Series:
        """Rows that can be used for fitting: complete predictors and a known outcome."""
        return self.complete & self.target.notna()

    def predictors(self) -> pd.DataFrame:
        """The model input: every predictor field, in contract order."""
        return self.frame[list(PREDICTOR_NAMES)]


def womac_total(frame: pd.DataFrame, subscales: Sequence[str] = BASELINE_SUBSCALES) -> pd.Series:
    """Sum of WOMAC subscales; blank when any subscale is blank (pandas would give 0)."""
    return (
        frame[list(subscales)]
        .sum(axis=1, min_count=len(subscales))
        .where(frame[list(subscales)].notna().all(axis=1))
    )


def womac_improvement(frame: pd.DataFrame) -> pd.Series:
    """Baseline total minus 12-month total; NaN for rows lost to follow-up."""
    if not all(name in frame.columns for name in FOLLOW_UP_SUBSCALES):
        return pd.Series(np.nan, index=frame.index, name=TARGET)
    improvement = womac_total(frame) - womac_total(frame, FOLLOW_UP_SUBSCALES)
    return improvement.rename(TARGET)


def model_input(patients: pd.DataFrame) -> pd.DataFrame:
    """The predictor columns in contract order, absent ones filled as unknown."""
    columns = {}
    for name in PREDICTOR_NAMES:
        if name in patients.columns:
            columns[name] = patients[name]
        else:
            columns[name] = unknown_column(FIELD_BY_NAME[name], patients.index)
    return pd.DataFrame(columns, index=patients.index)


def read_cohort(
    path: str | Path, *, require_outcomes: bool = False, layout: Layout = AS_CONTRACT
) -> Cohort:
    """Read and validate a cohort export; refuse it with every problem listed.

    Parameters
    ----------
    path
        CSV export (comma, semicolon or tab separated; UTF-8 with or without BOM, UTF-16 or
        Latin-1), a workbook (.xlsx, .xlsm, .xls, .ods) or a Parquet file.
    require_outcomes
        Whether the 12-month subscale columns must be present (training needs them).
    layout
        The sheet and the mapping, for an export that is not laid out as the contract.

    Returns
    -------
    Cohort
        The typed cohort.

    Raises
    ------
    CohortError
        With every problem found, when the file breaks the contract.
    """
    cohort, problems = inspect_cohort(path, require_outcomes=require_outcomes, layout=layout)
    if problems:
        raise CohortError(cohort.source, problems)
    return cohort


def inspect_cohort(
    path: str | Path, *, require_outcomes: bool = False, layout: Layout = AS_CONTRACT
) -> tuple[Cohort, list[Problem]]:
    """Read a cohort export and list its problems without refusing it (for data reports).

    Values that break a rule are typed as unknown in the returned cohort. The file is read
    in chunks, so only the typed values of the whole cohort are held at once.

    Raises
    ------
    CohortError
        When the file cannot be read as a table at all (empty, binary, no header).
    """
    reader = CohortReader(path, require_outcomes=require_outcomes, layout=layout)
    chunks = list(reader.chunks())
    frame = pd.concat([chunk.frame for chunk in chunks], ignore_index=True)
    lines = np.concatenate([chunk.lines for chunk in chunks])
    return reader.finish(frame, lines), reader.problems()


class CohortReader:
    """Streams a cohort export as chunks of typed rows, collecting every problem on the way.

    The file's header (and, for a CSV, its encoding and separator) is checked when the reader
    is made; each chunk is then mapped (when the layout has a mapping) and typed against the
    contract. :meth:`problems` lists all problems of the rows read so far, merged per column
    and rule, with their places in the file.

    Parameters
    ----------
    path
        The export: CSV, workbook or Parquet (:mod:`womac.data.exports`).
    require_outcomes
        Whether the 12-month subscale columns must be present.
    chunk_rows
        Rows per chunk.
    layout
        The sheet and the mapping, for an export not laid out as the contract.

    Raises
    ------
    CohortError
        When the file cannot be read as a table (missing, empty, binary, no header), or the
        mapping names columns the file does not have.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        require_outcomes: bool = False,
        chunk_rows: int = CHUNK_ROWS,
        layout: Layout = AS_CONTRACT,
    ) -> None:
        self.path = Path(path)
        self.require_outcomes = require_outcomes
        self.chunk_rows = chunk_rows
        self.layout = layout
        self.export = open_export(self.path, layout.sheet)
        self.source = self.export.source
        self.notes: list[str] = list(self.export.notes)
        self._problems = ProblemLog(self.export.place)
        # Required predictors left blank: those rows are not used, the file is not refused.
        self._unusable = ProblemLog(self.export.place)
        self.rows = 0
        header = self.export.header
        if layout.mapping is None:
            self.columns = [normalise_header(name) for name in header]
            self.notes.extend(_ignored_columns(header, self.columns))
        else:
            missing = layout.mapping.missing_headers(header)
            if missing:
                raise CohortError(self.source, missing)
            self.columns = layout.mapping.fields()
            self.notes.extend(_ignored_columns(header, layout.mapping.reads(header)))
        self.known = [c for c in self.columns if c in FIELD_BY_NAME]
        _refuse_unusable_header(self.source, self.known)
        required = [
            f for f in FIELDS if f.required or (require_outcomes and f.role is Role.OUTCOME)
        ]
        for spec in required:
            if spec.name not in self.columns:
                self._problems.add(Problem(spec.name, "required column is missing"))

    def chunks(self) -> Iterator[Cohort]:
        """The typed rows, ``chunk_rows`` at a time (values breaking a rule typed unknown)."""
        for table, lines in self._tables():
            yield self._type(table, lines)
        if self.rows == 0:
            yield self._type(pd.DataFrame(columns=self.columns), np.zeros(0, dtype=int))

    def _tables(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        """The export's cells as text under contract names, with each row's place."""
        raw = self.export.chunks(self.chunk_rows, self._problems)
        mapping = self.layout.mapping
        if mapping is None:
            for table, lines in raw:
                yield table.set_axis(self.columns[: table.shape[1]], axis=1), lines
            return
        header = self.export.header
        named: Iterator[tuple[pd.DataFrame, np.ndarray]] = (
            (t.set_axis(header[: t.shape[1]], axis=1), lines) for t, lines in raw
        )
        if mapping.redcap is not None:  # a record's event rows may be anywhere in the file
            tables = list(named)
            whole = pd.concat([t for t, _ in tables], ignore_index=True) if tables else None
            lines = np.concatenate([n for _, n in tables]) if tables else np.zeros(0, int)
            named = iter([] if whole is None else [(whole, lines)])
        for table, lines in named:
            mapped = mapping.apply(table, lines)
            for problem in mapped.problems:
                unscored = problem.rule == KOOS_TOO_FEW
                (self._unusable if unscored else self._problems).add(problem)
            yield mapped.frame, mapped.lines

    def _type(self, table: pd.DataFrame, numbers: np.ndarray) -> Cohort:
        self.rows += len(table)
        typed: dict[str, pd.Series] = {}
        for spec in FIELDS:
            if spec.name not in table.columns:
                typed[spec.name] = unknown_column(spec, table.index)
                continue
            values, field_problems, blank = parse_column(table[spec.name], spec, numbers)
            typed[spec.name] = values
            for problem in field_problems:
                self._problems.add(problem)
            if blank.any() and spec.required and not spec.blank_allowed:
                blank_lines = tuple(int(line) for line in numbers[blank])
                if spec.role is Role.IDENTIFIER:
                    self._problems.add(Problem(spec.name, "must not be blank", blank_lines))
                else:
                    self._unusable.add(Problem(spec.name, "required value is blank", blank_lines))
        frame = pd.DataFrame(typed, index=pd.RangeIndex(len(table)))
        return Cohort(
            frame=frame,
            lines=numbers,
            present=frozenset(self.known),
            source=self.source,
            notes=self.notes,
            layout=self.layout,
        )

    def problems(self) -> list[Problem]:
        """Every problem found so far, one per column and rule, with all its places."""
        found = [self._placed(problem) for problem in self._problems.problems()]
        if self.rows == 0 and not any(p.column == "file" for p in found):
            found.append(Problem("file", "has no data rows"))
        return found

    def _placed(self, problem: Problem) -> Problem:
        """A field's problem naming where its column is, where the format has letters
        (a sheet's column C) and the field comes from one column."""
        if problem.column not in FIELD_BY_NAME:
            return problem
        mapping = self.layout.mapping
        if mapping is None:
            position = self.columns.index(problem.column) if problem.column in self.columns else -1
        else:
            position = mapping.position(problem.column, self.export.header)
        where = self.export.column_place(position) if position >= 0 else ""
        return replace(problem, column=f"{problem.column} ({where})") if where else problem

    def finish(self, frame: pd.DataFrame, lines: np.ndarray) -> Cohort:
        """The whole cohort, with the notes that need all of it."""
        notes = list(self.notes)
        notes.extend(
            f"{problem}; these rows are not used" for problem in self._unusable.problems()
        )
        cohort = Cohort(
            frame=frame,
            lines=lines,
            present=frozenset(self.known),
            source=self.source,
            notes=notes,
            layout=self.layout,
        )
        if cohort.has_outcomes:
            lost = int(cohort.lost_to_follow_up.sum())
            if lost:
                notes.append(f"{lost} row(s) lost to follow-up (12-month scores blank)")
        repeated = _repeated_patients_note(frame)
        if repeated:
            notes.append(repeated)
        return cohort


def _refuse_unusable_header(source: str, known: list[str]) -> None:
    """Refuse a header with no contract column, or naming one twice (which one holds it?)."""
    if not known:
        # Checked first: without a header, the "column names" are a patient's values.
        raise CohortError(
            source,
            [Problem("header", "no column of the cohort contract found; is the header missing?")],
        )
    duplicated = sorted({c for c in known if known.count(c) > 1})
    if duplicated:
        raise CohortError(
            source,
            [Problem(name, "column appears more than once in the header") for name in duplicated],
        )


def _ignored_columns(header: list[str], read: list[str]) -> list[str]:
    """Notes on the header's columns that are not read (outside the contract or the mapping,
    or unnamed), named as the file writes them."""
    notes = []
    extra = [h for h, r in zip(header, read, strict=True) if h.strip() and r not in FIELD_BY_NAME]
    unnamed = sum(1 for h in header if not h.strip())
    if extra:
        shown = ", ".join(name.strip()[:40] for name in extra[:10])
        notes.append(f"ignored {len(extra)} column(s) not in the contract: {shown}")
    if unnamed:
        notes.append(f"ignored {unnamed} column(s) with no name in the header")
    return notes


def _repeated_patients_note(frame: pd.DataFrame) -> str | None:
    """A note on patients with several rows (one per treated joint), if there are any."""
    repeats = frame["patient_id"].duplicated(keep=False)
    if not repeats.any():
        return None
    repeated_joint = frame.duplicated(subset=["patient_id", "joint"], keep=False)
    return (
        f"{int(frame.loc[repeats, 'patient_id'].nunique())} patient_id value(s) occur "
        "on more than one row (one row per treated joint); their rows are kept "
        "together when the cohort is split"
        + (
            f"; {int(repeated_joint.sum())} row(s) repeat the same patient and joint"
            if repeated_joint.any()
            else ""
        )
    )
