"""The contract's value rules and problem report, used without any CSV file.

Any reader (a spreadsheet, a Parquet folder, a DataFrame) types its columns with
``parse_column`` and reports through ``ProblemLog``; these pin what such a reader gets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from womac.data.contract import FIELD_BY_NAME, FIELDS, Kind
from womac.data.problems import Problem, ProblemLog
from womac.data.values import parse_column, unknown_column


def test_log_merges_places_per_column_and_rule_in_order_found() -> None:
    log = ProblemLog(place="row")
    log.add(Problem("age", "out of range", (3,)))
    log.add(Problem("sex", "required column is missing"))
    log.add(Problem("age", "out of range", (9, 12)))

    assert log.problems() == [
        Problem("age", "out of range", (3, 9, 12), "row"),
        Problem("sex", "required column is missing", (), "row"),
    ]
    assert str(log.problems()[0]) == "age: out of range (rows 3, 9, 12)"


def test_a_column_of_text_is_typed_with_problems_at_the_given_places() -> None:
    spec = FIELD_BY_NAME["bmi"]
    places = np.array([10, 20, 30, 40])

    values, problems, blank = parse_column(
        pd.Series(["29,5", "NA", "heavy", "500"], dtype=object), spec, places
    )

    assert values.iloc[0] == 29.5
    assert values.iloc[1:].isna().all()
    assert blank.tolist() == [False, True, False, False]
    assert [(p.column, p.rule.split(":")[0], p.lines) for p in problems] == [
        ("bmi", "not a number", (30,)),
        ("bmi", "out of range", (40,)),
    ]


def test_unknown_column_is_typed_as_parsed_values_of_its_field() -> None:
    index = pd.RangeIndex(3)
    for spec in FIELDS:
        unknown = unknown_column(spec, index)
        text = spec.kind in (Kind.CATEGORY, Kind.IDENTIFIER)
        assert unknown.isna().all()
        assert unknown.dtype == (object if text else float), spec.name
