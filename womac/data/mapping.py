"""A clinic's export read into the cohort contract through a mapping file (TOML).

A mapping says which of the clinic's columns is which contract field, what its codes mean,
and how values the contract allows in another unit are converted. It works on the export's
text, before the contract's own rules: whatever the mapping produces is then checked exactly
as a contract CSV is, so a mapped file gets the same errors by field and line.

The file, with every table optional but ``[columns]``::

    [columns]                    # contract field = the export's header, as written
    patient_id = "record_id"
    age = "Age"
    sex = "Sex (1=M,2=F)"

    [codes.sex]                  # the export's code = the contract's value
    1 = "male"
    2 = "female"

    [scales]                     # a WOMAC subscale on the 0-100 normalized scale
    womac_pain_0 = "0-100"       # 100 = worst (points = value / 100 x subscale maximum)
    womac_pain_12 = "0-100 best" # 100 = no problems, as KOOS is scaled

    [bmi]                        # BMI from height and weight, when the export has no BMI
    height = "Height"
    height_unit = "cm"           # cm, m or in
    weight = "Weight"
    weight_unit = "kg"           # kg or lb

    [checkboxes]                 # a flag from a checkbox column (REDCap: 1 ticked, 0 not)
    avascular_necrosis = "exclusion___1"

    [koos]                       # WOMAC subscales from KOOS items ({item} is P5, S6, A1, ...)
    baseline = "koos_{item}_0"
    follow_up = "koos_{item}_12"

    [redcap]                     # a REDCap export in long form: one row per record and event
    event = "redcap_event_name"
    baseline = "baseline_arm_1"
    follow_up = "month_12_arm_1"

Values from the export are never echoed, with one exception a user needs: an unknown code
is named when it is short and plainly a code (at most four letters or digits, such as
``3`` or ``III``); anything longer is "a value".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from womac.data.contract import (
    BASELINE_SUBSCALES,
    FIELD_BY_NAME,
    FOLLOW_UP_SUBSCALES,
    Kind,
    PatientField,
)
from womac.data.koos import KOOS_ITEM_MAX, KOOS_ITEMS, womac_from_koos
from womac.data.problems import Problem
from womac.data.values import follows_contract

WOMAC_SUBSCALES = (*BASELINE_SUBSCALES, *FOLLOW_UP_SUBSCALES)
_SHOWN_CODE = re.compile(r"^[A-Za-z0-9]{1,4}$")


class Scale(StrEnum):
    """How a WOMAC subscale may be written instead of Likert points."""

    WORST_100 = "0-100"  # normalized, 100 = extreme problems
    BEST_100 = "0-100 best"  # normalized and inverted, 100 = no problems


KOOS_TOO_FEW = (
    "fewer than half of its KOOS items answered, so it is not scored (KOOS Scoring 2012)"
)
"""Not a broken rule: the row is left out, as one with a blank required value is."""

HEIGHT_TO_M = {"cm": 0.01, "m": 1.0, "in": 0.0254}
WEIGHT_TO_KG = {"kg": 1.0, "lb": 0.45359237}


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file, the key and why."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BmiFrom(_Table):
    """BMI computed from a height and a weight column."""

    height: str
    height_unit: Literal["cm", "m", "in"] = "cm"
    weight: str
    weight_unit: Literal["kg", "lb"] = "kg"


class KoosItems(_Table):
    """Where a KOOS export keeps its items: a column-name pattern per time point."""

    baseline: str | None = None
    follow_up: str | None = None

    @field_validator("baseline", "follow_up")
    @classmethod
    def _has_item(cls, pattern: str | None) -> str | None:
        if pattern is not None and "{item}" not in pattern:
            raise ValueError("must contain {item}, where the KOOS item code (P5, A1, ...) goes")
        return pattern


class RedcapEvents(_Table):
    """A REDCap export in long form: which event rows hold baseline and 12-month data."""

    event: str = "redcap_event_name"
    baseline: str
    follow_up: str


Code = Annotated[str | int | float | bool, Field()]


class ColumnMapping(_Table):
    """A clinic's mapping file, checked against the contract when it is read."""

    columns: dict[str, str] = Field(default_factory=dict)
    codes: dict[str, dict[str, Code]] = Field(default_factory=dict)
    scales: dict[str, Scale] = Field(default_factory=dict)
    bmi: BmiFrom | None = None
    checkboxes: dict[str, str] = Field(default_factory=dict)
    koos: KoosItems | None = None
    redcap: RedcapEvents | None = None

    @field_validator("columns", "codes", "checkboxes")
    @classmethod
    def _contract_fields(cls, table: dict[str, object]) -> dict[str, object]:
        unknown = [name for name in table if name not in FIELD_BY_NAME]
        if unknown:
            raise ValueError(f"not fields of the cohort contract: {', '.join(unknown)}")
        return table

    @field_validator("scales")
    @classmethod
    def _womac_fields(cls, table: dict[str, Scale]) -> dict[str, Scale]:
        other = [name for name in table if name not in WOMAC_SUBSCALES]
        if other:
            raise ValueError(f"only WOMAC subscales have another scale: {', '.join(other)}")
        return table

    @classmethod
    def read(cls, path: str | Path) -> ColumnMapping:
        """Read and check a mapping file.

        Raises
        ------
        MappingError
            When the file is not TOML, or breaks a rule of the mapping (each problem named
            by its table and key).
        """
        path = Path(path)
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MappingError(f"{path}: no such mapping file") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise MappingError(f"{path} is not a TOML mapping file: {error}") from None
        try:
            mapping = cls.model_validate(table)
        except ValidationError as error:
            listing = "\n".join(
                f"  - [{'.'.join(map(str, problem['loc']))}]: {problem['msg']}"
                for problem in error.errors(include_url=False, include_input=False)
            )
            raise MappingError(f"{path} is not a usable mapping:\n{listing}") from None
        mapping.check_consistent(path.name)
        return mapping

    def check_consistent(self, source: str) -> None:
        """Refuse a mapping that gives one field two sources, or codes a field it never reads."""
        problems = []
        derived = {f: "[checkboxes]" for f in self.checkboxes}
        if self.bmi is not None:
            derived["bmi"] = "[bmi]"
        if self.koos is not None:
            subscales = BASELINE_SUBSCALES if self.koos.baseline else ()
            subscales += FOLLOW_UP_SUBSCALES if self.koos.follow_up else ()
            derived |= dict.fromkeys(subscales, "[koos]")
        for name, table in derived.items():
            if name in self.columns:
                problems.append(f"{name} is read from [columns] and from {table}; keep one")
        for name in self.codes:
            if name not in self.columns:
                problems.append(f"[codes.{name}] is given, but [columns] does not name {name}")
            elif FIELD_BY_NAME[name].kind in (Kind.NUMBER, Kind.IDENTIFIER):
                problems.append(f"[codes.{name}]: {name} is measured, not coded")
        for name in self.scales:
            if name not in self.columns:
                problems.append(f"[scales] {name} is given, but [columns] does not name it")
        if problems:
            listing = "\n".join(f"  - {problem}" for problem in problems)
            raise MappingError(f"{source} is not a usable mapping:\n{listing}")

    def koos_columns(self) -> dict[str, dict[str, str]]:
        """The KOOS item columns per time point (``baseline``/``follow_up``: item -> header)."""
        if self.koos is None:
            return {}
        patterns = {"baseline": self.koos.baseline, "follow_up": self.koos.follow_up}
        return {
            when: {item: pattern.replace("{item}", item) for item in KOOS_ITEMS}
            for when, pattern in patterns.items()
            if pattern is not None
        }

    def headers(self) -> list[tuple[str, str]]:
        """Every header the mapping reads, with the table and key that names it."""
        named = [(header, f"[columns] {field}") for field, header in self.columns.items()]
        named += [(header, f"[checkboxes] {flag}") for flag, header in self.checkboxes.items()]
        if self.bmi is not None:
            named += [(self.bmi.height, "[bmi] height"), (self.bmi.weight, "[bmi] weight")]
        if self.redcap is not None:
            named.append((self.redcap.event, "[redcap] event"))
        return named

    def missing_headers(self, header: Iterable[str]) -> list[Problem]:
        """A problem for each column the mapping names that the export does not have, or
        has twice (which one would it be?).

        KOOS items may be absent (never asked counts as unanswered); the KOOS scoring rule
        then decides whether a subscale can be scored.
        """
        folded = [_fold(name) for name in header]
        problems = []
        for name, where in self.headers():
            count = folded.count(_fold(name))
            if count != 1:
                why = "which the file does not have" if not count else "which the file has twice"
                problems.append(Problem("mapping", f"{where} names column {name!r}, {why}"))
        return problems

    def fields(self) -> list[str]:
        """The contract fields this mapping gives, in the contract's order."""
        given = set(self.columns) | set(self.checkboxes)
        if self.bmi is not None:
            given.add("bmi")
        for when in self.koos_columns():
            given |= set(BASELINE_SUBSCALES if when == "baseline" else FOLLOW_UP_SUBSCALES)
        return [name for name in FIELD_BY_NAME if name in given]

    def reads(self, header: list[str]) -> list[str]:
        """For each header cell, a contract field it is read for ("" when it is not read)."""
        read: dict[str, str] = {}
        for name, where in self.headers():
            read.setdefault(_fold(name), where.split()[-1])
        for when, columns in self.koos_columns().items():
            subscale = BASELINE_SUBSCALES[0] if when == "baseline" else FOLLOW_UP_SUBSCALES[0]
            for column in columns.values():
                read.setdefault(_fold(column), subscale)
        return [read.get(_fold(cell), "") for cell in header]

    def position(self, name: str, header: list[str]) -> int:
        """Where in ``header`` the one column holding ``name`` is, or -1 when the field is
        derived from several (BMI from height and weight, WOMAC from KOOS items)."""
        source = self.columns.get(name) or self.checkboxes.get(name)
        folded = [_fold(cell) for cell in header]
        return folded.index(_fold(source)) if source and _fold(source) in folded else -1

    def apply(self, export: pd.DataFrame, lines: np.ndarray) -> Mapped:
        """The export's rows in the contract's names and units, still as text.

        ``export`` holds the file's cells as text (blank as NaN or ""), its columns the
        headers as written; ``lines`` the file line (or row) of each row, for problems. A
        REDCap export in long form becomes one row per record: baseline fields from its
        baseline event row, 12-month fields from its follow-up event row.
        """
        export = export.rename(columns=lambda c: _fold(str(c)))
        if self.redcap is None:
            return self._map(export, lines, lambda name: True)
        return self._widen(export, lines)

    def _map(
        self, export: pd.DataFrame, lines: np.ndarray, wanted: Callable[[str], bool]
    ) -> Mapped:
        out = pd.DataFrame(index=export.index)
        problems: list[Problem] = []
        for name, header in self.columns.items():
            if not wanted(name):
                continue
            values = export[_fold(header)]
            if name in self.codes:
                values, unknown = _recode(values, self.codes[name], FIELD_BY_NAME[name])
                problems += _problems(
                    name, unknown, lines, _unknown_rule(name, export[_fold(header)], unknown)
                )
            if name in self.scales:
                values = _rescale(values, self.scales[name], FIELD_BY_NAME[name].maximum)
            out[name] = values
        for flag, header in self.checkboxes.items():
            if wanted(flag):
                out[flag] = export[_fold(header)]
        if self.bmi is not None and wanted("bmi"):
            out["bmi"] = _bmi(export, self.bmi)
        for when, columns in self.koos_columns().items():
            subscales = BASELINE_SUBSCALES if when == "baseline" else FOLLOW_UP_SUBSCALES
            if wanted(subscales[0]):
                koos, koos_problems = _koos(export, columns, subscales, lines)
                out[list(koos.columns)] = koos
                problems += koos_problems
        return Mapped(_text(out), np.asarray(lines), problems)

    def _widen(self, export: pd.DataFrame, lines: np.ndarray) -> Mapped:
        assert self.redcap is not None
        if "patient_id" not in self.columns:
            raise MappingError("[redcap] needs the record id: name it as [columns] patient_id")
        event = export[_fold(self.redcap.event)].astype("string").str.strip()
        at_baseline = (event == self.redcap.baseline).fillna(False).to_numpy(dtype=bool)
        at_follow_up = (event == self.redcap.follow_up).fillna(False).to_numpy(dtype=bool)
        later_field = set(FOLLOW_UP_SUBSCALES).__contains__
        base = self._map(export[at_baseline], lines[at_baseline], lambda f: not later_field(f))
        later = self._map(
            export[at_follow_up],
            lines[at_follow_up],
            lambda f: later_field(f) or f == "patient_id",
        )
        record = base.frame["patient_id"].astype("string").str.strip()
        twice = record.duplicated(keep=False) & record.notna()
        problems = base.problems + later.problems
        problems += _problems(
            "patient_id",
            twice,
            base.lines,
            f"record has more than one {self.redcap.baseline!r} row",
        )
        later_record = later.frame["patient_id"].astype("string").str.strip()
        orphan = ~later_record.isin(set(record.dropna()))
        problems += _problems(
            "patient_id",
            orphan,
            later.lines,
            f"record has a {self.redcap.follow_up!r} row but no {self.redcap.baseline!r} row",
        )
        outcomes = later.frame.assign(
            patient_id=later.frame["patient_id"].astype("string").str.strip()
        ).drop_duplicates("patient_id")
        wide = base.frame.copy()
        outcome_columns = [c for c in outcomes.columns if c != "patient_id"]
        if outcome_columns:
            joined = outcomes.set_index("patient_id")[outcome_columns].reindex(record)
            wide[outcome_columns] = joined.to_numpy()
        return Mapped(_text(wide), base.lines, problems)


@dataclass(frozen=True, slots=True)
class Mapped:
    """An export after its mapping: contract columns as text, the lines they came from, and
    the problems only the mapping could see (unknown codes, too few KOOS items)."""

    frame: pd.DataFrame
    lines: np.ndarray
    problems: list[Problem]


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text, a blank one as "" (as a CSV reader hands it to the contract)."""
    return frame.reset_index(drop=True).astype(object).where(frame.notna().to_numpy(), "")


def _fold(header: str) -> str:
    """Headers match whatever their case and surrounding spaces."""
    return header.strip().casefold()


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype("string").str.strip().fillna("") == "")


def _recode(
    values: pd.Series, codes: dict[str, Code], spec: PatientField
) -> tuple[pd.Series, pd.Series]:
    """Codes replaced by contract values (compared as trimmed, case-folded text, a whole
    number also without its ".0"); a value not among the codes that already follows the
    contract (a plain "male" beside codes 1 and 2) is kept as it is."""
    table = {_fold(str(code)): _as_text(value) for code, value in codes.items()}
    text = values.astype("string").str.strip()
    folded = text.str.casefold()
    recoded = folded.map(table).fillna(folded.map(_whole_number).map(table))
    blank = _blank(values)
    unknown = recoded.isna() & ~blank
    if unknown.any():
        distinct = sorted(set(text[unknown]))
        kept = {t for t, ok in zip(distinct, follows_contract(spec, distinct), strict=True) if ok}
        keep = unknown & text.isin(kept)
        recoded = recoded.where(~keep, text)
        unknown &= ~keep
    return recoded.where(~blank, None).astype(object), unknown


def _whole_number(text: object) -> object:
    """ "3.0" as "3" (a spreadsheet's number for a code), anything else unchanged."""
    if isinstance(text, str) and text.endswith(".0") and text[:-2].lstrip("-").isdigit():
        return text[:-2]
    return text


def _as_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unknown_rule(name: str, values: pd.Series, unknown: pd.Series) -> str:
    """Which codes the mapping lacks: named when plainly codes, otherwise only counted."""
    found = sorted(set(values[unknown].astype("string").str.strip()))
    shown = [code for code in found if _SHOWN_CODE.match(code)]
    rest = len(found) - len(shown)
    named = ", ".join(repr(code) for code in shown[:10])
    if rest or len(shown) > 10:
        others = rest + max(0, len(shown) - 10)
        named = f"{named} and {others} other value(s)" if named else f"{others} value(s)"
    return f"code {named} not in the mapping's [codes.{name}]"


def _problems(name: str, where: pd.Series, lines: np.ndarray, rule: str) -> list[Problem]:
    if not where.any():
        return []
    return [Problem(name, rule, tuple(int(line) for line in lines[where.to_numpy()]))]


def _rescale(values: pd.Series, scale: Scale, maximum: float | None) -> pd.Series:
    """0-100 normalized values in Likert points of the subscale (other text left as is)."""
    assert maximum is not None
    numbers = pd.to_numeric(values, errors="coerce")
    points = (
        numbers / 100 * maximum if scale is Scale.WORST_100 else (100 - numbers) / 100 * maximum
    )
    return values.where(numbers.isna(), points.map(lambda p: f"{p:.10g}")).astype(object)


def _bmi(export: pd.DataFrame, source: BmiFrom) -> pd.Series:
    height = pd.to_numeric(export[_fold(source.height)], errors="coerce")
    weight = pd.to_numeric(export[_fold(source.weight)], errors="coerce")
    metres = height * HEIGHT_TO_M[source.height_unit]
    bmi = weight * WEIGHT_TO_KG[source.weight_unit] / metres**2
    # A height or weight that is not a number gives no BMI: the contract reports it blank.
    return bmi.where(np.isfinite(bmi)).map(lambda v: "" if pd.isna(v) else f"{v:.4g}")


def _koos(
    export: pd.DataFrame, columns: dict[str, str], subscales: tuple[str, ...], lines: np.ndarray
) -> tuple[pd.DataFrame, list[Problem]]:
    """The three WOMAC subscales of one time point from its KOOS items."""
    items = pd.DataFrame(index=export.index)
    problems: list[Problem] = []
    for item, header in columns.items():
        if _fold(header) not in export.columns:
            continue  # an item never asked counts as unanswered
        raw = export[_fold(header)]
        numbers = pd.to_numeric(raw, errors="coerce")
        scored = numbers.isin(range(KOOS_ITEM_MAX + 1))
        wrong = ~scored & ~_blank(raw)
        problems += _problems(
            f"KOOS {item} ({header})", wrong, lines, f"must be a KOOS score 0-{KOOS_ITEM_MAX}"
        )
        items[item] = numbers.where(scored)
    derived = womac_from_koos(items)
    out = pd.DataFrame(index=export.index)
    for name, subscale in zip(subscales, ("pain", "stiffness", "function"), strict=True):
        scores = derived.scores[subscale]
        out[name] = scores.map(lambda v: "" if pd.isna(v) else f"{v:.10g}")
        problems += _problems(
            name,
            derived.too_few[subscale],
            lines,
            KOOS_TOO_FEW,
        )
    return out, problems
