"""The fitted pipeline in MLflow: logged with skops, a contract signature and an example.

Models are serialized with skops, which refuses to load any type not listed as trusted, so a
tampered artifact cannot run code on load. The list below is exactly what our pipelines hold
beyond scikit-learn's own types.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from womac.data.contract import PREDICTORS, TARGET, Kind

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo
    from sklearn.pipeline import Pipeline

ARTIFACT_NAME = "model"
REPORT_ARTIFACT = "report/model_report.html"

TRUSTED_TYPES: list[str] = [
    "collections.OrderedDict",
    "womac.features.encoding.PatientEncoder",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "womac.models.uncertainty.OutcomeModel",
    "scipy._lib.array_api_compat.numpy._aliases.asarray",
    "scipy.interpolate._bsplines.BSpline",
]

# What the model needs at load time, pinned to what trained it (skips MLflow's ~3 s of
# requirement inference per model).
_RUNTIME_PACKAGES = ("scikit-learn", "lightgbm", "numpy", "pandas", "scipy", "skops", "mlflow")


def quiet_mlflow() -> None:
    """Turn MLflow's usage telemetry off unless the operator turned it on explicitly.

    A clinic's install must not phone out. Call before MLflow is imported.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # Progress bars of artifact downloads only clutter a service's log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def contract_signature() -> ModelSignature:
    """The model signature, derived from the cohort contract rather than inferred."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    def column(spec: Any) -> ColSpec:
        kind = "string" if spec.kind is Kind.CATEGORY else "double"
        return ColSpec(kind, spec.name, required=spec.required and not spec.blank_allowed)

    inputs = Schema([column(spec) for spec in PREDICTORS])
    outputs = Schema([ColSpec("double", TARGET)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_pipeline(pipeline: Pipeline, input_example: pd.DataFrame) -> ModelInfo:
    """Log the fitted pipeline to the active run as the ``model`` artifact."""

    # Requirements are pinned explicitly below; MLflow still asks pip for its own version
    # (absent from a uv environment) and warns about it. Nothing to act on: keep it quiet.
    environment_log = logging.getLogger("mlflow.utils.environment")
    previous_level = environment_log.level
    environment_log.setLevel(logging.ERROR)
    try:
        return _log_model(pipeline, input_example)
    finally:
        environment_log.setLevel(previous_level)


def _log_model(pipeline: Pipeline, input_example: pd.DataFrame) -> ModelInfo:
    import mlflow.sklearn

    return mlflow.sklearn.log_model(
        pipeline,
        name=ARTIFACT_NAME,
        serialization_format="skops",
        skops_trusted_types=TRUSTED_TYPES,
        signature=contract_signature(),
        input_example=input_example,
        pip_requirements=[f"{package}=={version(package)}" for package in _RUNTIME_PACKAGES],
    )


def load_pipeline(model_uri: str) -> Pipeline:
    """Load a logged pipeline (skops, trusted types only) by URI."""
    import mlflow.sklearn

    pipeline: Pipeline = mlflow.sklearn.load_model(model_uri)
    return pipeline


def create_store(tracking_uri: str, artifact_root: str) -> None:
    """Create a new local SQLite tracking store whole, or not at all.

    MLflow builds a new store's tables by running its schema migrations one by one; a training
    stopped halfway through them would leave a store that no later run can open. The tables are
    built in a temporary file beside the target, which is linked into place only when complete
    (never over a store another process created meanwhile). An existing store, or one that is
    not a local SQLite file, is left to MLflow.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if path.exists():
        return
    quiet_mlflow()
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".creating", dir=path.parent)
    os.close(handle)
    building = Path(name)
    try:
        store = SqlAlchemyStore(f"sqlite:///{building}", artifact_root)
        store.engine.dispose()
        with contextlib.suppress(FileExistsError):  # a store made meanwhile is kept
            os.link(building, path)  # atomic
    finally:
        building.unlink(missing_ok=True)


def connect(tracking_uri: str) -> Any:
    """Point MLflow at the tracking store and return a client (telemetry off)."""
    quiet_mlflow()
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def champion_version(client: Any, model_name: str, alias: str) -> Any | None:
    """The model version the alias points to, or ``None`` when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def resolve_champion(tracking_uri: str, model_name: str, alias: str) -> dict[str, Any]:
    """Everything serving needs from MLflow about the champion, as plain data.

    Runs in a child process at service start-up (``python -m womac.models.store resolve``): the
    registry lookup and MLflow's SQLAlchemy store take ~2 s to import, and the service does
    not need MLflow on its request path, so that time overlaps the service's own imports on
    the other core instead of adding to them.

    Returns
    -------
    dict
        ``{"status": "ok", version, run_id, model_file, metrics, chosen_model, report_html}``
        or ``{"status": "absent" | "error", "message": ...}``.
    """
    client = connect(tracking_uri)
    current = champion_version(client, model_name, alias)
    if current is None:
        return {"status": "absent", "message": f"No model is registered as {model_name}@{alias}."}
    folder = tempfile.mkdtemp(prefix="womac-champion-")
    try:
        model_file = download_skops(f"models:/{model_name}/{current.version}", folder)
    except ValueError as refused:
        return {"status": "error", "message": str(refused)}
    run = client.get_run(current.run_id)
    report_html = None
    try:
        report = client.download_artifacts(current.run_id, REPORT_ARTIFACT, folder)
        report_html = Path(report).read_text(encoding="utf-8")
    except Exception:  # runs logged before reports existed have none
        report_html = None
    return {
        "status": "ok",
        "version": str(current.version),
        "run_id": str(current.run_id),
        "model_file": str(model_file),
        "metrics": dict(run.data.metrics),
        "chosen_model": run.data.params.get("chosen_model", ""),
        "report_html": report_html,
    }


def _sklearn_flavor(mlmodel: Path) -> dict[str, Any]:
    from mlflow.models import Model

    return dict(Model.load(str(mlmodel)).flavors.get("sklearn", {}))


def prepare_loading() -> None:
    """Import skops and every module a stored model refers to, ahead of :func:`load_skops`.

    At service start-up this runs while the registry lookup is still going on in its child
    process, so the load itself, once the file is known, only builds objects.
    """
    import importlib

    import skops.io  # noqa: F401

    for qualified in TRUSTED_TYPES:
        importlib.import_module(qualified.rsplit(".", 1)[0])


def load_skops(path: str | Path) -> Pipeline:
    """Load a pipeline file with skops, trusting exactly :data:`TRUSTED_TYPES`.

    The list comes from this code, not from the artifact: a tampered artifact cannot widen
    what it is trusted to contain.
    """
    import skops.io

    pipeline: Pipeline = skops.io.load(path, trusted=TRUSTED_TYPES)
    return pipeline


def loads_skops(data: bytes) -> Pipeline:
    """:func:`load_skops` for the bytes of a model file (e.g. shipped to Spark workers)."""
    import skops.io

    pipeline: Pipeline = skops.io.loads(data, trusted=TRUSTED_TYPES)
    return pipeline


def download_skops(model_uri: str, folder: str | Path) -> Path:
    """Download a logged model by URI (``models:/name@alias``, ``runs:/...``) into ``folder``.

    Returns
    -------
    Path
        The model's skops file, to load with :func:`load_skops` or :func:`loads_skops`.

    Raises
    ------
    ValueError
        When the model is not stored with skops (a pickle would run code on load).
    """
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(folder)))
    flavor = _sklearn_flavor(local / "MLmodel")
    if flavor.get("serialization_format") != "skops":
        raise ValueError("the model is not stored with skops; refusing it")
    return local / str(flavor["pickled_model"])


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m womac.models.store")
    commands = parser.add_subparsers(dest="command", required=True)
    resolve = commands.add_parser("resolve", help="print the champion's details as JSON")
    resolve.add_argument("--tracking-uri", required=True)
    resolve.add_argument("--name", required=True)
    resolve.add_argument("--alias", required=True)
    args = parser.parse_args()
    try:
        answer = resolve_champion(args.tracking_uri, args.name, args.alias)
    except Exception as error:  # reported to the parent by type only
        reason = type(error).__name__
        answer = {"status": "error", "message": f"the registry cannot be read ({reason})"}
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    _main()
