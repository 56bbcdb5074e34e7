"""The model report: one self-contained HTML file covering the TRIPOD+AI items software can fill.

The context is built from real parts (a simulated cohort read through the contract, the real
metric, calibration and subgroup functions on synthetic predictions, real candidate
pipelines and real matplotlib figures) without training, so these tests take seconds.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from collections import Counter
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from womac.data import simulate
from womac.data.cohort import Cohort, read_cohort, womac_total
from womac.data.contract import ELIGIBILITY_FLAGS, PREDICTORS
from womac.data.report import summarise
from womac.data.simulate import simulate_cohort, simulated_fields
from womac.models.candidates import CANDIDATES
from womac.models.decision import decision_curve
from womac.models.evaluation import (
    Evaluation,
    calibration_curve,
    responder_metrics,
    subgroup_labels,
    subgroup_table,
)
from womac.models.metrics import regression_metrics
from womac.models.uncertainty import responder_threshold
from womac.pipeline.plots import (
    decision_curve_plot,
    drawn,
    observed_vs_predicted,
    residuals,
    responder_calibration,
    subgroup_forest,
)
from womac.pipeline.report import ReportContext, render_report
from womac.pipeline.train import CandidateResult
from womac.settings import Settings

PROMOTION_REASON = (
    "calibration slope 1.04 within 0.8-1.25; 80% interval covers 79.2% of held-out patients "
    "(allowed gap 7.3%, the sampling error at n=120); no champion yet"
)
# Every section a reviewer looks for, with one TRIPOD+AI item it must name (None: no item).
SECTIONS = (
    ("Summary", "4"),
    ("Data source", "5a"),
    ("Outcome and time horizon", "8a"),
    ("Predictors", "9b"),
    ("Sample size and participant flow", "20a"),
    ("Missing data", "11"),
    ("Model specification and tuning", "12c"),
    ("Uncertainty and model output", "15"),
    ("Internal validation and performance", "23a"),
    ("Clinical utility", "12e"),
    ("Explainability", None),
    ("Subgroups and fairness", "14"),
    ("Intended use", "3b"),
    ("Limitations", "26"),
    ("TRIPOD+AI items not covered by software", None),
)
# The TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378): 27 items, 52 sub-items.
TRIPOD_AI_ITEMS = [
    *("1", "2", "3a", "3b", "3c", "4", "5a", "5b", "6a", "6b", "6c", "7", "8a", "8b", "8c"),
    *("9a", "9b", "9c", "10", "11", "12a", "12b", "12c", "12d", "12e", "12f", "12g", "13"),
    *("14", "15", "16", "17", "18a", "18b", "18c", "18d", "18e", "18f", "19", "20a", "20b"),
    *("20c", "21", "22", "23a", "23b", "24", "25", "26", "27a", "27b", "27c"),
]
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}


class Document(HTMLParser):
    """Tag structure, headings, links and text of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []
        self.tags: Counter[str] = Counter()
        self.references: list[str] = []
        self.headings: list[str] = []
        self.table_rows: list[list[str]] = []
        self.text: list[str] = []
        self._heading: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.references += [value or "" for name, value in attrs if name in ("src", "href")]
        if tag == "h2":
            self._heading = []
        elif tag == "tr":
            self.table_rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
            return
        self.open.pop()
        if tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.table_rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for part in (self._heading, self._cell):
            if part is not None:
                part.append(data)


def parse(html: str) -> Document:
    document = Document()
    document.feed(html)
    document.close()
    return document


def row(document: Document, first_cell: str, width: int | None = None) -> list[str]:
    """The first table row whose first cell is ``first_cell`` (and has ``width`` cells)."""
    matches = [
        cells
        for cells in document.table_rows
        if cells and cells[0] == first_cell and (width is None or len(cells) == width)
    ]
    assert matches, f"no table row starting with {first_cell!r}"
    return matches[0]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 simulated treated joints, written as a clinic export."""
    simulated, _ = simulate_cohort(300, seed=4242)
    path = tmp_path_factory.mktemp("report") / "cohort-n300-seed4242.csv"
    simulated.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cohort(export: Path) -> Cohort:
    return read_cohort(export, require_outcomes=True)


@pytest.fixture(scope="module")
def context(cohort: Cohort, export: Path) -> ReportContext:
    """A plausible run: real metrics on synthetic predictions of the cohort's usable rows."""
    settings = Settings(_env_file=None)
    data = summarise(cohort, path=export)
    usable = cohort.frame[cohort.trainable].reset_index(drop=True)
    held_out = usable.iloc[:120]
    observed = cohort.target[cohort.trainable].to_numpy(dtype=float)[:120]
    rng = np.random.default_rng(1)
    predicted = 0.6 * observed + 0.4 * observed.mean() + rng.normal(0, 4, len(observed))
    half_width = 1.3 * 11.0
    lower, upper = predicted - half_width, predicted + half_width
    baseline = womac_total(held_out).to_numpy(dtype=float)
    responded = observed >= responder_threshold(
        baseline, settings.responder_min_points, settings.responder_min_fraction
    )
    probability = 1 / (1 + np.exp(-(predicted - 12.0) / 5.0))
    covered = (observed >= lower) & (observed <= upper)
    evaluation = Evaluation(
        n=len(observed),
        level=settings.interval_level,
        point=regression_metrics(observed, predicted),
        coverage=float(covered.mean()),
        mean_width=float(np.mean(upper - lower)),
        responder=responder_metrics(responded, probability),
        calibration_curve=calibration_curve(responded, probability),
        subgroups=subgroup_table(
            subgroup_labels(held_out), observed, predicted, lower, upper, seed=1, samples=50
        ),
        decision_curve=[dataclasses.asdict(row) for row in decision_curve(responded, probability)],
    )
    candidates = []
    for shrink, name in zip((0.0, 0.4, 0.5, 0.6), CANDIDATES, strict=True):
        guess = shrink * observed + (1 - shrink) * observed.mean()
        if name == "lightgbm":  # the chosen one: the served model predicts the same
            guess = predicted
        candidates.append(
            CandidateResult(
                name=name,
                description=CANDIDATES[name].description,
                params={"model__num_leaves": 4} if name == "lightgbm" else {},
                cv={"rmse": 12.0 - 3 * shrink, "rmse_sd": 0.4, "mae": 9.5 - shrink, "r2": shrink},
                test=regression_metrics(observed, guess),
                pipeline=CANDIDATES[name].build(settings.seed),
            )
        )
    title = "lightgbm, held-out patients (n=120)"
    shap = Figure(figsize=(4, 3))
    shap.subplots().barh(["BMI", "Age"], [1.0, 2.0])
    return ReportContext(
        run_id="0123456789abcdef0123456789abcdef",
        settings=settings,
        data=data,
        split={"training": len(usable) - 120, "held-out": 120},
        candidates=candidates,
        chosen="lightgbm",
        evaluation=evaluation,
        oracle_test=regression_metrics(observed, 0.7 * observed + 0.3 * observed.mean()),
        promotion_reason=PROMOTION_REASON,
        promoted=True,
        fields_used=[spec.name for spec in PREDICTORS],
        figures=drawn(
            {
                "observed_vs_predicted": observed_vs_predicted(observed, predicted, title),
                "residuals": residuals(observed, predicted, title),
                "shap_summary": shap,
                "responder_calibration": responder_calibration(evaluation, title),
                "subgroups": subgroup_forest(evaluation, title),
                "decision_curve": decision_curve_plot(evaluation.decision_curve, title),
            }
        ),
    )


@pytest.fixture(scope="module")
def quick(context: ReportContext) -> ReportContext:
    """The same run with tiny figures, for tests about text (PNG encoding takes ~1 s)."""
    figures = {}
    for name in context.figures:
        figure = Figure(figsize=(1, 1), dpi=20)
        figure.subplots().plot([0, 1], [0, 1])
        figures[name] = figure
    return dataclasses.replace(context, figures=drawn(figures))


@pytest.fixture(scope="module")
def html(context: ReportContext) -> str:
    return render_report(context)


@pytest.fixture(scope="module")
def document(html: str) -> Document:
    return parse(html)


def test_the_report_is_one_complete_html_document(html: str, document: Document) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")
    assert document.errors == []
    assert document.open == []
    assert document.tags["html"] == document.tags["head"] == document.tags["body"] == 1
    assert document.tags["title"] == 1
    assert document.tags["style"] == 1


def test_every_section_has_its_heading_and_tripod_item_numbers(document: Document) -> None:
    for title, item in SECTIONS:
        matches = [heading for heading in document.headings if heading.endswith(title)]
        assert matches, f"no section heading {title!r}"
        if item is not None:
            numbers = re.search(r"TRIPOD\+AI ([0-9a-g, ]+)", matches[0])
            assert numbers is not None, f"{title!r} names no TRIPOD+AI item"
            assert item in numbers.group(1).split(", ")


def test_every_figure_is_embedded_as_png(html: str, context: ReportContext) -> None:
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)

    assert len(images) == len(context.figures)
    for image in images:
        assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")


def test_nothing_is_loaded_from_outside(html: str, document: Document) -> None:
    assert "http://" not in html
    assert "https://" not in html
    assert document.tags["script"] == 0
    assert document.tags["link"] == 0
    assert "@import" not in html
    assert "url(" not in html
    for reference in document.references:
        assert reference.startswith(("data:image/png;base64,", "#")), reference[:40]


def test_no_patient_identifier_appears(html: str, cohort: Cohort) -> None:
    identifiers = cohort.frame["patient_id"].astype(str)

    assert not [patient for patient in identifiers if patient in html]
    assert "SIM-" not in html


def test_promotion_decision_and_held_out_figures_appear(
    document: Document, context: ReportContext
) -> None:
    text = "".join(document.text)
    rmse = f"{context.evaluation.point['rmse']:.2f}"

    assert PROMOTION_REASON in text
    assert "Promotion decision: promoted to champion." in text
    assert rmse in row(document, "RMSE (points)")
    assert rmse in row(document, "lightgbm (chosen)", width=9)
    assert (
        f"{context.evaluation.coverage:.1%}"
        in row(document, "Coverage of the 80% interval [95% CI]")[1]
    )
    assert f"{context.evaluation.responder['auroc']:.2f}" == row(document, "AUROC")[1]


def test_every_candidate_and_the_oracle_have_a_performance_row(
    document: Document, context: ReportContext
) -> None:
    for candidate in context.candidates:
        name = candidate.name + (" (chosen)" if candidate.name == context.chosen else "")
        cells = row(document, name, width=9)
        assert cells[4] == f"{candidate.test['rmse']:.2f}"
    assert context.oracle_test is not None
    oracle = row(document, "oracle (noise-free expected improvement; simulation only)")
    assert oracle[4] == f"{context.oracle_test['rmse']:.2f}"


def test_undefined_metrics_read_not_available(document: Document) -> None:
    # The mean model has no calibration slope: its predictions are constant.
    assert row(document, "mean", width=9)[7:9] == ["n/a", "n/a"]
    assert not re.search(r"\bnan\b", "".join(document.text), re.IGNORECASE)


def test_every_subgroup_has_a_row_with_its_intervals(
    document: Document, context: ReportContext
) -> None:
    names = {"sex": "Sex", "age_band": "Age band", "kl_grade": "KL grade", "joint": "Joint"}
    rows = [
        cells for cells in document.table_rows if len(cells) == 8 and cells[0] in names.values()
    ]

    assert len(rows) == len(context.evaluation.subgroups)
    for subgroup, cells in zip(context.evaluation.subgroups, rows, strict=True):
        assert cells[:3] == [names[subgroup.subgroup], subgroup.level, str(subgroup.n)]
        low, high = subgroup.rmse_ci
        assert cells[3] == f"{subgroup.rmse:.2f} [{low:.2f}, {high:.2f}]"
        assert cells[5].startswith(f"{subgroup.coverage:.1%}")


def test_a_subgroup_whose_coverage_interval_misses_the_level_is_flagged(
    quick: ReportContext,
) -> None:
    rows = list(quick.evaluation.subgroups)
    rows[0] = dataclasses.replace(rows[0], coverage=0.6, coverage_ci=(0.5, 0.7))
    rows[1] = dataclasses.replace(rows[1], coverage=0.8, coverage_ci=(0.72, 0.88))
    evaluation = dataclasses.replace(quick.evaluation, subgroups=rows)
    document = parse(render_report(dataclasses.replace(quick, evaluation=evaluation)))
    subgroup_rows = [
        cells for cells in document.table_rows if len(cells) == 8 and cells[0] == "Sex"
    ]

    assert "coverage CI excludes 80%" in subgroup_rows[0][-1]
    assert "coverage CI excludes" not in subgroup_rows[1][-1]
    assert f"Coverage differs from the nominal 80% in: Sex {rows[0].level}" in "".join(
        document.text
    )


def test_every_dynamic_text_is_escaped(quick: ReportContext) -> None:
    hostile = "<script>alert(1)</script>"
    data = dataclasses.replace(quick.data, source=f"{hostile}.csv", notes=[hostile])
    html = render_report(
        dataclasses.replace(
            quick, data=data, promotion_reason=hostile, run_id=hostile, oracle_test=None
        )
    )

    assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert parse(html).tags["script"] == 0


def test_file_lines_of_the_readers_notes_are_not_shown(quick: ReportContext) -> None:
    note = "kl_grade: required value is blank (lines 17, 18 and 3 more); these rows are not used"
    data = dataclasses.replace(quick.data, notes=[note])
    text = "".join(parse(render_report(dataclasses.replace(quick, data=data))).text)

    assert "kl_grade: required value is blank; these rows are not used" in text
    assert "lines 17" not in text


def test_simulated_data_is_described_with_its_sources(document: Document) -> None:
    text = "".join(document.text)

    assert "Simulated data." in text
    assert "Simulated cohort." in text
    for source in ("Osteoarthritis Initiative", "Bone Joint Res 2020;9:719", "Louati"):
        assert source in text


def test_a_clinic_export_is_not_called_simulated(quick: ReportContext) -> None:
    document = parse(render_report(dataclasses.replace(quick, oracle_test=None)))
    text = "".join(document.text)

    assert "Clinic export." in text
    assert "Simulated" not in text
    assert "oracle" not in text
    assert "Simulated data are not evidence" not in text


def test_outcome_responder_and_protocol_come_from_the_settings(quick: ReportContext) -> None:
    settings = quick.settings.model_copy(
        update={
            "responder_min_points": 12.0,
            "responder_min_fraction": 0.25,
            "excluded_kl_grades": [3, 4],
            "exclusion_flags": ["active_infection"],
            "cv_folds": 7,
        }
    )
    text = "".join(parse(render_report(dataclasses.replace(quick, settings=settings))).text)

    assert "at least 12 points and at least 25% of the baseline total" in text
    assert "Tubach" in text
    assert "Angst" in text
    assert (
        "outside the clinic's protocol with: Kellgren-Lawrence grade 3, 4; active infection"
        in (text)
    )
    assert "grouped 7-fold cross-validation on the training split only" in text
    assert "baseline_womac" in text


def test_predictors_table_says_which_fields_the_model_used(quick: ReportContext) -> None:
    used = ["womac_pain_0", "womac_stiffness_0", "womac_function_0"]
    document = parse(
        render_report(dataclasses.replace(quick, chosen="baseline_womac", fields_used=used))
    )
    for spec in PREDICTORS:
        cells = row(document, spec.label)
        assert cells[1] == spec.name
        if spec.name in used:
            assert cells[-1] == "yes"
        elif spec.name in simulated_fields():
            assert cells[-1] == "no: not an input of this model"
        else:  # a blank column of the simulated export
            assert cells[-1] == "no: never known in this export"
    for flag in ELIGIBILITY_FLAGS:
        assert row(document, flag.label)[1] == flag.name
    assert f"used 3 of {len(PREDICTORS)} predictor fields" in "".join(document.text)


def test_participant_flow_counts_every_exclusion(
    document: Document, context: ReportContext
) -> None:
    data = context.data

    assert row(document, "Rows in the file (treated joints)")[1] == str(data.rows)
    assert row(document, "Lost to follow-up (12-month scores blank)")[1] == str(
        data.lost_to_follow_up
    )
    assert row(document, "Blank required predictor")[1] == str(data.incomplete_predictors)
    assert row(document, "Usable for training and evaluation")[1] == str(data.usable_for_training)
    assert row(document, "Training (cross-validation, fitting, calibration)")[1] == str(
        context.split["training"]
    )
    assert row(document, "Held-out (evaluation)")[1] == str(context.split["held-out"])
    assert data.lost_to_follow_up > 0


def test_missing_data_table_has_every_field_of_the_data_report(
    document: Document, context: ReportContext
) -> None:
    kl_grade = next(field for field in context.data.fields if field.name == "kl_grade")
    cells = next(
        cells
        for cells in document.table_rows
        if cells[:2] == ["Kellgren-Lawrence grade", "predictor"]
    )

    assert cells[2:4] == ["required", "yes"]
    assert cells[-2:] == [str(kl_grade.blank), f"{kl_grade.blank_fraction:.1%}"]
    assert "never imputed" in "".join(document.text)


def test_software_versions_are_recorded(document: Document) -> None:
    text = "".join(document.text)
    for package in ("numpy", "pandas", "scikit-learn", "lightgbm", "mlflow", "shap"):
        assert f"{package} {version(package)}" in text


def test_checklist_maps_every_tripod_ai_item(document: Document) -> None:
    mapped = [
        cells[0]
        for cells in document.table_rows
        if len(cells) == 5 and cells[2] in ("reported", "partly", "to add", "n/a")
    ]

    assert mapped == TRIPOD_AI_ITEMS
    for item in ("17", "18d", "18e", "19", "8c", "5b"):
        assert row(document, item)[2] == "to add"


def test_a_missing_figure_is_named_and_the_others_still_embedded(
    quick: ReportContext,
) -> None:
    figures = {k: v for k, v in quick.figures.items() if k != "shap_summary"}
    html = render_report(dataclasses.replace(quick, figures=figures))

    assert html.count("data:image/png;base64,") == len(figures)
    assert "Figure not available in this run: SHAP summary" in html


def test_no_subgroups_and_no_responders_still_render(quick: ReportContext) -> None:
    responder = dict(quick.evaluation.responder, auroc=math.nan, calibration_slope=math.nan)
    evaluation = dataclasses.replace(quick.evaluation, subgroups=[], responder=responder)
    document = parse(render_report(dataclasses.replace(quick, evaluation=evaluation)))

    assert document.errors == []
    assert row(document, "AUROC")[1] == "n/a"
    assert "No subgroup figures in this run." in "".join(document.text)


def test_report_renders_from_a_data_report_with_absent_optional_columns(
    tmp_path: Path, quick: ReportContext
) -> None:
    simulated, _ = simulate_cohort(60, seed=99)
    path = tmp_path / "export.csv"
    simulated.drop(columns=["symptom_years", "prp"]).to_csv(path, index=False)
    data = summarise(read_cohort(path, require_outcomes=True), path=path)
    used = [spec.name for spec in PREDICTORS if spec.name not in ("symptom_years", "prp")]
    document = parse(
        render_report(dataclasses.replace(quick, data=data, fields_used=used, oracle_test=None))
    )

    assert row(document, "Years with symptoms")[-1] == "no: never known in this export"
    assert row(document, "Years with symptoms")[0] == "Years with symptoms"
    assert data.sha256 is not None
    assert data.sha256 in "".join(document.text)


def test_the_simulated_cohort_is_described_with_the_simulators_own_figures(
    quick: ReportContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = dataclasses.replace(simulate.COHORT_FIGURES, msc_per_baseline_point=0.3, female=0.6)
    monkeypatch.setattr(simulate, "COHORT_FIGURES", figures)
    text = "".join(parse(render_report(quick)).text)

    assert "MSC therapy adds 0.3 \u00d7 baseline (about 9 points at a baseline of 30" in text
    assert "60% female" in text


def test_clinical_utility_shows_the_decision_curve_and_what_it_means(
    html: str, document: Document, context: ReportContext
) -> None:
    text = "".join(document.text)
    curve = {row["threshold"]: row for row in context.evaluation.decision_curve}

    assert any(heading.endswith("Clinical utility") for heading in document.headings)
    for threshold in (0.2, 0.3, 0.4, 0.5, 0.6):
        cells = row(document, f"{threshold:.0%}", width=5)
        assert cells[2] == f"{curve[threshold]['net_benefit_model']:.3f}"
        assert cells[3] == f"{curve[threshold]['net_benefit_all']:.3f}"
        assert cells[4] == "0.000"
    assert "Vickers and Elkin" in text
    assert "Thresholds from 5% to 80% are shown" in text
    assert "For a clinician." in text
    assert '<figure id="figure-decision_curve"><img src="data:image/png;base64,' in html


def test_a_run_without_a_decision_curve_says_so(quick: ReportContext) -> None:
    evaluation = dataclasses.replace(quick.evaluation, decision_curve=[])
    figures = {k: v for k, v in quick.figures.items() if k != "decision_curve"}
    document = parse(
        render_report(dataclasses.replace(quick, evaluation=evaluation, figures=figures))
    )

    assert document.errors == []
    assert "No decision curve in this run." in "".join(document.text)
