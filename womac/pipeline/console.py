"""How the command line shows its results: the two consoles, progress while a job runs, and
each command's tables, notes and closing summary.

Results go to standard output; refusals, warnings and problems to standard error, so that a
script piping the results gets only them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

if TYPE_CHECKING:
    from pathlib import Path

    from womac.data.cohort import Cohort
    from womac.data.problems import Problem
    from womac.data.report import DataReport
    from womac.data.suggest import Suggestion
    from womac.models.leftovers import Leftover
    from womac.models.registry import HandPromotion
    from womac.pipeline.predict import BatchSummary
    from womac.pipeline.service import Binding
    from womac.pipeline.train import TrainingResult

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # a refusal is one line, however narrow


@contextmanager
def progress(*, shown: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner naming the step a long job is at; yields the function that names the next.

    Where the output is not a terminal (a CI log, ``nohup``), each step is one line with the
    time since the start instead, so a log shows where a long job is and how long each step
    took. With ``shown`` false nothing is displayed and the steps are dropped.
    """
    if not shown:
        yield lambda step: None
        return
    if not console.is_terminal:
        started = time.monotonic()

        def line(step: str) -> None:
            console.print(
                f"[{time.monotonic() - started:7.1f} s] {step}", highlight=False, markup=False
            )

        yield line
        return
    with console.status("Starting", spinner="dots") as status:
        yield status.update


def show_note(note: str) -> None:
    """One note (yellow ``note:``) on standard output."""
    console.print(f"[yellow]note:[/] {note}", highlight=False)


def show_cleaned(leftovers: list[Leftover]) -> None:
    """Say what a command killed outright had left and this one cleaned, one line per kind."""
    from womac.models.leftovers import describe

    for line in describe(leftovers):
        show_note(escape(line))


def show_report(report: DataReport, cohort: Cohort) -> None:
    """``womac validate``'s data report: rows, follow-up, missingness per field, notes."""
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
        show_note(note)


def show_problems(problems: list[Problem]) -> None:
    """The contract problems of a cohort file, one a line on standard error."""
    errors.print(f"[bold red]{len(problems)} problem(s):[/]")
    for problem in problems:
        errors.print(f"  - {problem}", highlight=False, markup=False)


def show_training(result: TrainingResult) -> None:
    """``womac train``'s summary: notes, held-out figures per candidate, the choice, the
    interval and responder figures, and whether the new version became champion."""
    for note in result.notes:
        show_note(note)
    console.print(_held_out_table(result))
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


def _held_out_table(result: TrainingResult) -> Table:
    """Each candidate's (and the noise-free oracle's) figures on the held-out patients."""
    from womac.models.candidates import COMPARATOR

    table = Table(
        Column("model", no_wrap=True, min_width=max(len(c.name) for c in result.candidates)),
        Column("", no_wrap=True),
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
    return table


def show_suggestion(suggestion: Suggestion, out: Path) -> None:
    """``womac validate --suggest-mapping``'s summary: what was placed, and what to check."""
    placed = len(suggestion.columns) + len(suggestion.checkboxes)
    console.print(f"Wrote a starting mapping to {out}: {placed} contract field(s) placed.")
    if suggestion.unplaced:
        show_note(f"{len(suggestion.unplaced)} column(s) not placed; they are listed in the file")
    if suggestion.missing_required:
        show_note("required, not found: " + ", ".join(suggestion.missing_required))
    if suggestion.unknown_codes:
        show_note(
            "codes to fill in (marked CHECK): " + ", ".join(sorted(suggestion.unknown_codes))
        )
    console.print(f"Check it, then: womac train --data <file> --mapping {out}", highlight=False)


def show_scored(summary: BatchSummary) -> None:
    """``womac predict``'s closing line: how many rows were scored, with what, into where."""
    console.print(
        f"Scored {summary.scored} of {summary.rows} rows with {summary.model_uri} "
        f"({summary.candidates} candidates under the protocol); wrote {summary.out}"
    )


def show_promoted(done: HandPromotion, name: str, alias: str) -> None:
    """``womac promote``'s closing line: the new champion, what it replaced, who uses it."""
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


def show_binding(binding: Binding) -> None:
    """``womac serve``'s opening lines: a warning when no key guards it, then where it is."""
    from womac.pipeline.service import Exposure

    if binding.exposure is Exposure.open_network:
        errors.print(
            "[yellow]warning:[/] serving the network on "
            f"{binding.host} WITHOUT an API key (WOMAC_ALLOW_NETWORK_WITHOUT_KEY is set)."
        )
    elif binding.exposure is Exposure.narrowed:
        errors.print(
            f"[yellow]No WOMAC_API_KEY is set, so the service binds to 127.0.0.1 only, "
            f"not {binding.requested_host}.[/] Set WOMAC_API_KEY to serve the network (or "
            "WOMAC_ALLOW_NETWORK_WITHOUT_KEY=true to do it without a key)."
        )
    elif binding.exposure is Exposure.loopback:
        console.print("No API key set: fine on 127.0.0.1, where only this machine can connect.")
    docs = (
        "API docs closed: an API key is set"
        if binding.exposure is Exposure.keyed
        else (f"API docs: http://{binding.host}:{binding.port}/docs")
    )
    console.print(f"womac service on http://{binding.host}:{binding.port}  ({docs})")
