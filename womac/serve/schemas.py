"""Request and response models; the request schema is derived from the cohort contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from womac.data import defaults
from womac.data.contract import FIELDS, Kind, PatientField, Role
from womac.models.status import MonitoringStatus
from womac.serve.bodies import MAX_PROBLEMS
from womac.settings import MAX_BATCH_CEILING


def _json_number(value: Any) -> Any:
    """A JSON number, as JSON Schema's ``integer`` means it (2.0 is one; "2" and true are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _annotation(spec: PatientField) -> tuple[Any, Any]:
    """Type and pydantic field of one contract field, with its range and meaning."""
    description = spec.description + (f" Unit: {spec.unit}." if spec.unit else "")
    extra: dict[str, Any] = {"title": spec.label, "description": description}
    kind: Any
    if spec.kind is Kind.IDENTIFIER:
        kind = str
        extra |= {"min_length": 1, "max_length": spec.max_length}
    elif spec.kind is Kind.CATEGORY:
        kind = Literal[spec.categories]
    elif spec.kind is Kind.BOOLEAN:
        # Strict, like numbers below: JSON types exactly as documented (no "61" for 61, no 0
        # for false), so the OpenAPI description is the whole truth about what is accepted.
        kind = bool
        extra |= {"strict": True}
    elif spec.kind is Kind.INTEGER:
        # The range goes before the validator, or the JSON schema shows it as "ge"/"le"
        # (not minimum/maximum) and clients cannot see it.
        kind = Annotated[
            int, Field(ge=spec.minimum, le=spec.maximum), BeforeValidator(_json_number)
        ]
    else:
        kind = float
        extra |= {"ge": spec.minimum, "le": spec.maximum, "allow_inf_nan": False, "strict": True}
    if spec.role is Role.IDENTIFIER or not spec.required:
        return kind | None, Field(default=None, **extra)
    if spec.blank_allowed:
        # Must be sent, but may be null: an explicit "unknown" rather than a forgotten field.
        return kind | None, Field(..., **extra)
    return kind, Field(..., **extra)


PatientRequest: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "PatientRequest",
    __config__=ConfigDict(extra="forbid", title="Patient"),
    __doc__="One treated joint, described by the fields of the cohort contract.",
    **{spec.name: _annotation(spec) for spec in FIELDS if spec.role is not Role.OUTCOME},
)


class Contribution(BaseModel):
    """How much one field moved this patient's expected improvement from the base value."""

    feature: str = Field(description="Contract field name.")
    label: str = Field(description="The field in clinical words.")
    value: bool | int | float | str | None = Field(
        description="The patient's value; null if unknown."
    )
    unit: str = Field(description="Unit of the value, if any.")
    contribution: float = Field(
        description="Points added to (or, if negative, taken from) the expected improvement."
    )
    note: str | None = Field(
        default=None, description="Set when the value was unknown or the model does not use it."
    )


class Explanation(BaseModel):
    """SHAP attribution: base_value + sum(contributions) = expected_improvement."""

    base_value: float = Field(description="Average expected improvement in the training cohort.")
    contributions: list[Contribution]


class Interval(BaseModel):
    """The range the 12-month improvement is expected to fall in, at the stated coverage."""

    lower: float = Field(description="Lower end (points).")
    upper: float = Field(description="Upper end (points).")
    level: float = Field(description="Coverage: the share of patients whose outcome falls inside.")


class Eligibility(BaseModel):
    """Whether the patient fits the clinic's MSC protocol, and if not, why not."""

    candidate: bool
    reasons: list[str]


class ModelReference(BaseModel):
    """Which registered model answered."""

    name: str
    version: str
    run_id: str


class Prediction(BaseModel):
    """Expected 12-month WOMAC improvement for one patient, with its explanation."""

    patient_id: str | None = None
    expected_improvement: float = Field(
        description="Expected improvement of the WOMAC total (0-96) at 12 months, in points; "
        "positive means better."
    )
    interval: Interval
    p_clinically_important: float = Field(
        ge=0,
        le=1,
        description="Chance of a clinically important improvement: by default at least "
        f"{defaults.RESPONDER_MIN_POINTS:g} points and at least "
        f"{defaults.RESPONDER_MIN_FRACTION:.0%} of the baseline "
        "total (the thresholds are set at training; GET /v1/model names the serving model's).",
    )
    eligibility: Eligibility
    explanation: Explanation
    warnings: list[str] = Field(
        default_factory=list,
        description="Where the estimate extrapolates, what was unknown or not used, "
        "and what could not be checked.",
    )
    model: ModelReference


def _unpublished(*keys: str) -> Callable[[dict[str, Any]], None]:
    """A JSON-schema hook that leaves the given keywords out of the published schema."""

    def drop(schema: dict[str, Any]) -> None:
        for key in keys:
            schema.pop(key, None)

    return drop


class BatchRequest(BaseModel):
    """Several patients at once (at most the service's batch limit)."""

    model_config = ConfigDict(extra="forbid")
    # Checked before any patient is validated: half a million elements cost nothing. Not
    # published as maxItems: a list that long is over the body limit first (413), and the
    # service's own batch limit (WOMAC_MAX_BATCH_SIZE, 413) is the one a client meets.
    patients: list[PatientRequest] = Field(
        min_length=1,
        max_length=MAX_BATCH_CEILING,
        description="The patients, at most the service's batch limit (WOMAC_MAX_BATCH_SIZE, "
        f"1,000 by default and never more than {MAX_BATCH_CEILING:,}).",
        json_schema_extra=_unpublished("maxItems"),
    )


class BatchPrediction(BaseModel):
    """One prediction per patient, in the order sent."""

    predictions: list[Prediction]


class Health(BaseModel):
    """Liveness, and whether a model is loaded."""

    status: Literal["ok"] = "ok"
    model_loaded: bool
    model_version: str | None = None
    auth_required: bool = Field(
        default=False, description="Whether other routes need the X-API-Key header."
    )


class ModelCard(BaseModel):
    """The serving model and its evaluation figures."""

    name: str
    version: str
    run_id: str
    alias: str
    candidate: str
    fields_used: list[str]
    held_out: dict[str, float] = Field(description="Held-out metrics of the chosen model.")
    comparator_held_out: dict[str, float] = Field(
        description="Held-out metrics of the baseline-WOMAC-only comparator."
    )
    oracle_held_out: dict[str, float] = Field(
        description="Held-out metrics of the noise-free expectation (simulated cohorts only)."
    )
    cross_validation: dict[str, float]
    interval: dict[str, float] = Field(description="Held-out coverage and mean width.")
    interval_level: float = Field(description="Coverage the interval is calibrated for.")
    responder_definition: dict[str, float] = Field(
        description="Clinically important improvement: at least min_points and at least "
        "min_fraction of the baseline total."
    )
    responder: dict[str, float] = Field(
        description="Held-out AUROC, Brier score and calibration of the responder probability."
    )
    monitoring: MonitoringStatus | None = Field(
        description="The latest verdict of `womac monitor` on this version, judged on patients "
        "treated since its training: holds, degraded or not_judged (no 12-month scores yet), "
        "when, on how many patients and why. Null when it was never monitored (or its record "
        "cannot be read). A reload picks up a newer verdict."
    )


class Reloaded(BaseModel):
    """A reload that swapped in the champion the alias points to now."""

    reloaded: Literal[True] = True
    serving_version: str = Field(description="The registered version now answering.")
    previous_version: str | None = Field(
        description="The version that answered before (none if no model was being served)."
    )


class ErrorMessage(BaseModel):
    """Why a request was refused (401, 404, 413, 503), in words meant for a person."""

    detail: str = Field(description="What went wrong and, where it helps, what to do.")


class FieldProblem(BaseModel):
    """One rule a request broke; names the field, never the value sent."""

    field: str = Field(description="The field, as a dotted path (e.g. patients.0.age).")
    loc: list[str | int] = Field(description="Where in the request: body, then the path.")
    msg: str = Field(description="The rule broken.")
    type: str = Field(description="Machine-readable kind of problem.")


class ValidationProblems(BaseModel):
    """A refused request: its bad fields at once (the first few, and how many more)."""

    detail: list[FieldProblem] = Field(
        description=f"The first {MAX_PROBLEMS} problems at most, in the body's order."
    )
    more_problems: int | None = Field(
        default=None, ge=1, description="How many problems there are beyond those listed."
    )


# Shared by every route that reads a body (FastAPI's default 422 schema is not ours).
BODY_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorMessage,
        "description": "The body cannot be read as text (not UTF-8).",
    },
    413: {
        "model": ErrorMessage,
        "description": "The body is over WOMAC_MAX_BODY_BYTES, or a batch over "
        "WOMAC_MAX_BATCH_SIZE patients; the message names the limit.",
    },
    422: {
        "model": ValidationProblems,
        "description": "Bad input: each bad field named with the rule broken, values not echoed.",
    },
}
