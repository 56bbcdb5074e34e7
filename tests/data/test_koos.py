"""WOMAC subscales from KOOS items: the 24 WOMAC items by their KOOS codes, and the KOOS
scoring guide's rule for missing items (at least half of a subscale's items answered)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from womac.data.koos import KOOS_ITEMS, WOMAC_IN_KOOS, womac_from_koos

PAIN = ["P5", "P6", "P7", "P8", "P9"]
STIFFNESS = ["S6", "S7"]
FUNCTION = [f"A{n}" for n in range(1, 18)]


def test_the_24_womac_items_are_koos_p5_to_p9_s6_s7_and_a1_to_a17() -> None:
    assert [s.name for s in WOMAC_IN_KOOS] == ["pain", "stiffness", "function"]
    assert list(KOOS_ITEMS) == PAIN + STIFFNESS + FUNCTION
    assert [s.maximum for s in WOMAC_IN_KOOS] == [20, 8, 68]  # the contract's ranges
    assert [s.needed for s in WOMAC_IN_KOOS] == [3, 1, 9]


def test_complete_answers_sum_to_the_womac_likert_subscales_computed_by_hand() -> None:
    rng = np.random.default_rng(3)
    items = pd.DataFrame(rng.integers(0, 5, size=(50, 24)), columns=list(KOOS_ITEMS))
    items["P1"] = 4  # KOOS items that are not WOMAC items change nothing
    derived = womac_from_koos(items)
    np.testing.assert_array_equal(derived.scores["pain"], items[PAIN].sum(axis=1))
    np.testing.assert_array_equal(derived.scores["stiffness"], items[STIFFNESS].sum(axis=1))
    np.testing.assert_array_equal(derived.scores["function"], items[FUNCTION].sum(axis=1))
    assert not derived.too_few.to_numpy().any()


def test_missing_items_are_replaced_by_the_mean_of_those_answered() -> None:
    items = pd.DataFrame([{"P5": 1, "P6": 2, "P7": 3, "S6": 2, **dict.fromkeys(FUNCTION[:9], 1)}])
    derived = womac_from_koos(items)
    assert derived.scores.loc[0, "pain"] == pytest.approx(2 * 5)  # mean 2 over 5 items
    assert derived.scores.loc[0, "stiffness"] == pytest.approx(2 * 2)
    assert derived.scores.loc[0, "function"] == pytest.approx(1 * 17)


def test_fewer_than_half_answered_leaves_the_subscale_blank_and_says_so() -> None:
    items = pd.DataFrame(
        [
            {"P5": 1, "P6": 2, **dict.fromkeys(FUNCTION[:8], 1)},  # 2 of 5 pain, 8 of 17
            {item: np.nan for item in KOOS_ITEMS},  # nothing collected: blank, not flagged
        ]
    )
    derived = womac_from_koos(items)
    assert derived.scores.isna().all().all()
    assert derived.too_few.loc[0].to_dict() == {
        "pain": True,
        "stiffness": False,  # no stiffness item answered at all
        "function": True,
    }
    assert not derived.too_few.loc[1].any()


def test_item_columns_absent_from_the_export_count_as_missing() -> None:
    derived = womac_from_koos(pd.DataFrame({"P5": [4], "P6": [4], "P7": [4]}))
    assert derived.scores.loc[0, "pain"] == 20
    assert np.isnan(derived.scores.loc[0, "function"])
