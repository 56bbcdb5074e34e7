"""A REDCap project's data dictionary: each variable's label and coded choices.

REDCap's "raw" export writes codes (``1``, ``2``) where the project's forms show labels
("Male", "Female"), and a checkbox question as one column per choice (``exclusion___1``).
The data dictionary (Project Setup > Data Dictionary > Download) says what each code
means; with it, :func:`womac.data.suggest.suggest_mapping` places a raw export's columns and
codes by their labels, so such an export validates and trains without a hand-written mapping.

Only the columns this needs are read: "Variable / Field Name", "Field Label", "Field Type"
and "Choices, Calculations, OR Slider Labels" (choices written ``1, Male | 2, Female``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from womac.data.problems import CohortError, Problem

NAME, LABEL, TYPE, CHOICES = (
    "Variable / Field Name",
    "Field Label",
    "Field Type",
    "Choices, Calculations, OR Slider Labels",
)
_CHOICE = re.compile(r"^\s*([^,]+?)\s*,\s*(.+?)\s*$")
_TAGS = re.compile(r"<[^>]*>")  # field labels may hold HTML


@dataclass(frozen=True, slots=True)
class Variable:
    """One REDCap variable: its label, its field type and its choices (code -> label)."""

    name: str
    label: str
    kind: str
    choices: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataDictionary:
    """A project's variables by name."""

    variables: dict[str, Variable]

    @classmethod
    def read(cls, path: Path) -> DataDictionary:
        """Read a data dictionary CSV as REDCap downloads it.

        Raises
        ------
        CohortError
            When the file is not a REDCap data dictionary.
        """
        try:
            with path.open(encoding="utf-8-sig", newline="") as stream:
                rows = list(csv.DictReader(stream))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            why = getattr(error, "strerror", None) or "not a UTF-8 CSV file"
            raise CohortError(path.name, [Problem("file", f"cannot be read ({why})")]) from None
        if not rows or NAME not in rows[0]:
            rule = f"is not a REDCap data dictionary (no {NAME!r} column)"
            raise CohortError(path.name, [Problem("file", rule)])
        variables = {}
        for row in rows:
            name = (row.get(NAME) or "").strip()
            if name:
                label = _TAGS.sub("", row.get(LABEL) or "").strip()
                kind = (row.get(TYPE) or "").strip().casefold()
                variables[name] = Variable(name, label, kind, _choices(row.get(CHOICES) or ""))
        return cls(variables)

    def variable_of(self, header: str) -> Variable | None:
        """The variable a raw export's column belongs to (``exclusion___2`` -> ``exclusion``)."""
        name = header.strip().split("___")[0]
        return self.variables.get(name)


def _choices(text: str) -> dict[str, str]:
    """``1, Male | 2, Female`` as {"1": "Male", "2": "Female"}."""
    choices = {}
    for part in text.split("|"):
        match = _CHOICE.match(part)
        if match:
            choices[match[1]] = _TAGS.sub("", match[2]).strip()
    return choices
