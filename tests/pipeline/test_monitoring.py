"""``womac monitor`` on a real store: it holds on patients like the training ones, says
degraded with the right reason when outcomes shift or get noisier, reports drift without crying
wolf when only the case mix changes, records its verdict where people look, and updates the
model only through the promotion gates.

The session's trained store is copied first (every path inside the SQLite store rewritten),
so tags, runs and versions made here never reach the other tests' champion."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import mlflow
import pytest

from tests.helpers import run_womac, settings_env, store_settings
from womac.data.cohort import read_cohort
from womac.data.contract import FOLLOW_UP_SUBSCALES
from womac.data.simulate import COHORT_FIGURES, SimulationSettings, simulate_cohort
from womac.models.status import TAG_PATIENTS, TAG_VERDICT, Verdict
from womac.models.store import REPORT_ARTIFACT, connect
from womac.pipeline.monitor import (
    MonitoredModel,
    MonitorResult,
    Update,
    judge_cohort,
    load_monitored,
    monitor,
)
from womac.pipeline.monitor_record import SECTION_START
from womac.settings import Settings

LATER = 2500  # later patients per export: ~1,800 judged and followed up


def copy_store(source: Settings, root: Path) -> Settings:
    """A copy of a local store (database and artifacts) at ``root``, paths rewritten."""
    old_root = Path(str(source.resolved_tracking_uri()).removeprefix("sqlite:///")).parent
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(old_root / "mlflow.db", root / "mlflow.db")
    shutil.copytree(old_root / "mlruns", root / "mlruns")
    with sqlite3.connect(root / "mlflow.db") as database:
        tables = [
            row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            for column in database.execute(f"PRAGMA table_info('{table}')").fetchall():
                if "CHAR" in column[2].upper() or "TEXT" in column[2].upper():
                    database.execute(
                        f'UPDATE "{table}" SET "{column[1]}" = '
                        f'replace("{column[1]}", ?, ?) WHERE "{column[1]}" LIKE ?',
                        (str(old_root), str(root), f"%{old_root}%"),
                    )
    return store_settings(root)


def later_export(folder: Path, name: str, seed: int, **knobs: Any) -> Path:
    """Later patients from the simulator (``knobs``: a drift scenario), as exported."""
    cohort, _ = simulate_cohort(LATER, seed, SimulationSettings(**knobs))
    path = folder / f"{name}.csv"
    cohort.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def monitored(trained: Any, store: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the session's trained store, for this module's monitorings and updates."""
    return copy_store(store, tmp_path_factory.mktemp("monitored"))


@pytest.fixture(scope="module")
def champion(monitored: Settings) -> MonitoredModel:
    client = connect(monitored.resolved_tracking_uri())
    return load_monitored(client, monitored.model_uri, monitored.resolved_tracking_uri())


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("later")


def judged(champion: MonitoredModel, path: Path, settings: Settings) -> MonitorResult:
    return judge_cohort(champion, read_cohort(path), settings)


def failed(result: MonitorResult) -> set[str]:
    return {check.name for check in result.checks if not check.passed}


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_fresh_patients_of_the_same_process_hold(
    seed: int, champion: MonitoredModel, monitored: Settings, exports: Path
) -> None:
    result = judged(champion, later_export(exports, f"same-{seed}", seed), monitored)
    assert result.verdict is Verdict.holds, result.reasons
    assert not any(row.drifted for row in result.drift), [r.sentence for r in result.drift]
    performance = result.assessed.performance
    assert performance is not None
    assert performance.n > 1500
    assert performance.rmse.low <= performance.rmse.value <= performance.rmse.high
    assert performance.rmse.held_out is not None  # beside the model's own held-out figure


def test_outcomes_shifted_by_six_points_are_degraded_in_the_large(
    champion: MonitoredModel, monitored: Settings, exports: Path
) -> None:
    result = judged(champion, later_export(exports, "shift", 41, improvement_shift=6.0), monitored)
    assert result.verdict is Verdict.degraded
    assert "calibration_in_the_large" in failed(result)
    assert any("more than expected" in reason for reason in result.reasons)


def test_noise_half_as_large_again_is_degraded_by_coverage_and_error(
    champion: MonitoredModel, monitored: Settings, exports: Path
) -> None:
    noisy = later_export(exports, "noise", 42, residual_sd=1.5 * SimulationSettings().residual_sd)
    result = judged(champion, noisy, monitored)
    assert result.verdict is Verdict.degraded
    assert {"coverage", "rmse"} <= failed(result)
    assert "calibration_in_the_large" not in failed(result)


def test_a_new_case_mix_is_reported_as_drift_and_the_model_still_holds(
    champion: MonitoredModel, monitored: Settings, exports: Path
) -> None:
    shares = dict(zip(COHORT_FIGURES.kl_grades, COHORT_FIGURES.kl_shares, strict=True))
    shares[3] *= 2
    total = sum(shares.values())
    mix = dataclasses.replace(
        COHORT_FIGURES,
        kl_shares=tuple(share / total for share in shares.values()),
        hip=2 * COHORT_FIGURES.hip,
    )
    result = judged(champion, later_export(exports, "mix", 43, figures=mix), monitored)
    drifted = {row.field for row in result.drift if row.drifted}
    assert "kl_grade" in drifted
    assert result.verdict is Verdict.holds, result.reasons


def test_without_twelve_month_scores_only_drift_and_expected_responders_are_told(
    champion: MonitoredModel, monitored: Settings, exports: Path
) -> None:
    cohort, _ = simulate_cohort(1000, 44)
    path = exports / "no-outcomes.csv"
    cohort.drop(columns=list(FOLLOW_UP_SUBSCALES)).to_csv(path, index=False)
    result = judged(champion, path, monitored)
    assert result.verdict is Verdict.not_judged
    assert result.assessed.performance is None
    assert 0 < result.assessed.expected_responders.value < 1
    assert any("cannot be judged yet" in reason for reason in result.reasons)
    assert result.drift


def test_the_command_prints_one_json_verdict_exits_3_and_records_it(
    monitored: Settings, exports: Path, tmp_path: Path
) -> None:
    path = later_export(exports, "shift-cli", 45, improvement_shift=6.0)
    done = run_womac(
        "monitor", "--data", str(path), "--json", cwd=tmp_path, env=settings_env(monitored)
    )
    assert done.returncode == 3, done.stderr
    answer = json.loads(done.stdout)  # one object, no NaN
    assert next(iter(answer)) == "verdict"
    assert answer["verdict"] == "degraded"
    client = connect(monitored.resolved_tracking_uri())
    version = client.get_model_version_by_alias(monitored.model_name, monitored.champion_alias)
    assert version.tags[TAG_VERDICT] == "degraded"
    assert version.tags[TAG_PATIENTS] == str(LATER)
    run = client.get_run(answer["run_id"])
    assert run.data.tags["monitor.model_version"] == str(version.version)
    assert "new_rmse" in run.data.metrics
    report = mlflow.artifacts.load_text(f"runs:/{version.run_id}/{REPORT_ARTIFACT}")
    assert report.count(SECTION_START) == 1
    assert "Monitoring on patients treated" in report


def test_a_bad_export_is_refused_in_one_line_with_exit_1(
    monitored: Settings, exports: Path, tmp_path: Path
) -> None:
    cohort, _ = simulate_cohort(50, 46)
    cohort["age"] = cohort["age"].astype(object)
    cohort.loc[3, "age"] = "Jane"
    path = exports / "bad.csv"
    cohort.to_csv(path, index=False)
    done = run_womac("monitor", "--data", str(path), cwd=tmp_path, env=settings_env(monitored))
    assert done.returncode == 1
    assert "age" in done.stderr
    assert "Jane" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


# Before the next test, which may make its update the champion.
def test_recalibrating_a_model_that_holds_registers_nothing(
    monitored: Settings, exports: Path
) -> None:
    client = connect(monitored.resolved_tracking_uri())
    before = len(client.search_model_versions(f"name='{monitored.model_name}'"))
    same = later_export(exports, "same-update", 49)
    result = monitor(same, monitored, update=Update.recalibrate)
    assert result.update is not None
    assert result.update.version is None
    assert len(client.search_model_versions(f"name='{monitored.model_name}'")) == before


def test_recalibrating_after_a_shift_restores_calibration_and_coverage_through_the_gates(
    monitored: Settings, exports: Path
) -> None:
    shifted = later_export(exports, "shift-update", 47, improvement_shift=6.0)
    result = monitor(shifted, monitored, update=Update.recalibrate)
    update = result.update
    assert update is not None
    assert update.version is not None
    client = connect(monitored.resolved_tracking_uri())
    registered = client.get_model_version(monitored.model_name, update.version)
    assert registered.tags["promotion"] in ("champion", "not promoted")
    assert "calibration slope" in registered.tags["promotion_reason"]  # through the gates
    run = client.get_run(update.run_id)
    assert run.data.tags["update.from_version"] == result.model["version"]

    updated = load_monitored(
        client,
        f"models:/{monitored.model_name}/{update.version}",
        monitored.resolved_tracking_uri(),
    )
    further = later_export(exports, "shift-further", 48, improvement_shift=6.0)
    again = judged(updated, further, monitored)
    assert {"calibration_slope", "calibration_in_the_large", "coverage"}.isdisjoint(failed(again))


def test_the_report_section_escapes_what_the_export_brings_and_replaces_an_earlier_one(
    champion: MonitoredModel, monitored: Settings, exports: Path
) -> None:
    from womac.pipeline.monitor_record import SECTION_END, with_section
    from womac.pipeline.report.monitoring import render_section

    named = exports / "<img src=x onerror=alert(1)>.csv"  # a file name is the clinic's
    later_export(exports, "escape", 50).rename(named)
    section = render_section(judged(champion, named, monitored), {})
    assert "<img" not in section
    assert "&lt;img src=x onerror=alert(1)&gt;.csv" in section
    report = "<html><body><h1>report</h1></body></html>"
    once = with_section(report, section)
    twice = with_section(once, section.replace("Verdict", "Verdict again"))
    assert twice.count(SECTION_START) == twice.count(SECTION_END) == 1
    assert "Verdict again" in twice
    assert twice.index(SECTION_END) < twice.index("</body>")


def test_refit_without_the_training_export_is_refused_naming_what_to_give(
    monitored: Settings, exports: Path
) -> None:
    from womac.pipeline.monitor import MonitorError

    # The copied store has the runs but not the session's generated training cohort.
    with pytest.raises(MonitorError, match="--training-data"):
        monitor(later_export(exports, "refit", 51), monitored, update=Update.refit)
