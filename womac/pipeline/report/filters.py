"""How the report writes numbers: the Jinja2 filters its templates use.

An undefined figure (``None`` or not finite: a metric of constant predictions, a subgroup too
small to bootstrap) reads "n/a", never "nan".
"""

from __future__ import annotations

import math
from typing import Any


def num(value: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage with ``digits`` decimals."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def ci(bounds: tuple[float, float] | None, percent: bool = False) -> str:
    """An interval as ``[low, high]``, as numbers or percentages."""
    if bounds is None:
        return "[n/a]"
    low, high = bounds
    show = pct if percent else num
    return f"[{show(low)}, {show(high)}]"


def counted(value: int | None) -> str:
    """A count, or "n/a" when the run did not record it."""
    return "n/a" if value is None else str(value)


def short(value: Any) -> str:
    """A setting as written by hand: floats without trailing zeros (``0.1``, ``1e-05``)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


FILTERS = {"num": num, "pct": pct, "ci": ci, "counted": counted, "short": short}
