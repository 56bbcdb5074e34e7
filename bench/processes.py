"""Data-generating processes for the accuracy benchmark, written apart from the product.

The product's embedded simulator (:func:`womac.data.simulate.simulate_cohort`) is what the
models were developed on, so a benchmark on it alone cannot tell good modelling from a
model tuned to one simulator. This module adds two cohorts whose effects, noise, category
mixes, missingness and dropout were written without looking at the product's models, and
which differ from the literature simulator and from each other in every one of those
respects:

``literature``
    The product's own simulator, for reference: additive effects with a proportional MSC
    effect, homoscedastic Gaussian noise, 90% knees, 12% dropout among non-improvers.

``thresholds`` (:func:`simulate_thresholds`)
    A hip-heavy (about 35% hips) older orthopaedic-referral cohort with more KL 3-4. The
    MSC effect is a base proportional to baseline severity times *step* factors: age cuts
    at 60 and 72, a BMI cut at 32, a KL 4 step, a cell-dose threshold at 20 million, and
    multiplicative joint, source, rehab, PRP, smoker and (small) sex factors; usual care is
    a step at a baseline total of 45. Noise is Gaussian and *heteroscedastic*: its SD grows
    with baseline severity and is larger from KL 3. KL is blank far more for hips; one
    clinic never records activity level or symptom years, another never records cell dose
    or donor. 20% are lost to follow-up, mostly non-improvers. About 7.5% of patients had
    a knee and a hip treated: two rows sharing a patient_id, age, sex and BMI, with
    correlated noise.

``synergy`` (:func:`simulate_synergy`)
    A younger, knee-heavy (about 20% hips) regenerative-clinic cohort with more KL 1-2,
    adipose cells most common and fixed-dose allogeneic products. The MSC effect is built
    from *interactions*: a saturating (Emax) dose-response whose maximum and half-dose
    depend on cell source, a PRP x rehab synergy, age x KL, diabetes x BMI, smoking x
    autologous cells, a log-saturating number of injections and a U-shaped dependence on
    baseline severity (best at moderate severity); sex has no effect. Noise is homoscedastic
    but *heavy-tailed* (Student t, 4 df). KL is blank more often for mild baselines (no
    radiograph ordered); the treatment block (source, donor, dose, injections) is blank
    together for referred patients; activity is blank more for older patients. 8% are lost
    to follow-up, among both the best and the worst outcomes. One row per patient.

Each process returns ``(cohort, oracle)`` like ``simulate_cohort``: every contract column
(booleans as object columns of True/False/NaN, 12-month subscales blank when lost to
follow-up) and the exact noise-free expected improvement of every row, including rows
lost to follow-up, named :data:`womac.data.simulate.ORACLE`. The oracle is the baseline
total minus the expectation of the 12-month total *clipped to 0-96*, in closed form for
both noise families. The observed 12-month total is rounded to whole points by dithered
rounding (``floor(y + U)``, ``U ~ Uniform(0, 1)``), which keeps its expectation exact, and
split into subscales that add up to it. Protocol exclusions are rare and have no effect on
the outcome.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import norm
from scipy.stats import t as student_t

from womac.data.contract import BASELINE_SUBSCALES, FIELDS, FOLLOW_UP_SUBSCALES, WOMAC_TOTAL_MAX
from womac.data.simulate import ORACLE, simulate_cohort

Process = Callable[[int, int], tuple[pd.DataFrame, pd.Series]]

# Subscale maxima on the Likert version: pain 5 items, stiffness 2, function 17 (0-4 each).
_SUBSCALE_MAX = np.array([20, 8, 68])
_COLUMNS = [spec.name for spec in FIELDS]
_OPTIONAL = [
    spec.name for spec in FIELDS if not spec.required and spec.name not in FOLLOW_UP_SUBSCALES
]

# Independent random streams per process: the same seed gives unrelated cohorts.
_THRESHOLDS_STREAM = 0x7448
_SYNERGY_STREAM = 0x5359


def simulate_literature(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """The product's literature simulator with its default settings (for reference)."""
    return simulate_cohort(n, seed)


def simulate_thresholds(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Step effects and multiplicative modifiers, heteroscedastic Gaussian noise.

    Parameters
    ----------
    n
        Number of rows (treated joints).
    seed
        Seed of the random generator; the same seed gives the same cohort.

    Returns
    -------
    cohort
        Every contract column, one row per treated joint; patient ids ``THR-<seed>-<i>``.
    oracle
        The exact expected 12-month improvement of each row, named ``ORACLE``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = np.random.default_rng([_THRESHOLDS_STREAM, seed])

    # Patients who had a knee and a hip treated: the second row copies the first row's
    # patient-level fields (age, sex, BMI, comorbidities, the cell product) and is the
    # other joint. About 7.5% of patients have both rows.
    pairs = round(0.075 * n / 1.075) if n >= 2 else 0
    paired = rng.permutation(n)[: 2 * pairs]
    first, second = paired[:pairs], paired[pairs:]
    patient = np.arange(n)
    patient[second] = first

    # Older referral cohort: age 18 + 75 x Beta(5, 3), mean 65, SD 12; 52% female.
    age = (18.0 + 75.0 * rng.beta(5.0, 3.0, n)).round(0)[patient]
    female = (rng.random(n) < 0.52)[patient]
    # BMI log-normal around 27.5, a little lower in women, 16-55.
    bmi = np.exp(rng.normal(np.log(27.5) - 0.03 * female, 0.17, n))
    bmi = np.clip(bmi, 16.0, 55.0).round(1)[patient]
    # Hips about 35% of rows; the second row of a pair is the other joint.
    hip = rng.random(n) < 0.33
    hip[second] = ~hip[first]
    # KL grade 0-4 leans severe (surgical referrals), hips a little less so.
    kl = np.where(
        hip,
        rng.choice(5, size=n, p=[0.03, 0.09, 0.26, 0.38, 0.24]),
        rng.choice(5, size=n, p=[0.02, 0.05, 0.18, 0.43, 0.32]),
    )

    # Baseline: a latent severity (share of the maximum score) drawn from a Beta whose mean
    # rises with KL; each subscale is a binomial count of item points at that severity,
    # pain running a little above function and stiffness; at least 5% (all are symptomatic).
    severity = np.maximum(rng.beta(4.0, 4.0 / (0.22 + 0.05 * kl) - 4.0), 0.05)
    pain_0 = rng.binomial(20, np.clip(1.15 * severity, 0, 1))
    stiffness_0 = rng.binomial(8, severity)
    function_0 = rng.binomial(68, 0.97 * severity)
    subscales_0 = np.column_stack([pain_0, stiffness_0, function_0]).astype(float)
    total_0 = subscales_0.sum(axis=1)

    # Optional fields. Symptom years grow with age (log-normal, capped by adult life).
    symptom_years = np.exp(rng.normal(np.log(3.0 + 0.12 * (age - 40.0).clip(0)), 0.8))
    symptom_years = np.minimum(symptom_years, np.minimum(60.0, age - 16.0)).round(1)
    # Activity: low 25/moderate 50/high 25%, shifted towards low by BMI.
    activity_draw = rng.random(n) - 0.02 * (bmi - 27.5)
    activity = np.select(
        [activity_draw < 0.25, activity_draw < 0.75], ["low", "moderate"], "high"
    ).astype(object)
    diabetes = (rng.random(n) < expit(-2.6 + 0.12 * (bmi - 27.5) + 0.03 * (age - 65.0)))[patient]
    smoker = (rng.random(n) < 0.10)[patient]
    # Cell product: bone marrow 60%, adipose 25%, umbilical cord 15%. Umbilical cord is a
    # donor product (allogeneic); 20% of bone-marrow and 5% of adipose cells come from a
    # donor bank. Doses: bone marrow ~25M, adipose ~60M, umbilical cord fixed 10/25/50/100M.
    cell_source = rng.choice(
        np.array(["bone_marrow", "adipose", "umbilical_cord"], dtype=object),
        size=n,
        p=[0.60, 0.25, 0.15],
    )[patient]
    allogeneic = (cell_source == "umbilical_cord") | (
        rng.random(n) < np.where(cell_source == "bone_marrow", 0.20, 0.05)
    )[patient]
    donor = np.where(allogeneic, "allogeneic", "autologous").astype(object)
    cell_dose = np.select(
        [cell_source == "bone_marrow", cell_source == "adipose"],
        [rng.lognormal(np.log(25.0), 0.5, n), rng.lognormal(np.log(60.0), 0.6, n)],
        rng.choice([10.0, 25.0, 50.0, 100.0], size=n, p=[0.2, 0.3, 0.3, 0.2]),
    )
    cell_dose = np.clip(cell_dose, 1.0, 500.0).round(1)[patient]
    injections = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.45, 0.25, 0.15, 0.10, 0.05])
    prp = rng.random(n) < 0.45
    rehab = rng.random(n) < 0.35
    # Protocol exclusions, rare and independent of the outcome.
    avascular_necrosis = rng.random(n) < 0.008
    active_infection = rng.random(n) < 0.004
    immune_disorder = rng.random(n) < 0.015

    # Usual care is a step: 5 points for everyone, 6 more from a baseline total of 45
    # (symptomatic patients are sent to physiotherapy at that level).
    usual_care = 5.0 + 6.0 * (total_0 >= 45)
    # MSC effect: 0.30 x baseline total (room to improve) times step and multiplicative
    # factors, plus additive steps.
    age_factor = np.select([age < 60, age < 72], [1.0, 0.7], 0.35)  # benefit fades by age
    bmi_factor = np.where(bmi < 32.0, 1.0, 0.6)  # obesity cut at 32 kg/m2
    kl_factor = np.select([kl <= 2, kl == 3], [1.15, 1.0], 0.4)  # bone on bone: a step down
    joint_factor = np.where(hip, 0.65, 1.0)  # hips respond less
    dose_factor = np.select([cell_dose < 20.0, cell_dose <= 100.0], [0.55, 1.0], 1.1)
    source_factor = np.select(
        [cell_source == "umbilical_cord", cell_source == "adipose"], [1.15, 0.9], 1.0
    )
    course_factor = np.where(injections >= 3, 1.2, 1.0)  # a course of 3+ injections
    msc = (
        0.30
        * total_0
        * age_factor
        * bmi_factor
        * kl_factor
        * joint_factor
        * dose_factor
        * source_factor
        * course_factor
        * np.where(rehab, 1.3, 1.0)  # rehabilitation multiplies the effect
        * np.where(prp, 1.1, 1.0)  # PRP a little
        * np.where(smoker, 0.75, 1.0)  # smoking impairs cell function
        * np.where(female, 0.9, 1.0)  # a small sex difference
    )
    msc = msc - 2.5 * diabetes + np.select([activity == "low", activity == "high"], [-1.5, 1.5])
    mean_improvement = usual_care + msc

    # Heteroscedastic Gaussian noise: SD 4 + 0.12 x baseline total, 2 more from KL 3.
    # The two joints of a patient share 30% of the noise variance.
    noise_sd = 4.0 + 0.12 * total_0 + 2.0 * (kl >= 3)
    shared = rng.standard_normal(n)[patient]
    noise = noise_sd * (np.sqrt(0.7) * rng.standard_normal(n) + np.sqrt(0.3) * shared)
    expected_12 = total_0 - mean_improvement
    total_12 = _dithered_round(np.clip(expected_12 + noise, 0, WOMAC_TOTAL_MAX), rng)
    oracle = total_0 - _expected_clipped_normal(expected_12, noise_sd)

    # 12-month subscales keep the patient's own baseline profile, jittered.
    profile = (subscales_0 + 1.0) / (subscales_0 + 1.0).sum(axis=1, keepdims=True)
    subscales_12 = _split_total(total_12, rng.dirichlet([40.0, 40.0, 40.0], n) * profile)

    cohort = _frame(
        ids=[f"THR-{seed}-{i:06d}" for i in patient],
        age=age,
        female=female,
        bmi=bmi,
        hip=hip,
        kl=kl,
        subscales_0=subscales_0,
        symptom_years=symptom_years,
        activity=activity,
        diabetes=diabetes,
        smoker=smoker,
        cell_source=cell_source,
        donor=donor,
        cell_dose=cell_dose,
        injections=injections,
        prp=prp,
        rehab=rehab,
        avascular_necrosis=avascular_necrosis,
        active_infection=active_infection,
        immune_disorder=immune_disorder,
        subscales_12=subscales_12,
    )

    # Lost to follow-up: 20%, mostly non-improvers (odds x2.7 per SD less improvement).
    improvement = total_0 - total_12
    z = -(improvement - improvement.mean()) / max(improvement.std(), 1e-9)
    lost = rng.random(n) < _logistic_with_mean(1.0 * z, 0.20)
    cohort.loc[lost, list(FOLLOW_UP_SUBSCALES)] = np.nan

    # KL blank for 5% of knees and 15% of hips (hip radiographs often not on file).
    cohort.loc[rng.random(n) < np.where(hip, 0.15, 0.05), "kl_grade"] = np.nan
    # Clinics: one (20% of rows) never records activity or symptom years, another (15%)
    # never records the cell dose or the donor; elsewhere 3% blanks at random.
    clinic = rng.choice(4, size=n, p=[0.35, 0.30, 0.20, 0.15])[patient]
    cohort.loc[clinic == 2, ["activity_level", "symptom_years"]] = np.nan
    cohort.loc[clinic == 3, ["cell_dose_millions", "donor"]] = np.nan
    for name in _OPTIONAL:
        cohort.loc[rng.random(n) < 0.03, name] = np.nan

    return cohort, pd.Series(oracle, index=cohort.index, name=ORACLE)


def simulate_synergy(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Interacting effects and saturating dose-response, heavy-tailed (Student t) noise.

    Parameters
    ----------
    n
        Number of rows (one treated joint per patient).
    seed
        Seed of the random generator; the same seed gives the same cohort.

    Returns
    -------
    cohort
        Every contract column, one row per patient; patient ids ``SYN-<seed>-<i>``.
    oracle
        The exact expected 12-month improvement of each row, named ``ORACLE``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = np.random.default_rng([_SYNERGY_STREAM, seed])

    # Younger regenerative-clinic cohort: age ~N(54, 11), 62% female, BMI 18 + Gamma
    # (mean 28, right-skewed); about 20% hips.
    age = np.clip(rng.normal(54.0, 11.0, n), 18.0, 95.0).round(0)
    female = rng.random(n) < 0.62
    bmi = np.clip(18.0 + rng.gamma(4.0, 2.5, n), 12.0, 70.0).round(1)
    hip = rng.random(n) < 0.20
    # KL from an ordinal latent that rises with age: overall about 3/22/40/27/8% for 0-4.
    kl_latent = 0.045 * (age - 54.0) + rng.standard_normal(n)
    kl = np.searchsorted(np.array([-2.10, -0.75, 0.43, 1.57]), kl_latent)

    # Baseline total: Gamma with mean 24 + 5 x KL, more with low activity; split into
    # subscales around pain 24%, stiffness 9%, function 67%.
    # Activity: low more likely, high less likely with age (about 23/44/33% overall).
    low_share = 0.20 + 0.008 * (age - 54.0).clip(0)
    high_share = np.clip(0.42 - 0.01 * (age - 54.0), 0.05, 0.80) * (1.0 - low_share)
    activity_draw = rng.random(n)
    activity = np.select(
        [activity_draw < low_share, activity_draw < low_share + high_share],
        ["low", "high"],
        "moderate",
    ).astype(object)
    mean_0 = 24.0 + 5.0 * kl + 6.0 * (activity == "low")
    total_0 = _dithered_round(np.clip(rng.gamma(6.0, mean_0 / 6.0), 3.0, 92.0), rng)
    subscales_0 = _split_total(total_0, rng.dirichlet(np.array([0.24, 0.09, 0.67]) * 80, n))
    total_0 = subscales_0.sum(axis=1)

    symptom_years = np.minimum(rng.exponential(5.0, n), np.minimum(60.0, age - 16.0)).round(1)
    diabetes = rng.random(n) < expit(-2.75 + 0.15 * (bmi - 28.0))  # about 9%, more if obese
    smoker = rng.random(n) < 0.20
    # Cell product: adipose 55%, bone marrow 25%, umbilical cord 20%. Adipose cells are
    # always the patient's own; umbilical cord always a donor's; 10% of bone marrow from a
    # donor bank. Doses: adipose ~80M (wide), bone marrow ~15M, umbilical cord ~40M.
    cell_source = rng.choice(
        np.array(["adipose", "bone_marrow", "umbilical_cord"], dtype=object),
        size=n,
        p=[0.55, 0.25, 0.20],
    )
    allogeneic = (cell_source == "umbilical_cord") | (
        (cell_source == "bone_marrow") & (rng.random(n) < 0.10)
    )
    donor = np.where(allogeneic, "allogeneic", "autologous").astype(object)
    is_adipose, is_marrow = cell_source == "adipose", cell_source == "bone_marrow"
    cell_dose = np.select(
        [is_adipose, is_marrow],
        [rng.lognormal(np.log(80.0), 0.8, n), rng.lognormal(np.log(15.0), 0.6, n)],
        rng.lognormal(np.log(40.0), 0.4, n),
    )
    cell_dose = np.clip(cell_dose, 1.0, 500.0).round(1)
    injections = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.30, 0.40, 0.20, 0.07, 0.03])
    prp = rng.random(n) < 0.40
    rehab = rng.random(n) < 0.60
    # Protocol exclusions: avascular necrosis mostly in hips; all rare, no effect.
    avascular_necrosis = rng.random(n) < np.where(hip, 0.02, 0.002)
    active_infection = rng.random(n) < 0.01
    immune_disorder = rng.random(n) < 0.015

    # Usual care: 4 points plus 0.18 per baseline point (no centring).
    usual_care = 4.0 + 0.18 * total_0
    # Emax dose-response by cell source: maximum effect and half-effect dose (million).
    emax = np.select([is_adipose, is_marrow], [9.0, 11.0], 13.0)
    ed50 = np.select([is_adipose, is_marrow], [60.0, 10.0], 25.0)
    msc = emax * cell_dose / (cell_dose + ed50)
    msc += 2.0 * np.log(injections)  # more injections help, with diminishing returns
    msc += 1.0 * prp + 2.0 * rehab + 4.0 * (prp & rehab)  # PRP and rehab work together
    msc -= 0.07 * (age - 45.0).clip(0) * (kl - 1).clip(0)  # old age hurts more at high KL
    msc -= 0.45 * diabetes * (bmi - 25.0).clip(0)  # diabetes hurts more the heavier
    msc -= 3.5 * (smoker & ~allogeneic)  # smoking impairs the patient's own cells only
    msc -= 0.005 * (total_0 - 42.0) ** 2  # U-shape: best at moderate baseline severity
    msc -= 2.0 * hip
    mean_improvement = usual_care + msc

    # Heavy-tailed noise: 7 x Student t with 4 df (SD 7 x sqrt(2), about 9.9 points).
    noise_scale, noise_df = 7.0, 4.0
    noise = noise_scale * rng.standard_t(noise_df, n)
    expected_12 = total_0 - mean_improvement
    total_12 = _dithered_round(np.clip(expected_12 + noise, 0, WOMAC_TOTAL_MAX), rng)
    oracle = total_0 - _expected_clipped_t(expected_12, noise_scale, noise_df)
    subscales_12 = _split_total(total_12, rng.dirichlet(np.array([0.22, 0.10, 0.68]) * 50, n))

    cohort = _frame(
        ids=[f"SYN-{seed}-{i:06d}" for i in range(n)],
        age=age,
        female=female,
        bmi=bmi,
        hip=hip,
        kl=kl,
        subscales_0=subscales_0,
        symptom_years=symptom_years,
        activity=activity,
        diabetes=diabetes,
        smoker=smoker,
        cell_source=cell_source,
        donor=donor,
        cell_dose=cell_dose,
        injections=injections,
        prp=prp,
        rehab=rehab,
        avascular_necrosis=avascular_necrosis,
        active_infection=active_infection,
        immune_disorder=immune_disorder,
        subscales_12=subscales_12,
    )

    # Lost to follow-up: 8%, at both ends (the best stop coming, the worst go elsewhere).
    improvement = total_0 - total_12
    z = (improvement - improvement.mean()) / max(improvement.std(), 1e-9)
    lost = rng.random(n) < _logistic_with_mean(1.2 * np.abs(z), 0.08)
    cohort.loc[lost, list(FOLLOW_UP_SUBSCALES)] = np.nan

    # KL blank for about 10%, more for mild baselines (no radiograph ordered).
    cohort.loc[rng.random(n) < expit(-2.4 - 0.05 * (total_0 - 36.0)), "kl_grade"] = np.nan
    # Referred patients (6%): the whole treatment block is blank together.
    referred = rng.random(n) < 0.06
    cohort.loc[referred, ["cell_source", "donor", "cell_dose_millions", "injections"]] = np.nan
    # Activity blank more for older patients; symptom years 12% at random; the comorbidity
    # questionnaire (diabetes, smoker) not returned by 5%; PRP, rehab and the exclusion
    # flags blank for 2% each.
    cohort.loc[rng.random(n) < expit(-3.0 + 0.06 * (age - 54.0)), "activity_level"] = np.nan
    cohort.loc[rng.random(n) < 0.12, "symptom_years"] = np.nan
    cohort.loc[rng.random(n) < 0.05, ["diabetes", "smoker"]] = np.nan
    for name in ("prp", "rehab", "avascular_necrosis", "active_infection", "immune_disorder"):
        cohort.loc[rng.random(n) < 0.02, name] = np.nan

    return cohort, pd.Series(oracle, index=cohort.index, name=ORACLE)


PROCESSES: dict[str, Process] = {
    "literature": simulate_literature,
    "thresholds": simulate_thresholds,
    "synergy": simulate_synergy,
}
"""The benchmark's data-generating processes by name."""


def _frame(
    *,
    ids: list[str],
    age: np.ndarray,
    female: np.ndarray,
    bmi: np.ndarray,
    hip: np.ndarray,
    kl: np.ndarray,
    subscales_0: np.ndarray,
    symptom_years: np.ndarray,
    activity: np.ndarray,
    diabetes: np.ndarray,
    smoker: np.ndarray,
    cell_source: np.ndarray,
    donor: np.ndarray,
    cell_dose: np.ndarray,
    injections: np.ndarray,
    prp: np.ndarray,
    rehab: np.ndarray,
    avascular_necrosis: np.ndarray,
    active_infection: np.ndarray,
    immune_disorder: np.ndarray,
    subscales_12: np.ndarray,
) -> pd.DataFrame:
    """A cohort frame in contract column order; booleans as object columns (True/False)."""
    flags = {
        "diabetes": diabetes,
        "smoker": smoker,
        "prp": prp,
        "rehab": rehab,
        "avascular_necrosis": avascular_necrosis,
        "active_infection": active_infection,
        "immune_disorder": immune_disorder,
    }
    columns: dict[str, object] = {
        "patient_id": ids,
        "age": age.astype(float),
        "sex": np.where(female, "female", "male").astype(object),
        "bmi": bmi.astype(float),
        "joint": np.where(hip, "hip", "knee").astype(object),
        "kl_grade": kl.astype(float),
        **{name: subscales_0[:, i].astype(float) for i, name in enumerate(BASELINE_SUBSCALES)},
        "symptom_years": symptom_years.astype(float),
        "activity_level": activity,
        "cell_source": cell_source,
        "donor": donor,
        "cell_dose_millions": cell_dose.astype(float),
        "injections": injections.astype(float),
        **{name: values.astype(bool).astype(object) for name, values in flags.items()},
        **{name: subscales_12[:, i].astype(float) for i, name in enumerate(FOLLOW_UP_SUBSCALES)},
    }
    return pd.DataFrame(columns)[_COLUMNS]


def _dithered_round(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole points by ``floor(x + U)``: unbiased, so E[rounded] = E[x] exactly."""
    return np.floor(values + rng.random(values.shape))


def _split_total(total: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Whole-point subscales (pain, stiffness, function) adding up exactly to ``total``.

    Pain and stiffness take their share (rounded, within their maxima); function takes the
    rest, and what function cannot hold above 68 goes back to pain, then stiffness. Every
    total from 0 to 96 fits.
    """
    total = total.astype(int)
    pain = np.minimum(np.round(total * shares[:, 0] / shares.sum(axis=1)), _SUBSCALE_MAX[0])
    stiffness = np.round(total * shares[:, 1] / shares.sum(axis=1))
    stiffness = np.minimum(stiffness, np.minimum(_SUBSCALE_MAX[1], total - pain))
    function = total - pain - stiffness
    overflow = np.maximum(function - _SUBSCALE_MAX[2], 0)
    function -= overflow
    to_pain = np.minimum(overflow, _SUBSCALE_MAX[0] - pain)
    pain += to_pain
    stiffness += overflow - to_pain
    return np.column_stack([pain, stiffness, function]).astype(float)


def _expected_clipped_normal(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[clip(X, 0, 96)] for X ~ N(mean, sd^2), each row with its own SD (closed form)."""
    hi = float(WOMAC_TOTAL_MAX)
    a, b = -mean / sd, (hi - mean) / sd
    inside = mean * (norm.cdf(b) - norm.cdf(a)) + sd * (norm.pdf(a) - norm.pdf(b))
    return np.asarray(inside + hi * norm.sf(b))


def _expected_clipped_t(mean: np.ndarray, scale: float, df: float) -> np.ndarray:
    """E[clip(X, 0, 96)] for X = mean + scale x T, T Student t with ``df`` > 1 (closed form).

    Uses the t density's antiderivative of ``t f(t)``, ``-(df + t^2) f(t) / (df - 1)``, for
    the part of X inside the scale.
    """
    hi = float(WOMAC_TOTAL_MAX)
    a, b = -mean / scale, (hi - mean) / scale
    dist = student_t(df)
    inside = mean * (dist.cdf(b) - dist.cdf(a)) + scale * (
        (df + a**2) * dist.pdf(a) - (df + b**2) * dist.pdf(b)
    ) / (df - 1.0)
    return np.asarray(inside + hi * dist.sf(b))


def _logistic_with_mean(logit_shift: np.ndarray, target_mean: float) -> np.ndarray:
    """Probabilities ``expit(a + shift)`` with ``a`` chosen so that they average to the target."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if expit(mid + logit_shift).mean() < target_mean:
            lo = mid
        else:
            hi = mid
    return np.asarray(expit(lo + logit_shift))
