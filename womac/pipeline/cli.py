"""The ``womac`` command line: simulate, validate, train, predict, monitor, promote, serve.

Each command parses its options and calls the one function that does its job; how results
are shown is :mod:`womac.pipeline.console`'s, how a command refuses or is interrupted
:mod:`womac.pipeline.exits`'s.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from womac.pipeline.console import (
    console,
    progress,
    show_binding,
    show_cleaned,
    show_problems,
    show_promoted,
    show_report,
    show_scored,
    show_suggestion,
    show_training,
)
from womac.pipeline.detail import Detail
from womac.pipeline.engines import Engine
from womac.pipeline.exits import command_settings, interruptible, refuse
from womac.pipeline.options import (
    AsJson,
    Dictionary,
    EngineOption,
    Experiment,
    Explanation,
    Folds,
    MappingFile,
    Master,
    ModelUri,
    MonitorData,
    MonitoredUri,
    Promote,
    Seed,
    Sheet,
    TrackingUri,
    TrainingData,
    UpdateOption,
)

if TYPE_CHECKING:
    from womac.data.cohort import Layout
    from womac.data.redcap import DataDictionary

app = typer.Typer(
    name="womac",
    help="Predict and explain 12-month WOMAC improvement after MSC therapy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        console.print(f"womac {version('womac')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Predict and explain 12-month WOMAC improvement after MSC therapy."""


@app.command()
def simulate(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of treated joints.")] = 5000,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same cohort.")
    ] = 1,
    out: Annotated[Path, typer.Option(help="Cohort CSV to write.")] = Path("cohort.csv"),
    oracle: Annotated[
        Path | None,
        typer.Option(help="Also write each patient's noise-free expected improvement here."),
    ] = None,
    improvement_shift: Annotated[
        float,
        typer.Option(
            help="Drift scenario: points added to every expected improvement (patients "
            "treated under a new protocol), to try `womac monitor`."
        ),
    ] = 0.0,
    residual_sd: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Drift scenario: the outcome's noise in points (literature: 11)."
        ),
    ] = None,
) -> None:
    """Simulate a cohort from literature figures."""
    import dataclasses

    import pandas as pd

    from womac.data.simulate import SimulationSettings, simulate_cohort
    from womac.models.leftovers import clean_folder
    from womac.pipeline.files import atomic_write_csv

    with interruptible("no file was half written", writing=str(out)):
        for path in [out] if oracle is None else [out, oracle]:
            show_cleaned(clean_folder(path.parent, [path.name]))
        knobs = SimulationSettings(improvement_shift=improvement_shift)
        if residual_sd is not None:
            knobs = dataclasses.replace(knobs, residual_sd=residual_sd)
        cohort, expected = simulate_cohort(n, seed, knobs)
        atomic_write_csv(cohort, out)
        console.print(f"Wrote {len(cohort)} simulated patients to {out}")
        if oracle is not None:
            atomic_write_csv(pd.concat([cohort["patient_id"], expected], axis=1), oracle)
            console.print(f"Wrote their noise-free expected improvement to {oracle}")


@app.command()
def validate(
    file: Annotated[
        Path,
        typer.Argument(
            help="Cohort export to check: CSV, workbook or Parquet.", show_default=False
        ),
    ],
    sheet: Sheet = None,
    mapping: MappingFile = None,
    dictionary: Dictionary = None,
    suggest_mapping: Annotated[
        Path | None,
        typer.Option(
            help="Write a starting mapping for this export (from its headers and codes) to "
            "this TOML file, for you to check; the file itself is not validated.",
        ),
    ] = None,
) -> None:
    """Check a cohort export against the contract and print a data report."""
    from womac.data.cohort import inspect_cohort
    from womac.data.problems import CohortError
    from womac.data.report import summarise
    from womac.data.suggest import suggest_for_export
    from womac.pipeline.files import written_whole

    if suggest_mapping is not None:
        with interruptible("no mapping was written", writing=str(suggest_mapping)):
            try:
                suggestion = suggest_for_export(file, sheet, _dictionary(dictionary))
            except CohortError as error:
                raise refuse(error) from None
            with written_whole(suggest_mapping) as stream:
                stream.write(suggestion.toml(file.name))
        show_suggestion(suggestion, suggest_mapping)
        return
    layout = _layout(file, sheet, mapping, dictionary)
    try:
        cohort, problems = inspect_cohort(file, layout=layout)
    except CohortError as error:
        raise refuse(error) from None
    show_report(summarise(cohort, problems), cohort)
    if problems:
        show_problems(problems)
        raise typer.Exit(code=1)
    console.print("[green]The cohort follows the contract.[/]")


def _layout(
    data: Path | None, sheet: str | None, mapping: Path | None, dictionary: Path | None
) -> Layout:
    """How ``data`` is laid out, from the command's --sheet, --mapping and --dictionary."""
    from womac.data.cohort import Layout
    from womac.data.mapping import MappingError
    from womac.data.problems import CohortError
    from womac.data.suggest import mapping_from_dictionary

    if mapping is not None and dictionary is not None:
        raise refuse(ValueError("give --mapping or --dictionary, not both"))
    try:
        if dictionary is not None and data is not None:
            return Layout(sheet, mapping_from_dictionary(data, sheet, dictionary), dictionary)
        return Layout.read(sheet, mapping)
    except (MappingError, CohortError) as error:
        raise refuse(error) from None


def _dictionary(path: Path | None) -> DataDictionary | None:
    from womac.data.problems import CohortError
    from womac.data.redcap import DataDictionary

    try:
        return DataDictionary.read(path) if path is not None else None
    except CohortError as error:
        raise refuse(error) from None


@app.command()
def train(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Cohort export with 12-month scores (CSV, workbook or Parquet); default: a "
            "simulated cohort."
        ),
    ] = None,
    sheet: Sheet = None,
    mapping: MappingFile = None,
    dictionary: Dictionary = None,
    seed: Seed = None,
    folds: Folds = None,
    experiment: Experiment = None,
    tracking_uri: TrackingUri = None,
    promote: Promote = True,
) -> None:
    """Train, compare, log to MLflow and register a model.

    Each option overrides its setting (WOMAC_SEED, WOMAC_CV_FOLDS, WOMAC_EXPERIMENT_NAME,
    WOMAC_TRACKING_URI, WOMAC_PROMOTE) for this run.
    """
    from womac.data.problems import CohortError
    from womac.models.tracking import StoreUnavailableError
    from womac.pipeline.safety import StoreBusyError
    from womac.pipeline.train import TrainingError
    from womac.pipeline.train import train as run_training

    settings = command_settings(
        seed=seed,
        cv_folds=folds,
        experiment_name=experiment,
        tracking_uri=tracking_uri,
        promote=None if promote else False,
    )
    layout = _layout(data, sheet, mapping, dictionary)
    with (
        progress() as on_step,
        interruptible(
            "nothing was registered and no alias moved",
            writing=f"the MLflow artifacts ({settings.artifact_root.resolve()})",
        ),
    ):
        try:
            result = run_training(
                data, settings, layout=layout, on_step=on_step, on_cleaned=show_cleaned
            )
        except (CohortError, TrainingError, StoreBusyError, StoreUnavailableError) as error:
            raise refuse(error) from None
    show_training(result)


@app.command()
def predict(
    data: Annotated[
        Path,
        typer.Option(help="Cohort export of patients to score: CSV, workbook or Parquet."),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Where to write the scores: .csv, .parquet or .xlsx, by its suffix (with "
            "--engine spark, a Parquet folder)."
        ),
    ],
    model_uri: ModelUri = None,
    engine: EngineOption = Engine.single,
    master: Master = None,
    explanation: Explanation = Detail.top3,
    sheet: Sheet = None,
    mapping: MappingFile = None,
    dictionary: Dictionary = None,
) -> None:
    """Score a cohort file with the champion (or another model)."""
    from womac.data.problems import CohortError
    from womac.models.tracking import StoreUnavailableError
    from womac.pipeline.engines import ModelUnavailableError, ScoringJob, score_file
    from womac.pipeline.spark import SparkEngineError

    refused = (CohortError, StoreUnavailableError, SparkEngineError, ModelUnavailableError)
    settings = command_settings()
    if master is not None and engine is not Engine.spark:
        raise refuse(ValueError("--master applies to --engine spark only"))
    if engine is Engine.single:
        _check_output(out)
    job = ScoringJob(
        data,
        out,
        model_uri,
        engine,
        master,
        explanation,
        _layout(data, sheet, mapping, dictionary),
    )
    with (
        interruptible(f"nothing was written to {out}", writing=str(out)),
        progress(shown=engine is Engine.spark) as on_step,
    ):
        try:
            summary = score_file(job, settings, on_step=on_step, on_cleaned=show_cleaned)
        except refused as error:
            raise refuse(error) from None
    show_scored(summary)


@app.command()
def monitor(
    data: MonitorData,
    model_uri: MonitoredUri = None,
    as_json: AsJson = False,
    update: UpdateOption = None,
    training_data: TrainingData = None,
    sheet: Sheet = None,
    mapping: MappingFile = None,
    dictionary: Dictionary = None,
) -> None:
    """Does the model still hold on the patients treated since? Exit 0 holds (or not judged
    yet: no 12-month scores), 3 degraded, 1 bad input."""
    from womac.data.problems import CohortError
    from womac.models.tracking import StoreUnavailableError
    from womac.pipeline.monitor import MonitorError
    from womac.pipeline.monitor import monitor as run_monitoring
    from womac.pipeline.monitor_console import show_monitoring
    from womac.pipeline.safety import StoreBusyError
    from womac.pipeline.train import TrainingError

    refused = (CohortError, MonitorError, StoreUnavailableError, StoreBusyError, TrainingError)
    settings = command_settings()
    layout = _layout(data, sheet, mapping, dictionary)
    with (
        progress(shown=not as_json) as on_step,
        interruptible("the verdict may not be recorded; no alias moved"),
    ):
        try:
            result = run_monitoring(
                data,
                settings,
                model_uri=model_uri,
                layout=layout,
                update=update,
                training_data=training_data,
                on_step=on_step,
            )
        except refused as error:
            raise refuse(error) from None
    show_monitoring(result, as_json=as_json)
    raise typer.Exit(code=result.exit_code)


@app.command()
def promote(
    version: Annotated[
        int, typer.Argument(min=1, help="Registered version to make the champion.")
    ],
    reason: Annotated[
        str,
        typer.Option(
            help="Why this version is promoted by hand (recorded in the registry).",
            show_default=False,
        ),
    ],
) -> None:
    """Make a registered version the champion by hand, recording why."""
    from womac.models.registry import PromotionRefusedError
    from womac.models.tracking import StoreUnavailableError
    from womac.pipeline.promotion import RegistryRefusedError, promote_in_store
    from womac.pipeline.safety import StoreBusyError

    refused = (PromotionRefusedError, StoreBusyError, StoreUnavailableError, RegistryRefusedError)
    settings = command_settings()
    name, alias = settings.model_name, settings.champion_alias
    if not " ".join(reason.split()):
        raise refuse(ValueError("--reason must say why this version is promoted by hand"))
    with interruptible(f"{name}@{alias} did not move"):
        try:
            done = promote_in_store(settings, version, reason, on_cleaned=show_cleaned)
        except refused as error:
            raise refuse(error) from None
    show_promoted(done, name, alias)


def _check_output(out: Path) -> None:
    from womac.pipeline.outputs import check_suffix

    try:
        check_suffix(out)
    except ValueError as error:
        raise refuse(error) from None


def _default(name: str) -> str:
    """A setting's default, as ``--help`` shows it (defined once, in the settings)."""
    from womac.settings import Settings

    return str(Settings.model_fields[name].default)


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Interface to bind.", show_default=f"WOMAC_HOST, else {_default('host')}"
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to listen on.", show_default=f"WOMAC_PORT, else {_default('port')}"
        ),
    ] = None,
) -> None:
    """Serve the champion over HTTP."""
    from womac.pipeline.service import bind, catch_hangups, run_service

    catch_hangups()  # first: a SIGHUP while starting reloads, never kills
    binding = bind(command_settings(), host, port)
    show_binding(binding)
    run_service(binding)


def main() -> None:  # pragma: no cover - console script entry
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # MLflow's own INFO lines (table creation, ...) are noise beside our progress display.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    app()
