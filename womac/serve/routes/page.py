"""The clinician page: one patient, a form generated from the contract, served offline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from womac.data.contract import FIELD_BY_NAME, FIELDS, Kind, PatientField, Role

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
router = APIRouter(tags=["page"])

# How the form groups the contract's fields, in the order a clinician takes a history.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Patient", ("patient_id", "age", "sex", "bmi")),
    ("Joint", ("joint", "kl_grade", "symptom_years")),
    (
        "Baseline WOMAC (Likert, 0-4 per item)",
        ("womac_pain_0", "womac_stiffness_0", "womac_function_0"),
    ),
    (
        "Treatment plan",
        ("cell_source", "donor", "cell_dose_millions", "injections", "prp", "rehab"),
    ),
    ("Health and lifestyle", ("activity_level", "diabetes", "smoker")),
    ("Protocol exclusions", ("avascular_necrosis", "active_infection", "immune_disorder")),
)

KL_DESCRIPTIONS = {
    0: "none",
    1: "doubtful",
    2: "minimal",
    3: "moderate",
    4: "severe, bone on bone",
}


@dataclass(frozen=True, slots=True)
class FormField:
    """One input of the form, everything taken from the contract."""

    spec: PatientField
    optional: bool
    nullable: bool
    hint: str

    @property
    def name(self) -> str:
        """Field name, as the API expects it."""
        return self.spec.name


def form_sections() -> list[tuple[str, list[FormField]]]:
    """The form's sections; every contract field a request can carry appears exactly once."""
    sections = []
    for title, names in SECTIONS:
        fields = []
        for name in names:
            spec = FIELD_BY_NAME[name]
            optional = spec.role is Role.IDENTIFIER or not spec.required
            if spec.is_numeric and spec.minimum is not None and spec.maximum is not None:
                unit = f" {spec.unit}" if spec.unit and spec.unit != "points" else ""
                hint = f"{spec.minimum:g}-{spec.maximum:g}{unit}"
                if spec.unit == "points":
                    hint += " points"
            else:
                hint = ""
            fields.append(FormField(spec, optional, spec.blank_allowed, hint))
        sections.append((title, fields))
    return sections


def askable_fields() -> list[str]:
    """Contract fields a request can carry (everything but the 12-month outcomes)."""
    return [f.name for f in FIELDS if f.role is not Role.OUTCOME]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page(request: Request) -> HTMLResponse:
    """The clinician page."""
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "sections": form_sections(),
            "Kind": Kind,
            "kl_descriptions": KL_DESCRIPTIONS,
        },
    )
