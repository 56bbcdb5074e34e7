"""Promotion and registration: whether a new model becomes champion (the gates, and the
current champion on the same held-out patients), and registering it in a way that undoes
itself when it cannot finish."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from womac.models.evaluation import Evaluation
from womac.models.gates import coverage_gate, slope_gate
from womac.models.registry import (
    CHAMPION,
    NOT_PROMOTED,
    PROMOTION_REASON_TAG,
    PROMOTION_TAG,
    RUN_ID_TAG,
)
from womac.models.split import Sides
from womac.models.store import champion_version, load_pipeline
from womac.pipeline.provenance import MODEL_DESCRIPTION
from womac.pipeline.safety import checkpoint, interrupt_pending
from womac.settings import Settings

logger = logging.getLogger(__name__)

# An identical model does not "beat" itself: differences below this are float noise.
RMSE_TIE = 1e-6


@dataclass(slots=True)
class Promotion:
    """Whether the new version became champion, and why."""

    promoted: bool
    reason: str
    champion_rmse: float | None = None


def decide_promotion(
    client: Any,
    settings: Settings,
    evaluated: Pipeline,
    evaluation: Evaluation,
    sides: Sides,
    data_sha256: str,
    patients: str = "held-out",
) -> Promotion:
    """Promotion gates, on this run's held-out patients (before anything is registered).

    The new model becomes champion only if its calibration slope and its interval coverage
    pass their gates (sized by sampling error, :mod:`womac.models.gates`) and it beats the
    current champion's RMSE on the same patients. ``evaluated`` is the model fitted without
    the held-out patients; ``patients`` names them in the sentences.
    """
    alpha = settings.gate_false_refusal
    gates = [
        slope_gate(
            evaluation.point["calibration_slope"],
            evaluation.point["calibration_slope_se"],
            settings.gate_slope_min,
            settings.gate_slope_max,
            alpha,
        ),
        coverage_gate(
            round(evaluation.coverage * evaluation.n),
            evaluation.n,
            evaluation.level,
            settings.gate_coverage_tolerance,
            settings.gate_coverage_wide,
            alpha,
            who=patients,
        ),
    ]
    refusals = [gate.sentence for gate in gates if not gate.passed]
    passes = [gate.sentence for gate in gates if gate.passed]
    current = champion_version(client, settings.model_name, settings.champion_alias)
    champion_rmse = None
    if current is None:
        passes.append("no champion yet")
    else:
        champion_rmse, beats, sentence = _versus_champion(
            client, current, settings, evaluated, evaluation, sides, data_sha256, patients
        )
        (passes if beats else refusals).append(sentence)
    reason = "; ".join(refusals or passes)
    if not refusals and not settings.promote:
        reason = f"not promoted, as asked (--no-promote); it passed the gates: {reason}"
        return Promotion(False, reason, champion_rmse)
    return Promotion(not refusals, reason, champion_rmse)


def _versus_champion(
    client: Any,
    current: Any,
    settings: Settings,
    evaluated: Pipeline,
    evaluation: Evaluation,
    sides: Sides,
    data_sha256: str,
    patients: str = "held-out",
) -> tuple[float | None, bool, str]:
    """The champion's RMSE, whether the new model beats it, and the sentence saying so."""
    recorded = _same_split_figure(client, current, settings, data_sha256)
    champion_rmse = None
    try:
        if recorded is not None:
            # The champion was fitted on this very file, held-out patients included:
            # compare with its own held-out figure on the same split.
            champion_rmse, new_rmse = recorded, evaluation.point["rmse"]
        else:
            champion = load_pipeline(f"models:/{settings.model_name}/{current.version}")
            champion_rmse = _rmse(sides.y_test, champion.predict(sides.x_test))
            new_rmse = _rmse(sides.y_test, evaluated.predict(sides.x_test))
    except Exception as error:  # an unloadable champion cannot be served either
        logger.warning("champion v%s cannot score: %s", current.version, type(error).__name__)
        return (
            champion_rmse,
            True,
            f"champion v{current.version} cannot score ({type(error).__name__})",
        )
    # Computed the same way for both.
    beats = new_rmse < champion_rmse - RMSE_TIE
    versus = (
        f"{_rmse_on(patients)} {new_rmse:.3f} {'beats' if beats else 'does not beat'} "
        f"champion v{current.version} ({champion_rmse:.3f}"
        f"{', its own held-out figure on this file' if recorded is not None else ''})"
    )
    return champion_rmse, beats, versus


def _rmse_on(patients: str) -> str:
    return "held-out RMSE" if patients == "held-out" else f"RMSE on the {patients} patients"


def _rmse(observed: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((observed - predicted) ** 2)))


def _same_split_figure(
    client: Any, current: Any, settings: Settings, data_sha256: str
) -> float | None:
    """The champion's held-out RMSE when it was trained on this file with this split."""
    try:
        run = client.get_run(current.run_id)
    except Exception:
        return None
    params, tags = run.data.params, run.data.tags
    same = (
        bool(data_sha256)
        and tags.get("data.sha256") == data_sha256
        and params.get("seed") == str(settings.seed)
        and params.get("test_fraction") == str(settings.test_fraction)
        and "test_rmse" in run.data.metrics
    )
    return float(run.data.metrics["test_rmse"]) if same else None


def register(
    client: Any,
    settings: Settings,
    model_uri: str,
    run_id: str,
    promotion: Promotion,
    description: str,
) -> str:
    """Register the logged model; move the alias only if promoted; undo on any failure.

    The verdict (tag ``promotion``) is written last, after the alias moved: a version
    without one was cut short (a SIGKILL, lost power), and the next command settles it
    (:mod:`womac.models.leftovers`). Runs with interrupts held (see
    :func:`womac.pipeline.train.train`): if one arrives meanwhile, the version is deleted and
    the alias put back before it is raised, so a killed training registers nothing.
    """
    import mlflow

    name, alias = settings.model_name, settings.champion_alias
    previous = champion_version(client, name, alias)
    version: str | None = None
    try:
        version = str(mlflow.register_model(model_uri, name).version)
        if client.get_registered_model(name).description != MODEL_DESCRIPTION:
            client.update_registered_model(name, description=MODEL_DESCRIPTION)
        client.update_model_version(name, version, description=description)
        client.set_model_version_tag(name, version, RUN_ID_TAG, run_id)
        client.set_model_version_tag(name, version, PROMOTION_REASON_TAG, promotion.reason)
        if promotion.promoted:
            client.set_registered_model_alias(name, alias, version)
        verdict = CHAMPION if promotion.promoted else NOT_PROMOTED
        client.set_model_version_tag(name, version, PROMOTION_TAG, verdict)
    except BaseException:
        _undo_registration(client, name, alias, version, previous)
        raise
    if interrupt_pending():
        _undo_registration(client, name, alias, version, previous)
        checkpoint()
    return version


def _undo_registration(
    client: Any, name: str, alias: str, version: str | None, previous: Any | None
) -> None:
    """Delete a half-registered version and put the champion alias back where it was."""
    if version is None:
        return
    if previous is not None:
        client.set_registered_model_alias(name, alias, previous.version)
    client.delete_model_version(name, version)
