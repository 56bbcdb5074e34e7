"""The model report: one self-contained HTML file per training run (TRIPOD+AI).

The report fills the items of the TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378)
that software can fill from what a training run knows, names the item numbers beside each
section, and lists the items only the authors can fill. It holds aggregates only: counts,
fractions, metrics and figures already drawn by the run, never a patient's identifier or
values. Every text is escaped; figures are embedded as PNG, so the file opens offline, from
the MLflow run and from the API alike, and prints.
"""

from __future__ import annotations

import base64
import math
import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from importlib.metadata import PackageNotFoundError, version
from io import BytesIO
from typing import TYPE_CHECKING, Any, NamedTuple

from womac.data.contract import (
    ELIGIBILITY_FLAGS,
    FIELD_BY_NAME,
    OUTCOMES,
    PREDICTORS,
    WOMAC_TOTAL_MAX,
    Kind,
    PatientField,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from womac.data.report import DataReport
    from womac.data.settings import Settings
    from womac.models.evaluation import Evaluation


@dataclass(slots=True)
class ReportContext:
    """Everything a training run knows that the report shows."""

    run_id: str
    settings: Settings
    data: DataReport
    split: dict[str, int]
    candidates: list[Any]  # pipeline.train.CandidateResult
    chosen: str
    evaluation: Evaluation
    oracle_test: dict[str, float] | None
    promotion_reason: str
    promoted: bool
    fields_used: list[str]
    figures: dict[str, Figure]
    selection_reason: str = ""
    refit_on_all: bool = False


class Section(NamedTuple):
    """A section of the report and the TRIPOD+AI items it fills."""

    id: str
    title: str
    items: str


SECTIONS: tuple[Section, ...] = (
    Section("summary", "Summary", "1, 4"),
    Section("data", "Data source", "5a, 6c, 7"),
    Section("outcome", "Outcome and time horizon", "8a, 15"),
    Section("predictors", "Predictors", "9a, 9b"),
    Section("flow", "Sample size and participant flow", "10, 20a, 21"),
    Section("missing", "Missing data", "11, 20b"),
    Section("model", "Model specification and tuning", "12a, 12b, 12c, 12g, 13, 22"),
    Section("uncertainty", "Uncertainty and model output", "12c, 15"),
    Section("performance", "Internal validation and performance", "12e, 12f, 16, 23a, 24"),
    Section("explainability", "Explainability", ""),
    Section("subgroups", "Subgroups and fairness", "12d, 14, 23a, 23b"),
    Section("intended-use", "Intended use", "3b, 6b, 27a, 27b"),
    Section("limitations", "Limitations", "26, 27c"),
    Section("not-covered", "TRIPOD+AI items not covered by software", "checklist"),
)
_SECTION = {section.id: section for section in SECTIONS}


class ChecklistItem(NamedTuple):
    """One TRIPOD+AI item: where this report fills it, or what the authors must add."""

    item: str
    topic: str
    section: str | None  # id of the section that fills it, if any
    status: str  # "reported", "partly", "authors" or "n/a"
    note: str = ""


# TRIPOD+AI checklist (version 11 January 2024), items 1-27 with their sub-items.
CHECKLIST: tuple[ChecklistItem, ...] = (
    ChecklistItem("1", "Title", "summary", "reported"),
    ChecklistItem(
        "2",
        "Abstract",
        None,
        "authors",
        "Write the structured abstract (TRIPOD+AI for Abstracts); the summary has its figures.",
    ),
    ChecklistItem(
        "3a",
        "Healthcare context and existing models",
        None,
        "authors",
        "Clinical rationale and references to existing models of outcome after MSC therapy.",
    ),
    ChecklistItem(
        "3b", "Target population, purpose and intended users", "intended-use", "reported"
    ),
    ChecklistItem(
        "3c",
        "Known health inequalities",
        None,
        "authors",
        "Known inequalities between sociodemographic groups in OA care and access to MSC therapy.",
    ),
    ChecklistItem("4", "Objectives", "summary", "reported"),
    ChecklistItem(
        "5a",
        "Data sources",
        "data",
        "partly",
        "Add why these data were used and how representative they are.",
    ),
    ChecklistItem(
        "5b",
        "Dates of the data",
        None,
        "authors",
        "Start and end of accrual and of follow-up (the export carries no dates).",
    ),
    ChecklistItem(
        "6a",
        "Study setting and centres",
        None,
        "authors",
        "Care setting, number and location of the clinic(s).",
    ),
    ChecklistItem(
        "6b",
        "Eligibility criteria",
        "intended-use",
        "partly",
        "Add who was offered MSC therapy and entered the export; the protocol's exclusions "
        "are reported.",
    ),
    ChecklistItem("6c", "Treatments received", "data", "reported"),
    ChecklistItem("7", "Data preparation and quality checking", "data", "reported"),
    ChecklistItem(
        "8a",
        "Outcome and time horizon",
        "outcome",
        "partly",
        "Add how and when the 12-month questionnaire was administered.",
    ),
    ChecklistItem(
        "8b",
        "Outcome assessors",
        None,
        "authors",
        "WOMAC is patient-reported: state who administered it and how.",
    ),
    ChecklistItem("8c", "Blinding of outcome assessment", None, "authors"),
    ChecklistItem("9a", "Choice of initial predictors", "predictors", "reported"),
    ChecklistItem("9b", "Definition of predictors", "predictors", "reported"),
    ChecklistItem(
        "9c",
        "Predictor assessors",
        None,
        "authors",
        "For example who graded Kellgren-Lawrence on the radiographs, and whether blinded.",
    ),
    ChecklistItem(
        "10",
        "Sample size",
        "flow",
        "partly",
        "Add why the sample suffices (e.g. Riley et al., BMJ 2020;368:m441).",
    ),
    ChecklistItem("11", "Missing data", "missing", "reported"),
    ChecklistItem("12a", "Use of the data and partitioning", "model", "reported"),
    ChecklistItem("12b", "Handling of predictors", "model", "reported"),
    ChecklistItem("12c", "Model type, building, tuning, internal validation", "model", "reported"),
    ChecklistItem(
        "12d",
        "Heterogeneity across clusters",
        "subgroups",
        "n/a",
        "One data source; report it if the export spans several centres.",
    ),
    ChecklistItem("12e", "Performance measures and plots", "performance", "reported"),
    ChecklistItem("12f", "Model updating after evaluation", "performance", "reported"),
    ChecklistItem("12g", "How predictions were calculated in evaluation", "model", "reported"),
    ChecklistItem("13", "Class imbalance", "model", "reported"),
    ChecklistItem("14", "Fairness", "subgroups", "reported"),
    ChecklistItem("15", "Model output", "uncertainty", "reported"),
    ChecklistItem("16", "Training versus evaluation data", "performance", "reported"),
    ChecklistItem(
        "17",
        "Ethical approval",
        None,
        "authors",
        "Ethics committee, and participant consent or its waiver.",
    ),
    ChecklistItem("18a", "Funding", None, "authors"),
    ChecklistItem("18b", "Conflicts of interest", None, "authors"),
    ChecklistItem("18c", "Protocol", None, "authors"),
    ChecklistItem("18d", "Registration", None, "authors"),
    ChecklistItem("18e", "Data sharing", None, "authors"),
    ChecklistItem(
        "18f",
        "Code sharing",
        None,
        "authors",
        "Where the code is available (its package versions are in the summary).",
    ),
    ChecklistItem("19", "Patient and public involvement", None, "authors"),
    ChecklistItem("20a", "Participant flow", "flow", "reported"),
    ChecklistItem(
        "20b",
        "Participant characteristics",
        "missing",
        "partly",
        "Missingness is reported; add the distribution of predictors and outcome, overall "
        "and by key groups.",
    ),
    ChecklistItem(
        "20c",
        "Development versus evaluation characteristics",
        None,
        "authors",
        "Compare predictor distributions of training and held-out patients.",
    ),
    ChecklistItem("21", "Participants and outcome events per analysis", "flow", "reported"),
    ChecklistItem(
        "22",
        "Full model specification",
        "model",
        "partly",
        "State any restriction on access to or re-use of the logged model.",
    ),
    ChecklistItem(
        "23a",
        "Performance with confidence intervals, subgroups",
        "performance",
        "partly",
        "Subgroup figures and overall coverage carry 95% CIs; overall RMSE, R\u00b2 and AUROC "
        "do not yet.",
    ),
    ChecklistItem("23b", "Heterogeneity across clusters", "subgroups", "n/a"),
    ChecklistItem("24", "Model updating results", "performance", "n/a"),
    ChecklistItem(
        "25",
        "Interpretation",
        None,
        "authors",
        "Interpretation in the context of the objectives and previous studies.",
    ),
    ChecklistItem(
        "26",
        "Limitations",
        "limitations",
        "partly",
        "The limitations software knows are listed; add study-specific ones.",
    ),
    ChecklistItem("27a", "Poor quality or unavailable input data", "intended-use", "reported"),
    ChecklistItem("27b", "User interaction and expertise", "intended-use", "reported"),
    ChecklistItem(
        "27c",
        "Next steps",
        "limitations",
        "partly",
        "Add the planned external validation and implementation studies.",
    ),
)

FIGURE_DPI = 100
VERSIONED_PACKAGES = ("numpy", "pandas", "scikit-learn", "lightgbm", "mlflow", "shap")
SMALL_SUBGROUP = 50  # below this many patients a subgroup's intervals are wide
_SUBGROUP_NAMES = {"sex": "Sex", "age_band": "Age band", "kl_grade": "KL grade", "joint": "Joint"}

_FIGURES: dict[str, tuple[str, str]] = {
    "observed_vs_predicted": (
        "Observed against predicted 12-month improvement, held-out patients",
        "Each dot is a held-out treated joint. The dashed line is perfect calibration; the "
        "solid line is the least-squares calibration line (slope and intercept in the legend).",
    ),
    "residuals": (
        "Residuals of the held-out predictions",
        "Observed minus predicted improvement against the prediction (left) and their "
        "distribution (right). A band that narrows or bends at the ends shows the floor and "
        "ceiling of the WOMAC scale.",
    ),
    "responder_calibration": (
        "Calibration of the probability of a clinically important improvement",
        "Observed fraction of responders against the mean predicted probability, per decile of "
        "predicted probability; the dashed diagonal is perfect calibration.",
    ),
    "shap_summary": (
        "SHAP summary of per-field contributions, held-out patients",
        "",
    ),
    "subgroups": (
        "Performance by subgroup with 95% bootstrap confidence intervals",
        "RMSE, calibration slope and coverage of the interval per subgroup. Dashed lines: the "
        "overall RMSE, a slope of 1 and the nominal coverage.",
    ),
}

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1a202c;
  max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.55rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; border-bottom: 2px solid #cbd5e0; padding-bottom: 0.2rem;
  margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
.items { float: right; font-size: 0.8rem; font-weight: normal; color: #4a5568;
  border: 1px solid #a0aec0; border-radius: 3px; padding: 0.05rem 0.4rem; }
.subtitle { color: #4a5568; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.86rem; width: 100%; }
th, td { border: 1px solid #cbd5e0; padding: 0.25rem 0.45rem; text-align: left;
  vertical-align: top; }
th { background: #edf2f7; }
td.num { text-align: right; white-space: nowrap; }
th.num { text-align: right; }
tr.chosen td { font-weight: 600; background: #f0fff4; }
tr.flagged td { background: #fffaf0; }
table.facts th { width: 14rem; }
.banner { border: 2px solid #c05621; background: #fffaf0; padding: 0.6rem 0.9rem;
  margin: 1rem 0; }
.decision { border-left: 4px solid #2b6cb0; background: #ebf8ff; padding: 0.5rem 0.9rem; }
.decision.refused { border-left-color: #c05621; background: #fffaf0; }
.flag { color: #9c4221; font-weight: 600; }
.muted { color: #4a5568; font-size: 0.86rem; }
code { font-family: Menlo, Consolas, monospace; font-size: 0.85em; background: #f7fafc;
  padding: 0 0.15rem; }
figure { margin: 1rem 0; page-break-inside: avoid; break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid #e2e8f0; }
figcaption { font-size: 0.86rem; color: #2d3748; margin-top: 0.3rem; }
nav ol { columns: 2; font-size: 0.9rem; }
.flow { display: flex; flex-direction: column; align-items: flex-start; gap: 0.2rem;
  margin: 0.8rem 0; font-size: 0.9rem; }
.flow .box { border: 1px solid #4a5568; padding: 0.3rem 0.6rem; background: #f7fafc; }
.flow .arrow { padding-left: 1.2rem; color: #4a5568; }
.flow .row { display: flex; gap: 1rem; }
@media print {
  body { max-width: none; margin: 0; font-size: 11pt; }
  nav { display: none; }
  h2 { page-break-after: avoid; break-after: avoid; }
  table, .flow { page-break-inside: avoid; break-inside: avoid; }
}
"""

_LINE_LIST = re.compile(r"\s*\((?:line|lines) [^)]*\)")


def render_report(context: ReportContext) -> str:
    """The report as one HTML document with its figures embedded.

    Parameters
    ----------
    context
        What the training run knows: settings, the data report, split sizes, every
        candidate's cross-validated and held-out figures, the held-out evaluation of the
        served model, the promotion decision and the figures already drawn.

    Returns
    -------
    str
        A complete HTML document: no external resource, no script, no patient-level values
        beyond the figures the run drew.
    """
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        _summary(context, generated),
        _nav(),
        _data_source(context),
        _outcome(context),
        _predictors(context),
        _flow(context),
        _missing(context),
        _model(context),
        _uncertainty(context),
        _performance(context),
        _explainability(context),
        _subgroups(context),
        _intended_use(context),
        _limitations(context),
        _not_covered(),
    ]
    title = f"WOMAC model report, run {context.run_id}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f'\n<p class="muted">Generated {escape(generated)} by womac '
        f"{escape(_package_version('womac'))}.</p>\n</body>\n</html>\n"
    )


# -- sections -------------------------------------------------------------------------------


def _summary(context: ReportContext, generated: str) -> str:
    settings, evaluation, data = context.settings, context.evaluation, context.data
    point, responder = evaluation.point, evaluation.responder
    chosen = _chosen(context)
    comparator = _candidate(context, "baseline_womac")
    simulated = context.oracle_test is not None
    level = evaluation.level
    parts = [
        "<h1>12-month WOMAC improvement after "
        "mesenchymal stem cell therapy for knee or hip osteoarthritis: development and "
        "internal validation of a prediction model</h1>",
        f'<p class="subtitle">Model report of training run <code>{escape(context.run_id)}'
        f"</code>, {escape(generated)}. Reporting follows TRIPOD+AI (Collins et al., BMJ "
        "2024;385:e078378); item numbers are shown beside each section.</p>",
    ]
    if simulated:
        parts.append(
            '<div class="banner"><strong>Simulated data.</strong> This model was trained on '
            "the built-in simulated cohort. Its figures show that the software works; they "
            "are not evidence about MSC therapy or about any patient.</div>"
        )
    decision_class = "decision" if context.promoted else "decision refused"
    decision = "promoted to champion" if context.promoted else "not promoted"
    parts.append(
        _open("summary")
        + "<p><strong>Objective.</strong> Develop and internally validate a model that predicts, "
        "for an adult with knee or hip osteoarthritis considered for mesenchymal stem cell "
        "(MSC) therapy, the improvement in WOMAC total score 12 months after treatment "
        "(baseline minus 12-month total, 0-96 Likert scale, positive = better), with an "
        f"{_pct(level, 0)} prediction interval and the probability of a clinically important "
        "improvement.</p>"
    )
    facts: list[tuple[str, str]] = [
        ("Predicted", "12-month WOMAC improvement (points) after MSC therapy"),
        ("Study type", "Model development with internal validation on held-out patients"),
        (
            "Data",
            f"{data.source} ({'simulated' if simulated else 'clinic export'}), "
            f"{data.rows} treated joints, {data.usable_for_training} usable",
        ),
        (
            "Model chosen",
            f"{context.chosen}"
            + (f": {chosen.description}" if chosen is not None else "")
            + (
                f"; {context.selection_reason}"
                if context.selection_reason
                else f"; chosen by {settings.cv_folds}-fold cross-validated RMSE"
            ),
        ),
        (
            f"Held-out patients (n={evaluation.n})",
            f"RMSE {_num(point.get('rmse'))} points, MAE {_num(point.get('mae'))}, "
            f"R\u00b2 {_num(point.get('r2'))}, calibration slope "
            f"{_num(point.get('calibration_slope'))}, intercept "
            f"{_num(point.get('calibration_intercept'))}",
        ),
        (
            "Comparator (baseline WOMAC only)",
            f"held-out RMSE {_num(comparator.test.get('rmse'))} points"
            if comparator is not None and comparator.test
            else "not available in this run",
        ),
        (
            f"{_pct(level, 0)} interval",
            f"covers {_pct(evaluation.coverage)} of held-out patients "
            f"(95% CI {_ci(_wilson(evaluation.coverage, evaluation.n), percent=True)}), "
            f"mean width {_num(evaluation.mean_width, 1)} points",
        ),
        (
            "Clinically important improvement",
            f"AUROC {_num(responder.get('auroc'))}, Brier {_num(responder.get('brier'), 3)}, "
            f"calibration slope {_num(responder.get('calibration_slope'))}, intercept "
            f"{_num(responder.get('calibration_intercept'))}",
        ),
    ]
    if context.oracle_test is not None:
        facts.append(
            (
                "Best achievable (simulation oracle)",
                f"held-out RMSE {_num(context.oracle_test.get('rmse'))} points, "
                f"R\u00b2 {_num(context.oracle_test.get('r2'))}",
            )
        )
    facts += [
        ("Promotion", decision),
        ("Run id", context.run_id),
        ("Registered model", f"{settings.model_name} (alias {settings.champion_alias})"),
        ("Report generated", generated),
        ("Data sha256", data.sha256 or "not recorded"),
        ("Software", _versions()),
    ]
    parts.append(_facts_table(facts))
    parts.append(
        f'<p class="{decision_class}"><strong>Promotion decision: {escape(decision)}.</strong> '
        f"{escape(context.promotion_reason)}</p></section>"
    )
    return "\n".join(parts)


def _nav() -> str:
    entries = "".join(
        f'<li><a href="#{section.id}">{escape(section.title)}</a></li>' for section in SECTIONS[1:]
    )
    return f'<nav aria-label="Contents"><h2>Contents</h2><ol>{entries}</ol></nav>'


def _data_source(context: ReportContext) -> str:
    data = context.data
    parts = [_open("data")]
    if context.oracle_test is not None:
        parts.append(_simulation_description(context))
    else:
        parts.append(
            f"<p><strong>Clinic export.</strong> The cohort is the file <code>"
            f"{escape(data.source)}</code>, one row per treated joint, as exported by the "
            "clinic. The software does not know the care setting, the centres, or the dates "
            "of treatment and follow-up: the authors must add them (items 5b, 6a).</p>"
        )
    parts.append(
        _facts_table(
            [
                ("File", data.source),
                ("SHA-256", data.sha256 or "not recorded"),
                ("Rows (treated joints)", str(data.rows)),
            ]
        )
    )
    parts.append(
        "<h3>Treatments (item 6c)</h3><p>Every row is a joint treated with MSC injections. "
        "How the cells were given (cell source, donor, dose, number of injections, platelet-"
        "rich plasma, rehabilitation) is recorded as predictors, so the model predicts the "
        "outcome under the treatment as given. No untreated or control patients are in the "
        "data: the model cannot estimate the effect of MSC therapy compared with another "
        "treatment.</p>"
    )
    checks = (
        "<h3>Data checks (item 7)</h3><p>The file was validated against the cohort contract "
        "before anything was fitted, with the same rules for every row: required columns "
        "present; numbers within their allowed range; categories among the allowed levels; "
        "yes/no values recognised; headers matched regardless of case and spacing. A file "
        "breaking a rule is refused with every problem listed; nothing is silently "
        "corrected. Rows lacking a required predictor or the 12-month scores are counted "
        "and left out of fitting (see participant flow).</p>"
    )
    parts.append(checks)
    notes = [_LINE_LIST.sub("", note) for note in data.notes]
    if notes or data.problems:
        parts.append("<p>Notes from reading the file:</p>" + _list(notes + list(data.problems)))
    parts.append("</section>")
    return "\n".join(parts)


def _simulation_description(context: ReportContext) -> str:
    from womac.data.simulate import SimulationSettings

    knobs = SimulationSettings()
    sources = [
        "Age ~ N(60, 8.5) years clipped to 40-80, 58% female, BMI ~ N(29.5, 4.9) kg/m\u00b2 "
        "clipped to 18-45: baseline of the Osteoarthritis Initiative (OAI) knee-OA cohort.",
        "Kellgren-Lawrence grade 1/2/3/4 = 8/34/40/18% (OAI, rescaled to treated patients); "
        "knee 90%, hip 10% (assumption: MSC series are mostly knees).",
        "Baseline WOMAC total ~ N(30, 15) clipped to 5-90, +2.5 points per KL grade above 2, "
        "split about 21% pain, 8% stiffness, 71% function (OAI and MSC trial baselines).",
        "12-month improvement: usual-care response about 10 points with regression to the "
        "mean of 0.2 \u00d7 (baseline \u2212 30); MSC therapy adds 0.24 \u00d7 baseline "
        "(about 7 points at a baseline of 30; Bone Joint Res 2020;9:719, meta-analysis of "
        "7 RCTs). The MSC part is halved at KL grade 4, 0.8 \u00d7 for hips, 0.2 points "
        "smaller per kg/m\u00b2 of BMI above 29, and 2, 3 and 3 points larger with repeated "
        "injections, PRP and rehabilitation; sex has no effect.",
        f"Residual SD {knobs.residual_sd:g} points, so that the explained variance is in the "
        "0.15-0.30 range of published orthopaedic outcome models; the 12-month total is "
        f"clipped to the 0-{WOMAC_TOTAL_MAX} scale.",
        "Diabetes in 14% (Louati et al., RMD Open 2015); the other optional fields follow "
        "plausible assumptions where the MSC literature reports no distribution.",
        f"{_pct(knobs.lost_to_follow_up, 0)} lost to follow-up, more often among "
        "non-improvers (odds \u00d71.6 per SD less improvement, assumption); KL grade "
        f"blank for {_pct(knobs.kl_missing, 0)}; each optional field blank for "
        f"{_pct(knobs.optional_missing, 0)} (assumption).",
        "Responder thresholds follow Tubach et al., Ann Rheum Dis 2005 and Angst et al. "
        "2001 (see outcome).",
    ]
    return (
        f"<p><strong>Simulated cohort.</strong> The file <code>{escape(context.data.source)}"
        f"</code> was generated by the product's built-in simulator (<code>data/simulate.py"
        f"</code>, seed {context.settings.seed}). It contains no real patient. Each figure "
        "of the simulator comes from the published literature or is marked as an "
        "assumption:</p>"
        + _list(sources)
        + "<p>The simulator also knows each patient's noise-free expected improvement (the "
        "<em>oracle</em>); its error on the held-out patients is the best any model can "
        "reach on these data and is shown beside the candidates.</p>"
    )


def _outcome(context: ReportContext) -> str:
    settings, data = context.settings, context.data
    outcome_rows = [
        [escape(spec.label), f"<code>{escape(spec.name)}</code>", escape(_allowed(spec))]
        for spec in OUTCOMES
    ]
    spread = (
        f"Among the {data.usable_for_training} usable rows the improvement averaged "
        f"{_num(data.target_mean, 1)} points (SD {_num(data.target_sd, 1)})."
        if data.target_mean is not None
        else ""
    )
    return "\n".join(
        [
            _open("outcome"),
            "<p><strong>Outcome:</strong> <code>womac_improvement_12m</code>, the WOMAC total "
            "at baseline minus the WOMAC total 12 months after MSC therapy, in points on the "
            f"0-{WOMAC_TOTAL_MAX} Likert scale (24 items scored 0-4: pain 0-20, stiffness "
            "0-8, physical function 0-68). Positive means better. <strong>Horizon:</strong> "
            "12 months after treatment. The totals are sums of the three subscales; a row "
            "with any 12-month subscale blank is lost to follow-up and has no outcome (blanks "
            "are never summed as zeros). The improvement cannot exceed the baseline total "
            f"(the 12-month total cannot fall below 0). {escape(spread)}</p>",
            _table(["Follow-up field", "Name", "Allowed values"], outcome_rows),
            "<h3>Clinically important improvement (responder)</h3>"
            "<p>A patient is a responder when the improvement is at least "
            f"<strong>{settings.responder_min_points:g} points</strong> and at least "
            f"<strong>{_pct(settings.responder_min_fraction, 0)} of the baseline total"
            "</strong>. Sources: Tubach et al., Ann Rheum Dis 2005 (minimal clinically "
            "important improvement of WOMAC function 9.1 for knees and 7.9 for hips on a "
            "0-100 scale); Angst et al. 2001 (minimal clinically important difference 17-22% "
            "of baseline). Both thresholds are settings "
            "(<code>WOMAC_RESPONDER_MIN_POINTS</code>, "
            "<code>WOMAC_RESPONDER_MIN_FRACTION</code>). When the threshold exceeds a "
            "patient's baseline total, a clinically important improvement is impossible and "
            "its probability is 0.</p>",
            "</section>",
        ]
    )


def _predictors(context: ReportContext) -> str:
    used = set(context.fields_used)
    recorded = {summary.name: summary for summary in context.data.fields}
    rows = []
    for spec in PREDICTORS:
        if spec.name in used:
            status = "yes"
        else:
            summary = recorded.get(spec.name)
            if summary is not None and (not summary.present or summary.blank == context.data.rows):
                status = "no: never known in this export"
            else:
                status = "no: not an input of this model"
        rows.append(
            [
                escape(spec.label),
                f"<code>{escape(spec.name)}</code>",
                escape(spec.description),
                escape(_allowed(spec)),
                escape(_needed(spec)),
                escape(status),
            ]
        )
    flags = [
        [escape(spec.label), f"<code>{escape(spec.name)}</code>", escape(spec.description)]
        for spec in ELIGIBILITY_FLAGS
    ]
    return "\n".join(
        [
            _open("predictors"),
            "<p>The candidate predictors are fixed by the product's cohort contract, chosen "
            "from the literature on outcome after MSC therapy and what clinics record at "
            "treatment; no predictor was selected or dropped by looking at the outcome. "
            "Every predictor is recorded at the time of treatment. A model may use fewer "
            "fields (the comparator uses the baseline WOMAC subscales only), and a field "
            "never known in the training data cannot be used.</p>",
            f"<p>This model ({escape(context.chosen)}) used "
            f"{len(used & {spec.name for spec in PREDICTORS})} of "
            f"{len(PREDICTORS)} predictor fields.</p>",
            _table(
                ["Predictor", "Name", "Definition", "Unit and allowed values", "Needed", "Used"],
                rows,
            ),
            "<h3>Eligibility flags (not predictors)</h3>"
            "<p>These fields decide eligibility under the clinic's protocol and are never "
            "model inputs.</p>",
            _table(["Flag", "Name", "Definition"], flags),
            "</section>",
        ]
    )


def _flow(context: ReportContext) -> str:
    data, evaluation = context.data, context.evaluation
    excluded = data.rows - data.usable_for_training
    overlap = data.lost_to_follow_up + data.incomplete_predictors - excluded
    training = context.split.get("training")
    held_out = context.split.get("held-out", evaluation.n)
    prevalence = evaluation.responder.get("prevalence")
    responders = (
        round(prevalence * evaluation.n)
        if prevalence is not None and math.isfinite(prevalence)
        else None
    )
    responder_text = (
        f"{responders} responders ({_pct(prevalence)})" if responders is not None else ""
    )
    extra = [
        f'<span class="box">{escape(name)}: {count}</span>'
        for name, count in context.split.items()
        if name not in ("training", "held-out")
    ]
    diagram = (
        '<div class="flow" role="figure" aria-label="Participant flow">'
        f'<span class="box">{data.rows} treated joints in <code>{escape(data.source)}</code>'
        "</span>"
        f'<span class="arrow">\u2193 excluded {excluded}: {data.lost_to_follow_up} lost to '
        f"follow-up (12-month scores blank), {data.incomplete_predictors} with a blank "
        "required predictor" + (f" ({overlap} both)" if overlap > 0 else "") + "</span>"
        f'<span class="box">{data.usable_for_training} usable (complete required predictors '
        "and a 12-month outcome)</span>"
        '<span class="arrow">\u2193 split once by patient, before any fitting</span>'
        '<span class="row">'
        f'<span class="box">Training: {_count(training)}<br>model selection, fitting, '
        "interval and probability calibration</span>"
        f'<span class="box">Held-out: {_count(held_out)}<br>final evaluation only'
        + (f"; {escape(responder_text)}" if responder_text else "")
        + "</span>"
        + "".join(extra)
        + "</span></div>"
    )
    rows = [
        ["Rows in the file (treated joints)", str(data.rows)],
        ["Lost to follow-up (12-month scores blank)", str(data.lost_to_follow_up)],
        ["Blank required predictor", str(data.incomplete_predictors)],
        ["Usable for training and evaluation", str(data.usable_for_training)],
        ["Training (cross-validation, fitting, calibration)", _count(training)],
        ["Held-out (evaluation)", _count(held_out)],
        ["Responders among held-out", _count(responders)],
    ]
    return "\n".join(
        [
            _open("flow"),
            diagram,
            _table(["Step", "Rows"], rows, numeric=(1,)),
            "<p>A patient treated in both knees or hips has one row per joint; the split "
            "keeps a patient's rows on one side. The number of responders among the training "
            "patients is not recorded by the run. <strong>Sample size (item 10):</strong> the "
            "study size is what the export holds; the software makes no sample-size "
            "calculation and refuses to train below 50 usable rows. The authors should "
            "justify that it suffices for a continuous outcome with this many predictors "
            "(e.g. Riley et al., BMJ 2020;368:m441).</p>",
            "</section>",
        ]
    )


def _missing(context: ReportContext) -> str:
    data = context.data
    rows = []
    for summary in data.fields:
        spec = FIELD_BY_NAME.get(summary.name)
        role = spec.role.value if spec is not None else ""
        label = spec.label if spec is not None else summary.name
        rows.append(
            [
                escape(label),
                escape(role),
                "required" if summary.required else "optional",
                "yes" if summary.present else "no (column absent)",
                str(summary.blank),
                _pct(summary.blank_fraction),
            ]
        )
    return "\n".join(
        [
            _open("missing"),
            f"<p>Blank values per contract field among all {data.rows} rows of the file.</p>",
            _table(
                ["Field", "Role", "Needed", "In the file", "Blank", "Blank %"],
                rows,
                numeric=(4, 5),
            ),
            "<h3>How unknown values are handled</h3>",
            _list(
                [
                    "Outcome: rows lost to follow-up are excluded from fitting and "
                    "evaluation and counted above; their outcome is never imputed "
                    "(a complete-case analysis of the outcome).",
                    "Required predictors (age, sex, BMI, joint, baseline WOMAC subscales): a "
                    "row with one blank is not used. Kellgren-Lawrence grade may be blank "
                    "(no radiograph on file) and is then unknown.",
                    "Unknown values of a used predictor are filled with the training median "
                    "(numbers) or the most frequent training level (categories), learned on "
                    "the training patients only. When the training data had unknowns in a "
                    "field, an extra unknown indicator lets the model learn what not knowing "
                    "means; otherwise an unknown is the filled value.",
                    "An optional column absent from the file is unknown for every row; a "
                    "field with no known value in training is not used by the model.",
                    "The same fitted rules apply to every new patient at prediction time, and "
                    "the explanation says which of the patient's fields were unknown.",
                ]
            ),
            "</section>",
        ]
    )


def _model(context: ReportContext) -> str:
    settings = context.settings
    grids = _grids()
    rows: list[list[str]] = []
    marks: list[str] = []
    for candidate in context.candidates:
        grid = grids.get(candidate.name)
        searched = (
            "; ".join(f"{_param_name(k)}: {', '.join(map(_value, v))}" for k, v in grid.items())
            if grid
            else "none (fixed settings)"
        )
        chosen_params = (
            ", ".join(f"{_param_name(k)} = {_value(v)}" for k, v in candidate.params.items())
            or "\u2014"
        )
        name = candidate.name + (" (chosen)" if candidate.name == context.chosen else "")
        rows.append(
            [escape(name), escape(candidate.description), escape(searched), escape(chosen_params)]
        )
        marks.append("chosen" if candidate.name == context.chosen else "")
    held_out = context.split.get("held-out", context.evaluation.n)
    parts = [
        _open("model"),
        "<h3>Use of the data (item 12a)</h3>"
        f"<p>The {context.data.usable_for_training} usable rows were split once at random by "
        f"patient: {_pct(settings.test_fraction, 0)} of patients ({_count(held_out)} rows) "
        "held out before anything was fitted, used for no choice and scored once for the "
        f"figures of this report; the rest ({_count(context.split.get('training'))} rows) "
        "trained the model. Seed of every random choice: "
        f"{settings.seed}.</p>",
        "<h3>Handling of predictors (item 12b)</h3>"
        "<p>One fitted transformer, shared by training and prediction, turns each field into "
        "model inputs: numbers kept as they are (or, for the ridge candidate, expanded into "
        "a cubic B-spline basis with knots at quantiles, so curved effects can be learned); "
        "categories and yes/no fields one-hot encoded; unknown values filled as described "
        "under missing data; every input centred and scaled on the training data. Each "
        "model input comes from exactly one field, so explanations add up per field.</p>",
        "<h3>Candidate models, tuning and selection (item 12c)</h3>",
        _table(
            ["Candidate", "Description", "Hyper-parameters searched", "Chosen by CV"],
            rows,
            row_classes=marks,
        ),
        "<p>Each candidate is one pipeline (encoder, then model). Hyper-parameters were "
        f"tuned by grid search with grouped {settings.cv_folds}-fold cross-validation on the "
        "training split only (a patient's joints in one fold), scored by RMSE, each "
        "setting's out-of-fold predictions kept. The <strong>blend</strong> averages the tuned "
        "ridge and LightGBM with non-negative weights summing to one, fitted on their "
        "out-of-fold predictions (its own cross-validated error uses weights fitted without "
        "each fold). The blend is chosen unless a single candidate is clearly better: a lower "
        "out-of-fold mean squared error by more than one standard error of the paired "
        "difference (per patient). The held-out patients played no part in tuning or "
        "selection. The <strong>comparator</strong> is <code>baseline_womac</code>, a linear "
        "regression on the three baseline WOMAC subscales only, the reference a published "
        "outcome model should beat; <code>mean</code> predicts the average improvement for "
        "everyone (no information).</p>",
    ]
    final = _final_settings(context)
    if final:
        parts.append(
            f"<p>Final settings of the chosen model ({escape(context.chosen)}): "
            f'<span class="muted">{escape(final)}</span></p>'
        )
    parts += [
        "<p><strong>Class imbalance (item 13):</strong> no class-imbalance method was used; "
        "the responder probability is derived from the predictive distribution, not from a "
        "classifier trained on the responder label.</p>",
        "<h3>The full model (items 12g, 22)</h3>"
        "<p>The whole fitted pipeline (encoder, model, predictive distribution and training "
        f"domain) is logged as the artifact <code>model</code> of MLflow run <code>"
        f"{escape(context.run_id)}</code> and registered as <code>"
        f"{escape(settings.model_name)}</code>; the served model is "
        f"<code>{escape(settings.model_uri)}</code>. "
        + (
            "After the held-out evaluation the chosen model was refitted, with the same "
            "settings, on every followed-up patient (training and held-out), and its interval "
            "calibrated on their out-of-fold errors: that refitted object is the one served. "
            "The held-out figures of this report are those of its fit on the training "
            "patients only, computed by the same code that answers the API and "
            "<code>womac predict</code>.</p>"
            if context.refit_on_all
            else "That same object, not a re-implementation, computed the held-out "
            "predictions of this report and answers the API and <code>womac predict</code>."
            "</p>"
        ),
        "</section>",
    ]
    return "\n".join(parts)


def _uncertainty(context: ReportContext) -> str:
    settings, level = context.settings, context.evaluation.level
    return "\n".join(
        [
            _open("uncertainty"),
            "<p>For each patient the model returns: the <strong>expected improvement"
            f"</strong> (points), an <strong>{_pct(level, 0)} prediction interval</strong>, "
            "the <strong>probability of a clinically important improvement</strong>, "
            "<strong>eligibility</strong> under the protocol with reasons, <strong>warnings"
            "</strong> where the model would extrapolate, and a per-field explanation. No "
            "patient is classified by a threshold; the responder thresholds only define the "
            "probability's event.</p>",
            "<h3>Prediction interval</h3>"
            "<p>Cross-conformal prediction with normalised residuals (Papadopoulos et al. "
            "2008; Vovk 2015; Barber et al. 2021). Every training patient gets an out-of-fold "
            f"prediction from a model fitted without their fold (the same {settings.cv_folds} "
            "grouped folds as tuning). A heavily regularised gradient-boosted <em>difficulty"
            "</em> model, itself cross-fitted, predicts the size of each patient's error; the "
            "signed errors divided by the difficulty form the conformal scores. For a new "
            "patient, the prediction plus the scores times the patient's difficulty is a "
            "predictive distribution; its quantiles (with the finite-sample correction) give "
            "the interval, which is wider for harder patients and asymmetric where errors "
            "are, and is bounded by what the scale allows (the improvement cannot exceed "
            f"the baseline total nor fall below baseline \u2212 {WOMAC_TOTAL_MAX}). Level: "
            f"{_pct(level, 0)} (setting <code>WOMAC_INTERVAL_LEVEL</code>). The coverage is "
            "marginal: about that fraction of patients like the training patients, not of "
            "every subgroup or individual.</p>",
            "<h3>Probability of a clinically important improvement</h3>"
            "<p>The share of the same predictive distribution above the patient's responder "
            f"threshold (at least {settings.responder_min_points:g} points and "
            f"{_pct(settings.responder_min_fraction, 0)} of baseline), so the range and the "
            "probability cannot contradict each other. It is then recalibrated on the "
            "training patients' out-of-fold values by logistic regression on its logit, "
            "kept increasing, so a higher expected improvement never lowers the probability. "
            "It is 0 when the threshold exceeds the baseline total.</p>",
            "<h3>Warnings against extrapolation</h3>"
            "<p>A patient with a value outside the range seen in training, a category level "
            "never seen, or a combination of characteristics farther from the training "
            "patients than 99% of them (Mahalanobis distance with a Ledoit-Wolf covariance) "
            "gets a warning with the answer, not a silent extrapolation.</p>",
            "</section>",
        ]
    )


def _performance(context: ReportContext) -> str:
    evaluation, settings = context.evaluation, context.settings
    point, responder = evaluation.point, evaluation.responder
    rows: list[list[str]] = []
    marks: list[str] = []
    for candidate in context.candidates:
        cv, test = candidate.cv, candidate.test
        rows.append(
            [
                escape(candidate.name + (" (chosen)" if candidate.name == context.chosen else "")),
                f"{_num(cv.get('rmse'))} \u00b1 {_num(cv.get('rmse_sd'))}",
                _num(cv.get("mae")),
                _num(cv.get("r2")),
                _num(test.get("rmse")),
                _num(test.get("mae")),
                _num(test.get("r2")),
                _num(test.get("calibration_slope")),
                _num(test.get("calibration_intercept")),
            ]
        )
        marks.append("chosen" if candidate.name == context.chosen else "")
    if context.oracle_test is not None:
        oracle = context.oracle_test
        rows.append(
            [
                "oracle (noise-free expected improvement; simulation only)",
                "\u2014",
                "\u2014",
                "\u2014",
                _num(oracle.get("rmse")),
                _num(oracle.get("mae")),
                _num(oracle.get("r2")),
                _num(oracle.get("calibration_slope")),
                _num(oracle.get("calibration_intercept")),
            ]
        )
        marks.append("")
    candidates_table = _table(
        [
            "Model",
            "CV RMSE \u00b1 SD",
            "CV MAE",
            "CV R\u00b2",
            "Held-out RMSE",
            "Held-out MAE",
            "Held-out R\u00b2",
            "Held-out calibration slope",
            "Held-out calibration intercept",
        ],
        rows,
        numeric=tuple(range(1, 9)),
        row_classes=marks,
    )
    coverage_ci = _wilson(evaluation.coverage, evaluation.n)
    prevalence = responder.get("prevalence")
    served_rows = [
        ["Held-out patients", str(evaluation.n)],
        ["RMSE (points)", _num(point.get("rmse"))],
        ["MAE (points)", _num(point.get("mae"))],
        ["R\u00b2", _num(point.get("r2"))],
        ["Calibration slope (1 = ideal)", _num(point.get("calibration_slope"))],
        ["Calibration intercept (0 = ideal, points)", _num(point.get("calibration_intercept"))],
        [
            f"Coverage of the {_pct(evaluation.level, 0)} interval [95% CI]",
            f"{_pct(evaluation.coverage)} {_ci(coverage_ci, percent=True)}",
        ],
        ["Mean interval width (points)", _num(evaluation.mean_width, 1)],
        [
            "Responders (observed) [95% CI]",
            f"{_pct(prevalence)} {_ci(_wilson(prevalence, evaluation.n), percent=True)}"
            if prevalence is not None
            else "n/a",
        ],
        ["Mean predicted probability", _pct(responder.get("mean_probability"))],
        ["AUROC", _num(responder.get("auroc"))],
        ["Brier score", _num(responder.get("brier"), 3)],
        [
            "Calibration slope of the probability (1 = ideal)",
            _num(responder.get("calibration_slope")),
        ],
        [
            "Calibration intercept of the probability (0 = ideal)",
            _num(responder.get("calibration_intercept")),
        ],
    ]
    curve_rows = [
        [str(i + 1), _pct(bin_["predicted"]), _pct(bin_["observed"]), str(int(bin_["n"]))]
        for i, bin_ in enumerate(evaluation.calibration_curve)
    ]
    chosen = _candidate(context, context.chosen)
    comparator = _candidate(context, "baseline_womac")
    versus = ""
    if chosen is not None and comparator is not None and chosen is not comparator:
        gain = comparator.test.get("rmse", math.nan) - chosen.test.get("rmse", math.nan)
        if math.isfinite(gain):
            versus = (
                f"<p>On the held-out patients the chosen model's RMSE is {_num(abs(gain))} "
                f"points {'lower' if gain >= 0 else 'higher'} than the comparator's "
                "(baseline WOMAC only).</p>"
            )
    gates = _list(
        [
            f"calibration slope on held-out patients within {settings.gate_slope_min:g}-"
            f"{settings.gate_slope_max:g};",
            f"interval coverage within {_pct(settings.gate_coverage_tolerance, 0)} of nominal "
            "(or within the 95% sampling error of a coverage estimate when the held-out set "
            "is small);",
            "a lower held-out RMSE than the current champion on the same patients.",
        ]
    )
    decision = "promoted to champion" if context.promoted else "not promoted"
    parts = [
        _open("performance"),
        "<p><strong>Measures (item 12e).</strong> Error in WOMAC points (RMSE, MAE) because "
        "clinicians read the prediction in points; R\u00b2 for the share of variation "
        "explained; calibration slope and intercept of the least-squares line of observed on "
        "predicted improvement (slope 1 and intercept 0 when calibrated; a slope below 1 "
        "means over-spread predictions). For the interval: empirical coverage and mean "
        "width. For the responder probability: AUROC (discrimination), Brier score (overall "
        "accuracy), and calibration intercept and slope from the logistic regression of the "
        "observed status on the logit of the probability (Van Calster et al., J Clin "
        "Epidemiol 2016), with a calibration curve by decile.</p>",
        "<p><strong>Internal validation (item 16).</strong> The held-out patients come from "
        "the same export as the training patients (a random split by patient), so setting, "
        "eligibility, outcome and predictors do not differ; this is internal, not external, "
        "validation. <strong>Model updating (items 12f, 24):</strong> none; nothing was "
        "refitted or recalibrated after the held-out evaluation.</p>",
        "<h3>All candidates</h3>",
        candidates_table,
        '<p class="muted">CV: mean over the cross-validation folds of the training split. '
        "Held-out: each candidate's refitted pipeline scored once on the held-out patients. "
        "No confidence intervals are computed for the overall RMSE, MAE, R\u00b2 or AUROC; "
        "subgroup figures below carry bootstrap intervals.</p>",
        versus,
        "<h3>The served model on held-out patients</h3>",
        _table(["Measure", "Value"], served_rows, numeric=(1,)),
        _figure(context, "observed_vs_predicted"),
        _figure(context, "residuals"),
        _figure(context, "responder_calibration"),
        "<h3>Calibration curve of the responder probability</h3>",
        _table(
            ["Decile", "Mean predicted", "Observed responders", "Patients"],
            curve_rows,
            numeric=(1, 2, 3),
        )
        if curve_rows
        else "<p>No calibration curve in this run.</p>",
        "<h3>Promotion gates</h3>"
        "<p>A new version becomes champion only if, on this run's held-out patients, all "
        "of these hold:</p>",
        gates,
        f"<p>Decision: <strong>{escape(decision)}</strong>. "
        f"{escape(context.promotion_reason)}</p>",
    ]
    extra = [name for name in context.figures if name not in _FIGURES]
    if extra:
        parts.append("<h3>Other figures of this run</h3>")
        parts += [_figure(context, name) for name in extra]
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def _explainability(context: ReportContext) -> str:
    return "\n".join(
        [
            _open("explainability"),
            "<p>Every prediction is explained as one SHAP value per patient field, in "
            "points: exact TreeSHAP for tree models, coefficient times the centred input for "
            "linear models, summed over the model inputs derived from each field; the "
            "average prediction plus a patient's contributions equals the patient's expected "
            "improvement.</p>",
            _figure(context, "shap_summary"),
            "<p><strong>How to read it:</strong> each dot is one held-out patient; its "
            "horizontal position is how many points that field moved the patient's expected "
            "improvement away from the average prediction (right = more improvement), its "
            "colour is the field's value (red high, blue low; categories in alphabetical "
            "order of their levels), and fields are ordered by their mean absolute "
            "contribution. Contributions describe the model, not the causal effect of "
            "changing a treatment choice.</p>",
            "</section>",
        ]
    )


def _subgroups(context: ReportContext) -> str:
    evaluation = context.evaluation
    level = evaluation.level
    rows: list[list[str]] = []
    marks: list[str] = []
    flagged: list[str] = []
    small: list[str] = []
    sloped: list[str] = []
    for row in evaluation.subgroups:
        name = f"{_subgroup_name(row.subgroup)} {row.level}"
        low, high = row.coverage_ci
        flags = []
        if math.isfinite(low) and math.isfinite(high) and not low <= level <= high:
            flags.append(f"coverage CI excludes {_pct(level, 0)}")
            flagged.append(name)
        slope_low, slope_high = row.calibration_slope_ci
        slope_finite = math.isfinite(slope_low) and math.isfinite(slope_high)
        if slope_finite and not slope_low <= 1.0 <= slope_high:
            flags.append("calibration slope CI excludes 1")
            sloped.append(name)
        if row.n < SMALL_SUBGROUP:
            flags.append(f"small (n < {SMALL_SUBGROUP})")
            small.append(name)
        rows.append(
            [
                escape(_subgroup_name(row.subgroup)),
                escape(row.level),
                str(row.n),
                f"{_num(row.rmse)} {_ci(row.rmse_ci)}",
                f"{_num(row.calibration_slope)} {_ci(row.calibration_slope_ci)}",
                f"{_pct(row.coverage)} {_ci(row.coverage_ci, percent=True)}",
                f"{_num(row.mean_predicted, 1)} / {_num(row.mean_observed, 1)}",
                f'<span class="flag">{escape("; ".join(flags))}</span>' if flags else "",
            ]
        )
        marks.append("flagged" if any("excludes" in flag for flag in flags) else "")
    if not evaluation.subgroups:
        table = "<p>No subgroup figures in this run.</p>"
    else:
        table = _table(
            [
                "Subgroup",
                "Level",
                "n",
                "RMSE [95% CI]",
                "Calibration slope [95% CI]",
                f"{_pct(level, 0)} interval coverage [95% CI]",
                "Mean predicted / observed",
                "Flag",
            ],
            rows,
            numeric=(2, 3, 4, 5, 6),
            row_classes=marks,
        )
    if flagged:
        verdict = (
            f'<p class="flag">Coverage differs from the nominal {_pct(level, 0)} in: '
            f"{escape(', '.join(flagged))}. Patients in these groups get intervals that are "
            "too narrow or too wide on average.</p>"
        )
    elif evaluation.subgroups:
        verdict = f"<p>No subgroup's coverage interval excludes the nominal {_pct(level, 0)}.</p>"
    else:
        verdict = ""
    if sloped:
        verdict += (
            f"<p>Calibration slope differs from 1 in: {escape(', '.join(sloped))} (predictions "
            "too spread out when below 1, too compressed when above 1).</p>"
        )
    return "\n".join(
        [
            _open("subgroups"),
            "<p><strong>Approach (item 14).</strong> The served model's error, calibration "
            "and interval coverage are reported for each level of sex, age band, Kellgren-"
            "Lawrence grade and joint, on the held-out patients, with 95% percentile "
            "bootstrap intervals (patients resampled within the subgroup). No fairness "
            "constraint or reweighting is applied in training; sex and age are predictors "
            "because they are recorded at treatment. Flags are screening signals, not "
            "tests: with a dozen subgroups one may be flagged by chance, and a subgroup "
            f"under {SMALL_SUBGROUP} patients has wide intervals.</p>",
            table,
            verdict,
            f"<p>Small subgroups: {escape(', '.join(small))}.</p>" if small else "",
            _figure(context, "subgroups"),
            "<p><strong>Clusters (items 12d, 23b).</strong> All rows come from one export; "
            "heterogeneity across centres was not examined.</p>",
            "</section>",
        ]
    )


def _intended_use(context: ReportContext) -> str:
    settings = context.settings
    exclusions = [FIELD_BY_NAME[name].label.lower() for name in settings.exclusion_flags]
    if settings.excluded_kl_grades:
        grades = ", ".join(str(grade) for grade in settings.excluded_kl_grades)
        exclusions.insert(0, f"Kellgren-Lawrence grade {grades}")
    protocol = "; ".join(exclusions) or "no exclusion configured"
    return "\n".join(
        [
            _open("intended-use"),
            _list(
                [
                    "<strong>Who uses it.</strong> Clinicians, for one patient at a time in "
                    "the clinician page or through the API, to inform the conversation about "
                    "MSC therapy; data scientists, to retrain on the clinic's own cohort, "
                    "compare runs, promote a model and score batches.",
                    f"<strong>For which patients.</strong> Adults ({_age_range()}) with knee "
                    "or hip osteoarthritis being considered for MSC therapy at the clinic "
                    "whose treated patients trained the model. Only patients like those in "
                    "the training data are in scope.",
                    "<strong>What it does.</strong> It estimates the 12-month improvement "
                    "under MSC therapy as given at this clinic, with a range and the chance "
                    "of a clinically important improvement. It does not compare MSC therapy "
                    "with other treatments. It supports, and does not replace, clinical "
                    "judgement and shared decision-making.",
                    "<strong>Eligibility protocol (item 6b).</strong> A patient is outside "
                    f"the clinic's protocol with: {escape(protocol)} (settings "
                    "<code>WOMAC_EXCLUDED_KL_GRADES</code>, <code>WOMAC_EXCLUSION_FLAGS</code>)."
                    " Such a patient still gets a prediction where one can be made, marked "
                    "not a candidate with the reasons; an unknown flag is reported as not "
                    "checked. The training cohort was not filtered by the protocol: it holds "
                    "every treated joint with a 12-month outcome in the export.",
                    "<strong>Poor or unavailable input (item 27a).</strong> A request missing "
                    "a required field or with a value outside the contract is refused with "
                    "each bad field named. Unknown optional fields are filled as described "
                    "under missing data, and the explanation says so. Values outside the "
                    "training range and atypical combinations carry warnings.",
                    "<strong>Interaction and expertise (item 27b).</strong> Clinicians enter "
                    "the patient's fields and read the expected improvement, its interval, "
                    "the probability and the explanation; no statistical expertise is needed, "
                    "but they should know that the interval holds for about "
                    f"{_pct(context.evaluation.level, 0)} of patients, not for each one. "
                    "Retraining, promotion and batch scoring are for data scientists, "
                    "through the command line.",
                ],
                raw=True,
            ),
            "</section>",
        ]
    )


def _limitations(context: ReportContext) -> str:
    data, evaluation = context.data, context.evaluation
    small = [
        f"{_subgroup_name(row.subgroup)} {row.level}: n={row.n}"
        for row in evaluation.subgroups
        if row.n < SMALL_SUBGROUP
    ]
    items: list[str] = []
    if context.oracle_test is not None:
        items.append(
            "<strong>Simulated data are not evidence.</strong> Every figure here describes "
            "the simulator, whose effects were set from the literature; they say nothing "
            "about how well the model would do on real patients."
        )
    items += [
        "<strong>One data source, internal validation only.</strong> The held-out patients "
        "come from the same export; performance at other clinics, with other cell products "
        "or in later years is unknown until the model is validated externally.",
        "<strong>Treated patients only.</strong> The model predicts the outcome under MSC "
        "therapy; without untreated or control patients it cannot estimate the benefit of "
        "MSC therapy over another treatment. Contributions of treatment fields (cell "
        "source, dose, PRP, rehabilitation) are associations and may reflect who was "
        "offered them.",
        f"<strong>Lost to follow-up.</strong> {data.lost_to_follow_up} of {data.rows} rows "
        f"({_pct(data.lost_to_follow_up / data.rows if data.rows else math.nan)}) have no "
        "12-month outcome and were excluded. If patients who did not improve were less "
        "likely to return, the model may over-estimate improvement.",
        "<strong>Floor and ceiling of the scale.</strong> The improvement cannot exceed the "
        "baseline total; patients with little baseline pain and disability have little room "
        "to improve, and errors near the floor are asymmetric.",
        f"<strong>Marginal coverage.</strong> The {_pct(evaluation.level, 0)} interval holds "
        "on average over patients like the training patients, not for each patient or each "
        "subgroup; subgroup coverage is shown above.",
        "<strong>Small subgroups.</strong> Subgroup estimates with few patients have wide "
        "intervals"
        + (f" ({escape(', '.join(small))})" if small else "")
        + "; absence of a flag is not evidence of equal performance.",
        "<strong>No confidence intervals for the overall metrics</strong> except the "
        "interval coverage and responder prevalence.",
        "<strong>Extrapolation.</strong> Patients outside the training range get warnings, "
        "but the estimate for them rests on patients unlike them.",
        "<strong>Missing data.</strong> Filling unknowns with training values and an unknown "
        "indicator assumes that fields are missing for the same reasons after deployment as "
        "in the training data.",
        "<strong>Measurement.</strong> The contract assumes the Likert version of WOMAC "
        f"(0-{WOMAC_TOTAL_MAX}); NRS or VAS versions must be converted first. Kellgren-"
        "Lawrence grading is subjective and varies between readers.",
        "<strong>Responder definition.</strong> The probability is about the configured "
        "thresholds; other definitions of a meaningful improvement give other "
        "probabilities.",
    ]
    next_steps = [
        "External validation at other clinics and over time, with recalibration if needed.",
        "Periodic retraining on new patients, compared with the champion by the gates.",
        "An evaluation of clinical usefulness (e.g. decision curves) before routine use.",
    ]
    return "\n".join(
        [
            _open("limitations"),
            _list(items, raw=True),
            "<h3>Next steps (item 27c)</h3>",
            _list(next_steps),
            "</section>",
        ]
    )


def _not_covered() -> str:
    def entry(item: ChecklistItem) -> str:
        note = f": {escape(item.note)}" if item.note else ""
        return f"<strong>{escape(item.item)}</strong> {escape(item.topic)}{note}"

    to_add = [entry(item) for item in CHECKLIST if item.status == "authors"]
    to_complete = [entry(item) for item in CHECKLIST if item.status == "partly"]
    status_text = {"reported": "reported", "partly": "partly", "authors": "to add", "n/a": "n/a"}
    rows = []
    for item in CHECKLIST:
        where = (
            f'<a href="#{item.section}">{escape(_SECTION[item.section].title)}</a>'
            if item.section
            else "\u2014"
        )
        rows.append(
            [
                escape(item.item),
                escape(item.topic),
                escape(status_text[item.status]),
                where,
                escape(item.note),
            ]
        )
    return "\n".join(
        [
            _open("not-covered"),
            "<p>Software cannot know these items; the authors of a study report must add "
            "them:</p>",
            _list(to_add, raw=True),
            "<p>Partly reported here; the authors must complete them:</p>",
            _list(to_complete, raw=True),
            "<h3>TRIPOD+AI checklist map</h3>",
            _table(["Item", "Topic", "Status", "Where", "Note"], rows),
            "</section>",
        ]
    )


# -- building blocks ------------------------------------------------------------------------


def _open(section_id: str) -> str:
    section = _SECTION[section_id]
    return (
        f'<section id="{section.id}"><h2>{_item_badge(section.items)}{escape(section.title)}</h2>'
    )


def _item_badge(items: str) -> str:
    if items == "checklist":
        text = "TRIPOD+AI checklist"
    elif items:
        text = f"TRIPOD+AI {items}"
    else:
        text = "not a TRIPOD+AI item"
    return f'<span class="items">{escape(text)}</span>'


def _figure(context: ReportContext, name: str) -> str:
    title, caption = _FIGURES.get(name, (name.replace("_", " ").capitalize(), ""))
    figure = context.figures.get(name)
    if figure is None:
        return f'<p class="muted">Figure not available in this run: {escape(title)}.</p>'
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    text = f"<strong>{escape(title)}.</strong>" + (f" {escape(caption)}" if caption else "")
    return (
        f'<figure id="figure-{escape(name)}"><img src="data:image/png;base64,{encoded}" '
        f'alt="{escape(title)}"><figcaption>{text}</figcaption></figure>'
    )


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Sequence[int] = (),
    row_classes: Sequence[str] = (),
) -> str:
    """A table of already escaped cells; ``row_classes`` marks rows ("chosen", "flagged")."""

    def cls(i: int) -> str:
        return ' class="num"' if i in numeric else ""

    head = "".join(f"<th{cls(i)}>{escape(text)}</th>" for i, text in enumerate(header))
    body = []
    for index, row in enumerate(rows):
        marker = row_classes[index] if index < len(row_classes) else ""
        attribute = f' class="{marker}"' if marker else ""
        cells = "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row))
        body.append(f"<tr{attribute}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _facts_table(facts: Sequence[tuple[str, str]]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{escape(key)}</th><td>{escape(value)}</td></tr>'
        for key, value in facts
    )
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def _list(entries: Iterable[str], *, raw: bool = False) -> str:
    """A bullet list; entries are escaped unless ``raw`` (already safe HTML)."""
    items = "".join(f"<li>{entry if raw else escape(entry)}</li>" for entry in entries)
    return f"<ul>{items}</ul>"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _pct(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def _ci(bounds: tuple[float, float] | None, *, percent: bool = False) -> str:
    if bounds is None:
        return "[n/a]"
    low, high = bounds
    show = _pct if percent else _num
    return f"[{show(low)}, {show(high)}]"


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _wilson(fraction: float | None, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson 95% interval of a proportion (from the aggregate, no patient data needed)."""
    if fraction is None or n <= 0 or not math.isfinite(fraction):
        return None
    centre = (fraction + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _allowed(spec: PatientField) -> str:
    if spec.kind is Kind.CATEGORY:
        return ", ".join(spec.categories)
    if spec.kind is Kind.BOOLEAN:
        return "yes / no"
    if spec.is_numeric and spec.minimum is not None and spec.maximum is not None:
        whole = " (whole number)" if spec.kind is Kind.INTEGER else ""
        unit = f" {spec.unit}" if spec.unit else ""
        return f"{spec.minimum:g}-{spec.maximum:g}{unit}{whole}"
    return ""


def _needed(spec: PatientField) -> str:
    if spec.required and spec.blank_allowed:
        return "required (may be blank)"
    return "required" if spec.required else "optional"


def _age_range() -> str:
    age = FIELD_BY_NAME["age"]
    return f"{age.minimum:g} to {age.maximum:g} years"


def _subgroup_name(subgroup: str) -> str:
    return _SUBGROUP_NAMES.get(subgroup, subgroup.replace("_", " "))


def _candidate(context: ReportContext, name: str) -> Any:
    return next((c for c in context.candidates if c.name == name), None)


def _chosen(context: ReportContext) -> Any:
    return _candidate(context, context.chosen)


def _grids() -> dict[str, dict[str, list[Any]]]:
    from womac.models.candidates import BLEND, CANDIDATES

    grids = {name: candidate.grid for name, candidate in CANDIDATES.items()}
    return grids | {BLEND: {"weights": ["fitted on out-of-fold predictions"]}}


def _param_name(key: str) -> str:
    return key.split("__", 1)[-1]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _final_settings(context: ReportContext) -> str:
    """The chosen model's own settings (scalars only), for reproduction (item 22)."""
    chosen = _chosen(context)
    pipeline = getattr(chosen, "pipeline", None)
    steps = getattr(pipeline, "named_steps", None)
    if not steps or "model" not in steps:
        return ""
    model = steps["model"]
    params = model.get_params(deep=False)
    shown = [
        f"{key} = {_value(value)}"
        for key, value in sorted(params.items())
        if isinstance(value, int | float | str | bool) or value is None
    ]
    encoder = steps.get("preprocess")
    if encoder is not None and hasattr(encoder, "spline_knots"):
        shown.append(f"spline_knots = {encoder.spline_knots}")
    return f"{type(model).__name__}: " + ", ".join(shown)


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _versions() -> str:
    packages = ", ".join(f"{name} {_package_version(name)}" for name in VERSIONED_PACKAGES)
    return f"Python {platform.python_version()}, womac {_package_version('womac')}, {packages}"
