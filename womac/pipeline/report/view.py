"""The report's typed view: what each section shows, worked out once from a run's context.

The templates only lay these values out; every decision (which rows a table has, which
subgroup is flagged, what a field's allowed values read) is made here, in Python, where it
can be tested. Numbers stay numbers: the templates format them with the filters of
``filters.py``.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from womac.data.contract import FIELD_BY_NAME, PREDICTORS, Kind, PatientField
from womac.models.decision import DecisionRow, decision_rows, rows_at
from womac.models.metrics import wilson_interval
from womac.pipeline.provenance import environment
from womac.pipeline.report.checklist import FIGURES
from womac.pipeline.report.filters import pct

if TYPE_CHECKING:
    from womac.models.evaluation import SubgroupRow
    from womac.pipeline.report.context import ReportContext
    from womac.pipeline.results import CandidateResult

SMALL_SUBGROUP = 50  # below this many patients a subgroup's intervals are wide
_SUBGROUP_NAMES = {"sex": "Sex", "age_band": "Age band", "kl_grade": "KL grade", "joint": "Joint"}
# The reader's notes name file lines; the report holds aggregates only.
_LINE_LIST = re.compile(r"\s*\((?:line|lines) [^)]*\)")


@dataclass(frozen=True, slots=True)
class FigureView:
    """A figure of the run, embedded as PNG (``png`` is ``None`` when the run drew none)."""

    name: str
    title: str
    caption: str
    png: str | None


@dataclass(frozen=True, slots=True)
class CandidateRow:
    """One candidate model: what was searched, what cross-validation chose, its figures."""

    name: str
    description: str
    searched: str
    chosen_params: str
    chosen: bool
    cv: dict[str, float]
    test: dict[str, float]


@dataclass(frozen=True, slots=True)
class PredictorRow:
    """A contract predictor and whether this model used it."""

    spec: PatientField
    allowed: str
    needed: str
    used: str


@dataclass(frozen=True, slots=True)
class FieldRow:
    """Blanks of one contract field in the file."""

    label: str
    role: str
    required: bool
    present: bool
    blank: int
    blank_fraction: float


@dataclass(frozen=True, slots=True)
class Flow:
    """Participant flow from the file to the held-out patients."""

    excluded: int
    overlap: int
    training: int | None
    held_out: int | None
    responders: int | None
    prevalence: float | None
    other_splits: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class SubgroupLine:
    """One subgroup's figures and the screening flags they raise."""

    name: str
    figures: SubgroupRow
    flags: list[str]
    flagged: bool  # a confidence interval excludes its ideal value


@dataclass(frozen=True, slots=True)
class Subgroups:
    """Every subgroup line and the names each flag applies to."""

    lines: list[SubgroupLine] = field(default_factory=list)
    off_coverage: list[str] = field(default_factory=list)
    off_slope: list[str] = field(default_factory=list)
    small: list[str] = field(default_factory=list)
    small_sizes: list[str] = field(default_factory=list)  # "Joint hip: n=12"


@dataclass(frozen=True, slots=True)
class ClinicalUtility:
    """The decision curve in the report: its table and where deciding by the model helps."""

    rows: list[DecisionRow]  # at the reported thresholds
    first: float | None  # the curve's lowest and highest thresholds (None: no curve)
    last: float | None
    useful: str  # thresholds where the model beats treating all and none ("20%-45%"), or ""
    example: DecisionRow | None  # the table's row where the model gains most


@dataclass(frozen=True, slots=True)
class ReportView:
    """Everything the templates show, on top of the run's own context ``run``."""

    run: ReportContext
    generated: str
    software: str
    womac_version: str
    simulated: bool
    chosen: CandidateResult | None  # if it is among the candidates
    comparator: CandidateResult | None  # the baseline-WOMAC comparator, if any
    rmse_gain: float | None  # comparator's held-out RMSE minus the chosen model's
    coverage_ci: tuple[float, float] | None
    prevalence_ci: tuple[float, float] | None
    final_settings: str
    notes: list[str]
    candidates: list[CandidateRow]
    predictors: list[PredictorRow]
    predictors_used: int
    missing: list[FieldRow]
    flow: Flow
    subgroups: Subgroups
    clinical_utility: ClinicalUtility
    figures: dict[str, FigureView]
    extra_figures: list[FigureView]
    protocol: str
    age_range: str
    lost_odds_per_sd: float


def build_view(context: ReportContext) -> ReportView:
    """The typed view of ``context`` that the templates render."""
    from womac.data.simulate import COHORT_FIGURES

    evaluation = context.evaluation
    found = environment()
    chosen = _candidate(context, context.chosen)
    comparator = _candidate(context, "baseline_womac")
    figures = {
        name: _figure(context, name) for name in dict.fromkeys((*FIGURES, *context.figures))
    }
    return ReportView(
        run=context,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        software=f"Python {found['python']}, "
        + ", ".join(f"{name} {found[name]}" for name in found if name != "python"),
        womac_version=found.get("womac", "not installed"),
        simulated=context.oracle_test is not None,
        chosen=chosen,
        comparator=comparator,
        rmse_gain=_rmse_gain(chosen, comparator),
        coverage_ci=wilson_interval(evaluation.coverage, evaluation.n),
        prevalence_ci=wilson_interval(evaluation.responder.get("prevalence"), evaluation.n),
        final_settings=_final_settings(chosen),
        notes=[_LINE_LIST.sub("", note) for note in context.data.notes],
        candidates=_candidate_rows(context),
        predictors=_predictor_rows(context),
        predictors_used=len(set(context.fields_used) & {spec.name for spec in PREDICTORS}),
        missing=_field_rows(context),
        flow=_flow(context),
        subgroups=_subgroups(context),
        clinical_utility=_clinical_utility(context),
        figures=figures,
        extra_figures=[figures[name] for name in context.figures if name not in FIGURES],
        protocol=_protocol(context),
        age_range=_age_range(),
        lost_odds_per_sd=math.exp(COHORT_FIGURES.lost_logit_per_sd),
    )


def allowed_values(spec: PatientField) -> str:
    """A field's unit and allowed values, as the report's tables show them."""
    if spec.kind is Kind.CATEGORY:
        return ", ".join(spec.categories)
    if spec.kind is Kind.BOOLEAN:
        return "yes / no"
    if spec.is_numeric and spec.minimum is not None and spec.maximum is not None:
        whole = " (whole number)" if spec.kind is Kind.INTEGER else ""
        unit = f" {spec.unit}" if spec.unit else ""
        return f"{spec.minimum:g}-{spec.maximum:g}{unit}{whole}"
    return ""


def subgroup_name(subgroup: str) -> str:
    """The reader's name of a subgroup variable ("KL grade" for ``kl_grade``)."""
    return _SUBGROUP_NAMES.get(subgroup, subgroup.replace("_", " "))


def _needed(spec: PatientField) -> str:
    if spec.required and spec.blank_allowed:
        return "required (may be blank)"
    return "required" if spec.required else "optional"


def _age_range() -> str:
    age = FIELD_BY_NAME["age"]
    return f"{age.minimum:g} to {age.maximum:g} years"


def _protocol(context: ReportContext) -> str:
    settings = context.settings
    exclusions = [FIELD_BY_NAME[name].label.lower() for name in settings.exclusion_flags]
    if settings.excluded_kl_grades:
        grades = ", ".join(str(grade) for grade in settings.excluded_kl_grades)
        exclusions.insert(0, f"Kellgren-Lawrence grade {grades}")
    return "; ".join(exclusions) or "no exclusion configured"


def _candidate(context: ReportContext, name: str) -> CandidateResult | None:
    return next((c for c in context.candidates if c.name == name), None)


def _rmse_gain(chosen: CandidateResult | None, comparator: CandidateResult | None) -> float | None:
    if chosen is None or comparator is None or chosen is comparator:
        return None
    gain = comparator.test.get("rmse", math.nan) - chosen.test.get("rmse", math.nan)
    return gain if math.isfinite(gain) else None


def _figure(context: ReportContext, name: str) -> FigureView:
    title, caption = FIGURES.get(name, (name.replace("_", " ").capitalize(), ""))
    png = context.figures.get(name)
    if png is None:
        return FigureView(name, title, caption, None)
    return FigureView(name, title, caption, base64.b64encode(png).decode("ascii"))


def _grids() -> dict[str, dict[str, list[Any]]]:
    from womac.models.candidates import BLEND, CANDIDATES

    grids = {name: candidate.grid for name, candidate in CANDIDATES.items()}
    return grids | {BLEND: {"weights": ["fitted on out-of-fold predictions"]}}


def _setting(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _candidate_rows(context: ReportContext) -> list[CandidateRow]:
    grids = _grids()
    rows = []
    for candidate in context.candidates:
        grid = grids.get(candidate.name)
        searched = (
            "; ".join(
                f"{_param(key)}: {', '.join(map(_setting, values))}"
                for key, values in grid.items()
            )
            if grid
            else "none (fixed settings)"
        )
        params = ", ".join(f"{_param(k)} = {_setting(v)}" for k, v in candidate.params.items())
        rows.append(
            CandidateRow(
                name=candidate.name,
                description=candidate.description,
                searched=searched,
                chosen_params=params or "\u2014",
                chosen=candidate.name == context.chosen,
                cv=candidate.cv,
                test=candidate.test,
            )
        )
    return rows


def _param(key: str) -> str:
    return key.split("__", 1)[-1]


def _final_settings(chosen: CandidateResult | None) -> str:
    """The chosen model's own settings (scalars only), for reproduction (item 22)."""
    steps = getattr(getattr(chosen, "pipeline", None), "named_steps", None)
    if not steps or "model" not in steps:
        return ""
    model = steps["model"]
    shown = [
        f"{key} = {_setting(value)}"
        for key, value in sorted(model.get_params(deep=False).items())
        if isinstance(value, int | float | str | bool) or value is None
    ]
    encoder = steps.get("preprocess")
    if encoder is not None and hasattr(encoder, "spline_knots"):
        shown.append(f"spline_knots = {encoder.spline_knots}")
    return f"{type(model).__name__}: " + ", ".join(shown)


def _predictor_rows(context: ReportContext) -> list[PredictorRow]:
    used = set(context.fields_used)
    recorded = {summary.name: summary for summary in context.data.fields}
    rows = []
    for spec in PREDICTORS:
        summary = recorded.get(spec.name)
        if spec.name in used:
            status = "yes"
        elif summary is not None and (not summary.present or summary.blank == context.data.rows):
            status = "no: never known in this export"
        else:
            status = "no: not an input of this model"
        rows.append(PredictorRow(spec, allowed_values(spec), _needed(spec), status))
    return rows


def _field_rows(context: ReportContext) -> list[FieldRow]:
    rows = []
    for summary in context.data.fields:
        spec = FIELD_BY_NAME.get(summary.name)
        rows.append(
            FieldRow(
                label=spec.label if spec is not None else summary.name,
                role=spec.role.value if spec is not None else "",
                required=summary.required,
                present=summary.present,
                blank=summary.blank,
                blank_fraction=summary.blank_fraction,
            )
        )
    return rows


def _flow(context: ReportContext) -> Flow:
    data, evaluation = context.data, context.evaluation
    excluded = data.rows - data.usable_for_training
    prevalence = evaluation.responder.get("prevalence")
    known = prevalence is not None and math.isfinite(prevalence)
    return Flow(
        excluded=excluded,
        overlap=data.lost_to_follow_up + data.incomplete_predictors - excluded,
        training=context.split.get("training"),
        held_out=context.split.get("held-out", evaluation.n),
        responders=round(prevalence * evaluation.n) if known and prevalence is not None else None,
        prevalence=prevalence,
        other_splits=[
            (name, count)
            for name, count in context.split.items()
            if name not in ("training", "held-out")
        ],
    )


def _subgroups(context: ReportContext) -> Subgroups:
    level = context.evaluation.level
    found = Subgroups()
    for row in context.evaluation.subgroups:
        name = f"{subgroup_name(row.subgroup)} {row.level}"
        flags = []
        if _excludes(row.coverage_ci, level):
            flags.append(f"coverage CI excludes {pct(level, 0)}")
            found.off_coverage.append(name)
        if _excludes(row.calibration_slope_ci, 1.0):
            flags.append("calibration slope CI excludes 1")
            found.off_slope.append(name)
        if row.n < SMALL_SUBGROUP:
            flags.append(f"small (n < {SMALL_SUBGROUP})")
            found.small.append(name)
            found.small_sizes.append(f"{name}: n={row.n}")
        flagged = any("excludes" in flag for flag in flags)
        found.lines.append(SubgroupLine(name, row, flags, flagged))
    return found


def _excludes(bounds: tuple[float, float], value: float) -> bool:
    low, high = bounds
    return math.isfinite(low) and math.isfinite(high) and not low <= value <= high


def _clinical_utility(context: ReportContext) -> ClinicalUtility:
    curve = decision_rows(context.evaluation.decision_curve)
    if not curve:
        return ClinicalUtility([], None, None, "", None)
    runs: list[list[DecisionRow]] = []
    for index, row in enumerate(curve):
        if not row.useful:
            continue
        if runs and curve[index - 1].useful:
            runs[-1].append(row)
        else:
            runs.append([row])
    useful = ", ".join(
        pct(run[0].threshold, 0)
        if len(run) == 1
        else f"{pct(run[0].threshold, 0)}\u2013{pct(run[-1].threshold, 0)}"
        for run in runs
    )
    shown = rows_at(curve)
    gains = [row for row in shown if row.useful]
    example = max(gains, key=_gain) if gains else None
    return ClinicalUtility(shown, curve[0].threshold, curve[-1].threshold, useful, example)


def _gain(row: DecisionRow) -> float:
    return row.net_benefit_model - max(row.net_benefit_all, row.net_benefit_none)
