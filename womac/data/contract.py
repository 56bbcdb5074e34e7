"""The cohort contract: every patient field, defined once.

CSV validation, the API's request schema, the clinician form and the labels of explanations
are all derived from :data:`FIELDS`. Adding a field is one edit here plus its tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """How a field's values are written and parsed."""

    IDENTIFIER = "identifier"
    NUMBER = "number"
    INTEGER = "integer"
    CATEGORY = "category"
    BOOLEAN = "boolean"


class Role(StrEnum):
    """What the product does with a field."""

    IDENTIFIER = "identifier"  # pseudonymous; never a feature, never logged
    PREDICTOR = "predictor"  # a model input
    ELIGIBILITY = "eligibility"  # protocol exclusion flag; never a model input
    OUTCOME = "outcome"  # 12-month follow-up; training only


class FormSection(StrEnum):
    """Where the clinician form shows a field, in the order a clinician takes a history."""

    PATIENT = "Patient"
    JOINT = "Joint"
    BASELINE = "Baseline WOMAC (Likert, 0-4 per item)"
    TREATMENT = "Treatment plan"
    HEALTH = "Health and lifestyle"
    EXCLUSIONS = "Protocol exclusions"
    FOLLOW_UP = "12-month follow-up"  # outcomes: in cohort files only, never on the form


KL_GRADES: tuple[tuple[int, str], ...] = (
    (0, "none"),
    (1, "doubtful"),
    (2, "minimal"),
    (3, "moderate"),
    (4, "severe, bone on bone"),
)
"""The Kellgren-Lawrence grades in words (Kellgren & Lawrence, 1957)."""


@dataclass(frozen=True, slots=True)
class PatientField:
    """One column of the cohort contract.

    Parameters
    ----------
    name
        Column name in a cohort CSV and field name in an API request; fixed by the contract.
    kind
        How values are written: number, integer, category, boolean or identifier.
    role
        Identifier, predictor, eligibility flag or outcome.
    label
        The field in a clinician's words, for forms and explanations.
    description
        One sentence on what the field means and how it is measured.
    unit
        Unit of a numeric field, shown beside its value.
    minimum, maximum
        Inclusive allowed range of a numeric field.
    categories
        Allowed values of a category field, in display order.
    required
        Whether a cohort CSV must have the column and a request must send the field.
    blank_allowed
        Whether a required field may be blank (unknown) for an individual patient.
    aliases
        Other spellings clinics export for a category, as (spelling, category) pairs.
    max_length
        Longest allowed text of an identifier, in characters; the one limit that
        ``validate``, ``predict``, ``train`` and the API all apply.
    section
        Where the clinician form shows the field (fields keep their order here within it).
    value_labels
        Words for the values of an integer scale, as (value, words) pairs: the form offers
        them as choices, and messages use them.
    blank_label
        What a blank value means, where the form offers it as a choice.
    header_aliases
        Other headers clinics give the column (besides its name and label), for the mapping
        ``womac validate --suggest-mapping`` writes.
    """

    name: str
    kind: Kind
    role: Role
    label: str
    description: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()
    required: bool = True
    blank_allowed: bool = False
    aliases: tuple[tuple[str, str], ...] = ()
    max_length: int | None = None
    section: FormSection = FormSection.PATIENT
    value_labels: tuple[tuple[int, str], ...] = ()
    blank_label: str = ""
    header_aliases: tuple[str, ...] = ()

    @property
    def is_numeric(self) -> bool:
        """Whether the field holds a number (integers included)."""
        return self.kind in (Kind.NUMBER, Kind.INTEGER)

    @property
    def is_text(self) -> bool:
        """Whether a cohort holds the field as text (a category or an identifier)."""
        return self.kind in (Kind.CATEGORY, Kind.IDENTIFIER)

    @property
    def rule(self) -> str:
        """The rule a value must follow, in words (used in error messages)."""
        if self.kind is Kind.IDENTIFIER:
            longest = f" of at most {self.max_length} characters" if self.max_length else ""
            return f"must be a non-empty identifier{longest}"
        if self.kind is Kind.BOOLEAN:
            return "must be true/false, yes/no or 1/0"
        if self.kind is Kind.CATEGORY:
            return "must be one of " + ", ".join(self.categories)
        what = "a whole number" if self.kind is Kind.INTEGER else "a number"
        unit = f" {self.unit}" if self.unit and self.unit != "points" else ""
        return f"must be {what} from {self.minimum:g} to {self.maximum:g}{unit}"


def _womac(name: str, subscale: str, maximum: int, items: int, month: int) -> PatientField:
    when = "at baseline" if month == 0 else "12 months after treatment"
    return PatientField(
        name=name,
        kind=Kind.NUMBER,
        role=Role.PREDICTOR if month == 0 else Role.OUTCOME,
        label=f"WOMAC {subscale} {'(baseline)' if month == 0 else '(12 months)'}",
        description=(
            f"WOMAC {subscale} subscale {when}: {items} Likert items scored 0-4, "
            f"0 = none, {maximum} = extreme"
            + ("" if month == 0 else "; blank = lost to follow-up")
        ),
        unit="points",
        minimum=0,
        maximum=maximum,
        required=month == 0,
        blank_allowed=month != 0,
        section=FormSection.BASELINE if month == 0 else FormSection.FOLLOW_UP,
    )


def _flag(
    name: str,
    label: str,
    description: str,
    role: Role = Role.PREDICTOR,
    section: FormSection = FormSection.HEALTH,
) -> PatientField:
    return PatientField(
        name=name,
        kind=Kind.BOOLEAN,
        role=role,
        label=label,
        description=description,
        required=False,
        blank_allowed=True,
        section=FormSection.EXCLUSIONS if role is Role.ELIGIBILITY else section,
    )


FIELDS: tuple[PatientField, ...] = (
    PatientField(
        "patient_id",
        Kind.IDENTIFIER,
        Role.IDENTIFIER,
        "Patient ID",
        "Pseudonymous patient identifier; one row per treated joint, so a patient may repeat.",
        max_length=64,
        header_aliases=("record_id", "id", "patient", "study_id", "subject_id"),
    ),
    PatientField("age", Kind.NUMBER, Role.PREDICTOR, "Age", "Age at treatment.", "years", 18, 100),
    PatientField(
        "sex",
        Kind.CATEGORY,
        Role.PREDICTOR,
        "Sex",
        "Sex recorded at treatment.",
        categories=("female", "male"),
        aliases=(("f", "female"), ("m", "male")),
        header_aliases=("gender",),
    ),
    PatientField(
        "bmi", Kind.NUMBER, Role.PREDICTOR, "BMI", "Body-mass index at treatment.", "kg/m2", 12, 70
    ),
    PatientField(
        "joint",
        Kind.CATEGORY,
        Role.PREDICTOR,
        "Treated joint",
        "The osteoarthritic joint that was injected.",
        categories=("knee", "hip"),
        section=FormSection.JOINT,
    ),
    PatientField(
        "kl_grade",
        Kind.INTEGER,
        Role.PREDICTOR,
        "Kellgren-Lawrence grade",
        "Radiographic OA severity: "
        + ", ".join(f"{grade} {words}" for grade, words in KL_GRADES)
        + ". Blank when no radiograph is on file.",
        "",
        0,
        4,
        blank_allowed=True,
        section=FormSection.JOINT,
        value_labels=KL_GRADES,
        blank_label="Unknown (no radiograph)",
        header_aliases=("kl", "kl grade", "kellgren lawrence"),
    ),
    _womac("womac_pain_0", "pain", 20, 5, 0),
    _womac("womac_stiffness_0", "stiffness", 8, 2, 0),
    _womac("womac_function_0", "physical function", 68, 17, 0),
    PatientField(
        "symptom_years",
        Kind.NUMBER,
        Role.PREDICTOR,
        "Years with symptoms",
        "Years since joint symptoms began.",
        "years",
        0,
        60,
        required=False,
        blank_allowed=True,
        section=FormSection.JOINT,
    ),
    PatientField(
        "activity_level",
        Kind.CATEGORY,
        Role.PREDICTOR,
        "Activity level",
        "Usual physical activity level.",
        categories=("low", "moderate", "high"),
        required=False,
        blank_allowed=True,
        section=FormSection.HEALTH,
    ),
    _flag("diabetes", "Diabetes", "Diagnosed diabetes mellitus."),
    _flag("smoker", "Current smoker", "Smokes tobacco currently."),
    PatientField(
        "cell_source",
        Kind.CATEGORY,
        Role.PREDICTOR,
        "Cell source",
        "Tissue the mesenchymal stem cells were taken from.",
        categories=("bone_marrow", "adipose", "umbilical_cord"),
        required=False,
        blank_allowed=True,
        section=FormSection.TREATMENT,
    ),
    PatientField(
        "donor",
        Kind.CATEGORY,
        Role.PREDICTOR,
        "Cell donor",
        "Whether the cells came from the patient (autologous) or a donor (allogeneic).",
        categories=("autologous", "allogeneic"),
        required=False,
        blank_allowed=True,
        section=FormSection.TREATMENT,
    ),
    PatientField(
        "cell_dose_millions",
        Kind.NUMBER,
        Role.PREDICTOR,
        "Cell dose",
        "Cells per injection.",
        "million cells",
        1,
        500,
        required=False,
        blank_allowed=True,
        section=FormSection.TREATMENT,
    ),
    PatientField(
        "injections",
        Kind.INTEGER,
        Role.PREDICTOR,
        "Injections",
        "Number of injections in the treatment course.",
        "injections",
        1,
        5,
        required=False,
        blank_allowed=True,
        section=FormSection.TREATMENT,
    ),
    _flag(
        "prp",
        "PRP with cells",
        "Platelet-rich plasma given with the cells.",
        section=FormSection.TREATMENT,
    ),
    _flag(
        "rehab",
        "Rehabilitation",
        "A structured rehabilitation programme was followed.",
        section=FormSection.TREATMENT,
    ),
    _flag(
        "avascular_necrosis",
        "Avascular necrosis",
        "Avascular necrosis of the joint (protocol exclusion).",
        Role.ELIGIBILITY,
    ),
    _flag(
        "active_infection",
        "Active infection",
        "Active local or systemic infection (protocol exclusion).",
        Role.ELIGIBILITY,
    ),
    _flag(
        "immune_disorder",
        "Immune disorder",
        "Immune disorder or immunosuppression (protocol exclusion).",
        Role.ELIGIBILITY,
    ),
    _womac("womac_pain_12", "pain", 20, 5, 12),
    _womac("womac_stiffness_12", "stiffness", 8, 2, 12),
    _womac("womac_function_12", "physical function", 68, 17, 12),
)

FIELD_BY_NAME: dict[str, PatientField] = {field.name: field for field in FIELDS}
PREDICTORS: tuple[PatientField, ...] = tuple(f for f in FIELDS if f.role is Role.PREDICTOR)
PREDICTOR_NAMES: tuple[str, ...] = tuple(f.name for f in PREDICTORS)
ELIGIBILITY_FLAGS: tuple[PatientField, ...] = tuple(
    f for f in FIELDS if f.role is Role.ELIGIBILITY
)
OUTCOMES: tuple[PatientField, ...] = tuple(f for f in FIELDS if f.role is Role.OUTCOME)
ID_FIELD: PatientField = FIELD_BY_NAME["patient_id"]

BASELINE_SUBSCALES: tuple[str, ...] = ("womac_pain_0", "womac_stiffness_0", "womac_function_0")
FOLLOW_UP_SUBSCALES: tuple[str, ...] = ("womac_pain_12", "womac_stiffness_12", "womac_function_12")
WOMAC_TOTAL_MAX = 96  # 24 items x 4 on the Likert version

TARGET = "womac_improvement_12m"
"""Baseline total minus 12-month total, in points on the 0-96 scale; positive means better."""

# Spreadsheets export booleans as 1.0/0.0 too; those mean the same as 1/0.
TRUE_VALUES = frozenset({"true", "yes", "1", "1.0"})
FALSE_VALUES = frozenset({"false", "no", "0", "0.0"})


def as_request(row: Mapping[str, Any]) -> dict[str, Any]:
    """A cohort row (a simulated patient, say) as an API client sends it.

    JSON types, ``None`` where a value is unknown; outcome fields and fields the row does
    not have are left out.
    """
    request: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.role is Role.OUTCOME or spec.name not in row:
            continue
        value = row[spec.name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            request[spec.name] = None
        elif spec.kind is Kind.BOOLEAN:
            request[spec.name] = bool(value)
        elif spec.kind is Kind.INTEGER:
            request[spec.name] = int(value)
        elif spec.kind is Kind.NUMBER:
            request[spec.name] = float(value)
        else:
            request[spec.name] = str(value)
    return request
