"""WOMAC subscales derived from KOOS items, as the KOOS scoring guide describes.

KOOS (Knee injury and Osteoarthritis Outcome Score, Roos et al. 1998) was built to contain
all 24 items of the WOMAC LK3.1, worded and scored the same way (0 = none to 4 = extreme):

- WOMAC pain (5 items, 0-20) is KOOS pain items P5-P9 (walking on a flat surface, going up
  or down stairs, at night in bed, sitting or lying, standing upright);
- WOMAC stiffness (2 items, 0-8) is KOOS symptom items S6-S7 (stiffness on first waking,
  and later in the day after sitting, lying or resting);
- WOMAC physical function (17 items, 0-68) is the whole KOOS ADL subscale, A1-A17.

Missing items follow the KOOS scoring guide's 2012 rule (KOOS Scoring 2012, koos.nu; it
replaced the 1998 rule of at most two missing items per subscale): a subscale is scored when
at least half of its items are answered, from the mean of the answered items, and is not
scored otherwise. On the WOMAC's Likert points that mean is scaled back to the subscale's
item count (a mean of 2 over the answered pain items is 10 of 20). So pain needs 3 of its 5
items, stiffness 1 of 2 and function 9 of 17; a subscale with fewer is left blank, which the
contract then reports as a blank required value (baseline) or as lost to follow-up (12 months).

Item values are KOOS's 0-4 box scores. Anything else is refused by the caller's contract
checks on the item columns, not guessed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

KOOS_ITEM_MAX = 4  # None 0, Mild 1, Moderate 2, Severe 3, Extreme 4


@dataclass(frozen=True, slots=True)
class WomacSubscale:
    """One WOMAC subscale as KOOS holds it: its KOOS item codes and how many must be answered."""

    name: str  # pain, stiffness, function (the contract's womac_<name>_0 / _12)
    items: tuple[str, ...]

    @property
    def needed(self) -> int:
        """Answered items needed for a score: at least half (KOOS Scoring 2012)."""
        return math.ceil(len(self.items) / 2)

    @property
    def maximum(self) -> int:
        """The subscale's highest Likert total."""
        return KOOS_ITEM_MAX * len(self.items)


WOMAC_IN_KOOS: tuple[WomacSubscale, ...] = (
    WomacSubscale("pain", tuple(f"P{n}" for n in range(5, 10))),
    WomacSubscale("stiffness", ("S6", "S7")),
    WomacSubscale("function", tuple(f"A{n}" for n in range(1, 18))),
)
"""The 24 WOMAC LK3.1 items by their KOOS codes, subscale by subscale."""

KOOS_ITEMS: tuple[str, ...] = tuple(item for subscale in WOMAC_IN_KOOS for item in subscale.items)


@dataclass(frozen=True, slots=True)
class Derived:
    """WOMAC subscales computed from one time point's KOOS items.

    ``scores`` has one column per subscale (pain, stiffness, function; NaN where not enough
    items were answered); ``too_few`` flags, per subscale, the rows left blank for that reason
    (rows with no item answered at all are not flagged: nothing was collected).
    """

    scores: pd.DataFrame
    too_few: pd.DataFrame


def womac_from_koos(items: pd.DataFrame) -> Derived:
    """The WOMAC subscales of each row of KOOS item scores (columns named by KOOS code).

    Columns may be absent (never asked) or NaN (not answered); both count as missing.
    """
    scores: dict[str, pd.Series] = {}
    too_few: dict[str, pd.Series] = {}
    for subscale in WOMAC_IN_KOOS:
        values = pd.DataFrame(
            {
                item: pd.to_numeric(items[item], errors="coerce") if item in items else np.nan
                for item in subscale.items
            },
            index=items.index,
        )
        answered = values.notna().sum(axis=1)
        enough = answered >= subscale.needed
        score = values.mean(axis=1) * len(subscale.items)
        scores[subscale.name] = score.where(enough)
        too_few[subscale.name] = ~enough & (answered > 0)
    return Derived(pd.DataFrame(scores), pd.DataFrame(too_few))
