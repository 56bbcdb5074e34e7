"""The fitted pipeline in MLflow: logged with skops, a contract signature and an example.

Models are serialized with skops, which refuses to load any type not listed as trusted, so a
tampered artifact cannot run code on load. The list below is exactly what our pipelines hold
beyond scikit-learn's own types.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import pandas as pd

from data.contract import PREDICTORS, TARGET, Kind

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo
    from sklearn.pipeline import Pipeline

ARTIFACT_NAME = "model"
REPORT_ARTIFACT = "report/model_report.html"

TRUSTED_TYPES: list[str] = [
    "collections.OrderedDict",
    "features.encoding.PatientEncoder",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "models.uncertainty.OutcomeModel",
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
