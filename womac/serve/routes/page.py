"""The clinician page: one patient, a form generated from the contract, served offline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from womac.data.contract import FIELDS, FormSection, Kind, PatientField, Role
from womac.models.status import MonitoringStatus, Verdict

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
router = APIRouter(tags=["page"])


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
    """The form's sections, from the contract alone: every field a request can carry, once,
    in its section (the contract's order of sections, and of fields within one)."""
    sections = []
    for section in FormSection:
        fields = [
            _form_field(spec)
            for spec in FIELDS
            if spec.section is section and spec.role is not Role.OUTCOME
        ]
        if fields:
            sections.append((section.value, fields))
    return sections


def _form_field(spec: PatientField) -> FormField:
    optional = spec.role is Role.IDENTIFIER or not spec.required
    hint = ""
    if spec.is_numeric and spec.minimum is not None and spec.maximum is not None:
        unit = f" {spec.unit}" if spec.unit and spec.unit != "points" else ""
        hint = f"{spec.minimum:g}-{spec.maximum:g}{unit}"
        if spec.unit == "points":
            hint += " points"
    return FormField(spec, optional, spec.blank_allowed, hint)


def askable_fields() -> list[str]:
    """Contract fields a request can carry (everything but the 12-month outcomes)."""
    return [f.name for f in FIELDS if f.role is not Role.OUTCOME]


@dataclass(frozen=True, slots=True)
class MonitoringNotice:
    """What the page tells a clinician when monitoring found the serving model degraded."""

    patients: str
    checked_on: str
    reasons: tuple[str, ...]


def monitoring_notice(status: MonitoringStatus | None) -> MonitoringNotice | None:
    """The notice for the serving model's latest verdict: only when it is ``degraded``."""
    if status is None or status.verdict is not Verdict.degraded:
        return None
    patients = f"{status.patients:,} patient{'' if status.patients == 1 else 's'}"
    return MonitoringNotice(patients, _day(status.last_monitored), tuple(status.reasons))


def _day(moment: str) -> str:
    """An ISO 8601 moment as a day in words (12 March 2027); as written if it is not one."""
    try:
        day = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    return f"{day.day} {day:%B %Y}"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page(request: Request) -> HTMLResponse:
    """The clinician page."""
    # Not the model dependency: the page is served (and its form works) with no model loaded.
    model = request.app.state.model
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "sections": form_sections(),
            "Kind": Kind,
            "notice": monitoring_notice(model.monitoring if model is not None else None),
        },
    )
