"""``womac monitor``: does a registered model still hold on the patients treated since?

The job: read a later cohort export (any format ``validate`` reads), load the model (the
champion by default) with what its training recorded (the held-out evaluation, the training
data's summary), measure it on the new patients (:mod:`womac.models.monitoring`), compare
their inputs with the training data's (:mod:`womac.models.drift`), judge
(:mod:`womac.models.verdict`), and record it where people look
(:mod:`womac.pipeline.monitor_record`): an MLflow run, tags on the model version, a section
of its model report. ``--update`` then fits the smallest update the evidence supports, or a
refit, gated like any model (:mod:`womac.pipeline.updating`).
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from womac.models.status import Verdict

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from womac.data.cohort import Cohort, Layout
    from womac.models.drift import FieldDrift
    from womac.models.monitoring import PatientsAssessed
    from womac.models.reference import TrainingReference
    from womac.models.verdict import Check
    from womac.pipeline.updating import UpdateResult
    from womac.settings import Settings

HELD_OUT_ARTIFACT = "evaluation/held_out.json"
_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class Update(StrEnum):
    """What ``womac monitor --update`` fits."""

    recalibrate = "recalibrate"
    refit = "refit"


class MonitorError(RuntimeError):
    """Monitoring cannot start: no such model, or one that is not ours. The message says what
    to do."""


@dataclass(frozen=True, slots=True)
class MonitoredModel:
    """A registered version with what its training recorded."""

    name: str
    version: str
    run_id: str
    pipeline: Pipeline
    reference: TrainingReference | None  # None: trained before references were stored
    held_out: dict[str, Any] | None  # its run's held-out evaluation

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(slots=True)
class MonitorResult:
    """Everything ``womac monitor`` found, as ``--json`` prints it."""

    verdict: Verdict
    reasons: list[str]
    model: dict[str, str]
    data: dict[str, Any]
    assessed: PatientsAssessed
    checks: list[Check]
    drift: list[FieldDrift]
    monitored_at: str
    run_id: str = ""
    update: UpdateResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 holds (or not judged yet), 3 degraded."""
        return 3 if self.verdict is Verdict.degraded else 0

    def as_dict(self) -> dict[str, Any]:
        """One JSON object, ``verdict`` first; an undefined figure is ``null``."""
        return _finite(
            {
                "verdict": self.verdict.value,
                "reasons": self.reasons,
                "model": self.model,
                "data": self.data,
                "monitored_at": self.monitored_at,
                "run_id": self.run_id,
                "checks": [asdict(check) for check in self.checks],
                "drift": [row.as_dict() for row in self.drift],
                **self.assessed.as_dict(),
                "update": None if self.update is None else self.update.as_dict(),
                "notes": self.notes,
            }
        )


def monitor(
    data: Path,
    settings: Settings,
    *,
    model_uri: str | None = None,
    layout: Layout | None = None,
    update: Update | None = None,
    training_data: Path | None = None,
    on_step: Callable[[str], None] = lambda _: None,
) -> MonitorResult:
    """Judge a registered model on a later cohort, record it, and update it if asked.

    Parameters
    ----------
    data
        Patients treated after the model's training data, 12-month scores where known.
    settings
        The store, the champion's name and alias, the protocol, the monitoring thresholds.
    model_uri
        ``models:/<name>@<alias>`` or ``models:/<name>/<version>``; default: the champion.
    layout
        The sheet and the column mapping of ``data``; ``None``: laid out as the contract.
    update
        ``recalibrate`` or ``refit`` after judging; ``None`` to judge only.
    training_data
        For ``refit``: the model's training export, when it is no longer where its run says.

    Raises
    ------
    womac.data.problems.CohortError
        The export breaks the contract; nothing is logged.
    MonitorError
        No such model, or one that is not this product's.
    """
    from womac.data.cohort import AS_CONTRACT, read_cohort
    from womac.data.report import file_sha256
    from womac.models.store import connect
    from womac.models.tracking import check_store
    from womac.pipeline.monitor_record import record

    layout = layout or AS_CONTRACT
    on_step("Checking the tracking store")
    uri = settings.resolved_tracking_uri()
    check_store(uri)
    client = connect(uri)
    on_step("Reading the new patients")
    cohort = read_cohort(data, layout=layout)
    on_step("Loading the model")
    model = load_monitored(client, model_uri or settings.model_uri, uri)
    result = judge_cohort(model, cohort, settings, on_step)
    result.data["sha256"] = file_sha256(data)
    on_step("Recording the verdict in MLflow")
    record(client, settings, model, result, layout)
    if update is not None:
        from womac.pipeline.updating import update_model

        result.update = update_model(
            client, settings, model, cohort, result, update, training_data, on_step
        )
    return result


def judge_cohort(
    model: MonitoredModel,
    cohort: Cohort,
    settings: Settings,
    on_step: Callable[[str], None] = lambda _: None,
) -> MonitorResult:
    """Measure, compare and judge ``model`` on ``cohort`` (nothing recorded)."""
    from womac.models.drift import field_drift
    from womac.models.eligibility import protocol_from
    from womac.models.monitoring import assess_patients
    from womac.models.scoring import Scorer
    from womac.models.verdict import judge, reasons

    on_step("Scoring the new patients")
    scorer = Scorer(model.pipeline, protocol_from(settings))
    assessed = assess_patients(
        scorer, cohort, model.held_out, alpha=settings.monitor_false_alarm, seed=settings.seed
    )
    on_step("Comparing their inputs with the training data")
    notes = []
    drift: list[FieldDrift] = []
    if model.reference is None:
        notes.append(
            "This model was trained before the training data's summary was stored with it: "
            "input drift cannot be measured (retrain to have it)."
        )
    else:
        drift = field_drift(
            model.reference,
            cohort.frame,
            alpha=settings.monitor_false_alarm,
            min_psi=settings.drift_min_psi,
            present=cohort.present,
        )
    verdict, checks = judge(assessed, settings)
    return MonitorResult(
        verdict=verdict,
        reasons=reasons(verdict, checks, assessed),
        model={"name": model.name, "version": model.version, "run_id": model.run_id},
        data={"source": cohort.source, "rows": len(cohort)},
        assessed=assessed,
        checks=checks,
        drift=drift,
        monitored_at=datetime.now(UTC).isoformat(timespec="seconds"),
        notes=notes,
    )


def load_monitored(client: Any, model_uri: str, tracking_uri: str) -> MonitoredModel:
    """The registered version ``model_uri`` names, its pipeline and its training's records."""
    import mlflow.artifacts

    from womac.models.reference import REFERENCE_FILE, read_reference
    from womac.models.registry import RUN_ID_TAG
    from womac.models.store import download_skops, load_skops

    version = _version(client, model_uri, tracking_uri)
    name, number = version.name, str(version.version)
    run_id = version.tags.get(RUN_ID_TAG) or version.run_id or ""
    with tempfile.TemporaryDirectory(prefix="womac-monitor-") as folder:
        try:
            skops_file = download_skops(f"models:/{name}/{number}", folder)
        except ValueError as error:
            raise MonitorError(f"{name} v{number}: {error}") from None
        pipeline = load_skops(skops_file)
        reference_file = skops_file.parent / REFERENCE_FILE
        reference = read_reference(reference_file) if reference_file.exists() else None
    held_out: dict[str, Any] | None = None
    try:
        held_out = mlflow.artifacts.load_dict(f"runs:/{run_id}/{HELD_OUT_ARTIFACT}")
    except Exception:  # a run logged elsewhere, or before evaluations were kept
        held_out = None
    return MonitoredModel(name, number, run_id, pipeline, reference, held_out)


def _version(client: Any, model_uri: str, tracking_uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    from womac.models.registry import Command, no_champion_message, registered_versions
    from womac.models.tracking import shown

    match = _REGISTERED.match(model_uri)
    if match is None:
        raise MonitorError(
            f"{model_uri} is not a registered model's URI: give models:/<name>@<alias> or "
            "models:/<name>/<version> (monitoring tags the version it judges)"
        )
    name, alias, number = match["name"], match["alias"], match["version"]
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, number)
    except MlflowException:
        if alias is not None:
            raise MonitorError(
                no_champion_message(
                    name,
                    alias,
                    registered_versions(client, name),
                    Command.monitor,
                    shown(tracking_uri),
                )
            ) from None
        raise MonitorError(f"{name} has no version {number} in the registry") from None


def _finite(value: Any) -> Any:
    """``value`` as plain JSON data: NaN and infinities as ``None``, enums as their value."""
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, bool | int | str) or value is None:
        return value
    if hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
