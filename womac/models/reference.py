"""The training data's summary, stored with the model: what input drift is measured against.

Per predictor field, the training patients' counts in a few categories (decile bins of a
number, the levels of a category, a boolean or a short integer scale) and their blanks:
aggregates only, no patient rows. Logged as the model artifact ``REFERENCE_ARTIFACT``
(``reference.json``); ``womac.models.drift`` compares new patients with it.

Privacy: a bin holds at least ``MIN_BIN_PATIENTS`` training patients (smaller bins are
merged into a neighbour), so no bin edge sits at the smallest or largest patient's value or
singles out a few patients; a number known for fewer than ``MIN_KNOWN_FOR_BINS`` patients gets
no bins at all, only its known and blank counts. Edges are rounded to three significant digits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from womac.data.contract import (
    FALSE_VALUES,
    FIELD_BY_NAME,
    PREDICTOR_NAMES,
    TRUE_VALUES,
    Kind,
    PatientField,
)

REFERENCE_ARTIFACT = "reference"
"""Key of the reference among the MLflow model's artifacts."""
REFERENCE_FILE = "reference.json"
"""Name of the reference's file in the model's artifacts."""
REFERENCE_VERSION = 1
"""Format version written in the JSON; ``from_dict`` refuses others."""

MIN_BIN_PATIENTS = 20
MIN_KNOWN_FOR_BINS = 50
DECILES = tuple(q / 10 for q in range(1, 10))
# An integer field whose contract range holds at most this many values (KL grade 0-4,
# injections 1-5) is counted per value, as a category: deciles of five values are mostly ties.
MAX_INTEGER_LEVELS = 10

MISSING = "missing"
OTHER = "other"
KNOWN = "known"


class Binning(StrEnum):
    """How a field's values fall into the reference's categories."""

    BINS = "bins"  # decile bins of a number: (-inf, e1], (e1, e2], ..., (ek, inf)
    LEVELS = "levels"  # named levels (category, boolean, short integer scale), then "other"
    KNOWN = "known"  # too few known values for bins: known or not


@dataclass(frozen=True, slots=True)
class FieldReference:
    """The training patients' counts of one predictor field.

    Attributes
    ----------
    name
        The contract field.
    binning
        How values fall into categories (``Binning``).
    edges
        Interior bin edges, increasing (bins only); bins are closed on the right.
    levels
        Level names (levels only): contract categories, ``no``/``yes``, or integer values.
    counts
        Training patients per category, in the order of ``categories()``, blanks last.
    """

    name: str
    binning: Binning
    edges: tuple[float, ...]
    levels: tuple[str, ...]
    counts: tuple[int, ...]

    def categories(self) -> tuple[str, ...]:
        """Names of the categories counted, ``missing`` last (``as_dict`` order)."""
        if self.binning is Binning.BINS:
            names = tuple(f"bin_{i}" for i in range(len(self.edges) + 1))
        elif self.binning is Binning.LEVELS:
            names = (*self.levels, OTHER)
        else:
            names = (KNOWN,)
        return (*names, MISSING)

    def count(self, column: pd.Series) -> np.ndarray:
        """Count ``column``'s values into this field's categories (the training order).

        The same function counts the training patients and new ones, so both are binned alike.
        """
        if self.binning is Binning.LEVELS:
            missing = column.isna().to_numpy()
            names = _level_names(FIELD_BY_NAME[self.name], column[~missing])
            index = pd.Index(self.levels).get_indexer(pd.Index(names))
            index[index < 0] = len(self.levels)  # unseen in training: "other"
            counts = np.bincount(index, minlength=len(self.levels) + 1)
        else:
            # What is not a number is unknown, as read_cohort types a value breaking a rule.
            numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
            missing = np.isnan(numbers)
            edges = np.asarray(self.edges, dtype=float)
            index = np.searchsorted(edges, numbers[~missing], side="left")
            counts = np.bincount(index, minlength=len(edges) + 1)
        return np.append(counts, int(missing.sum())).astype(np.int64)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "binning": self.binning.value,
            "edges": list(self.edges),
            "levels": list(self.levels),
            "counts": list(self.counts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FieldReference:
        """Rebuild from ``as_dict``'s form."""
        return cls(
            name=str(data["name"]),
            binning=Binning(data["binning"]),
            edges=tuple(float(edge) for edge in data["edges"]),
            levels=tuple(str(level) for level in data["levels"]),
            counts=tuple(int(count) for count in data["counts"]),
        )


@dataclass(frozen=True, slots=True)
class TrainingReference:
    """The training patients' summary: their number and each predictor's counts.

    Deterministic for the same patients (no creation time), so the same cohort gives the same
    file.
    """

    n: int
    fields: tuple[FieldReference, ...]
    version: int = REFERENCE_VERSION

    def field(self, name: str) -> FieldReference:
        """The reference of one field, by contract name."""
        for reference in self.fields:
            if reference.name == name:
                return reference
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the format ``version``."""
        return {
            "version": self.version,
            "n": self.n,
            "fields": [reference.as_dict() for reference in self.fields],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingReference:
        """Rebuild from ``as_dict``'s form.

        Raises
        ------
        ValueError
            When the format version is not one this code reads.
        """
        version = data.get("version")
        if version != REFERENCE_VERSION:
            raise ValueError(
                f"training reference format version {version!r} is not {REFERENCE_VERSION}"
            )
        fields = tuple(FieldReference.from_dict(item) for item in data["fields"])
        return cls(n=int(data["n"]), fields=fields, version=version)


def reference_of(frame: pd.DataFrame) -> TrainingReference:
    """Summarise the training patients' predictors for later drift checks.

    Parameters
    ----------
    frame
        The training patients, typed as ``read_cohort`` gives them (contract column names).
        Only predictor columns are read; an absent predictor counts as blank for everyone.

    Returns
    -------
    TrainingReference
        Counts per category of each predictor field, in contract order.
    """
    fields = []
    for name in PREDICTOR_NAMES:
        spec = FIELD_BY_NAME[name]
        if name in frame.columns:
            column = frame[name]
        else:
            column = pd.Series(np.nan, index=frame.index, dtype=object)
        fields.append(_field_reference(spec, column))
    return TrainingReference(n=len(frame), fields=tuple(fields))


def write_reference(reference: TrainingReference, path: str | Path) -> Path:
    """Write ``reference`` as JSON to ``path`` (conventionally ``REFERENCE_FILE``)."""
    target = Path(path)
    text = json.dumps(reference.as_dict(), indent=2, sort_keys=True)
    target.write_text(text + "\n", encoding="utf-8")
    return target


def read_reference(path: str | Path) -> TrainingReference:
    """Read a reference that ``write_reference`` wrote."""
    return TrainingReference.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def field_levels(spec: PatientField) -> tuple[str, ...] | None:
    """The named levels of a field counted per value, or None for a binned number."""
    if spec.kind is Kind.CATEGORY:
        return spec.categories
    if spec.kind is Kind.BOOLEAN:
        return ("no", "yes")
    if spec.kind is Kind.INTEGER and spec.minimum is not None and spec.maximum is not None:
        low, high = int(spec.minimum), int(spec.maximum)
        if high - low < MAX_INTEGER_LEVELS:
            return tuple(str(value) for value in range(low, high + 1))
    return None


def _field_reference(spec: PatientField, column: pd.Series) -> FieldReference:
    levels = field_levels(spec)
    if levels is not None:
        shape = FieldReference(spec.name, Binning.LEVELS, (), levels, ())
    else:
        values = pd.to_numeric(column.dropna(), errors="coerce").dropna().to_numpy(dtype=float)
        if len(values) < MIN_KNOWN_FOR_BINS:
            shape = FieldReference(spec.name, Binning.KNOWN, (), (), ())
        else:
            shape = FieldReference(spec.name, Binning.BINS, _bin_edges(values), (), ())
    counts = shape.count(column)
    return FieldReference(
        spec.name, shape.binning, shape.edges, shape.levels, tuple(int(c) for c in counts)
    )


def _bin_edges(values: np.ndarray) -> tuple[float, ...]:
    """Decile edges (rounded, unique), merged until every bin holds MIN_BIN_PATIENTS."""
    deciles = np.quantile(values, DECILES)
    edges = sorted({float(f"{edge:.3g}") for edge in deciles})
    counts = list(
        np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    )
    while len(counts) > 1 and min(counts) < MIN_BIN_PATIENTS:
        smallest = int(np.argmin(counts))
        if smallest == 0:
            neighbour = 1
        elif smallest == len(counts) - 1:
            neighbour = smallest - 1
        else:
            # Merge into the smaller neighbour: bins stay as even as they can.
            left, right = counts[smallest - 1], counts[smallest + 1]
            neighbour = smallest - 1 if left <= right else smallest + 1
        low = min(smallest, neighbour)
        counts[low : low + 2] = [counts[low] + counts[low + 1]]
        del edges[low]  # the edge between bins low and low + 1
    return tuple(edges)


def _level_names(spec: PatientField, known: pd.Series) -> list[str]:
    """Known values as level names: booleans as no/yes, integers as their digits."""
    if spec.kind is Kind.BOOLEAN:
        texts = [str(value).strip().lower() for value in known]
        return ["yes" if t in TRUE_VALUES else "no" if t in FALSE_VALUES else t for t in texts]
    if spec.kind is Kind.INTEGER:
        numbers = pd.to_numeric(known, errors="coerce").to_numpy(dtype=float)
        return [
            str(int(number)) if np.isfinite(number) and number.is_integer() else OTHER
            for number in numbers
        ]
    return [str(value) for value in known]
