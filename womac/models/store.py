"""The served model in MLflow: a self-contained pyfunc around the fitted pipeline.

The registered model is :mod:`womac.models.registered`, logged with MLflow's
models-from-code: that file, the fitted pipeline as a skops artifact, the ``womac`` scoring
code (``code_paths``) and pinned requirements, so ``mlflow.pyfunc.load_model`` works outside
this checkout. skops refuses to load any type not listed as trusted, so a tampered artifact
cannot run code on load; the list below is exactly what our pipelines hold beyond
scikit-learn's own types, and every loader here and in the registered model trusts this
list, never one read from the artifact.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from womac.data.contract import FIELDS
from womac.models.leftovers import temporary_prefix

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo
    from sklearn.pipeline import Pipeline

    from womac.models.eligibility import Protocol
    from womac.models.reference import TrainingReference

ARTIFACT_NAME = "model"
REPORT_ARTIFACT = "report/model_report.html"
PIPELINE_ARTIFACT = "pipeline"  # artifacts/pipeline.skops in the logged model
MODEL_CODE = Path(__file__).with_name("registered.py")

TRUSTED_TYPES: list[str] = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "scipy._lib.array_api_compat.numpy._aliases.asarray",
    "scipy.interpolate._bsplines.BSpline",
    "womac.features.encoding.CategoryEncoding",
    "womac.features.encoding.NumericEncoding",
    "womac.features.encoding.PatientEncoder",
    "womac.models.blend.BlendedRegressor",
    "womac.models.recalibration.RecalibratedRegressor",
    "womac.models.uncertainty.OutcomeModel",
]

# What the registered model needs to load and predict, pinned to what trained it (also
# skips MLflow's ~3 s of requirement inference per model).
_RUNTIME_PACKAGES = ("mlflow", "scikit-learn", "lightgbm", "numpy", "pandas", "scipy", "skops")


def quiet_mlflow() -> None:
    """Turn MLflow's usage telemetry off unless the operator turned it on explicitly.

    A clinic's install must not phone out. Call before MLflow is imported.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # Progress bars of artifact downloads only clutter a service's log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def model_signature() -> ModelSignature:
    """The registered model's signature, derived from the contract and the answer columns.

    Inputs are every contract field by name, each of any type and none required by MLflow:
    the model checks them itself by the contract's rules (as the API does), so what a clinic
    exports (booleans with blanks read as ``object``, integers, pandas' string dtype, JSON
    nulls) reaches those rules rather than MLflow's type casts, whose messages would quote a
    patient's value. Outputs are :data:`~womac.models.scoring.ANSWER_COLUMNS`.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import AnyType, Array

    from womac.models.answers import ANSWER_COLUMNS

    def output(name: str, kind: str) -> ColSpec:
        if kind == "array<string>":
            return ColSpec(Array(DataType.string), name)
        return ColSpec(kind, name)

    inputs = Schema([ColSpec(AnyType(), spec.name, required=False) for spec in FIELDS])
    outputs = Schema([output(name, kind) for name, kind in ANSWER_COLUMNS])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_model(
    pipeline: Pipeline,
    input_example: pd.DataFrame,
    protocol: Protocol,
    reference: TrainingReference | None = None,
) -> ModelInfo:
    """Log the served pipeline to the active run as the registered-model-to-be (``model``).

    Parameters
    ----------
    pipeline
        The served pipeline (``preprocess`` -> ``OutcomeModel``).
    input_example
        Simulated patients (never a real one), as a clinic's export holds them.
    protocol
        The clinic's exclusions, the model's default ``model_config``.
    reference
        The training patients' summary (counts per category of each field, no patient
        rows), kept with the model as ``artifacts/reference.json`` for ``womac monitor``'s
        drift checks.
    """
    import mlflow.pyfunc

    # Requirements are pinned explicitly below; MLflow still asks pip for its own version
    # (absent from a uv environment) and warns about it. Nothing to act on: keep it quiet.
    environment_log = logging.getLogger("mlflow.utils.environment")
    previous_level = environment_log.level
    environment_log.setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="womac-model-") as folder:
        staged = Path(folder)
        skops_file = staged / f"{PIPELINE_ARTIFACT}.skops"
        _dump_skops(pipeline, skops_file)
        artifacts = {PIPELINE_ARTIFACT: str(skops_file)}
        if reference is not None:
            from womac.models.reference import REFERENCE_ARTIFACT, REFERENCE_FILE, write_reference

            written = write_reference(reference, staged / REFERENCE_FILE)
            artifacts[REFERENCE_ARTIFACT] = str(written)
        try:
            return mlflow.pyfunc.log_model(
                name=ARTIFACT_NAME,
                python_model=str(MODEL_CODE),
                artifacts=artifacts,
                code_paths=[str(_stage_code(staged / "code"))],
                model_config={
                    "excluded_kl_grades": list(protocol.excluded_kl_grades),
                    "exclusion_flags": list(protocol.exclusion_flags),
                },
                signature=model_signature(),
                input_example=input_example,
                pip_requirements=[
                    f"{package}=={version(package)}" for package in _RUNTIME_PACKAGES
                ],
            )
        finally:
            environment_log.setLevel(previous_level)


def _dump_skops(pipeline: Pipeline, path: Path) -> None:
    """Write the pipeline with skops, and prove it loads trusting only our types."""
    import skops.io

    skops.io.dump(pipeline, path)
    load_skops(path)


def _stage_code(folder: Path) -> Path:
    """A copy of the whole ``womac`` package, to ship with the model.

    The model imports only its scoring part, but a process that loaded the model has
    ``womac`` from this copy for good (a Spark worker that ran ``spark_udf`` and then a task
    of ``womac predict --engine spark``, say): the rest must be there too, at the same
    version.
    """
    package = Path(__file__).resolve().parent.parent
    target = folder / "womac"
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def load_pipeline(model_uri: str) -> Pipeline:
    """The fitted sklearn Pipeline of a logged model, by URI (skops, our trusted types)."""
    with tempfile.TemporaryDirectory(prefix="womac-model-") as folder:
        return load_skops(download_skops(model_uri, folder))


def create_store(tracking_uri: str, artifact_root: str) -> None:
    """Create a new local SQLite tracking store whole, or not at all.

    MLflow builds a new store's tables by running its schema migrations one by one; a training
    stopped halfway through them would leave a store that no later run can open. The tables are
    built in a temporary file beside the target, which is linked into place only when complete
    (never over a store another process created meanwhile). An existing store, or one that is
    not a local SQLite file, is left to MLflow.
    """
    from womac.models.tracking import sqlite_file

    path = sqlite_file(tracking_uri)
    if path is None:
        return
    if path.exists():
        return
    quiet_mlflow()
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=temporary_prefix(path.name), suffix=".creating", dir=path.parent
    )
    os.close(handle)
    building = Path(name)
    try:
        if _EMPTY_STORE:
            _copy_empty_store(building)
        store = SqlAlchemyStore(f"sqlite:///{building}", artifact_root)
        store.engine.dispose()
        if not _EMPTY_STORE:
            _EMPTY_STORE.append(building.read_bytes())
        with contextlib.suppress(FileExistsError):  # a store made meanwhile is kept
            os.link(building, path)  # atomic
    finally:
        building.unlink(missing_ok=True)


_EMPTY_STORE: list[bytes] = []  # the first store this process built, as it was built


def _copy_empty_store(building: Path) -> None:
    """MLflow's tables in ``building`` as this process first built them, without their default
    experiment (MLflow adds it again, pointing into the new store's artifact root).

    Building the tables runs MLflow's schema migrations, a second or two; a process that
    creates several stores (a benchmark, a test session) runs them once.
    """
    building.write_bytes(_EMPTY_STORE[0])
    with contextlib.closing(sqlite3.connect(building)) as database, database:
        database.execute("delete from experiments where experiment_id = 0")


def connect(tracking_uri: str) -> Any:
    """Point MLflow at the tracking store and return a client (telemetry off).

    Raises
    ------
    womac.models.tracking.StoreUnavailableError
        When a local store file is damaged (it is never rebuilt as an empty store).
    """
    from womac.models.tracking import check_sqlite_intact, sqlite_file

    if (database := sqlite_file(tracking_uri)) is not None:
        check_sqlite_intact(database, tracking_uri)
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
        When the model is not one of ours: no skops pipeline where the registered model keeps
        it (anything else could be a pickle, which runs code on load).
    """
    import mlflow.artifacts
    from mlflow.models import Model

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(folder)))
    pyfunc = Model.load(str(local / "MLmodel")).flavors.get("python_function", {})
    artifact = pyfunc.get("artifacts", {}).get(PIPELINE_ARTIFACT, {}).get("path", "")
    path = (local / str(artifact)).resolve()
    if not artifact or path.suffix != ".skops" or not path.is_relative_to(local.resolve()):
        raise ValueError("the model holds no skops pipeline of this product; refusing it")
    return path
