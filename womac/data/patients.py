"""Patients already in hand, typed by the contract: API requests (validated records) and
DataFrames a data scientist passes to the registered model.

A cohort file goes through :mod:`womac.data.cohort`; these go through the same rules for one
column (:mod:`womac.data.values`) without a file, so a value passes or fails here exactly
as it would in an export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from womac.data.contract import ELIGIBILITY_FLAGS, FIELD_BY_NAME, PREDICTOR_NAMES, Kind
from womac.data.problems import Problem
from womac.data.values import normalise_header, parse_column, unknown_column

# What a request may give: the predictors and the eligibility flags.
_ASKABLE = (*PREDICTOR_NAMES, *(flag.name for flag in ELIGIBILITY_FLAGS))


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
            typed[name] = unknown_column(spec, index)
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
