"""``womac monitor --update``: update a model on the new patients, gated like any model.

- **recalibrate** keeps the model and fits, on half of the followed-up new patients, the
  smallest update their outcomes support (:mod:`womac.models.recalibration`: the intercept,
  then the slope, then the interval's scale). The other half, which the update never saw,
  decides promotion through the training's own gates (calibration slope, interval coverage,
  and beating the current champion's RMSE on the same patients). The version is registered
  either way, with its provenance; the champion moves only through the gates.
- **refit** retrains on the training export plus the new patients with ``womac train``'s
  pipeline (selection, calibration, held-out gates), when the new patients are many or the
  relations themselves changed (see README: Is the model still right?).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from womac.data.cohort import Cohort
    from womac.pipeline.monitor import MonitoredModel, MonitorResult, Update
    from womac.settings import Settings

# Recalibration needs patients to fit on and patients to gate on.
MIN_UPDATE_PATIENTS = 100
GATE_FRACTION = 0.5


@dataclass(slots=True)
class UpdateResult:
    """What ``--update`` did: the update's sentences, the version registered, the gates."""

    kind: str
    sentences: list[str] = field(default_factory=list)
    version: str | None = None
    promoted: bool = False
    promotion_reason: str = ""
    run_id: str = ""
    parameters: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def update_model(
    client: Any,
    settings: Settings,
    model: MonitoredModel,
    cohort: Cohort,
    result: MonitorResult,
    kind: Update,
    training_data: Path | None,
    on_step: Callable[[str], None],
) -> UpdateResult:
    """Fit and register the update ``kind`` of ``model`` on ``cohort``'s patients."""
    from womac.pipeline.monitor import Update

    if kind is Update.refit:
        return _refit(client, settings, model, cohort, training_data, on_step)
    return _recalibrate(client, settings, model, cohort, result, on_step)


def _recalibrate(
    client: Any,
    settings: Settings,
    model: MonitoredModel,
    cohort: Cohort,
    result: MonitorResult,
    on_step: Callable[[str], None],
) -> UpdateResult:
    from womac.models.eligibility import protocol_from
    from womac.models.monitoring import screen
    from womac.models.recalibration import choose_update, updated_pipeline
    from womac.models.scoring import Scorer
    from womac.models.split import sample_patients
    from womac.pipeline.monitor import MonitorError

    on_step("Fitting the smallest update the new patients support")
    _, scored = screen(Scorer(model.pipeline, protocol_from(settings)), cohort)
    followed = scored.only(np.isfinite(scored.observed))
    if len(followed.observed) < MIN_UPDATE_PATIENTS:
        raise MonitorError(
            f"recalibration needs at least {MIN_UPDATE_PATIENTS} judged patients with 12-month "
            f"scores (half to fit the update on, half to gate it); the export has "
            f"{len(followed.observed)}"
        )
    gating = sample_patients(
        followed.patients["patient_id"].to_numpy(), GATE_FRACTION, settings.seed
    )
    fitting = followed.only(~gating)
    update = choose_update(
        fitting.predicted,
        fitting.lower,
        fitting.upper,
        fitting.observed,
        fitting.level,
        settings.monitor_false_alarm,
    )
    outcome = UpdateResult(
        kind="recalibrate",
        sentences=[*update.sentences],
        parameters={"intercept": update.intercept, "slope": update.slope, "scale": update.scale},
    )
    if not update.changes_model:
        outcome.sentences.append("nothing registered: the model is kept as it is")
        return outcome
    updated = updated_pipeline(model.pipeline, update)
    gate = followed.only(gating)
    from womac.pipeline.update_registry import register_update

    register_update(client, settings, model, updated, gate, result, outcome, on_step)
    return outcome


def _refit(
    client: Any,
    settings: Settings,
    model: MonitoredModel,
    cohort: Cohort,
    training_data: Path | None,
    on_step: Callable[[str], None],
) -> UpdateResult:
    """Retrain on the model's training export and the new patients (``womac train``)."""
    from womac.pipeline.files import atomic_write_csv
    from womac.pipeline.train import train

    on_step("Reading the model's training export")
    previous = _training_cohort(client, model, training_data, settings.generated_dir)
    old = previous.frame[previous.trainable.to_numpy()]
    new = cohort.frame[cohort.trainable.to_numpy()]
    combined = pd.concat([old, new], ignore_index=True)
    folder = settings.generated_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"refit-v{model.version}-{len(combined)}.csv"
    atomic_write_csv(combined, path)
    trained = train(path, settings, on_step=on_step)
    return UpdateResult(
        kind="refit",
        sentences=[
            f"refitted on {len(old)} usable training rows ({previous.source}) and {len(new)} "
            f"new ones with 12-month scores, as {path}: {trained.promotion.reason}"
        ],
        version=trained.model_version,
        promoted=trained.promotion.promoted,
        promotion_reason=trained.promotion.reason,
        run_id=trained.run_id,
    )


def _training_cohort(
    client: Any, model: MonitoredModel, given: Path | None, generated: Path
) -> Cohort:
    """The model's training export: as given, or the file its run names (here, or among the
    simulated cohorts) if it is still the same file."""
    from womac.data.cohort import read_cohort
    from womac.data.report import file_sha256
    from womac.pipeline.monitor import MonitorError

    tags = _training_tags(client, model.run_id)
    if tags.get("data.mapping") or tags.get("data.sheet"):
        raise MonitorError(
            "the model was trained on an export read through a mapping or a sheet: write it "
            "as a contract CSV and refit with `womac train --data FILE` on it and the new "
            "patients, or use --update recalibrate"
        )
    source = tags.get("data.source", "")
    found = [place for place in (Path(source), generated / source) if source and place.is_file()]
    path = given or (found[0] if found else None)
    if path is None or not path.is_file():
        raise MonitorError(
            f"the training export of v{model.version} ({source or 'not recorded'}) is not "
            "here: give it with --training-data FILE"
        )
    recorded = tags.get("data.sha256")
    if given is None and recorded and file_sha256(path) != recorded:
        raise MonitorError(
            f"{path} changed since v{model.version} was trained on it (its SHA-256 differs): "
            "give the original with --training-data FILE"
        )
    return read_cohort(path, require_outcomes=True)


def _training_tags(client: Any, run_id: str) -> dict[str, str]:
    """The tags of the run that trained the model: a recalibrated version's base's, back to
    the training itself (a recalibration run's data is its monitoring export)."""
    seen: set[str] = set()
    tags: dict[str, str] = {}
    while run_id and run_id not in seen:
        seen.add(run_id)
        tags = dict(client.get_run(run_id).data.tags)
        run_id = tags.get("update.from_run_id", "")
    return tags
