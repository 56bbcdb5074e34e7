"""Recording a monitoring where people look: an MLflow run, the version's tags, its report.

The run (``monitor v<version>``, in the training experiment) holds the verdict, its checks,
every figure with its interval (``monitoring/result.json``), the new patients' metrics
(``new_*``), the plots, and the monitoring section as a page of its own. The model version
gets the tags of :mod:`womac.models.status` (what ``GET /v1/model`` and the clinician page
show), and its model report (``report/model_report.html`` in its training run) gets the
latest monitoring section, replacing an earlier one. Only counts, figures and our own
sentences are recorded: never a patient's row.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from womac.models.leftovers import process_tags
from womac.models.status import MonitoringStatus, status_tags
from womac.models.store import REPORT_ARTIFACT

if TYPE_CHECKING:
    from womac.data.cohort import Layout
    from womac.pipeline.monitor import MonitoredModel, MonitorResult
    from womac.settings import Settings

RESULT_ARTIFACT = "monitoring/result.json"
SECTION_ARTIFACT = "report/monitoring.html"
SECTION_START = "<!-- womac monitoring: start -->"
SECTION_END = "<!-- womac monitoring: end -->"


def record(
    client: Any,
    settings: Settings,
    model: MonitoredModel,
    result: MonitorResult,
    layout: Layout,
) -> None:
    """Log the monitoring run, tag the version, and add the section to its model report."""
    import mlflow

    from womac.pipeline.monitor_plots import monitoring_figures
    from womac.pipeline.plots import drawn, log_drawn
    from womac.pipeline.report.monitoring import render_section
    from womac.pipeline.tracking import experiment

    experiment_id = experiment(client, settings)
    tags = {
        **process_tags(),
        "womac.kind": "monitor",
        "monitor.model_name": model.name,
        "monitor.model_version": model.version,
        "monitor.model_run_id": model.run_id,
        "monitor.verdict": result.verdict.value,
        "data.source": str(result.data["source"]),
        "data.sha256": str(result.data.get("sha256", "")),
    }
    if layout.mapping_file is not None:
        tags["data.mapping"] = layout.mapping_file.name
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"monitor v{model.version}", tags=tags
    ) as run:
        result.run_id = run.info.run_id
        mlflow.log_params(_params(result, settings))
        mlflow.log_metrics(_metrics(result))
        mlflow.log_dict(result.as_dict(), RESULT_ARTIFACT)
        if layout.mapping_file is not None:
            mlflow.log_artifact(str(layout.mapping_file), "data")
        pngs = drawn(monitoring_figures(result, model.held_out))
        log_drawn(pngs)
        section = render_section(result, pngs)
        mlflow.log_text(_page(section, model), SECTION_ARTIFACT)
    status = MonitoringStatus(
        verdict=result.verdict,
        last_monitored=result.monitored_at,
        patients=result.assessed.screening.rows,
        reasons=result.reasons,
        run_id=result.run_id,
    )
    for key, value in status_tags(status).items():
        client.set_model_version_tag(model.name, model.version, key, value)
    _add_to_model_report(client, model, section)


def _params(result: MonitorResult, settings: Settings) -> dict[str, Any]:
    screening = result.assessed.screening
    return {
        "model_version": result.model["version"],
        "rows": screening.rows,
        "judged": screening.judged,
        "outside_protocol": screening.outside_protocol,
        "outside_domain": screening.outside_domain,
        "incomplete": screening.incomplete,
        "false_alarm_per_check": settings.monitor_false_alarm,
        "mean_shift_tolerance_points": settings.monitor_mean_shift_points,
        "rmse_tolerance": settings.monitor_rmse_tolerance,
        "min_subgroup": settings.monitor_min_subgroup,
        "drift_min_psi": settings.drift_min_psi,
    }


def _metrics(result: MonitorResult) -> dict[str, float]:
    """The new patients' figures under ``new_`` (what a chart across monitorings plots)."""
    assessed = result.assessed
    metrics = {"new_expected_responders": assessed.expected_responders.value}
    if assessed.follow_up is not None:
        metrics["new_followed_up"] = float(assessed.follow_up.followed)
        metrics["new_lost_to_follow_up"] = float(assessed.follow_up.lost)
    performance = assessed.performance
    if performance is not None:
        for name in ("rmse", "mae", "r2", "calibration_slope", "calibration_intercept"):
            metrics[f"new_{name}"] = getattr(performance, name).value
        metrics["new_mean_difference"] = performance.mean_difference.value
        metrics["new_coverage"] = performance.coverage.value
        metrics["new_interval_width"] = performance.interval_width
        metrics["new_responder_auroc"] = performance.auroc.value
        metrics["new_responder_brier"] = performance.brier.value
    for row in result.drift:
        metrics[f"drift_psi_{row.field}"] = row.psi
    return {name: float(value) for name, value in metrics.items() if math.isfinite(value)}


def _page(section: str, model: MonitoredModel) -> str:
    from womac.pipeline.report.monitoring import standalone_page

    return standalone_page(section, f"{model.name} v{model.version}")


def _add_to_model_report(client: Any, model: MonitoredModel, section: str) -> None:
    """The version's model report with this monitoring's section (replacing an earlier one)."""
    import mlflow.artifacts

    if not model.run_id:
        return
    try:
        report = mlflow.artifacts.load_text(f"runs:/{model.run_id}/{REPORT_ARTIFACT}")
    except Exception:  # a run without a report (logged elsewhere, or before reports)
        return
    updated = with_section(report, section)
    with tempfile.TemporaryDirectory(prefix="womac-report-") as folder:
        path = Path(folder) / Path(REPORT_ARTIFACT).name
        path.write_text(updated, encoding="utf-8")
        client.log_artifact(model.run_id, str(path), str(Path(REPORT_ARTIFACT).parent))


def with_section(report: str, section: str) -> str:
    """``report`` with ``section`` between the monitoring markers, before ``</body>``."""
    block = f"{SECTION_START}\n{section}\n{SECTION_END}"
    start, end = report.find(SECTION_START), report.find(SECTION_END)
    if start >= 0 and end > start:
        return report[:start] + block + report[end + len(SECTION_END) :]
    closing = report.rfind("</body>")
    if closing < 0:
        return report + block
    return report[:closing] + block + "\n" + report[closing:]
