"""Does the model still hold? The checks monitoring makes, each a plain sentence.

Each check refuses only what sampling cannot explain, at the settings' false-alarm rate
``monitor_false_alarm`` for a model exactly at its limit (the promotion gates' logic,
:mod:`womac.models.gates`, applied to later patients):

- **Calibration slope** of observed on expected improvement inside the promotion gate's
  band (``gate_slope_min``-``gate_slope_max``) beyond its standard error.
- **Calibration in the large**: mean observed minus mean expected improvement within
  ``monitor_mean_shift_points`` beyond its standard error (a 6-point shift in outcomes after
  a protocol change shows here first).
- **Interval coverage** not below nominal minus ``gate_coverage_tolerance`` (nor above
  nominal plus ``gate_coverage_wide``) beyond binomial sampling error.
- **RMSE** no worse than held-out by more than ``monitor_rmse_tolerance`` beyond its
  bootstrap interval.
- **Coverage per subgroup** (KL grade, sex, joint, age band; those with at least
  ``monitor_min_subgroup`` patients): not under-covered, each tested at the false-alarm rate
  divided by the number of subgroups judged (Bonferroni), so that the many subgroups do not
  add up to a false alarm.

The verdict is ``degraded`` when any check fails, else ``holds``; ``not_judged`` when no
followed-up patient can be judged (no 12-month scores yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

from womac.models.gates import coverage_gate, slope_gate
from womac.models.monitoring import PatientsAssessed, Performance
from womac.models.status import Verdict
from womac.settings import Settings

_SUBGROUP = "coverage_by_"
_SUBGROUP_NAMES = {"sex": "sex", "age_band": "age", "kl_grade": "KL grade", "joint": "joint"}


@dataclass(frozen=True, slots=True)
class Check:
    """One check on the new patients."""

    name: str
    passed: bool
    sentence: str
    short: str = ""  # a subgroup's figure, for a list of several


def judge(assessed: PatientsAssessed, settings: Settings) -> tuple[Verdict, list[Check]]:
    """The verdict on a later cohort and every check behind it."""
    performance = assessed.performance
    if performance is None:
        return Verdict.not_judged, []
    checks = [
        _slope(performance, settings),
        _in_the_large(performance, settings),
        _coverage(performance, settings),
        _rmse(performance, settings),
        *_subgroups(performance, settings),
    ]
    degraded = any(not check.passed for check in checks)
    return (Verdict.degraded if degraded else Verdict.holds), checks


def reasons(verdict: Verdict, checks: list[Check], assessed: PatientsAssessed) -> list[str]:
    """The sentences a reader needs: the failed checks, or why the model holds.

    Under-covered subgroups are told in one sentence (with the overall coverage failing,
    every subgroup usually fails with it)."""
    if verdict is Verdict.not_judged:
        return [*assessed.notes] or ["No followed-up patient to judge the model on yet."]
    failed = [check for check in checks if not check.passed]
    overall = [check.sentence for check in failed if not check.name.startswith(_SUBGROUP)]
    groups = [check for check in failed if check.name.startswith(_SUBGROUP)]
    if groups:
        listed = "; ".join(check.short for check in groups)
        overall.append(
            f"The interval under-covers beyond sampling error in {len(groups)} subgroup"
            f"{'s' if len(groups) > 1 else ''} (share of new patients inside it): {listed}."
        )
    if overall:
        return overall
    n = assessed.performance.n if assessed.performance else 0
    held = "; ".join(check.sentence for check in checks if not check.name.startswith(_SUBGROUP))
    return [f"Every check holds on {n} followed-up patients: {held}."]


def _slope(performance: Performance, settings: Settings) -> Check:
    gate = slope_gate(
        performance.calibration_slope.value,
        performance.calibration_slope_se,
        settings.gate_slope_min,
        settings.gate_slope_max,
        settings.monitor_false_alarm,
    )
    return Check("calibration_slope", gate.passed, _capital(gate.sentence))


def _in_the_large(performance: Performance, settings: Settings) -> Check:
    """Mean observed minus mean expected improvement, within its tolerance."""
    difference, se = performance.mean_difference.value, performance.mean_difference_se
    tolerance = settings.monitor_mean_shift_points
    margin = norm.ppf(1 - settings.monitor_false_alarm) * (se if math.isfinite(se) else 0.0)
    direction = "more" if difference > 0 else "less"
    shown = (
        f"New patients improved {abs(difference):.1f} points {direction} than expected "
        f"(95% CI {performance.mean_difference.low:+.1f} to "
        f"{performance.mean_difference.high:+.1f})"
    )
    if abs(difference) - margin > tolerance:
        return Check(
            "calibration_in_the_large",
            False,
            f"{shown}: beyond the {tolerance:g}-point tolerance, so expected improvements are "
            "off on average (calibration in the large).",
        )
    return Check("calibration_in_the_large", True, f"{shown}, within {tolerance:g} points")


def _coverage(performance: Performance, settings: Settings) -> Check:
    gate = coverage_gate(
        performance.covered,
        performance.n,
        performance.level,
        settings.gate_coverage_tolerance,
        settings.gate_coverage_wide,
        settings.monitor_false_alarm,
        who="new",
    )
    return Check("coverage", gate.passed, _capital(gate.sentence))


def _rmse(performance: Performance, settings: Settings) -> Check:
    rmse = performance.rmse
    if rmse.held_out is None:
        return Check("rmse", True, f"RMSE {rmse.value:.1f} points (no held-out figure to compare)")
    limit = rmse.held_out * (1 + settings.monitor_rmse_tolerance)
    shown = (
        f"RMSE {rmse.value:.1f} points (95% CI {rmse.low:.1f}-{rmse.high:.1f}) against "
        f"{rmse.held_out:.1f} on held-out patients"
    )
    if rmse.low > limit:
        return Check(
            "rmse",
            False,
            f"{shown}: worse by more than {settings.monitor_rmse_tolerance:.0%} beyond "
            "sampling error.",
        )
    return Check("rmse", True, shown)


def _subgroups(performance: Performance, settings: Settings) -> list[Check]:
    """Coverage of each subgroup large enough to judge, Bonferroni across subgroups."""
    judged = [row for row in performance.subgroups if row.n >= settings.monitor_min_subgroup]
    if not judged:
        return []
    alpha = settings.monitor_false_alarm / len(judged)
    checks = []
    for row in judged:
        covered = round(row.coverage * row.n)
        gate = coverage_gate(
            covered,
            row.n,
            performance.level,
            settings.gate_coverage_tolerance,
            1.0,  # a subgroup covered more than nominal is not what this check is about
            alpha,
            who="new",
        )
        group = f"{_SUBGROUP_NAMES.get(row.subgroup, row.subgroup)} {row.level}"
        name = f"{_SUBGROUP}{row.subgroup}_{row.level}"
        short = f"{group} {row.coverage:.1%} of {row.n}"
        checks.append(Check(name, gate.passed, f"{group}: {gate.sentence}", short))
    return checks


def _capital(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]
