"""A simulated MSC-treated cohort whose numbers come from the published literature.

No real cohort ships with the product, so this is the embedded default data. Every figure
carries its source; figures marked *assumption* have no single published source and are
chosen to be plausible. The simulator knows each patient's noise-free expected improvement
(the *oracle*), which benchmarks use to compare a model's error with the best possible on
this data. The oracle is never a feature.

The simulator draws only the fields it has figures for (:func:`simulated_fields`). Every other
contract field comes out as a blank column, as in an export that has the column but none of
its values, so a field added to the contract reaches a simulated cohort without an edit here,
and the seeded draws of the other fields stay the same. A field gets values once this module
has a figure for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from scipy.stats import norm

from womac.data.contract import (
    BASELINE_SUBSCALES,
    FIELDS,
    FOLLOW_UP_SUBSCALES,
    WOMAC_TOTAL_MAX,
    Kind,
    PatientField,
)

ORACLE = "expected_improvement_oracle"

# Subscale maxima on the Likert version (pain 5 items, stiffness 2, function 17; 0-4 each).
_SUBSCALE_MAX = np.array([20.0, 8.0, 68.0])


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """Knobs of the simulated cohort; the defaults are the literature figures."""

    residual_sd: float = 11.0  # points; gives R^2 0.15-0.30 as in published outcome models
    lost_to_follow_up: float = 0.12  # 12% at 12 months, more among non-improvers
    kl_missing: float = 0.05  # KL grade blank for about 5% (no radiograph on file)
    optional_missing: float = 0.08  # *assumption*: blanks in optional fields of an export
    # Drift scenarios (monitoring's tests and benchmarks): later patients who improve more
    # than the literature's (a protocol change), and a case mix other than the literature's.
    improvement_shift: float = 0.0  # points added to every expected improvement
    figures: CohortFigures | None = None  # None: COHORT_FIGURES


@dataclass(frozen=True, slots=True)
class CohortFigures:
    """The simulator's literature figures, read by ``simulate_cohort`` and by the report.

    Sources and *assumptions* are given beside each figure in ``simulate_cohort``.
    """

    age_mean: float = 60.0  # years; OAI baseline
    age_sd: float = 8.5
    age_range: tuple[float, float] = (40.0, 80.0)
    female: float = 0.58
    bmi_mean: float = 29.5  # kg/m2
    bmi_sd: float = 4.9
    bmi_range: tuple[float, float] = (18.0, 45.0)
    kl_grades: tuple[int, ...] = (1, 2, 3, 4)
    kl_shares: tuple[float, ...] = (0.08, 0.34, 0.40, 0.18)
    hip: float = 0.10
    baseline_mean: float = 30.0  # WOMAC total points
    baseline_sd: float = 15.0
    baseline_range: tuple[float, float] = (5.0, 90.0)
    baseline_per_kl_grade: float = 2.5  # points per KL grade above 2
    subscale_shares: tuple[float, float, float] = (0.21, 0.08, 0.71)  # pain, stiffness, function
    diabetes: float = 0.14
    usual_care: float = 10.0  # points at the mean baseline
    regression_to_mean: float = 0.2  # x (baseline - baseline_mean)
    msc_per_baseline_point: float = 0.24
    msc_kl4_factor: float = 0.5
    msc_hip_factor: float = 0.8
    msc_bmi_pivot: float = 29.0  # kg/m2
    msc_per_bmi_point: float = 0.2
    msc_repeated_injections: float = 2.0
    msc_prp: float = 3.0
    msc_rehab: float = 3.0
    lost_logit_per_sd: float = 0.47  # odds x1.6 per SD less improvement


COHORT_FIGURES = CohortFigures()
# Share of the total per subscale, about 21% pain, 8% stiffness, 71% function
# (typical baseline profile in knee-OA trials; DESIGN.md).
_SUBSCALE_SHARE = np.array(COHORT_FIGURES.subscale_shares)


def simulate_cohort(
    n: int, seed: int, settings: SimulationSettings | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """Simulate ``n`` treated joints.

    Parameters
    ----------
    n
        Number of rows (treated joints).
    seed
        Seed of the random generator; the same seed gives the same cohort.
    settings
        Simulation knobs; literature defaults when omitted.

    Returns
    -------
    cohort
        One row per treated joint with every contract column in contract order, as a clinic
        would export it (blanks as missing values, lost-to-follow-up rows with blank 12-month
        scores, and fields not in :func:`simulated_fields` blank throughout).
    oracle
        The noise-free expected 12-month improvement of each row, named ``ORACLE``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    drawn, oracle = _drawn_cohort(n, seed, settings or SimulationSettings())
    return _with_every_contract_column(drawn), oracle


@cache
def simulated_fields() -> tuple[str, ...]:
    """The contract fields the simulator draws values for, in contract order.

    Read from what the simulator draws, not written down a second time: every other contract
    field comes out of :func:`simulate_cohort` as a blank column.
    """
    # A few patients suffice: which columns are drawn does not depend on n or the seed (one
    # patient would not do, the lost-to-follow-up draw standardises over the cohort).
    drawn, _ = _drawn_cohort(8, 0, SimulationSettings())
    return tuple(drawn.columns)


def _drawn_cohort(n: int, seed: int, cfg: SimulationSettings) -> tuple[pd.DataFrame, pd.Series]:
    """The columns the simulator has figures for, with their blanks, and the oracle."""
    rng = np.random.default_rng(seed)
    # The draws happen in a fixed order (patients, their treatment, the outcome, the blanks):
    # the same seed gives the same cohort only while that order holds.
    figures = cfg.figures or COHORT_FIGURES
    columns = _patients(rng, n, figures)
    columns |= _history_and_treatment(rng, n)
    total_0 = np.sum([columns[name] for name in BASELINE_SUBSCALES], axis=0)
    mean_improvement = _mean_improvement(columns, total_0, figures) + cfg.improvement_shift

    # Observed: 12-month total = baseline - improvement - noise, on the 0-96 scale.
    # Residual SD about 11 points (DESIGN.md). The oracle is the exact expectation of the
    # clipped outcome, so it is the best prediction possible, floor effect included.
    noise = rng.normal(0.0, cfg.residual_sd, n)
    total_12 = np.clip(total_0 - mean_improvement - noise, 0, WOMAC_TOTAL_MAX)
    oracle = total_0 - _expected_clipped(total_0 - mean_improvement, cfg.residual_sd)
    shares_12 = rng.dirichlet(_SUBSCALE_SHARE * 60, size=n)
    subscales_12 = np.minimum(np.round(total_12[:, None] * shares_12), _SUBSCALE_MAX)

    cohort = pd.DataFrame(
        {
            "patient_id": [f"SIM-{seed % 100000:05d}-{i:06d}" for i in range(n)],
            **columns,
            **{name: subscales_12[:, i] for i, name in enumerate(FOLLOW_UP_SUBSCALES)},
        }
    )
    cohort = cohort.astype({c: object for c in cohort.columns if cohort[c].dtype == bool})
    _blank_as_exported(cohort, rng, total_0 - total_12, cfg)
    return cohort, pd.Series(oracle, index=cohort.index, name=ORACLE)


def _with_every_contract_column(drawn: pd.DataFrame) -> pd.DataFrame:
    """Every contract column in contract order; those the simulator did not draw are blank.

    Added after every draw, so a field new to the contract leaves the seeded cohort as it was.
    """
    return pd.DataFrame(
        {
            spec.name: drawn[spec.name]
            if spec.name in drawn.columns
            else pd.Series(np.nan, index=drawn.index, dtype=_blank_dtype(spec))
            for spec in FIELDS
        },
        index=drawn.index,
    )


def _blank_dtype(spec: PatientField) -> type:
    """The dtype of a blank column, as the simulator types drawn columns of its kind."""
    if spec.is_numeric:
        return float
    if spec.kind is Kind.BOOLEAN:
        return object  # drawn flags with blanks are objects (True, False, NaN)
    return str


def _patients(rng: np.random.Generator, n: int, fig: CohortFigures) -> dict[str, np.ndarray]:
    """Demographics, radiographic grade and baseline WOMAC subscales."""
    # Demographics: OAI knee-OA cohort (Osteoarthritis Initiative baseline, n=4,796):
    # age 61 +/- 9, 58% female, BMI 28.6 +/- 4.8; DESIGN.md figures.
    age = np.clip(rng.normal(fig.age_mean, fig.age_sd, n), *fig.age_range).round(0)
    female = rng.random(n) < fig.female
    bmi = np.clip(rng.normal(fig.bmi_mean, fig.bmi_sd, n), *fig.bmi_range).round(1)
    # KL grade 1/2/3/4 = 8/34/40/18% (OAI, rescaled to treated patients).
    kl = rng.choice(fig.kl_grades, size=n, p=fig.kl_shares)
    # Knee 90%, hip 10%: *assumption* (MSC series are mostly knees).
    hip = rng.random(n) < fig.hip

    # Baseline WOMAC total ~ N(30, 15) clipped 5-90, +2.5 per KL grade above 2
    # (OAI and MSC trial baselines; DESIGN.md).
    total_0 = np.clip(
        rng.normal(fig.baseline_mean, fig.baseline_sd, n) + fig.baseline_per_kl_grade * (kl - 2),
        *fig.baseline_range,
    )
    shares = rng.dirichlet(_SUBSCALE_SHARE * 60, size=n)  # *assumption*: ~10% spread of shares
    subscales_0 = np.minimum(np.round(total_0[:, None] * shares), _SUBSCALE_MAX)
    return {
        "age": age,
        "sex": np.where(female, "female", "male"),
        "bmi": bmi,
        "joint": np.where(hip, "hip", "knee"),
        "kl_grade": kl.astype(float),
        **{name: subscales_0[:, i] for i, name in enumerate(BASELINE_SUBSCALES)},
    }


def _history_and_treatment(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Optional fields: *assumptions* where the MSC literature reports no distribution."""
    symptom_years = np.clip(rng.gamma(2.0, 3.5, n), 0, 60).round(1)  # median ~6 years
    activity = rng.choice(["low", "moderate", "high"], size=n, p=[0.40, 0.42, 0.18])
    # ~14% of OA patients (Louati et al., RMD Open 2015)
    diabetes = rng.random(n) < COHORT_FIGURES.diabetes
    smoker = rng.random(n) < 0.15  # *assumption*
    cell_source = rng.choice(
        ["bone_marrow", "adipose", "umbilical_cord"], size=n, p=[0.45, 0.45, 0.10]
    )  # *assumption*: mix reported across the 7 RCTs of Bone Joint Res 2020;9:719
    return {
        "symptom_years": symptom_years,
        "activity_level": activity,
        "diabetes": diabetes,
        "smoker": smoker,
        "cell_source": cell_source,
        "donor": np.where(cell_source == "umbilical_cord", "allogeneic", "autologous"),
        # 10-100 million cells typical
        "cell_dose_millions": np.clip(rng.lognormal(np.log(40.0), 0.7, n), 1, 500).round(1),
        "injections": rng.choice([1, 2, 3], size=n, p=[0.60, 0.25, 0.15]).astype(float),
        "prp": rng.random(n) < 0.30,  # *assumption*
        "rehab": rng.random(n) < 0.50,  # *assumption*
        # Protocol exclusions are rare among treated patients (*assumption*).
        "avascular_necrosis": rng.random(n) < 0.01,
        "active_infection": rng.random(n) < 0.005,
        "immune_disorder": rng.random(n) < 0.03,
    }


def _mean_improvement(
    columns: dict[str, np.ndarray], total_0: np.ndarray, fig: CohortFigures
) -> np.ndarray:
    """The expected 12-month improvement (positive = better) before the scale's floor.

    Usual-care response about 10 points; MSC adds about 7 relative to control (Bone Joint Res
    2020;9:719, meta-analysis of 7 RCTs), scaled with baseline severity (0.24 x baseline, i.e.
    7.2 at the mean baseline of 30); regression to the mean 0.2 x (baseline - 30).
    """
    usual_care = fig.usual_care + fig.regression_to_mean * (total_0 - fig.baseline_mean)
    msc = fig.msc_per_baseline_point * total_0
    msc = np.where(columns["kl_grade"] == 4, fig.msc_kl4_factor * msc, msc)  # KL 4 halves it
    msc = np.where(columns["joint"] == "hip", fig.msc_hip_factor * msc, msc)  # hip 0.8 x knee
    # 0.2 points less per kg/m2 of BMI above 29.
    msc = msc - fig.msc_per_bmi_point * np.maximum(columns["bmi"] - fig.msc_bmi_pivot, 0.0)
    # Modifiers; sex has none.
    msc = (
        msc
        + fig.msc_repeated_injections * (columns["injections"] > 1)
        + fig.msc_prp * columns["prp"]
        + fig.msc_rehab * columns["rehab"]
    )
    return np.asarray(usual_care + msc)


def _blank_as_exported(
    cohort: pd.DataFrame,
    rng: np.random.Generator,
    improvement: np.ndarray,
    cfg: SimulationSettings,
) -> None:
    """Blank what an export lacks: follow-up of the lost, some KL grades, optional fields."""
    # Lost to follow-up: 12% overall, more likely among non-improvers (*assumption* on the
    # strength: odds x1.6 per SD less improvement).
    z = -(improvement - improvement.mean()) / improvement.std()
    lost = rng.random(len(cohort)) < _logistic_with_mean(
        COHORT_FIGURES.lost_logit_per_sd * z, cfg.lost_to_follow_up
    )
    cohort.loc[lost, list(FOLLOW_UP_SUBSCALES)] = np.nan

    cohort.loc[rng.random(len(cohort)) < cfg.kl_missing, "kl_grade"] = np.nan
    optional = [f.name for f in FIELDS if not f.required and f.name in cohort.columns]
    optional = [name for name in optional if name not in FOLLOW_UP_SUBSCALES]
    for name in optional:
        cohort.loc[rng.random(len(cohort)) < cfg.optional_missing, name] = np.nan


def _expected_clipped(mean: np.ndarray, sd: float) -> np.ndarray:
    """E[clip(X, 0, 96)] for X ~ N(mean, sd^2): the expected 12-month total at the floor."""
    lo, hi = 0.0, float(WOMAC_TOTAL_MAX)
    a, b = (lo - mean) / sd, (hi - mean) / sd
    inside = mean * (norm.cdf(b) - norm.cdf(a)) + sd * (norm.pdf(a) - norm.pdf(b))
    return np.asarray(inside + hi * norm.sf(b))


def _logistic_with_mean(logit_shift: np.ndarray, target_mean: float) -> np.ndarray:
    """Probabilities ``expit(a + shift)`` with ``a`` chosen so that they average to the target."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(mid + logit_shift)))).mean() < target_mean:
            lo = mid
        else:
            hi = mid
    return np.asarray(1 / (1 + np.exp(-(lo + logit_shift))))
