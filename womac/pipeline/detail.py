"""How much of each explanation a scores file holds (``womac predict --explanation``).

A module of its own so that the command line can offer the choice without importing the
scoring stack (scikit-learn alone takes about 1.4 s to import).
"""

from __future__ import annotations

from enum import StrEnum


class Detail(StrEnum):
    """How much of each explanation a scores file holds."""

    top3 = "top3"  # the three largest contributions, field and points
    full = "full"  # the base value and one contribution per contract field
