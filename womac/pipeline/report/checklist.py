"""What the report is made of, as data: its sections, the TRIPOD+AI checklist, figure captions.

The checklist is the TRIPOD+AI statement (Collins et al., BMJ 2024;385:e078378, version of
11 January 2024), items 1-27 with their sub-items: where this report fills each one, or what
the authors of a study report must add.
"""

from __future__ import annotations

from typing import Literal, NamedTuple


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
    Section("clinical-utility", "Clinical utility", "12e, 23a"),
    Section("explainability", "Explainability", ""),
    Section("subgroups", "Subgroups and fairness", "12d, 14, 23a, 23b"),
    Section("intended-use", "Intended use", "3b, 6b, 27a, 27b"),
    Section("limitations", "Limitations", "26, 27c"),
    Section("not-covered", "TRIPOD+AI items not covered by software", "checklist"),
)
SECTION_BY_ID = {section.id: section for section in SECTIONS}

Status = Literal["reported", "partly", "authors", "n/a"]
STATUS_TEXT: dict[str, str] = {
    "reported": "reported",
    "partly": "partly",
    "authors": "to add",
    "n/a": "n/a",
}


class ChecklistItem(NamedTuple):
    """One TRIPOD+AI item: where this report fills it, or what the authors must add."""

    item: str
    topic: str
    section: str | None  # id of the section that fills it, if any
    status: Status
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

# Title and caption of each figure a training run draws, in the order they are discussed.
FIGURES: dict[str, tuple[str, str]] = {
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
    "decision_curve": (
        "Decision curve of the probability of a clinically important improvement",
        "Net benefit, on the held-out patients, of offering MSC therapy to the patients whose "
        "probability is at least the threshold (blue), to every patient (grey) and to none "
        "(dotted). Where the blue line is above both, deciding by the model does more good.",
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
