"""Registering a recalibrated model: its own MLflow run, the training's promotion gates on
new patients it was not fitted on, and the registration that undoes itself.

The run (``recalibrate v<version>``) records where the update comes from (the version it
updates, the export it was fitted on, what was fitted) and its evaluation on the gating
patients as ``evaluation/held_out.json`` and ``test_*`` metrics: the held-out figures the
next monitoring compares with. Its model report is the updated version's report with the
monitoring section that led to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from womac.models.monitoring import Scored
    from womac.pipeline.monitor import MonitoredModel, MonitorResult
    from womac.pipeline.updating import UpdateResult
    from womac.settings import Settings


def register_update(
    client: Any,
    settings: Settings,
    model: MonitoredModel,
    updated: Pipeline,
    gate: Scored,
    result: MonitorResult,
    outcome: UpdateResult,
    on_step: Callable[[str], None],
) -> None:
    """Evaluate ``updated`` on the gating patients, log, decide promotion and register it;
    ``outcome`` gets the version, the verdict of the gates and the run."""
    import mlflow

    from womac.data.cohort import model_input
    from womac.models.evaluation import evaluate
    from womac.models.split import Sides
    from womac.pipeline.registration import decide_promotion
    from womac.pipeline.safety import held_interrupts, store_lock

    on_step("Evaluating the update on the new patients it was not fitted on")
    patients = model_input(gate.patients)
    evaluation = evaluate(updated, patients, gate.observed, settings.seed)
    sides = Sides(
        x_fit=patients.iloc[:0], y_fit=gate.observed[:0], x_test=patients, y_test=gate.observed
    )
    with (
        store_lock(settings.resolved_tracking_uri(), settings.store_lock_timeout_s),
        held_interrupts(),
        _update_run(client, settings, model, result, outcome) as run_id,
    ):
        mlflow.log_dict(evaluation.as_dict(), "evaluation/held_out.json")
        mlflow.log_metrics(evaluation.metrics())
        on_step("Comparing the update with the current champion")
        promotion = decide_promotion(
            client, settings, updated, evaluation, sides, "", "new (not fitted on)"
        )
        _log_and_register(client, settings, model, updated, run_id, promotion, outcome)


@contextmanager
def _update_run(
    client: Any,
    settings: Settings,
    model: MonitoredModel,
    result: MonitorResult,
    outcome: UpdateResult,
) -> Iterator[str]:
    """The update's MLflow run, with its provenance; yields its id."""
    import mlflow

    from womac.models.leftovers import process_tags
    from womac.pipeline.tracking import experiment

    base = client.get_run(model.run_id).data.params if model.run_id else {}
    tags = {
        **process_tags(),
        "womac.kind": "recalibrate",
        "update.from_version": model.version,
        "update.from_run_id": model.run_id,
        "update.monitoring_run_id": result.run_id,
        "data.source": str(result.data["source"]),
        "data.sha256": str(result.data.get("sha256", "")),
    }
    with mlflow.start_run(
        experiment_id=experiment(client, settings),
        run_name=f"recalibrate v{model.version}",
        tags=tags,
    ) as run:
        mlflow.log_params(
            {
                "chosen_model": f"{base.get('chosen_model', 'model')} (recalibrated)",
                "update_intercept": outcome.parameters["intercept"],
                "update_slope": outcome.parameters["slope"],
                "update_scale": outcome.parameters["scale"],
                "seed": settings.seed,
            }
        )
        yield str(run.info.run_id)


def _log_and_register(
    client: Any,
    settings: Settings,
    model: MonitoredModel,
    updated: Pipeline,
    run_id: str,
    promotion: Any,
    outcome: UpdateResult,
) -> None:
    import mlflow
    import mlflow.artifacts

    from womac.models.eligibility import protocol_from
    from womac.models.store import REPORT_ARTIFACT, log_model
    from womac.pipeline.registration import register
    from womac.pipeline.tracking import input_example

    try:  # the base's report, with the monitoring section that led to this update
        report = mlflow.artifacts.load_text(f"runs:/{model.run_id}/{REPORT_ARTIFACT}")
        mlflow.log_text(report, REPORT_ARTIFACT)
    except Exception:  # a base run without a report: the update has none either
        pass
    model_info = log_model(
        updated, input_example(settings.seed), protocol_from(settings), model.reference
    )
    description = f"Recalibrated from v{model.version} on new patients: " + "; ".join(
        outcome.sentences
    )
    version = register(client, settings, model_info.model_uri, run_id, promotion, description)
    mlflow.set_tags({"model_version": version, "promoted": str(promotion.promoted)})
    outcome.version = version
    outcome.promoted = promotion.promoted
    outcome.promotion_reason = promotion.reason
    outcome.run_id = run_id
    verdict = "became the champion" if promotion.promoted else "was not promoted"
    outcome.sentences.append(f"registered as v{version}, which {verdict}: {promotion.reason}")
