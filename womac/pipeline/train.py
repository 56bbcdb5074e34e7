"""Training: validate -> split -> select -> calibrate -> evaluate -> log -> register -> promote.

One MLflow run per training, with a nested run per candidate. Patients are split once, a
patient's joints together: training (model selection by cross-validation, fitting, and the
cross-conformal interval and responder probability from out-of-fold errors) and held-out (set
aside before anything is fitted, used for no choice, scored once for the final figures). The
new model is registered only when every step before succeeded, and becomes champion only when
it passes the promotion gates on this run's held-out patients.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline

from womac.data.cohort import (
    Cohort,
    model_input,
    read_cohort,
    womac_total,
)
from womac.data.contract import FIELD_BY_NAME, OUTCOMES, PREDICTOR_NAMES, WOMAC_TOTAL_MAX, Kind
from womac.data.report import DataReport, summarise
from womac.data.settings import Settings
from womac.data.simulate import ORACLE, simulate_cohort
from womac.features.encoding import UNKNOWN, field_of
from womac.models.candidates import (
    BLEND_DESCRIPTION,
    CANDIDATES,
    COMPARATOR,
    LINEAR,
    TREES,
)
from womac.models.eligibility import protocol_from
from womac.models.evaluation import Evaluation, evaluate
from womac.models.gates import coverage_gate, slope_gate
from womac.models.leftovers import Leftover, clean_store, process_tags
from womac.models.metrics import regression_metrics
from womac.models.registry import (
    CHAMPION,
    NOT_PROMOTED,
    PROMOTION_REASON_TAG,
    PROMOTION_TAG,
    RUN_ID_TAG,
)
from womac.models.scoring import Scorer
from womac.models.selection import (
    CLEARLY_BETTER_SE,
    Choice,
    Folds,
    Tuned,
    blend,
    choose,
    tune,
)
from womac.models.store import (
    REPORT_ARTIFACT,
    champion_version,
    connect,
    create_store,
    load_pipeline,
    log_model,
)
from womac.models.tracking import check_shared_experiment, check_store, is_server
from womac.models.uncertainty import OutcomeModel, difficulty_model
from womac.pipeline.files import atomic_write_csv
from womac.pipeline.plots import (
    observed_vs_predicted,
    residuals,
    responder_calibration,
    shap_summary,
    subgroup_forest,
)
from womac.pipeline.provenance import (
    MODEL_DESCRIPTION,
    environment,
    log_datasets,
    source_tags,
    version_description,
)
from womac.pipeline.report import ReportContext, render_report
from womac.pipeline.safety import (
    checkpoint,
    clean_leftovers,
    held_interrupts,
    interrupt_pending,
    interrupts_handled,
    store_lock,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import ActiveRun

logger = logging.getLogger(__name__)

MIN_TRAINING_ROWS = 50
PLOTTED_PATIENTS = 5_000


class TrainingError(RuntimeError):
    """Training cannot go on; nothing was registered."""


@dataclass(slots=True)
class CandidateResult:
    """One candidate after cross-validation and its single held-out evaluation."""

    name: str
    description: str
    params: dict[str, Any]
    cv: dict[str, float]
    test: dict[str, float]
    pipeline: Pipeline  # fitted on the training patients
    out_of_fold: np.ndarray = field(default_factory=lambda: np.zeros(0))
    run_id: str = ""


@dataclass(slots=True)
class Promotion:
    """Whether the new version became champion, and why."""

    promoted: bool
    reason: str
    champion_rmse: float | None = None


@dataclass(slots=True)
class TrainingResult:
    """What a training run produced, for the summary table and for tests."""

    run_id: str
    experiment_id: str
    data: DataReport
    n_train: int
    n_test: int
    candidates: list[CandidateResult]
    chosen: str
    oracle_test: dict[str, float] | None
    model_version: str
    promotion: Promotion
    seconds: float
    evaluation: Evaluation
    pipeline: Pipeline  # served: fitted on every followed-up patient (settings.refit_on_all)
    evaluated: Pipeline  # fitted on the training patients; the held-out figures are its own
    selection_reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def chosen_result(self) -> CandidateResult:
        """The selected candidate."""
        return next(c for c in self.candidates if c.name == self.chosen)


def default_cohort(settings: Settings) -> tuple[Path, Path]:
    """Write the simulated default cohort (and its oracle) unless it is already there."""
    path, oracle_path = _default_cohort_paths(settings)
    if not (path.exists() and oracle_path.exists()):
        cohort, oracle = simulate_cohort(settings.default_cohort_size, settings.seed)
        atomic_write_csv(pd.concat([cohort["patient_id"], oracle], axis=1), oracle_path)
        atomic_write_csv(cohort, path)
    return path, oracle_path


def _default_cohort_paths(settings: Settings) -> tuple[Path, Path]:
    n, seed = settings.default_cohort_size, settings.seed
    path = settings.generated_dir / f"cohort-n{n}-seed{seed}.csv"
    return path, path.with_name(path.stem + "-oracle.csv")


def train(
    data: Path | None,
    settings: Settings,
    *,
    on_step: Callable[[str], None] = lambda _: None,
    on_cleaned: Callable[[list[Leftover]], None] = lambda _: None,
) -> TrainingResult:
    """Train, compare, calibrate, log and register a model of 12-month WOMAC improvement.

    Parameters
    ----------
    data
        A cohort CSV in the contract with 12-month scores; ``None`` for the simulated
        default cohort of ``settings.default_cohort_size`` patients.
    settings
        Tracking store, registry names, seed, split, CV, interval and gate settings.
    on_step
        Called with a short description as each step starts (for a progress display).
    on_cleaned
        Called with what an earlier training killed outright had left and this one cleaned
        (:mod:`womac.models.leftovers`): temporary files at the start, orphaned runs and
        cut-short versions once it holds the store, before its own run starts.

    Raises
    ------
    data.cohort.CohortError
        When the cohort breaks the contract; nothing is logged or registered.
    TrainingError
        When the cohort is too small to train on.
    KeyboardInterrupt
        On SIGINT or SIGTERM (in the main thread): the MLflow run is closed as failed, no
        version stays registered and no alias moves. While MLflow writes, the interrupt
        waits for the end of the current step, so no database transaction is cut.
    """
    with interrupts_handled():
        return _train(data, settings, on_step, on_cleaned)


def _train(
    data: Path | None,
    settings: Settings,
    on_step: Callable[[str], None],
    on_cleaned: Callable[[list[Leftover]], None],
) -> TrainingResult:
    started = time.perf_counter()
    on_step("Checking the tracking store")
    _check_tracking(settings)
    writing = list(_default_cohort_paths(settings)) if data is None else []
    uri = settings.resolved_tracking_uri()
    if uri.startswith("sqlite:///"):
        writing.append(Path(uri.removeprefix("sqlite:///")))  # a store being created
    on_cleaned(clean_leftovers(settings, writing, store=False, by="womac train"))
    on_step("Validating cohort")
    oracle: pd.Series | None = None
    if data is None:
        data, oracle_path = default_cohort(settings)
        cohort = read_cohort(data, require_outcomes=True)
        oracle_frame = pd.read_csv(oracle_path)
        oracle = cohort.frame["patient_id"].map(
            dict(zip(oracle_frame["patient_id"].astype(str), oracle_frame[ORACLE], strict=True))
        )
    else:
        cohort = read_cohort(data, require_outcomes=True)
    report = summarise(cohort, path=Path(data))
    usable = cohort.trainable.to_numpy()
    if usable.sum() < MIN_TRAINING_ROWS:
        raise TrainingError(
            f"{cohort.source} has {int(usable.sum())} usable rows (complete predictors and "
            f"12-month scores); at least {MIN_TRAINING_ROWS} are needed to train"
        )

    on_step("Splitting off held-out patients")
    frame = cohort.frame[usable].reset_index(drop=True)
    split = _split(frame, settings)
    patients = model_input(frame)
    improvement = cohort.target[usable].to_numpy(dtype=float)
    groups = frame["patient_id"].to_numpy()
    x_fit, y_fit = patients.iloc[split.fit], improvement[split.fit]
    x_test, y_test = patients.iloc[split.test], improvement[split.test]

    # Large cohorts tune and calibrate on a sample of training patients (selection curves
    # and conformal quantiles are settled long before 50,000); every model is then fitted
    # on all of them.
    tuning = _tuning_rows(split.fit, groups, settings)
    x_tune, y_tune = patients.iloc[tuning], improvement[tuning]
    folds = group_folds(groups[tuning], settings.cv_folds, settings.seed)
    tuned: list[Tuned] = []
    for candidate in CANDIDATES.values():
        on_step(f"Cross-validating {candidate.name}")
        tuned.append(tune(candidate, x_tune, y_tune, folds, settings.seed))
    by_name = {t.name: t for t in tuned}
    tuned.append(blend(by_name[LINEAR], by_name[TREES], y_tune, folds, BLEND_DESCRIPTION))
    # Selection uses cross-validation on the training patients only.
    choice = choose(tuned, y_tune, groups[tuning])
    on_step("Fitting every candidate on the training patients")
    candidates = [
        CandidateResult(
            name=t.name,
            description=t.description,
            params=t.params,
            cv=t.cv(y_tune, folds),
            test={},
            pipeline=_fit(t.pipeline, x_fit, y_fit),
            out_of_fold=t.out_of_fold,
        )
        for t in tuned
    ]
    chosen = next(c for c in candidates if c.name == choice.name)

    on_step(f"Calibrating the {settings.interval_level:.0%} interval and responder probability")
    evaluated = _calibrate(
        chosen.pipeline, chosen.out_of_fold, frame.iloc[tuning], y_tune, folds, settings
    )

    on_step("Scoring held-out patients")
    evaluation = evaluate(evaluated, frame.iloc[split.test], y_test, settings.seed)
    # Every candidate's held-out figures computed one way (estimates kept on the scale, as
    # served), so the chosen one's equal the served model's evaluation everywhere they show.
    baseline = womac_total(x_test).to_numpy(dtype=float)
    for result in candidates:
        predicted = np.clip(result.pipeline.predict(x_test), baseline - WOMAC_TOTAL_MAX, baseline)
        result.test = regression_metrics(y_test, predicted)
    oracle_test = None
    if oracle is not None:
        oracle_test = regression_metrics(y_test, oracle[usable].to_numpy(dtype=float)[split.test])

    served = evaluated
    if settings.refit_on_all:
        on_step(f"Refitting {chosen.name} on all {len(frame):,} followed-up patients")
        served = _refit_on_all(
            next(t for t in tuned if t.name == chosen.name).pipeline,
            frame,
            patients,
            improvement,
            groups,
            settings,
        )

    on_step("Waiting for the tracking store")
    with store_lock(settings.resolved_tracking_uri(), settings.store_lock_timeout_s):

        def next_step(step: str) -> None:
            checkpoint()
            on_step(step)

        with held_interrupts():
            return _track_and_register(
                settings=settings,
                on_step=next_step,
                on_cleaned=on_cleaned,
                started=started,
                cohort=cohort,
                report=report,
                split=split,
                candidates=candidates,
                chosen=chosen,
                served=served,
                evaluated=evaluated,
                choice=choice,
                evaluation=evaluation,
                oracle_test=oracle_test,
                sides=Sides(x_fit, y_fit, x_test, y_test),
            )


def _track_and_register(
    *,
    settings: Settings,
    on_step: Callable[[str], None],
    on_cleaned: Callable[[list[Leftover]], None],
    started: float,
    cohort: Cohort,
    report: DataReport,
    split: Split,
    candidates: list[CandidateResult],
    chosen: CandidateResult,
    served: Pipeline,
    evaluated: Pipeline,
    choice: Choice,
    evaluation: Evaluation,
    oracle_test: dict[str, float] | None,
    sides: Sides,
) -> TrainingResult:
    """The MLflow phase, holding the store: log, decide promotion, register."""
    x_test, y_test = sides.x_test, sides.y_test
    create_store(settings.resolved_tracking_uri(), settings.resolved_artifact_root())
    client = connect(settings.resolved_tracking_uri())
    experiment_id = _experiment(client, settings)
    # Holding the store (a local one's lock): what a training killed outright left in it.
    on_cleaned(
        clean_store(
            client,
            settings,
            store_locked=settings.resolved_tracking_uri().startswith("sqlite:///"),
            by="womac train",
        )
    )
    import mlflow

    # Nested runs take the active experiment, not their parent's: set it for both.
    mlflow.set_experiment(experiment_id=experiment_id)
    with _training_run(experiment_id) as run:
        on_step("Logging candidates to MLflow")
        _log_run(cohort, report, settings, chosen, candidates, evaluation, oracle_test, split)
        _log_selection(choice, settings, n_served=len(sides.y_fit) + len(sides.y_test))
        log_datasets(cohort.source, sides.x_fit, sides.x_test, sides.y_fit, sides.y_test)
        on_step("Drawing plots and SHAP summary")
        figures = _figures(chosen, evaluated, x_test, y_test, evaluation)
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"plots/{name}.png")
        on_step("Comparing with the current champion")
        promotion = _decide_promotion(
            client, settings, evaluated, evaluation, sides, report.sha256 or ""
        )
        on_step("Writing the model report")
        context = ReportContext(
            run_id=run.info.run_id,
            settings=settings,
            data=report,
            split=split.sizes(),
            candidates=candidates,
            chosen=chosen.name,
            evaluation=evaluation,
            oracle_test=oracle_test,
            promotion_reason=promotion.reason,
            promoted=promotion.promoted,
            fields_used=_fields_used(served),
            figures=figures,
            selection_reason=choice.reason,
            refit_on_all=served is not evaluated,
        )
        mlflow.log_text(render_report(context), REPORT_ARTIFACT)
        on_step("Logging the fitted pipeline")
        model_info = log_model(served, _input_example(settings.seed), protocol_from(settings))
        on_step("Registering the model")
        description = version_description(
            chosen.name, evaluation, cohort.source, report.sha256 or "", len(split.fit)
        )
        version = _register(
            client, settings, model_info.model_uri, run.info.run_id, promotion, description
        )
        mlflow.set_tags({"model_version": version, "promoted": str(promotion.promoted)})

    return TrainingResult(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        data=report,
        n_train=len(split.fit),
        n_test=len(split.test),
        candidates=candidates,
        chosen=chosen.name,
        oracle_test=oracle_test,
        model_version=version,
        promotion=promotion,
        seconds=time.perf_counter() - started,
        evaluation=evaluation,
        pipeline=served,
        evaluated=evaluated,
        selection_reason=choice.reason,
        notes=list(cohort.notes),
    )


@contextmanager
def _training_run(experiment_id: str) -> Iterator[ActiveRun]:
    """The training's MLflow run: closed as killed when interrupted, failed on an error.

    Tagged from its start with this process (host, PID, start time), so that if the process
    is killed outright the next command can tell the run is orphaned and close it.
    """
    import mlflow

    with mlflow.start_run(
        experiment_id=experiment_id, run_name="train", tags=process_tags()
    ) as run:
        try:
            yield run
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise


@dataclass(frozen=True, slots=True)
class Sides:
    """Model input and observed improvement of the training and the held-out patients."""

    x_fit: pd.DataFrame
    y_fit: np.ndarray
    x_test: pd.DataFrame
    y_test: np.ndarray


@dataclass(frozen=True, slots=True)
class Split:
    """Row positions of the training and the held-out patients."""

    fit: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Patients in each part."""
        return {"training": len(self.fit), "held-out": len(self.test)}


def _split(frame: pd.DataFrame, settings: Settings) -> Split:
    """Held-out patients set aside first; a patient's joints stay on one side."""
    held_out = _sample_patients(
        frame["patient_id"].to_numpy(), settings.test_fraction, settings.seed
    )
    rows = np.arange(len(frame))
    return Split(fit=rows[~held_out], test=rows[held_out])


def _sample_patients(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Rows of a random ``fraction`` of patients (all of each one's joints), in linear time.

    scikit-learn's group splitters compare patient ids pairwise; at 400,000 patients that
    took minutes here.
    """
    codes, patients = pd.factorize(groups)
    chosen = np.zeros(len(patients), dtype=bool)
    count = round(fraction * len(patients))
    chosen[np.random.default_rng(seed).permutation(len(patients))[:count]] = True
    return chosen[codes]


def group_folds(groups: np.ndarray, n_folds: int, seed: int) -> Folds:
    """K folds with all of a patient's joints in one fold, patients shuffled by the seed.

    scikit-learn's ``GroupKFold(shuffle=True)`` takes 36 s for 40,000 patients here (it
    is quadratic in the number of groups); this is linear.
    """
    patient, _ = pd.factorize(groups)
    order = np.random.default_rng(seed).permutation(patient.max() + 1)
    fold_of_patient = np.empty_like(order)
    fold_of_patient[order] = np.arange(len(order)) % n_folds
    fold = fold_of_patient[patient]
    rows = np.arange(len(groups))
    return [(rows[fold != k], rows[fold == k]) for k in range(n_folds)]


def _tuning_rows(training: np.ndarray, groups: np.ndarray, settings: Settings) -> np.ndarray:
    """Training rows for selection and calibration: all, or whole patients up to the cap."""
    if len(training) <= settings.tuning_rows:
        return training
    share = settings.tuning_rows / len(training)
    return training[_sample_patients(groups[training], share, settings.seed + 2)]


def _calibrate(
    pipeline: Pipeline,
    out_of_fold: np.ndarray,
    training: pd.DataFrame,
    observed: np.ndarray,
    folds: Folds,
    settings: Settings,
) -> Pipeline:
    """A fitted candidate with its conformal predictive distribution, as served.

    ``out_of_fold`` are the predictions of the same kind of model for the ``training``
    patients, each from a fit without the patient's fold (``folds``); ``pipeline`` itself
    may have been fitted on more patients than these.
    """
    x_fit, y_fit = model_input(training), observed
    fold_of = np.empty(len(training), dtype=int)
    for fold, (_, inside) in enumerate(folds):
        fold_of[inside] = fold
    encoder = pipeline.named_steps["preprocess"]
    names = list(encoder.get_feature_names_out())
    outcome = OutcomeModel(
        regressor=pipeline.named_steps["model"],
        difficulty=difficulty_model(settings.seed),
        level=settings.interval_level,
        responder_min_points=settings.responder_min_points,
        responder_min_fraction=settings.responder_min_fraction,
    ).fit(
        np.asarray(encoder.transform(x_fit), dtype=float),
        y_fit,
        out_of_fold=out_of_fold,
        folds=fold_of,
        baseline_total=womac_total(training).to_numpy(dtype=float),
        domain_columns=[
            i
            for i, column in enumerate(names)
            if FIELD_BY_NAME[field_of(column)].required and not column.endswith(f"__{UNKNOWN}")
        ],
        # Groups whose coverage must hold: each level of a required category field, and the
        # patients with a required value unknown. The cut is the encoded value of 0.5.
        group_columns=[
            (i, (0.5 - encoder.mean_[i]) / encoder.scale_[i])
            for i, column in enumerate(names)
            if FIELD_BY_NAME[field_of(column)].required
            and (
                column.endswith(f"__{UNKNOWN}")
                or FIELD_BY_NAME[field_of(column)].kind is Kind.CATEGORY
            )
        ],
    )
    return Pipeline([("preprocess", encoder), ("model", outcome)])


def _refit_on_all(
    unfitted: Pipeline,
    frame: pd.DataFrame,
    patients: pd.DataFrame,
    improvement: np.ndarray,
    groups: np.ndarray,
    settings: Settings,
) -> Pipeline:
    """The chosen model fitted on every followed-up patient, calibrated by cross-validation
    over them (whole patients up to ``settings.tuning_rows``)."""
    rows = _tuning_rows(np.arange(len(frame)), groups, settings)
    folds = group_folds(groups[rows], settings.cv_folds, settings.seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        out_of_fold = cross_val_predict(
            clone(unfitted), patients.iloc[rows], improvement[rows], cv=folds
        )
    pipeline = _fit(unfitted, patients, improvement)
    return _calibrate(pipeline, out_of_fold, frame.iloc[rows], improvement[rows], folds, settings)


def _fit(unfitted: Pipeline, patients: pd.DataFrame, observed: np.ndarray) -> Pipeline:
    with warnings.catch_warnings():
        # Spline bases are collinear by design; the ridge penalty handles it.
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        return clone(unfitted).fit(patients, observed)


def _fields_used(pipeline: Pipeline) -> list[str]:
    return list(pipeline.named_steps["preprocess"].fields_used)


def _check_tracking(settings: Settings) -> None:
    """Find a store that cannot be used before anything is fitted (see models.tracking)."""
    uri = settings.resolved_tracking_uri()
    check_store(uri)
    if is_server(uri):
        check_shared_experiment(connect(uri), uri, settings.experiment_name)


def _experiment(client: Any, settings: Settings) -> str:
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return str(experiment.experiment_id)
    if is_server(settings.resolved_tracking_uri()):
        # The server chooses (its artifact store), so that every colleague can load the model.
        return str(client.create_experiment(settings.experiment_name))
    return str(
        client.create_experiment(
            settings.experiment_name, artifact_location=settings.resolved_artifact_root()
        )
    )


def _log_selection(choice: Choice, settings: Settings, *, n_served: int) -> None:
    """Why this candidate, and which patients each figure and the served model come from."""
    import mlflow

    mlflow.set_tag("selection_reason", choice.reason)
    served = (
        f"all {n_served} followed-up patients (training and held-out)"
        if settings.refit_on_all
        else "the training patients"
    )
    mlflow.log_params(
        {
            "selection_rule": "blend unless a single candidate is clearly better "
            f"(paired out-of-fold error lower by more than {CLEARLY_BETTER_SE:g} SE)",
            "served_model_fitted_on": served,
            "held_out_figures_from": "the chosen model fitted on the training patients only, "
            "calibrated on their out-of-fold errors",
            "cv_figures_from": "out-of-fold predictions on the training patients",
        }
    )


def _log_run(
    cohort: Cohort,
    report: DataReport,
    settings: Settings,
    chosen: CandidateResult,
    candidates: list[CandidateResult],
    evaluation: Evaluation,
    oracle_test: dict[str, float] | None,
    split: Split,
) -> None:
    import mlflow

    mlflow.set_tags(
        {
            "data.source": cohort.source,
            "data.sha256": report.sha256 or "",
            "chosen_model": chosen.name,
            **source_tags(),
            "code.womac_version": environment()["womac"],
            "seed": str(settings.seed),
        }
    )
    mlflow.log_params(
        {
            "data_rows": report.rows,
            "lost_to_follow_up": report.lost_to_follow_up,
            "incomplete_predictors": report.incomplete_predictors,
            "n_train": len(split.fit),
            "n_test": len(split.test),
            "seed": settings.seed,
            "cv_folds": settings.cv_folds,
            "test_fraction": settings.test_fraction,
            "interval_level": settings.interval_level,
            "responder_min_points": settings.responder_min_points,
            "responder_min_fraction": settings.responder_min_fraction,
            "chosen_model": chosen.name,
            "fields_used": ",".join(name for name in PREDICTOR_NAMES if name in cohort.present),
        }
    )
    mlflow.log_dict(report.as_dict(), "data/summary.json")
    mlflow.log_dict(environment(), "environment/packages.json")
    mlflow.log_dict(evaluation.as_dict(), "evaluation/held_out.json")
    for result in candidates:
        with mlflow.start_run(run_name=result.name, nested=True) as child:
            mlflow.set_tags({"candidate": result.name, "chosen": str(result is chosen)})
            mlflow.log_params({"description": result.description, **result.params})
            mlflow.log_metrics({f"cv_{k}": v for k, v in result.cv.items()})
            mlflow.log_metrics({f"test_{k}": v for k, v in result.test.items() if np.isfinite(v)})
            result.run_id = child.info.run_id
    metrics = evaluation.metrics()
    metrics |= {f"cv_{k}": v for k, v in chosen.cv.items()}
    comparator = next(c for c in candidates if c.name == COMPARATOR)
    metrics |= {f"comparator_test_{k}": v for k, v in comparator.test.items()}
    if oracle_test is not None:
        metrics |= {f"oracle_test_{k}": v for k, v in oracle_test.items()}
    mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})


def _figures(
    chosen: CandidateResult,
    served: Pipeline,
    x_test: pd.DataFrame,
    y_test: np.ndarray,
    evaluation: Evaluation,
) -> dict[str, Figure]:
    if len(y_test) > PLOTTED_PATIENTS:  # a plot of more points shows nothing more
        shown = np.random.default_rng(0).choice(len(y_test), PLOTTED_PATIENTS, replace=False)
        x_test, y_test = x_test.iloc[shown], y_test[shown]
    explanation = Scorer(served).explain(x_test)
    predicted = explanation.values.sum(axis=1) + explanation.base_values
    title = f"{chosen.name}, held-out patients (n={len(y_test)})"
    return {
        "observed_vs_predicted": observed_vs_predicted(y_test, predicted, title),
        "residuals": residuals(y_test, predicted, title),
        "shap_summary": shap_summary(explanation, title),
        "responder_calibration": responder_calibration(evaluation, title),
        "subgroups": subgroup_forest(evaluation, title),
    }


def _input_example(seed: int) -> pd.DataFrame:
    """Two simulated patients (never a real one) as ``pd.read_csv`` reads a clinic's export,
    the second with optional fields unknown."""
    simulated, _ = simulate_cohort(2, seed)
    example = simulated.drop(columns=["patient_id", *(spec.name for spec in OUTCOMES)])
    for name in ("symptom_years", "activity_level", "cell_dose_millions", "prp"):
        example.loc[1, name] = None
    return pd.read_csv(io.StringIO(example.to_csv(index=False)))


def _rmse(observed: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((observed - predicted) ** 2)))


def _decide_promotion(
    client: Any,
    settings: Settings,
    evaluated: Pipeline,
    evaluation: Evaluation,
    sides: Sides,
    data_sha256: str,
) -> Promotion:
    """Promotion gates, on this run's held-out patients (before anything is registered).

    The new model becomes champion only if its calibration slope and its interval coverage
    pass their gates (sized by sampling error, :mod:`womac.models.gates`) and it beats the
    current champion's RMSE on the same patients. ``evaluated`` is the model fitted without
    the held-out patients.
    """
    alpha = settings.gate_false_refusal
    gates = [
        slope_gate(
            evaluation.point["calibration_slope"],
            evaluation.point["calibration_slope_se"],
            settings.gate_slope_min,
            settings.gate_slope_max,
            alpha,
        ),
        coverage_gate(
            round(evaluation.coverage * evaluation.n),
            evaluation.n,
            evaluation.level,
            settings.gate_coverage_tolerance,
            settings.gate_coverage_wide,
            alpha,
        ),
    ]
    refusals = [gate.sentence for gate in gates if not gate.passed]
    passes = [gate.sentence for gate in gates if gate.passed]

    current = champion_version(client, settings.model_name, settings.champion_alias)
    champion_rmse = None
    if current is None:
        passes.append("no champion yet")
    else:
        recorded = _same_split_figure(client, current, settings, data_sha256)
        try:
            if recorded is not None:
                # The champion was fitted on this very file, held-out patients included:
                # compare with its own held-out figure on the same split.
                champion_rmse, new_rmse = recorded, evaluation.point["rmse"]
            else:
                champion = load_pipeline(f"models:/{settings.model_name}/{current.version}")
                champion_rmse = _rmse(sides.y_test, champion.predict(sides.x_test))
                new_rmse = _rmse(sides.y_test, evaluated.predict(sides.x_test))
        except Exception as error:  # an unloadable champion cannot be served either
            logger.warning("champion v%s cannot score: %s", current.version, type(error).__name__)
            passes.append(f"champion v{current.version} cannot score ({type(error).__name__})")
        else:
            # Computed the same way for both; an identical model does not "beat" itself.
            beats = new_rmse < champion_rmse - 1e-6
            versus = (
                f"held-out RMSE {new_rmse:.3f} {'beats' if beats else 'does not beat'} "
                f"champion v{current.version} ({champion_rmse:.3f}"
                f"{', its own held-out figure on this file' if recorded is not None else ''})"
            )
            (passes if beats else refusals).append(versus)
    reason = "; ".join(refusals or passes)
    return Promotion(not refusals, reason, champion_rmse)


def _same_split_figure(
    client: Any, current: Any, settings: Settings, data_sha256: str
) -> float | None:
    """The champion's held-out RMSE when it was trained on this file with this split."""
    try:
        run = client.get_run(current.run_id)
    except Exception:
        return None
    params, tags = run.data.params, run.data.tags
    same = (
        bool(data_sha256)
        and tags.get("data.sha256") == data_sha256
        and params.get("seed") == str(settings.seed)
        and params.get("test_fraction") == str(settings.test_fraction)
        and "test_rmse" in run.data.metrics
    )
    return float(run.data.metrics["test_rmse"]) if same else None


def _register(
    client: Any,
    settings: Settings,
    model_uri: str,
    run_id: str,
    promotion: Promotion,
    description: str,
) -> str:
    """Register the logged model; move the alias only if promoted; undo on any failure.

    The verdict (tag ``promotion``) is written last, after the alias moved: a version
    without one was cut short (a SIGKILL, lost power), and the next command settles it
    (:mod:`womac.models.leftovers`). Runs with interrupts held (see :func:`train`): if one
    arrives meanwhile, the version is deleted and the alias put back before it is raised, so
    a killed training registers nothing.
    """
    import mlflow

    name, alias = settings.model_name, settings.champion_alias
    previous = champion_version(client, name, alias)
    version: str | None = None
    try:
        version = str(mlflow.register_model(model_uri, name).version)
        if client.get_registered_model(name).description != MODEL_DESCRIPTION:
            client.update_registered_model(name, description=MODEL_DESCRIPTION)
        client.update_model_version(name, version, description=description)
        client.set_model_version_tag(name, version, RUN_ID_TAG, run_id)
        client.set_model_version_tag(name, version, PROMOTION_REASON_TAG, promotion.reason)
        if promotion.promoted:
            client.set_registered_model_alias(name, alias, version)
        verdict = CHAMPION if promotion.promoted else NOT_PROMOTED
        client.set_model_version_tag(name, version, PROMOTION_TAG, verdict)
    except BaseException:
        _undo_registration(client, name, alias, version, previous)
        raise
    if interrupt_pending():
        _undo_registration(client, name, alias, version, previous)
        checkpoint()
    return version


def _undo_registration(
    client: Any, name: str, alias: str, version: str | None, previous: Any | None
) -> None:
    """Delete a half-registered version and put the champion alias back where it was."""
    if version is None:
        return
    if previous is not None:
        client.set_registered_model_alias(name, alias, previous.version)
    client.delete_model_version(name, version)
