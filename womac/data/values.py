"""The contract's rules for one column of an input: its header's name and its values.

Whatever holds the column (a CSV export's text, a DataFrame's typed values, a Parquet
file), it is read here by its field's kind: numbers, whole numbers, categories, yes/no
values and identifiers. A value breaking its field's rule becomes unknown and is reported as
a :class:`~womac.data.problems.Problem` at its place, never by value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from womac.data.contract import FALSE_VALUES, TRUE_VALUES, Kind, PatientField
from womac.data.problems import Problem

# Tokens that spreadsheet, R, SQL and Stata exports write for an empty cell.
BLANK_TOKENS = frozenset({"", "na", "n/a", "#n/a", "nan", "null", "none", "."})
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def normalise_header(name: object) -> str:
    """Exports vary in case and spacing of headers: ``" Age "`` and ``KL-Grade`` still match."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lstrip("\ufeff")).lower()


def unknown_column(spec: PatientField, index: pd.Index) -> pd.Series:
    """A field the input does not have: all unknown, typed as :func:`parse_column` types it."""
    return pd.Series(np.nan, index=index, dtype=object if spec.is_text else float)


def parse_column(
    raw: pd.Series, spec: PatientField, lines: np.ndarray
) -> tuple[pd.Series, list[Problem], np.ndarray]:
    """Parse one column by the field's rules; returns the typed values, problems, blank mask.

    ``raw`` is text as a cohort file holds it, or values of any dtype (a DataFrame's column):
    a missing value (None, NaN, pandas' NA) is blank, numbers in a numeric column are checked
    as numbers, and everything else is checked as the text a file would hold. Text is parsed
    once per distinct value (a column of 100,000 patients holds a handful of sexes and
    joints), then spread back to the rows. ``lines`` gives each row's place for problems.
    """
    found = _ColumnProblems(spec, lines)
    numeric = pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw)
    if spec.is_numeric and numeric:
        numbers = raw.to_numpy(dtype=float, na_value=np.nan)
        blank = np.isnan(numbers)
        return _check_numbers(numbers, blank, found, raw.index), found.problems, blank
    if spec.kind is Kind.BOOLEAN and pd.api.types.is_bool_dtype(raw):
        truth = raw.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(truth, index=raw.index), found.problems, np.isnan(truth)
    texts = _DistinctTexts.of(raw)
    values = _TEXT_PARSERS[spec.kind](texts, found, raw.index)
    return values, found.problems, texts.blank


def follows_contract(spec: PatientField, texts: list[str]) -> list[bool]:
    """Whether each text is a known value the field's rules accept as it stands (used to
    tell a clinic's codes from values already in the contract's terms)."""
    raw = pd.Series(texts, dtype=object)
    _, problems, blank = parse_column(raw, spec, np.arange(len(texts)))
    broken = {place for problem in problems for place in problem.lines}
    return [not blank[i] and i not in broken for i in range(len(texts))]


@dataclass(slots=True)
class _ColumnProblems:
    """The problems found in one column, each at the places of the rows breaking the rule."""

    spec: PatientField
    lines: np.ndarray
    problems: list[Problem] = field(default_factory=list)

    def flag(self, mask: np.ndarray, what: str) -> None:
        """Report the rows of ``mask`` (if any) as breaking the field's rule in way ``what``."""
        if mask.any():
            self.problems.append(
                Problem(
                    self.spec.name,
                    f"{what}: {self.spec.rule}",
                    tuple(int(x) for x in self.lines[mask]),
                )
            )


@dataclass(frozen=True, slots=True)
class _DistinctTexts:
    """A column's distinct values as the text a file would hold, and which one each row has.

    ``texts`` ends with an extra blank entry: the code of a missing value is -1, so indexing
    a per-text array with ``codes`` gives missing rows that last entry.
    """

    codes: np.ndarray
    texts: list[str]
    blank: np.ndarray

    @classmethod
    def of(cls, raw: pd.Series) -> _DistinctTexts:
        codes, distinct = pd.factorize(raw, use_na_sentinel=True)
        texts = [str(value).strip() for value in distinct] + [""]
        blank = np.array([text.lower() in BLANK_TOKENS for text in texts])[codes]
        return cls(codes=codes, texts=texts, blank=blank)


def _parse_identifiers(
    column: _DistinctTexts, found: _ColumnProblems, index: pd.Index
) -> pd.Series:
    """Identifiers as written (stripped), checked for length only."""
    spec, codes, texts, blank = found.spec, column.codes, column.texts, column.blank
    if spec.max_length is not None:
        too_long = np.array([len(text) > spec.max_length for text in texts])[codes]
        found.flag(~blank & too_long, "too long")
    identifiers = np.array([*texts[:-1], np.nan], dtype=object)[codes]
    identifiers = np.where(blank, np.nan, identifiers)
    return pd.Series(identifiers, index=index, dtype=object)


def _parse_categories(
    column: _DistinctTexts, found: _ColumnProblems, index: pd.Index
) -> pd.Series:
    """Categories in any case and spacing, or by one of their aliases, as contract levels."""
    spec, codes, blank = found.spec, column.codes, column.blank
    aliases = dict(spec.aliases)
    named = [re.sub(r"[\s\-]+", "_", text.lower()) for text in column.texts]
    named = [aliases.get(name, name) for name in named]
    allowed = np.array([name in spec.categories for name in named])[codes]
    found.flag(~blank & ~allowed, "not an allowed value")
    levels = np.array([*named[:-1], np.nan], dtype=object)[codes]
    levels = np.where(~blank & allowed, levels, np.nan)
    return pd.Series(levels, index=index, dtype=object)


def _parse_booleans(column: _DistinctTexts, found: _ColumnProblems, index: pd.Index) -> pd.Series:
    """Yes/no values in the words exports use, as 1.0/0.0."""
    lowered = [text.lower() for text in column.texts]
    truth = np.array(
        [1.0 if s in TRUE_VALUES else 0.0 if s in FALSE_VALUES else np.nan for s in lowered]
    )[column.codes]
    found.flag(~column.blank & np.isnan(truth), "not a yes/no value")
    return pd.Series(truth, index=index)


def _parse_numbers(column: _DistinctTexts, found: _ColumnProblems, index: pd.Index) -> pd.Series:
    """Numbers written as text, with a decimal point or a decimal comma."""
    # Exports from locales that write 29,5 for 29.5 (usually semicolon-separated).
    written = [
        text.replace(",", ".") if _DECIMAL_COMMA.match(text) else text for text in column.texts
    ]
    parsed = pd.to_numeric(pd.Series(written, dtype=object), errors="coerce").to_numpy(float)
    numbers = np.where(column.blank, np.nan, parsed[column.codes])
    return _check_numbers(numbers, column.blank, found, index)


def _check_numbers(
    numbers: np.ndarray, blank: np.ndarray, found: _ColumnProblems, index: pd.Index
) -> pd.Series:
    """A numeric field's rules on parsed numbers: finite, whole where it must be, in range."""
    spec = found.spec
    finite = np.isfinite(numbers)
    found.flag(~blank & ~finite, "not a number")
    if spec.kind is Kind.INTEGER:
        found.flag(~blank & finite & (np.round(numbers) != numbers), "not a whole number")
    low = spec.minimum if spec.minimum is not None else -np.inf
    high = spec.maximum if spec.maximum is not None else np.inf
    outside = finite & ((numbers < low) | (numbers > high))
    found.flag(~blank & outside, "out of range")
    return pd.Series(np.where(finite & ~outside, numbers, np.nan), index=index)


# Values held as text, by kind; a new kind of field needs its parser here.
_TEXT_PARSERS: dict[Kind, Callable[[_DistinctTexts, _ColumnProblems, pd.Index], pd.Series]] = {
    Kind.IDENTIFIER: _parse_identifiers,
    Kind.NUMBER: _parse_numbers,
    Kind.INTEGER: _parse_numbers,
    Kind.CATEGORY: _parse_categories,
    Kind.BOOLEAN: _parse_booleans,
}
