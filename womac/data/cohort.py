"""Reading a cohort export into a validated, typed DataFrame.

Every problem in a file is collected before anything is refused, and each is reported by
column, rule and file line (the header is line 1, as a spreadsheet numbers rows). Values
are never echoed: a cohort holds patient data, and errors may end up in logs.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from womac.data.contract import (
    BASELINE_SUBSCALES,
    ELIGIBILITY_FLAGS,
    FALSE_VALUES,
    FIELD_BY_NAME,
    FIELDS,
    FOLLOW_UP_SUBSCALES,
    PREDICTOR_NAMES,
    TARGET,
    TRUE_VALUES,
    Kind,
    PatientField,
    Role,
)

# Tokens that spreadsheet, R, SQL and Stata exports write for an empty cell.
BLANK_TOKENS = frozenset({"", "na", "n/a", "#n/a", "nan", "null", "none", "."})
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_MAX_LINES_SHOWN = 12
REQUIRED_PREDICTORS: tuple[str, ...] = tuple(
    f.name for f in FIELDS if f.role is Role.PREDICTOR and f.required and not f.blank_allowed
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One rule broken in one column, at the listed places (none for a whole column).

    ``place`` says what the numbers count: file lines of an export (the header is line 1),
    rows of a Parquet input (from 1), or positions in a DataFrame (from 0, as ``iloc``).
    """

    column: str
    rule: str
    lines: tuple[int, ...] = ()
    place: str = "line"

    def __str__(self) -> str:
        if not self.lines:
            return f"{self.column}: {self.rule}"
        shown = ", ".join(str(line) for line in self.lines[:_MAX_LINES_SHOWN])
        more = len(self.lines) - _MAX_LINES_SHOWN
        suffix = f" and {more} more" if more > 0 else ""
        noun = self.place if len(self.lines) == 1 else f"{self.place}s"
        return f"{self.column}: {self.rule} ({noun} {shown}{suffix})"


class CohortError(ValueError):
    """A cohort file that breaks the contract; carries every problem found."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(
            f"{source} breaks the cohort contract ({count} problem{'s' * (count != 1)}):\n"
            f"{listing}"
        )


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
    """

    frame: pd.DataFrame
    lines: np.ndarray
    present: frozenset[str]
    source: str
    notes: list[str] = field(default_factory=list)

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


def read_cohort(path: str | Path, *, require_outcomes: bool = False) -> Cohort:
    """Read and validate a cohort CSV; refuse it with every problem listed.

    Parameters
    ----------
    path
        CSV export: comma, semicolon or tab separated; UTF-8 (with or without BOM), UTF-16
        or Latin-1.
    require_outcomes
        Whether the 12-month subscale columns must be present (training needs them).

    Returns
    -------
    Cohort
        The typed cohort.

    Raises
    ------
    CohortError
        With every problem found, when the file breaks the contract.
    """
    cohort, problems = inspect_cohort(path, require_outcomes=require_outcomes)
    if problems:
        raise CohortError(cohort.source, problems)
    return cohort


def inspect_cohort(
    path: str | Path, *, require_outcomes: bool = False
) -> tuple[Cohort, list[Problem]]:
    """Read a cohort CSV and list its problems without refusing it (for data reports).

    Values that break a rule are typed as unknown in the returned cohort. The file is read
    in chunks, so only the typed values of the whole cohort are held at once.

    Raises
    ------
    CohortError
        When the file cannot be read as a table at all (empty, binary, no header).
    """
    reader = CohortReader(path, require_outcomes=require_outcomes)
    chunks = list(reader.chunks())
    frame = pd.concat([chunk.frame for chunk in chunks], ignore_index=True)
    lines = np.concatenate([chunk.lines for chunk in chunks])
    return reader.finish(frame, lines), reader.problems()


CHUNK_ROWS = 100_000


class CohortReader:
    """Streams a cohort CSV as chunks of typed rows, collecting every problem on the way.

    The header, encoding and separator are checked when the reader is made; each chunk is
    then typed against the contract. :meth:`problems` lists all problems of the rows read so
    far, merged per column and rule, with their file lines.

    Parameters
    ----------
    path
        The CSV file.
    require_outcomes
        Whether the 12-month subscale columns must be present.
    chunk_rows
        Rows per chunk.

    Raises
    ------
    CohortError
        When the file cannot be read as a table (missing, empty, binary, no header).
    """

    def __init__(
        self, path: str | Path, *, require_outcomes: bool = False, chunk_rows: int = CHUNK_ROWS
    ) -> None:
        self.path = Path(path)
        self.source = self.path.name
        self.require_outcomes = require_outcomes
        self.chunk_rows = chunk_rows
        self.encoding, encoding_note = _detect_encoding(self.path, self.source)
        self.notes: list[str] = [encoding_note] if encoding_note else []
        self._problems: dict[tuple[str, str], list[int]] = {}
        self._blank_required: dict[str, list[int]] = {}
        self.rows = 0
        self.header, self.delimiter, self.header_line = self._read_header()
        columns = [normalise_header(name) for name in self.header]
        self.known = [c for c in columns if c in FIELD_BY_NAME]
        if not self.known:
            # Checked first: without a header, the "column names" are a patient's values.
            raise CohortError(
                self.source,
                [
                    Problem(
                        "header", "no column of the cohort contract found; is the header missing?"
                    )
                ],
            )
        duplicated = sorted({c for c in self.known if self.known.count(c) > 1})
        if duplicated:
            raise CohortError(
                self.source,
                [
                    Problem(name, "column appears more than once in the header")
                    for name in duplicated
                ],
            )
        self.columns = columns
        extra = [c for c in columns if c not in FIELD_BY_NAME and c]
        unnamed = sum(1 for c in columns if not c)
        if extra:
            shown = ", ".join(name[:40] for name in extra[:10])
            self.notes.append(f"ignored {len(extra)} column(s) not in the contract: {shown}")
        if unnamed:
            self.notes.append(f"ignored {unnamed} column(s) with no name in the header")
        required = [
            f for f in FIELDS if f.required or (require_outcomes and f.role is Role.OUTCOME)
        ]
        for spec in required:
            if spec.name not in columns:
                self._add(Problem(spec.name, "required column is missing"))

    def _open(self) -> Any:
        return self.path.open(encoding=self.encoding, newline="")

    def _read_header(self) -> tuple[list[str], str, int]:
        with self._open() as stream:
            for number, text in enumerate(stream, start=1):
                if "\x00" in text:
                    raise CohortError(
                        self.source, [Problem("file", "is not a text CSV file (binary content)")]
                    )
                if text.strip():
                    delimiter = max((",", ";", "\t"), key=text.count)
                    try:
                        header = next(csv.reader([text], delimiter=delimiter, strict=True))
                    except csv.Error as error:
                        raise CohortError(self.source, [_csv_problem(error, number)]) from None
                    return header, delimiter, number
        raise CohortError(self.source, [Problem("file", "is empty")])

    def chunks(self) -> Iterator[Cohort]:
        """The typed rows, ``chunk_rows`` at a time (values breaking a rule typed unknown)."""
        # Spreadsheets export trailing empty columns as unnamed headers and blank cells.
        width = len(self.header)
        while width and not self.header[width - 1].strip():
            width -= 1
        cells: list[list[str]] = []
        lines: list[int] = []
        with self._open() as stream:
            reader = csv.reader(stream, delimiter=self.delimiter, strict=True)
            previous = 0
            try:
                for row in reader:
                    # A quoted cell may span lines; a row starts after the previous one ends.
                    start, previous = previous + 1, reader.line_num
                    if start <= self.header_line or not any(cell.strip() for cell in row):
                        continue
                    if any("\x00" in cell for cell in row):
                        raise CohortError(
                            self.source,
                            [Problem("file", "is not a text CSV file (binary content)")],
                        )
                    if len(row) < width or any(cell.strip() for cell in row[width:]):
                        self._add(
                            Problem("file", "row has a different number of cells than the header"),
                            start,
                        )
                        continue
                    cells.append(row[:width])
                    lines.append(start)
                    if len(cells) == self.chunk_rows:
                        yield self._type(cells, lines, width)
                        cells, lines = [], []
            except csv.Error as error:
                # The row being read starts on the line after the previous row ended.
                raise CohortError(self.source, [_csv_problem(error, previous + 1)]) from None
        if cells or self.rows == 0:
            yield self._type(cells, lines, width)

    def _type(self, cells: list[list[str]], lines: list[int], width: int) -> Cohort:
        table = pd.DataFrame(cells, columns=self.columns[:width], dtype=object)
        numbers = np.asarray(lines, dtype=int)
        self.rows += len(table)
        typed: dict[str, pd.Series] = {}
        for spec in FIELDS:
            if spec.name not in table.columns:
                typed[spec.name] = pd.Series(
                    np.nan, index=table.index, dtype=object if _is_text(spec) else float
                )
                continue
            values, field_problems, blank = parse_column(table[spec.name], spec, numbers)
            typed[spec.name] = values
            for problem in field_problems:
                self._add(problem, *problem.lines)
            if blank.any() and spec.required and not spec.blank_allowed:
                blank_lines = [int(line) for line in numbers[blank]]
                if spec.role is Role.IDENTIFIER:
                    self._add(Problem(spec.name, "must not be blank"), *blank_lines)
                else:
                    self._blank_required.setdefault(spec.name, []).extend(blank_lines)
        frame = pd.DataFrame(typed, index=pd.RangeIndex(len(table)))
        return Cohort(
            frame=frame,
            lines=numbers,
            present=frozenset(self.known),
            source=self.source,
            notes=self.notes,
        )

    def _add(self, problem: Problem, *lines: int) -> None:
        self._problems.setdefault((problem.column, problem.rule), []).extend(lines)

    def problems(self) -> list[Problem]:
        """Every problem found so far, one per column and rule, with all its lines."""
        found = [
            Problem(column, rule, tuple(lines)) for (column, rule), lines in self._problems.items()
        ]
        if self.rows == 0 and not any(p.column == "file" for p in found):
            found.append(Problem("file", "has no data rows"))
        return found

    def finish(self, frame: pd.DataFrame, lines: np.ndarray) -> Cohort:
        """The whole cohort, with the notes that need all of it."""
        notes = list(self.notes)
        for name, blank_lines in self._blank_required.items():
            notes.append(
                f"{Problem(name, 'required value is blank', tuple(blank_lines))}; "
                "these rows are not used"
            )
        cohort = Cohort(
            frame=frame,
            lines=lines,
            present=frozenset(self.known),
            source=self.source,
            notes=notes,
        )
        if cohort.has_outcomes:
            lost = int(cohort.lost_to_follow_up.sum())
            if lost:
                notes.append(f"{lost} row(s) lost to follow-up (12-month scores blank)")
        repeats = frame["patient_id"].duplicated(keep=False)
        if repeats.any():
            repeated_joint = frame.duplicated(subset=["patient_id", "joint"], keep=False)
            notes.append(
                f"{int(frame.loc[repeats, 'patient_id'].nunique())} patient_id value(s) occur "
                "on more than one row (one row per treated joint); their rows are kept "
                "together when the cohort is split"
                + (
                    f"; {int(repeated_joint.sum())} row(s) repeat the same patient and joint"
                    if repeated_joint.any()
                    else ""
                )
            )
        return cohort


def patients_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Typed patients (predictors and eligibility flags), one array per field.

    Numbers become floats, booleans 1.0/0.0, categories strings; an absent or ``None``
    value is unknown (NaN). The request schema, derived from the same contract, has checked
    every value, so nothing is parsed from text here.
    """
    columns: dict[str, np.ndarray] = {}
    for name in _ASKABLE:
        values = [record.get(name) for record in records]
        if FIELD_BY_NAME[name].kind is Kind.CATEGORY:
            columns[name] = np.array([np.nan if v is None else str(v) for v in values], object)
        else:
            columns[name] = np.array([np.nan if v is None else float(v) for v in values], float)
    return columns


def read_patients(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Type patients given as a DataFrame by the contract's rules for a request.

    The frame is what a data scientist has in hand: a cohort export read by
    ``pd.read_csv`` (booleans as ``object`` when a column has blanks, pandas' string dtype
    for text), rows of a Spark DataFrame, or a JSON request to a model server. Headers match
    as in a cohort file (any case or spacing); every value goes through the same parsing
    rules as a cohort file's text, so a value passes or fails here exactly as it would in an
    export; numeric columns are checked as numbers without a detour through text. As in an
    API request, every required predictor must be known (``kl_grade`` must be there, and
    may be blank), optional fields may be absent, and the identifier and the 12-month
    scores are not needed. Columns outside the contract are ignored.

    Returns
    -------
    tuple
        One column per predictor and eligibility flag, typed as :class:`Cohort` holds them
        (values breaking a rule unknown), and the problems, by field, rule and position
        (from 0, as ``iloc``). Problems never quote a value.
    """
    positions = np.arange(len(frame))
    names = [normalise_header(name) for name in frame.columns]
    problems: list[Problem] = []
    repeated = sorted({n for n in names if n in FIELD_BY_NAME and names.count(n) > 1})
    problems.extend(Problem(name, "column appears more than once") for name in repeated)
    given = {name: i for i, name in enumerate(names) if name in FIELD_BY_NAME}
    index = pd.RangeIndex(len(frame))
    typed: dict[str, pd.Series] = {}
    for name in _ASKABLE:
        spec = FIELD_BY_NAME[name]
        if name not in given:
            if spec.required:
                problems.append(Problem(name, "required column is missing"))
            typed[name] = pd.Series(np.nan, index=index, dtype=object if _is_text(spec) else float)
            continue
        raw = frame.iloc[:, given[name]].reset_index(drop=True)
        values, found, blank = parse_column(raw, spec, positions)
        problems.extend(replace(problem, place="position") for problem in found)
        if spec.required and not spec.blank_allowed and blank.any():
            problems.append(
                Problem(
                    spec.name, "must not be blank", tuple(positions[blank].tolist()), "position"
                )
            )
        typed[name] = values
    return pd.DataFrame(typed, index=index), problems


def patients_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`patients_columns` as a DataFrame."""
    return pd.DataFrame(patients_columns(records))


_ASKABLE = (*PREDICTOR_NAMES, *(flag.name for flag in ELIGIBILITY_FLAGS))


def model_input(patients: pd.DataFrame) -> pd.DataFrame:
    """The predictor columns in contract order, absent ones filled as unknown."""
    columns = {}
    for name in PREDICTOR_NAMES:
        spec = FIELD_BY_NAME[name]
        if name in patients.columns:
            columns[name] = patients[name]
        else:
            columns[name] = pd.Series(
                np.nan, index=patients.index, dtype=object if _is_text(spec) else float
            )
    return pd.DataFrame(columns, index=patients.index)


def _is_text(spec: PatientField) -> bool:
    return spec.kind in (Kind.CATEGORY, Kind.IDENTIFIER)


def _csv_problem(error: csv.Error, line: int) -> Problem:
    """The CSV module's complaint in words a data manager can act on, with its line."""
    message = str(error)
    if "field larger than field limit" in message:
        why = f"a cell is longer than {csv.field_size_limit():,} characters"
    elif "unexpected end of data" in message:
        why = 'a quote (") is opened and never closed'
    else:
        why = message
    return Problem("file", f"is not a valid CSV file: {why}", (line,))


def normalise_header(name: object) -> str:
    """Exports vary in case and spacing of headers: ``" Age "`` and ``KL-Grade`` still match."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lstrip("\ufeff")).lower()


def _detect_encoding(path: Path, source: str) -> tuple[str, str | None]:
    """UTF-16 (by its BOM), UTF-8 (with or without BOM), else Latin-1, checked on all bytes."""
    try:
        with path.open("rb") as stream:
            start = stream.read(4)
            stream.seek(0)
            if start.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" export
                if not _decodes(stream, "utf-16"):
                    raise CohortError(
                        source,
                        [Problem("file", "starts as UTF-16 text but is not valid UTF-16")],
                    )
                return "utf-16", None
            if b"\x00" in stream.read(1 << 16):
                raise CohortError(
                    source, [Problem("file", "is not a text CSV file (binary content)")]
                )
            stream.seek(0)
            if not _decodes(stream, "utf-8"):
                # Spreadsheets on Windows export Latin-1/CP-1252; our names are ASCII.
                return "latin-1", "file is not UTF-8; read as Latin-1"
    except OSError as error:
        raise CohortError(
            source, [Problem("file", f"cannot be read ({error.strerror})")]
        ) from None
    return "utf-8-sig", None


def _decodes(stream: Any, encoding: str) -> bool:
    """Whether the whole of a binary stream is valid text in ``encoding`` (read by blocks)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        for block in iter(lambda: stream.read(1 << 20), b""):
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def parse_column(
    raw: pd.Series, spec: PatientField, lines: np.ndarray
) -> tuple[pd.Series, list[Problem], np.ndarray]:
    """Parse one column by the field's rules; returns the typed values, problems, blank mask.

    ``raw`` is text as a cohort file holds it, or values of any dtype (a DataFrame's column):
    a missing value (None, NaN, pandas' NA) is blank, numbers in a numeric column are checked
    as numbers, and everything else is checked as the text a file would hold. Text is parsed
    once per distinct value (a column of 100,000 patients holds a handful of sexes and
    joints), then spread back to the rows.
    """
    problems: list[Problem] = []

    def flag(mask: np.ndarray, what: str) -> None:
        if mask.any():
            problems.append(
                Problem(spec.name, f"{what}: {spec.rule}", tuple(int(x) for x in lines[mask]))
            )

    numeric = pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw)
    if spec.is_numeric and numeric:
        numbers = raw.to_numpy(dtype=float, na_value=np.nan)
        blank = np.isnan(numbers)
        return _check_numbers(numbers, blank, spec, flag, raw.index), problems, blank
    if spec.kind is Kind.BOOLEAN and pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(values, index=raw.index), problems, np.isnan(values)

    # Each distinct value as the text a file would hold; code -1 (a missing value) is the
    # extra last entry, a blank.
    codes, distinct = pd.factorize(raw, use_na_sentinel=True)
    texts = [str(value).strip() for value in distinct] + [""]
    blank = np.array([text.lower() in BLANK_TOKENS for text in texts])[codes]

    if spec.kind is Kind.IDENTIFIER:
        if spec.max_length is not None:
            too_long = np.array([len(text) > spec.max_length for text in texts])[codes]
            flag(~blank & too_long, "too long")
        identifiers = np.array([*texts[:-1], np.nan], dtype=object)[codes]
        identifiers = np.where(blank, np.nan, identifiers)
        return pd.Series(identifiers, index=raw.index, dtype=object), problems, blank

    if spec.kind is Kind.CATEGORY:
        aliases = dict(spec.aliases)
        named = [re.sub(r"[\s\-]+", "_", text.lower()) for text in texts]
        named = [aliases.get(name, name) for name in named]
        allowed = np.array([name in spec.categories for name in named])[codes]
        flag(~blank & ~allowed, "not an allowed value")
        levels = np.array([*named[:-1], np.nan], dtype=object)[codes]
        levels = np.where(~blank & allowed, levels, np.nan)
        return pd.Series(levels, index=raw.index, dtype=object), problems, blank

    if spec.kind is Kind.BOOLEAN:
        lowered = [text.lower() for text in texts]
        truth = np.array(
            [1.0 if s in TRUE_VALUES else 0.0 if s in FALSE_VALUES else np.nan for s in lowered]
        )[codes]
        flag(~blank & np.isnan(truth), "not a yes/no value")
        return pd.Series(truth, index=raw.index), problems, blank

    # Exports from locales that write 29,5 for 29.5 (usually semicolon-separated).
    written = [text.replace(",", ".") if _DECIMAL_COMMA.match(text) else text for text in texts]
    parsed = pd.to_numeric(pd.Series(written, dtype=object), errors="coerce").to_numpy(float)
    numbers = np.where(blank, np.nan, parsed[codes])
    return _check_numbers(numbers, blank, spec, flag, raw.index), problems, blank


def _check_numbers(
    numbers: np.ndarray,
    blank: np.ndarray,
    spec: PatientField,
    flag: Callable[[np.ndarray, str], None],
    index: pd.Index,
) -> pd.Series:
    """A numeric field's rules on parsed numbers: finite, whole where it must be, in range."""
    finite = np.isfinite(numbers)
    flag(~blank & ~finite, "not a number")
    if spec.kind is Kind.INTEGER:
        flag(~blank & finite & (np.round(numbers) != numbers), "not a whole number")
    low = spec.minimum if spec.minimum is not None else -np.inf
    high = spec.maximum if spec.maximum is not None else np.inf
    outside = finite & ((numbers < low) | (numbers > high))
    flag(~blank & outside, "out of range")
    return pd.Series(np.where(finite & ~outside, numbers, np.nan), index=index)
