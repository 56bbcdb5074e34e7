"""Training: validate -> split -> select -> calibrate -> evaluate -> log -> register -> promote.

One MLflow run per training, with a nested run per candidate. Patients are split once, a
patient's joints together: training (model selection by cross-validation, fitting, and the
cross-conformal interval and responder probability from out-of-fold errors) and held-out (set
aside before anything is fitted, used for no choice, scored once for the final figures). The
new model is registered only when every step before succeeded, and becomes champion only when
it passes the promotion gates on this run's held-out patients.

This module calls the steps in order; each decision lives in the module that owns it:
:mod:`womac.models.split` (who is held out, the folds), :mod:`womac.models.selection`
(tuning and choosing), :mod:`womac.models.calibration` (interval, responder probability and
the groups its coverage must hold in), :mod:`womac.pipeline.tracking` (the MLflow run) and
:mod:`womac.pipeline.registration` (promotion and registration).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from womac.data.cohort import AS_CONTRACT, Layout, model_input, read_cohort, womac_total
from womac.data.contract import WOMAC_TOTAL_MAX
from womac.data.report import summarise
from womac.data.simulate import ORACLE, simulate_cohort
from womac.models.calibration import calibrate, fit, refit_on_all
from womac.models.candidates import BLEND_DESCRIPTION, CANDIDATES, LINEAR, TREES
from womac.models.eligibility import protocol_from
from womac.models.evaluation import evaluate
from womac.models.leftovers import Leftover, clean_store
from womac.models.metrics import regression_metrics
from womac.models.reference import reference_of
from womac.models.selection import Choice, Folds, Tuned, blend, choose, tune
from womac.models.split import Sides, group_folds, split_patients, tuning_rows
from womac.models.store import REPORT_ARTIFACT, connect, create_store, log_model
from womac.models.tracking import check_shared_experiment, check_store, is_server, sqlite_file
from womac.pipeline.files import atomic_write_csv
from womac.pipeline.provenance import version_description
from womac.pipeline.registration import Promotion, decide_promotion, register
from womac.pipeline.report import ReportContext, render_report
from womac.pipeline.results import CandidateResult, Trained, TrainingResult, ValidCohort
from womac.pipeline.safety import (
    checkpoint,
    clean_leftovers,
    held_interrupts,
    interrupts_handled,
    store_lock,
)
from womac.pipeline.tracking import experiment, input_example, log_training, training_run
from womac.settings import Settings

if TYPE_CHECKING:
    pass

__all__ = [
    "CandidateResult",
    "Promotion",
    "TrainingError",
    "TrainingResult",
    "default_cohort",
    "group_folds",
    "train",
]

MIN_TRAINING_ROWS = 50


class TrainingError(RuntimeError):
    """Training cannot go on; nothing was registered."""


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
    layout: Layout = AS_CONTRACT,
    on_step: Callable[[str], None] = lambda _: None,
    on_cleaned: Callable[[list[Leftover]], None] = lambda _: None,
) -> TrainingResult:
    """Train, compare, calibrate, log and register a model of 12-month WOMAC improvement.

    Parameters
    ----------
    data
        A cohort export with 12-month scores (CSV, workbook or Parquet); ``None`` for the
        simulated default cohort of ``settings.default_cohort_size`` patients.
    settings
        Tracking store, registry names, seed, split, CV, interval and gate settings.
    layout
        The sheet and the column mapping of ``data``, when it is not laid out as the
        contract (the mapping file is logged with the run).
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
        return _train(data, settings, layout, on_step, on_cleaned)


def _train(
    data: Path | None,
    settings: Settings,
    layout: Layout,
    on_step: Callable[[str], None],
    on_cleaned: Callable[[list[Leftover]], None],
) -> TrainingResult:
    started = time.perf_counter()
    on_step("Checking the tracking store")
    _check_tracking(settings)
    on_cleaned(
        clean_leftovers(settings, _being_written(data, settings), store=False, by="womac train")
    )
    on_step("Validating cohort")
    valid = _validate(data, settings, layout)
    trained = _fit_and_evaluate(valid, settings, on_step)

    on_step("Waiting for the tracking store")
    with store_lock(settings.resolved_tracking_uri(), settings.store_lock_timeout_s):

        def next_step(step: str) -> None:
            checkpoint()
            on_step(step)

        with held_interrupts():
            return _track_and_register(trained, settings, next_step, on_cleaned, started)


def _being_written(data: Path | None, settings: Settings) -> list[Path]:
    """Files this training may create, whose temporary leftovers it may clean."""
    writing = list(_default_cohort_paths(settings)) if data is None else []
    database = sqlite_file(settings.resolved_tracking_uri())
    if database is not None:
        writing.append(database)  # a store being created
    return writing


def _validate(data: Path | None, settings: Settings, layout: Layout) -> ValidCohort:
    """The cohort read against the contract, its usable rows, and the oracle if simulated."""
    oracle: pd.Series | None = None
    if data is None:
        data, oracle_path = default_cohort(settings)
        cohort = read_cohort(data, require_outcomes=True)
        oracle_frame = pd.read_csv(oracle_path)
        oracle = cohort.frame["patient_id"].map(
            dict(zip(oracle_frame["patient_id"].astype(str), oracle_frame[ORACLE], strict=True))
        )
    else:
        cohort = read_cohort(data, require_outcomes=True, layout=layout)
    report = summarise(cohort, path=Path(data))
    usable = cohort.trainable.to_numpy()
    if usable.sum() < MIN_TRAINING_ROWS:
        raise TrainingError(
            f"{cohort.source} has {int(usable.sum())} usable rows (complete predictors and "
            f"12-month scores); at least {MIN_TRAINING_ROWS} are needed to train"
        )
    return ValidCohort(
        cohort=cohort,
        report=report,
        frame=cohort.frame[usable].reset_index(drop=True),
        improvement=cohort.target[usable].to_numpy(dtype=float),
        oracle=None if oracle is None else oracle[usable].to_numpy(dtype=float),
    )


@dataclass(frozen=True, slots=True)
class _Selection:
    """The tuned candidates, the choice among them, and the training rows and folds used."""

    tuning: np.ndarray  # training rows that tuning and calibration see
    folds: Folds
    tuned: list[Tuned]
    choice: Choice


def _select(
    patients: pd.DataFrame,
    improvement: np.ndarray,
    groups: np.ndarray,
    training: np.ndarray,
    settings: Settings,
    on_step: Callable[[str], None],
) -> _Selection:
    """Tune every candidate and the blend by grouped cross-validation, and choose one."""
    # Large cohorts tune and calibrate on a sample of training patients (models.split).
    tuning = tuning_rows(training, groups, settings)
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
    return _Selection(tuning, folds, tuned, choice)


def _fit_and_evaluate(
    valid: ValidCohort, settings: Settings, on_step: Callable[[str], None]
) -> Trained:
    """Split, select, fit, calibrate and score the held-out patients once."""
    on_step("Splitting off held-out patients")
    frame, improvement = valid.frame, valid.improvement
    split = split_patients(frame, settings)
    patients = model_input(frame)
    sides = Sides(
        patients.iloc[split.fit],
        improvement[split.fit],
        patients.iloc[split.test],
        improvement[split.test],
    )
    groups = frame["patient_id"].to_numpy()
    selection = _select(patients, improvement, groups, split.fit, settings, on_step)
    tuning, folds, y_tune = selection.tuning, selection.folds, improvement[selection.tuning]
    on_step("Fitting every candidate on the training patients")
    candidates = [
        CandidateResult(
            name=t.name,
            description=t.description,
            params=t.params,
            cv=t.cv(y_tune, folds),
            test={},
            pipeline=fit(t.pipeline, sides.x_fit, sides.y_fit),
            out_of_fold=t.out_of_fold,
        )
        for t in selection.tuned
    ]
    chosen = next(c for c in candidates if c.name == selection.choice.name)

    on_step(f"Calibrating the {settings.interval_level:.0%} interval and responder probability")
    evaluated = calibrate(
        chosen.pipeline, chosen.out_of_fold, frame.iloc[tuning], y_tune, folds, settings
    )
    on_step("Scoring held-out patients")
    evaluation = evaluate(evaluated, frame.iloc[split.test], sides.y_test, settings.seed)
    _score_held_out(candidates, sides)
    served = evaluated
    if settings.refit_on_all:
        on_step(f"Refitting {chosen.name} on all {len(frame):,} followed-up patients")
        unfitted = next(t for t in selection.tuned if t.name == chosen.name).pipeline
        served = refit_on_all(unfitted, frame, improvement, settings)
    oracle_test = None
    if valid.oracle is not None:
        oracle_test = regression_metrics(sides.y_test, valid.oracle[split.test])
    return Trained(
        cohort=valid.cohort,
        report=valid.report,
        split=split,
        sides=sides,
        candidates=candidates,
        chosen=chosen,
        choice=selection.choice,
        evaluated=evaluated,
        served=served,
        evaluation=evaluation,
        oracle_test=oracle_test,
    )


def _score_held_out(candidates: list[CandidateResult], sides: Sides) -> None:
    """Every candidate's held-out figures, computed one way (estimates kept on the scale, as
    served), so the chosen one's equal the served model's evaluation everywhere they show."""
    baseline = womac_total(sides.x_test).to_numpy(dtype=float)
    for result in candidates:
        predicted = np.clip(
            result.pipeline.predict(sides.x_test), baseline - WOMAC_TOTAL_MAX, baseline
        )
        result.test = regression_metrics(sides.y_test, predicted)


def _check_tracking(settings: Settings) -> None:
    """Find a store that cannot be used before anything is fitted (see models.tracking)."""
    uri = settings.resolved_tracking_uri()
    check_store(uri)
    if is_server(uri):
        check_shared_experiment(connect(uri), uri, settings.experiment_name)


def _track_and_register(
    trained: Trained,
    settings: Settings,
    on_step: Callable[[str], None],
    on_cleaned: Callable[[list[Leftover]], None],
    started: float,
) -> TrainingResult:
    """The MLflow phase, holding the store: log, decide promotion, register."""
    import mlflow

    create_store(settings.resolved_tracking_uri(), settings.resolved_artifact_root())
    client = connect(settings.resolved_tracking_uri())
    experiment_id = experiment(client, settings)
    # Holding the store (a local one's lock): what a training killed outright left in it.
    on_cleaned(
        clean_store(
            client,
            settings,
            store_locked=sqlite_file(settings.resolved_tracking_uri()) is not None,
            by="womac train",
        )
    )
    # Nested runs take the active experiment, not their parent's: set it for both.
    mlflow.set_experiment(experiment_id=experiment_id)
    with training_run(experiment_id) as run:
        run_id = run.info.run_id
        figures = log_training(trained, settings, on_step)
        on_step("Comparing with the current champion")
        promotion = decide_promotion(
            client,
            settings,
            trained.evaluated,
            trained.evaluation,
            trained.sides,
            trained.report.sha256 or "",
        )
        on_step("Writing the model report")
        mlflow.log_text(
            render_report(_report_context(trained, settings, run_id, promotion, figures)),
            REPORT_ARTIFACT,
        )
        on_step("Logging the fitted pipeline")
        model_info = log_model(
            trained.served,
            input_example(settings.seed),
            protocol_from(settings),
            reference_of(_served_patients(trained)),
        )
        on_step("Registering the model")
        version = register(
            client, settings, model_info.model_uri, run_id, promotion, _description(trained)
        )
        mlflow.set_tags({"model_version": version, "promoted": str(promotion.promoted)})
    return _result(trained, run_id, experiment_id, version, promotion, started)


def _served_patients(trained: Trained) -> pd.DataFrame:
    """The patients the served model was fitted on (whose summary is kept with it)."""
    sides = trained.sides
    return pd.concat([sides.x_fit, sides.x_test]) if trained.refit_on_all else sides.x_fit


def _report_context(
    trained: Trained,
    settings: Settings,
    run_id: str,
    promotion: Promotion,
    figures: dict[str, bytes],
) -> ReportContext:
    return ReportContext(
        run_id=run_id,
        settings=settings,
        data=trained.report,
        split=trained.split.sizes(),
        candidates=trained.candidates,
        chosen=trained.chosen.name,
        evaluation=trained.evaluation,
        oracle_test=trained.oracle_test,
        promotion_reason=promotion.reason,
        promoted=promotion.promoted,
        fields_used=list(trained.served.named_steps["preprocess"].fields_used),
        figures=figures,
        selection_reason=trained.choice.reason,
        refit_on_all=trained.refit_on_all,
    )


def _description(trained: Trained) -> str:
    """The registered version's description."""
    return version_description(
        trained.chosen.name,
        trained.evaluation,
        trained.cohort.source,
        trained.report.sha256 or "",
        len(trained.split.fit),
    )


def _result(
    trained: Trained,
    run_id: str,
    experiment_id: str,
    version: str,
    promotion: Promotion,
    started: float,
) -> TrainingResult:
    return TrainingResult(
        run_id=run_id,
        experiment_id=experiment_id,
        data=trained.report,
        n_train=len(trained.split.fit),
        n_test=len(trained.split.test),
        candidates=trained.candidates,
        chosen=trained.chosen.name,
        oracle_test=trained.oracle_test,
        model_version=version,
        promotion=promotion,
        seconds=time.perf_counter() - started,
        evaluation=trained.evaluation,
        pipeline=trained.served,
        evaluated=trained.evaluated,
        selection_reason=trained.choice.reason,
        notes=list(trained.cohort.notes),
    )
