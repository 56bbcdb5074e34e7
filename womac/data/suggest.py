"""A starting mapping file written from an export's headers and values.

``womac validate FILE --suggest-mapping OUT`` writes it; a person then checks it and fills in
what it marks. Headers are placed by the contract's own names and labels (whatever their case,
punctuation and a trailing unit or code legend in brackets, so "BMI (kg/m2)" is ``bmi``), by
the header aliases the contract lists, and by REDCap's conventions (``record_id``,
``redcap_event_name``, checkbox columns ``name___code``). Codes come from a legend in the
header ("Sex (1=M,2=F)") when there is one; values that already follow the contract need
none. Whatever could not be placed is listed at the top, never guessed.

The file holds headers and codes from the export, never a patient's values beyond the
distinct codes of a coded column (which a mapping has to name anyway).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from womac.data.contract import (
    FALSE_VALUES,
    FIELD_BY_NAME,
    FIELDS,
    TRUE_VALUES,
    Kind,
    PatientField,
    Role,
)
from womac.data.exports import open_export
from womac.data.mapping import ColumnMapping, MappingError
from womac.data.problems import ProblemLog
from womac.data.redcap import DataDictionary, Variable
from womac.data.values import follows_contract

MAX_CODES = 20  # a column with more distinct values than this is not coded
_BRACKETED = re.compile(r"[\(\[\{][^\)\]\}]*[\)\]\}]")
_LEGEND = re.compile(r"(\w+)\s*=\s*([^,;=()\[\]]+?)\s*(?=[,;)\]]|$)")
_CHECKBOX = re.compile(r"^(?P<group>.+?)___(?P<code>\w+)$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_FOLLOW_UP_WORDS = ("12", "12m", "m12", "month_12", "12_months", "followup", "follow_up", "fu")
_BASELINE_WORDS = ("0", "bl", "baseline", "pre", "base")
_REDCAP_EVENT = "redcap_event_name"


def header_key(header: str) -> str:
    """A header as matching compares it: case-folded, bracketed text dropped, words joined
    by ``_`` ("BMI (kg/m2)" -> "bmi", "Sex (1=M,2=F)" -> "sex")."""
    text = _BRACKETED.sub(" ", header).casefold()
    return "_".join(re.findall(r"[a-z0-9]+", text))


def _names(spec: PatientField) -> set[str]:
    return {spec.name, header_key(spec.label), *(header_key(a) for a in spec.header_aliases)}


@dataclass
class Suggestion:
    """A starting mapping: what was placed, how, and what was not."""

    columns: dict[str, str] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    checkboxes: dict[str, str] = field(default_factory=dict)
    redcap_events: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    unknown_codes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def missing_required(self) -> list[str]:
        """Required contract fields nothing in the export was placed as."""
        placed = set(self.columns) | set(self.checkboxes)
        return [f.name for f in FIELDS if f.required and f.name not in placed]

    def toml(self, source: str) -> str:
        """The mapping file's text, with what a person must check marked ``# CHECK``."""
        lines = [f"# Mapping of {source} to the womac cohort contract, suggested by womac."]
        lines.append("# Check every line; fill in what is marked CHECK. See README.")
        if self.unplaced:
            shown = ", ".join(json.dumps(h, ensure_ascii=False) for h in self.unplaced)
            lines.append(f"# Not placed (ignored unless you add them): {shown}")
        if self.missing_required:
            lines.append(f"# CHECK: required, not found: {', '.join(self.missing_required)}")
        lines += ["", "[columns]"]
        lines += [f"{name} = {_string(header)}" for name, header in self.columns.items()]
        for name, codes in self.codes.items():
            lines += ["", f"[codes.{name}]"]
            lines += [f"{_key(code)} = {_string(value)}" for code, value in codes.items()]
            for code in self.unknown_codes.get(name, []):
                allowed = ", ".join(_allowed(FIELD_BY_NAME[name]))
                lines.append(f'{_key(code)} = ""  # CHECK: which of {allowed}?')
        if self.checkboxes:
            lines += ["", "[checkboxes]"]
            lines += [f"{flag} = {_string(header)}" for flag, header in self.checkboxes.items()]
        if self.redcap_events:
            events = ", ".join(self.redcap_events)
            lines += ["", "[redcap]", f"# events in the file: {events}"]
            first, last = events_of(self) or (self.redcap_events[0], self.redcap_events[-1])
            lines += [
                f"baseline = {_string(first)}  # CHECK",
                f"follow_up = {_string(last)}  # CHECK",
            ]
        return "\n".join(lines) + "\n"


_BASELINE_EVENT = re.compile(r"baseline|screening|pre|(^|_)(bl|m0|month_?0|visit_?1)(_|$)")
_FOLLOW_UP_EVENT = re.compile(r"12|1_?y|one_year|year_?1|follow")


def events_of(suggestion: Suggestion) -> tuple[str, str] | None:
    """The baseline and 12-month events, when their names say so plainly (one each)."""
    keys = {event: header_key(event) for event in suggestion.redcap_events}
    baseline = [e for e, k in keys.items() if _BASELINE_EVENT.search(k)]
    later = [e for e, k in keys.items() if _FOLLOW_UP_EVENT.search(k) and e not in baseline]
    return (baseline[0], later[0]) if len(baseline) == 1 and len(later) == 1 else None


def mapping_from_dictionary(path: Path, sheet: str | None, dictionary_file: Path) -> ColumnMapping:
    """The mapping a REDCap export's data dictionary gives, when it places everything.

    Raises
    ------
    MappingError
        When a required field, a code or the events cannot be placed from the dictionary:
        then a mapping file is needed (``womac validate FILE --suggest-mapping``).
    CohortError
        When the export or the dictionary cannot be read.
    """
    suggestion = suggest_for_export(path, sheet, DataDictionary.read(dictionary_file))
    gaps = [f"required field not found: {name}" for name in suggestion.missing_required]
    gaps += [f"codes of {name} not in the dictionary" for name in suggestion.unknown_codes]
    events = events_of(suggestion) if suggestion.redcap_events else None
    if suggestion.redcap_events and events is None:
        gaps.append("which event is the baseline and which the 12-month one is unclear")
    if gaps:
        listing = "; ".join(gaps)
        raise MappingError(
            f"{dictionary_file.name} does not place {path.name} in the contract ({listing}); "
            f"write a mapping: womac validate {path.name} --suggest-mapping mapping.toml"
        )
    table = {"columns": suggestion.columns, "codes": suggestion.codes}
    table["checkboxes"] = suggestion.checkboxes
    if events is not None:
        table["redcap"] = {"baseline": events[0], "follow_up": events[1]}
    return ColumnMapping.model_validate(table)


SAMPLED_ROWS = 100_000  # codes are read from the first rows of a larger export


def suggest_for_export(
    path: Path, sheet: str | None = None, dictionary: DataDictionary | None = None
) -> Suggestion:
    """A starting mapping for the export at ``path`` (any format :func:`open_export` reads),
    with a REDCap project's data dictionary when there is one.

    Raises
    ------
    CohortError
        When the file cannot be read as a table.
    """
    export = open_export(path, sheet)
    chunk = next(export.chunks(SAMPLED_ROWS, ProblemLog()), None)
    table = pd.DataFrame(columns=range(len(export.header))) if chunk is None else chunk[0]
    table = table.set_axis(export.header[: table.shape[1]], axis=1)
    return suggest_mapping(table, dictionary)


def suggest_mapping(export: pd.DataFrame, dictionary: DataDictionary | None = None) -> Suggestion:
    """A starting mapping for ``export`` (its cells as text, its headers as written); a REDCap
    data dictionary adds its variables' labels and choices to what the headers say."""
    suggestion = Suggestion()
    for position, header in enumerate(map(str, export.columns)):
        values = export.iloc[:, position]
        variable = dictionary.variable_of(header) if dictionary is not None else None
        if header_key(header) == _REDCAP_EVENT:
            suggestion.redcap_events = _distinct(values)[:MAX_CODES]
            continue
        name = _place(header, set(suggestion.columns), variable)
        if name is None:
            if not _place_checkbox(header, suggestion, variable):
                suggestion.unplaced.append(header)
            continue
        suggestion.columns[name] = header
        legend = variable.choices if variable is not None and variable.choices else None
        _suggest_codes(name, header, values, suggestion, legend)
    if suggestion.redcap_events:
        _read_both_times(suggestion)
    return suggestion


def _place(header: str, taken: set[str], variable: Variable | None) -> str | None:
    """The contract field a header (or its REDCap variable's label) names, if any."""
    keys = [header_key(header)]
    if variable is not None and variable.kind != "checkbox" and variable.label:
        keys.append(header_key(variable.label))
    for key in keys:
        for spec in FIELDS:
            if spec.name not in taken and key in _names(spec):
                return spec.name
    return next((name for key in keys if (name := _place_womac(key, taken))), None)


def _place_womac(key: str, taken: set[str]) -> str | None:
    """``womac_pain``, ``WOMAC pain (baseline)``, ``pain_12m``: a subscale and a time."""
    words = key.split("_")
    subscale = next((w for w in ("pain", "stiffness", "function") if w in words), None)
    if subscale is None:
        return None
    rest = "_".join(w for w in words if w not in ("womac", subscale))
    later = any(
        rest == w or rest.endswith(f"_{w}") or rest.startswith(w) for w in _FOLLOW_UP_WORDS
    )
    month = 12 if later and rest not in _BASELINE_WORDS else 0
    name = f"womac_{subscale}_{month}"
    return name if name not in taken else None


def _place_checkbox(header: str, suggestion: Suggestion, variable: Variable | None) -> bool:
    """A REDCap checkbox column (``group___code``) whose group, or whose choice's label in
    the data dictionary, is a flag's name or label."""
    checkbox = _CHECKBOX.match(header.strip().casefold())
    if checkbox is None:
        return False
    keys = [header_key(checkbox["group"])]
    if variable is not None:
        code = header.strip().rsplit("___", 1)[-1]
        label = next(
            (v for k, v in variable.choices.items() if k.casefold() == code.casefold()), ""
        )
        keys.insert(0, header_key(label))
    for spec in FIELDS:
        placed = spec.name in suggestion.checkboxes or spec.name in suggestion.columns
        if spec.kind is Kind.BOOLEAN and not placed and any(k in _names(spec) for k in keys):
            suggestion.checkboxes[spec.name] = header
            return True
    return False


def _suggest_codes(
    name: str,
    header: str,
    values: pd.Series,
    suggestion: Suggestion,
    choices: dict[str, str] | None = None,
) -> None:
    """The codes a coded column needs, from the dictionary's choices or the header's legend;
    a column whose values already follow the contract needs none."""
    spec = FIELD_BY_NAME[name]
    if (
        spec.kind not in (Kind.CATEGORY, Kind.BOOLEAN, Kind.INTEGER)
        or spec.role is Role.IDENTIFIER
    ):
        return
    found = _distinct(values)
    accepted = dict(zip(found, follows_contract(spec, found), strict=True))
    if (choices is None and all(accepted.values())) or len(found) > MAX_CODES:
        return
    pairs = choices.items() if choices is not None else _LEGEND.findall(header)
    legend = {code.casefold(): label for code, label in pairs}
    codes: dict[str, str] = {}
    unknown = []
    for value in found:
        if value.casefold() not in legend and accepted[value]:
            continue
        target = _label_value(spec, legend.get(value.casefold(), value))
        if target is None:
            unknown.append(value)
        else:
            codes[value] = target
    suggestion.codes[name] = codes
    if unknown:
        suggestion.unknown_codes[name] = unknown


def _label_value(spec: PatientField, label: str) -> str | None:
    """The contract value a legend's label (or a code itself) plainly means, if any."""
    text = header_key(label)
    if spec.kind is Kind.CATEGORY:
        for category in spec.categories:
            if category == text or (len(text) >= 1 and category.startswith(text)):
                return category
        return dict(spec.aliases).get(text)
    if spec.kind is Kind.BOOLEAN:
        if text in TRUE_VALUES or text in ("y", "ticked", "checked"):
            return "true"
        if text in FALSE_VALUES or text in ("n", "unticked", "unchecked"):
            return "false"
        return None
    roman = {"0": 0, "i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5}
    leading = re.match(r"^(\d+)(?:_|$)", text)  # a dictionary's "3, 3 - moderate"
    number = int(leading[1]) if leading else roman.get(text.split("_")[0])
    return None if number is None else str(number)


def _read_both_times(suggestion: Suggestion) -> None:
    """In REDCap's long form one column holds a subscale at both events: map it twice."""
    for subscale in ("pain", "stiffness", "function"):
        baseline, later = f"womac_{subscale}_0", f"womac_{subscale}_12"
        if baseline in suggestion.columns and later not in suggestion.columns:
            suggestion.columns[later] = suggestion.columns[baseline]


def _distinct(values: pd.Series) -> list[str]:
    text = values.dropna().astype("string").str.strip()
    return sorted(set(text[text != ""]))


def _allowed(spec: PatientField) -> Iterable[str]:
    if spec.kind is Kind.BOOLEAN:
        return ("true", "false")
    if spec.kind is Kind.CATEGORY:
        return spec.categories
    return (str(value) for value, _ in spec.value_labels) if spec.value_labels else ("a number",)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def _key(text: str) -> str:
    return text if _BARE_KEY.match(text) else _string(text)
