"""The ``womac`` command line: simulate, validate, train, predict, promote, serve."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from womac.pipeline.detail import Detail

if TYPE_CHECKING:
    from womac.models.leftovers import Leftover
    from womac.pipeline.train import TrainingResult
    from womac.settings import Settings

app = typer.Typer(
    name="womac",
    help="Predict and explain 12-month WOMAC improvement after MSC therapy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # a refusal is one line, however narrow


@contextmanager
def _interruptible(outcome: str, writing: str | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM unwind (temporary files are removed) and exit 130, saying so; an
    operating-system fault (a full disk, a read-only folder) is one line and exit 1, naming
    the path (``writing`` when the fault names none)."""
    from womac.pipeline.faults import os_fault, told_in_one_line
    from womac.pipeline.safety import interrupts_handled

    told_in_one_line()
    try:
        with interrupts_handled():
            yield
    except KeyboardInterrupt:
        errors.print(f"[bold red]interrupted:[/] {outcome}.")
        raise typer.Exit(code=130) from None
    except typer.Exit:
        raise
    except Exception as error:
        fault = os_fault(error, writing)
        if fault is None:
            raise
        raise _refuse(RuntimeError(f"{fault} ({outcome})")) from None


def _refuse(error: Exception) -> typer.Exit:
    # Escaped: a message may hold brackets (".[spark]", a column named "[x]") that are not markup.
    errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True)
    return typer.Exit(code=1)


def _settings() -> Settings:
    """The process-wide settings; a bad ``WOMAC_*`` variable is one line naming it and why
    (never its value: it could be a key or a password)."""
    from pydantic import ValidationError

    from womac.settings import get_settings

    try:
        return get_settings()
    except ValidationError as invalid:
        problems = "; ".join(
            f"WOMAC_{'_'.join(str(part) for part in issue['loc']).upper()}: "
            + str(issue["msg"]).removeprefix("Value error, ")
            for issue in invalid.errors()
        )
        raise _refuse(ValueError(f"bad settings: {problems}")) from None


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
) -> None:
    """Simulate a cohort from literature figures."""
    import pandas as pd

    from womac.data.simulate import simulate_cohort
    from womac.models.leftovers import clean_folder
    from womac.pipeline.files import atomic_write_csv

    with _interruptible("no file was half written", writing=str(out)):
        for path in [out] if oracle is None else [out, oracle]:
            _print_cleaned(clean_folder(path.parent, [path.name]))
        cohort, expected = simulate_cohort(n, seed)
        atomic_write_csv(cohort, out)
        console.print(f"Wrote {len(cohort)} simulated patients to {out}")
        if oracle is not None:
            atomic_write_csv(pd.concat([cohort["patient_id"], expected], axis=1), oracle)
            console.print(f"Wrote their noise-free expected improvement to {oracle}")


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Cohort CSV to check.", show_default=False)],
) -> None:
    """Check a cohort CSV against the contract and print a data report."""
    from womac.data.cohort import CohortError, inspect_cohort
    from womac.data.report import summarise

    try:
        cohort, problems = inspect_cohort(file)
    except CohortError as error:
        raise _refuse(error) from None
    report = summarise(cohort, problems)
    console.print(f"[bold]{report.source}[/]: {report.rows} rows")
    if cohort.has_outcomes:
        console.print(
            f"  lost to follow-up: {report.lost_to_follow_up} "
            f"({report.lost_to_follow_up / max(report.rows, 1):.1%}); "
            f"usable for training: {report.usable_for_training}"
        )
    table = Table("field", "column", "blank", title="Missingness per field", title_justify="left")
    for summary in report.fields:
        column = "present" if summary.present else ("MISSING" if summary.required else "absent")
        table.add_row(summary.name, column, f"{summary.blank} ({summary.blank_fraction:.1%})")
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if problems:
        errors.print(f"[bold red]{len(problems)} problem(s):[/]")
        for problem in problems:
            errors.print(f"  - {problem}", highlight=False, markup=False)
        raise typer.Exit(code=1)
    console.print("[green]The cohort follows the contract.[/]")


@app.command()
def train(
    data: Annotated[
        Path | None,
        typer.Option(help="Cohort CSV with 12-month scores; default: a simulated cohort."),
    ] = None,
) -> None:
    """Train, compare, log to MLflow and register a model."""
    from womac.data.cohort import CohortError
    from womac.models.tracking import StoreUnavailableError
    from womac.pipeline.safety import StoreBusyError
    from womac.pipeline.train import TrainingError
    from womac.pipeline.train import train as run_training

    settings = _settings()
    with (
        console.status("Starting", spinner="dots") as status,
        _interruptible(
            "nothing was registered and no alias moved",
            writing=f"the MLflow artifacts ({settings.artifact_root.resolve()})",
        ),
    ):
        try:
            result = run_training(
                data, settings, on_step=lambda step: status.update(step), on_cleaned=_print_cleaned
            )
        except (CohortError, TrainingError, StoreBusyError, StoreUnavailableError) as error:
            raise _refuse(error) from None
    _print_training(result)


def _print_cleaned(leftovers: list[Leftover]) -> None:
    """Say what a command killed outright had left and this one cleaned, one line per kind."""
    from womac.models.leftovers import describe

    for line in describe(leftovers):
        console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)


def _print_training(result: TrainingResult) -> None:
    from womac.models.candidates import COMPARATOR

    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    table = Table(
        "model",
        "",
        "CV RMSE",
        "RMSE",
        "MAE",
        "R²",
        "slope",
        "intercept",
        title=f"Held-out figures: {result.n_train} training, {result.n_test} held-out patients",
        caption="slope, intercept: calibration of observed on predicted improvement",
        title_justify="left",
    )
    rows = [(c.name, c.cv["rmse"], c.test) for c in result.candidates]
    if result.oracle_test is not None:
        rows.append(("oracle", float("nan"), result.oracle_test))
    roles = {result.chosen: "chosen", COMPARATOR: "comparator", "oracle": "noise-free truth"}
    for name, cv_rmse, test in rows:
        table.add_row(
            name,
            roles.get(name, ""),
            "" if cv_rmse != cv_rmse else f"{cv_rmse:.2f}",
            f"{test['rmse']:.2f}",
            f"{test['mae']:.2f}",
            f"{test['r2']:.3f}",
            f"{test['calibration_slope']:.2f}",
            f"{test['calibration_intercept']:.2f}",
            style="bold" if name == result.chosen else None,
        )
    console.print(table)
    console.print(f"Chosen: {result.selection_reason}.", highlight=False)
    if result.pipeline is not result.evaluated:
        console.print(
            f"Served: {result.chosen} refitted on all {result.n_train + result.n_test} "
            "followed-up patients; the held-out figures are of its fit on the training "
            "patients only.",
            highlight=False,
        )
    evaluation = result.evaluation
    responder = evaluation.responder
    console.print(
        f"{evaluation.level:.0%} interval: covers {evaluation.coverage:.1%} of held-out patients, "
        f"mean width {evaluation.mean_width:.1f} points. Responder probability: "
        f"AUROC {responder.get('auroc', float('nan')):.3f}, Brier {responder['brier']:.3f}, "
        f"calibration slope {responder.get('calibration_slope', float('nan')):.2f}, "
        f"intercept {responder.get('calibration_intercept', float('nan')):.2f}."
    )
    verdict = "now champion" if result.promotion.promoted else "registered, NOT promoted"
    console.print(
        f"Model version {result.model_version}: {verdict} ({result.promotion.reason}). "
        f"MLflow run {result.run_id}. Took {result.seconds:.1f} s."
    )


class Engine(StrEnum):
    """Where ``womac predict`` runs."""

    single = "single"
    spark = "spark"


@app.command()
def predict(
    data: Annotated[
        Path,
        typer.Option(help="Cohort CSV of patients to score (with --engine spark, or Parquet)."),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Where to write the scores: a CSV (with --engine spark, a Parquet folder)."
        ),
    ],
    model_uri: Annotated[
        str | None, typer.Option(help="Model to use; default: the registered champion.")
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help="single: this process. spark: a Spark cluster, for registry-scale cohorts "
            "(needs the spark extra and Java)."
        ),
    ] = Engine.single,
    master: Annotated[
        str | None,
        typer.Option(
            help="Spark master for --engine spark (local[2], spark://host:7077, yarn, ...); "
            "default WOMAC_SPARK_MASTER, else SPARK_MASTER, else local[*]."
        ),
    ] = None,
    explanation: Annotated[
        Detail,
        typer.Option(
            help="top3: the three largest contributions per patient. full: the base value and "
            "one contribution_<field> column per contract field (base + sum = estimate)."
        ),
    ] = Detail.top3,
) -> None:
    """Score a cohort file with the champion (or another model)."""
    from womac.data.cohort import CohortError
    from womac.models.eligibility import protocol_from
    from womac.models.tracking import StoreUnavailableError, check_store, shown
    from womac.pipeline.predict import BatchSummary, score_cohort
    from womac.pipeline.safety import clean_leftovers

    settings = _settings()
    uri = model_uri or settings.model_uri
    tracking_uri = settings.resolved_tracking_uri()
    if master is not None and engine is not Engine.spark:
        raise _refuse(ValueError("--master applies to --engine spark only"))
    summary: BatchSummary
    with _interruptible(f"nothing was written to {out}", writing=str(out)):
        try:
            check_store(tracking_uri)
            _print_cleaned(clean_leftovers(settings, [out], store=True, by="womac predict"))
            if engine is Engine.spark:
                from womac.pipeline.spark import SparkEngineError, score_cohort_spark

                with console.status("Starting", spinner="dots") as status:
                    try:
                        summary = score_cohort_spark(
                            data,
                            out,
                            uri,
                            tracking_uri,
                            protocol_from(settings),
                            master=master or settings.resolved_spark_master(),
                            detail=explanation,
                            on_step=status.update,
                        )
                    except SparkEngineError as error:
                        raise _refuse(error) from None
            else:
                summary = score_cohort(
                    data,
                    out,
                    uri,
                    tracking_uri,
                    protocol_from(settings),
                    detail=explanation,
                )
        except (CohortError, StoreUnavailableError) as error:
            raise _refuse(error) from None
        except Exception as error:
            if type(error).__name__ in {"MlflowException", "RestException"}:
                absent = None if model_uri else _no_champion(tracking_uri)
                raise _refuse(
                    RuntimeError(
                        absent
                        or f"cannot load model {uri} from {shown(tracking_uri)}; train one "
                        "with `womac train`"
                    )
                ) from None
            raise
    console.print(
        f"Scored {summary.scored} of {summary.rows} rows with {summary.model_uri} "
        f"({summary.candidates} candidates under the protocol); wrote {summary.out}"
    )


def _no_champion(tracking_uri: str) -> str | None:
    """The no-champion listing for ``womac predict``, or ``None`` when a champion exists."""
    from womac.models.registry import Command, no_champion_message, registered_versions
    from womac.models.store import champion_version, connect
    from womac.models.tracking import shown

    settings = _settings()
    try:
        client = connect(tracking_uri)
        if champion_version(client, settings.model_name, settings.champion_alias) is not None:
            return None
        versions = registered_versions(client, settings.model_name)
    except Exception:  # the registry cannot be read either: the plain refusal says enough
        return None
    return no_champion_message(
        settings.model_name,
        settings.champion_alias,
        versions,
        Command.predict,
        store=shown(tracking_uri),
    )


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
    from womac.models.leftovers import clean_store
    from womac.models.registry import PromotionRefusedError, promote_by_hand
    from womac.models.store import connect
    from womac.models.tracking import StoreUnavailableError, check_store, shown, sqlite_file
    from womac.pipeline.safety import StoreBusyError, held_interrupts, store_lock

    settings = _settings()
    name, alias = settings.model_name, settings.champion_alias
    tracking_uri = settings.resolved_tracking_uri()
    if not " ".join(reason.split()):
        raise _refuse(ValueError("--reason must say why this version is promoted by hand"))
    with _interruptible(f"{name}@{alias} did not move"):
        try:
            check_store(tracking_uri)
            database = sqlite_file(tracking_uri)
            if database is not None and not database.exists():
                # Not created just to find it empty.
                raise StoreUnavailableError(
                    f"there is no MLflow store at {tracking_uri}, so nothing to promote; "
                    "train a model with `womac train`"
                )
            # Training moves the alias while holding the store; so does a promotion by hand.
            with store_lock(tracking_uri, settings.store_lock_timeout_s):
                client = connect(tracking_uri)
                # First what a training killed outright left: its version is never promoted.
                cleaned = clean_store(
                    client, settings, store_locked=database is not None, by="womac promote"
                )
                _print_cleaned(cleaned)
                with held_interrupts():  # an interrupt waits until the registry is consistent
                    done = promote_by_hand(client, name, alias, version, reason)
        except (PromotionRefusedError, StoreBusyError, StoreUnavailableError) as error:
            raise _refuse(error) from None
        except Exception as error:
            if type(error).__name__ in {"MlflowException", "RestException"}:
                raise _refuse(
                    RuntimeError(
                        f"the registry at {shown(tracking_uri)} refused the promotion "
                        f"({type(error).__name__}); {name}@{alias} did not move"
                    )
                ) from None
            raise
    replaced = (
        f"replacing version {done.replaced_version}"
        if done.replaced_version is not None
        else "there was no champion before"
    )
    console.print(
        f"{name}@{alias} is now version {done.version} ({replaced}), promoted by hand at "
        f"{done.at}; the reason is recorded on the version. `womac predict` uses it from now "
        "on; a running `womac serve` after POST /v1/admin/reload (or kill -HUP <pid>).",
        highlight=False,
        markup=False,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Serve the champion over HTTP."""
    import signal

    from womac.serve.main import remember_hangup

    # From the first moment: a SIGHUP before the service has started reloads, never kills.
    signal.signal(signal.SIGHUP, remember_hangup)
    import uvicorn

    settings = _settings()
    host = host or settings.host
    port = port or settings.port
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if settings.api_key is None and not loopback:
        if settings.allow_network_without_key:
            errors.print(
                "[yellow]warning:[/] serving the network on "
                f"{host} WITHOUT an API key (WOMAC_ALLOW_NETWORK_WITHOUT_KEY is set)."
            )
        else:
            errors.print(
                f"[yellow]No WOMAC_API_KEY is set, so the service binds to 127.0.0.1 only, "
                f"not {host}.[/] Set WOMAC_API_KEY to serve the network (or "
                "WOMAC_ALLOW_NETWORK_WITHOUT_KEY=true to do it without a key)."
            )
            host = "127.0.0.1"
    elif settings.api_key is None:
        console.print("No API key set: fine on 127.0.0.1, where only this machine can connect.")
    docs = (
        "API docs closed: an API key is set"
        if settings.api_key
        else (f"API docs: http://{host}:{port}/docs")
    )
    console.print(f"womac service on http://{host}:{port}  ({docs})")
    from womac.serve.limits import MAX_HEAD_BYTES
    from womac.serve.logs import log_config

    uvicorn.run(
        "womac.serve.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=log_config("info"),
        # h11, not httptools: only it bounds a request's head (httptools takes a 32 MB
        # header and holds the event loop for most of a second parsing it).
        http="h11",
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


def main() -> None:  # pragma: no cover - console script entry
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # MLflow's own INFO lines (table creation, ...) are noise beside our progress display.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    app()
