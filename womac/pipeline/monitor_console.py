"""How ``womac monitor`` shows its result: the verdict and its reasons, who was judged, the
figures beside the held-out ones, the drifted fields; or one JSON object with ``--json``."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Column, Table

from womac.models.status import Verdict
from womac.pipeline.console import console, show_note

if TYPE_CHECKING:
    from womac.models.monitoring import Estimate, Performance
    from womac.pipeline.monitor import MonitorResult

_COLOURS = {Verdict.holds: "green", Verdict.degraded: "bold red", Verdict.not_judged: "yellow"}


def show_monitoring(result: MonitorResult, *, as_json: bool = False) -> None:
    """The monitoring's result on standard output."""
    if as_json:
        print(json.dumps(result.as_dict(), allow_nan=False))
        return
    model = result.model
    colour = _COLOURS[result.verdict]
    console.print(
        f"[bold]{escape(model['name'])} v{escape(model['version'])}[/] on "
        f"{escape(str(result.data['source']))}: [{colour}]{result.verdict.value}[/]",
        highlight=False,
    )
    for reason in result.reasons:
        console.print(f"  - {escape(reason)}", highlight=False)
    assessed = result.assessed
    screening = assessed.screening
    console.print(
        f"{screening.rows} patients: {screening.judged} judged, {screening.incomplete} "
        f"incomplete, {screening.outside_protocol} outside the protocol, "
        f"{screening.outside_domain} outside the training domain.",
        highlight=False,
    )
    if assessed.follow_up is not None:
        console.print(escape(assessed.follow_up.sentence), highlight=False)
    expected = assessed.expected_responders
    console.print(
        f"Expected share of clinically important improvements: {_pct(expected.value)} "
        f"[{_pct(expected.low)}, {_pct(expected.high)}].",
        highlight=False,
        markup=False,
    )
    if assessed.performance is not None:
        console.print(_figures_table(assessed.performance))
    drifted = [row for row in result.drift if row.drifted]
    for row in drifted:
        console.print(f"[yellow]drift:[/] {escape(row.sentence)}", highlight=False)
    if result.drift and not drifted:
        console.print("No field's inputs drifted from the training data.")
    for note in [*assessed.notes, *result.notes]:
        show_note(escape(note))
    if result.update is not None:
        for sentence in result.update.sentences:
            console.print(f"[bold]update:[/] {escape(sentence)}", highlight=False)
    if result.run_id:
        console.print(f"Recorded in MLflow run {result.run_id}.", highlight=False)


def _figures_table(performance: Performance) -> Table:
    table = Table(
        "Figure",
        Column("New patients [95% CI]", justify="right"),
        Column("Held-out", justify="right"),
        title=f"On {performance.n} followed-up patients",
    )
    rows: list[tuple[str, Estimate, bool]] = [
        ("RMSE (points)", performance.rmse, False),
        ("MAE (points)", performance.mae, False),
        ("R²", performance.r2, False),
        ("Calibration slope", performance.calibration_slope, False),
        ("Calibration intercept", performance.calibration_intercept, False),
        ("Observed minus expected (points)", performance.mean_difference, False),
        (f"{performance.level:.0%} interval coverage", performance.coverage, True),
        ("Responder AUROC", performance.auroc, False),
        ("Responder Brier score", performance.brier, False),
    ]
    for name, estimate, percent in rows:
        show = _pct if percent else _num
        held = "n/a" if estimate.held_out is None else show(estimate.held_out)
        table.add_row(
            name, f"{show(estimate.value)} [{show(estimate.low)}, {show(estimate.high)}]", held
        )
    return table


def _num(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "n/a"


def _pct(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "n/a"
