"""Promotion gates sized by their sampling error, each refusing a sound model rarely.

A held-out split of a clinic's first 2,000 patients holds a few hundred patients; figures
computed on it move by several points from one split to the next. A gate that compares the
point figure with a fixed band refuses sound models often (one first training in ten, on
the simulator). Each gate here refuses only what sampling cannot explain, at a stated
false-refusal rate ``alpha`` for a model that is exactly as good as the gate asks:

- **Calibration slope** (observed on predicted): refused when the slope lies outside its band
  by more than ``z(1 - alpha)`` of its standard error.
- **Interval coverage**: the number of held-out patients inside their interval is binomial.
  An interval that *under-covers* (fewer inside than nominal minus the tolerance, beyond the
  exact binomial test at ``alpha``) is refused: it promises more certainty than it has. One
  that *over-covers* is conservative, honest but wider than needed, and passes with that
  said, unless it is wider than nominal plus ``wide`` beyond sampling error.

With two gates at ``alpha`` each, a sound model is refused at most ``2 alpha`` of the time
(``bench/accuracy.py gates`` measures it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import binom, norm


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate's verdict and its sentence for the registry and the console."""

    passed: bool
    sentence: str


def slope_gate(slope: float, se: float, low: float, high: float, alpha: float) -> Gate:
    """Refuse a calibration slope outside ``low``-``high`` beyond its sampling error."""
    band = f"{low:g}-{high:g}"
    if not math.isfinite(slope):
        return Gate(
            False, f"calibration slope undefined (constant predictions), not within {band}"
        )
    margin = norm.ppf(1 - alpha) * (se if math.isfinite(se) else 0.0)
    shown = f"calibration slope {slope:.2f} (SE {se:.2f})"
    if slope + margin < low or slope - margin > high:
        return Gate(False, f"{shown} outside {band} beyond sampling error")
    where = "within" if low <= slope <= high else "outside, within sampling error of"
    return Gate(True, f"{shown} {where} {band}")


def coverage_gate(
    covered: int,
    n: int,
    level: float,
    tolerance: float,
    wide: float,
    alpha: float,
    who: str = "held-out",
) -> Gate:
    """Refuse an interval that under-covers, or is far too wide, beyond binomial sampling.

    Parameters
    ----------
    covered, n
        Held-out patients inside their interval, and all held-out patients.
    level
        The interval's nominal coverage.
    tolerance
        Coverage down to ``level - tolerance`` is accepted as sound.
    wide
        Coverage up to ``level + wide`` is accepted as conservative.
    alpha
        The chance of refusing an interval whose true coverage is at either limit.
    who
        Which patients, in the sentence: ``"held-out"`` (promotion), ``"new"`` (monitoring).
    """
    share = covered / n if n else float("nan")
    shown = f"{level:.0%} interval covers {share:.1%} of {n} {who} patients"
    floor, ceiling = level - tolerance, min(level + wide, 1.0)
    if n == 0:
        return Gate(False, f"{level:.0%} interval: no {who} patients to check it on")
    # P(this few inside | true coverage at the floor): small means it truly under-covers.
    if binom.cdf(covered, n, floor) < alpha:
        return Gate(False, f"{shown}: under-covers (below {floor:.0%} beyond sampling error)")
    if ceiling < 1.0 and binom.sf(covered - 1, n, ceiling) < alpha:
        return Gate(
            False, f"{shown}: too wide to inform (above {ceiling:.0%} beyond sampling error)"
        )
    if share > level + tolerance:
        return Gate(
            True, f"{shown}: conservative (wider than needed), accepted up to {ceiling:.0%}"
        )
    return Gate(True, f"{shown}, sound (not below {floor:.0%} beyond sampling error)")
