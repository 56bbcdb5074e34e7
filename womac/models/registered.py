"""The registered MLflow model: the product's scorer as an MLflow pyfunc (models-from-code).

:func:`womac.models.store.log_model` logs this file as the model's code, the fitted pipeline
as a skops artifact (``artifacts/pipeline.skops``), the ``womac`` package's scoring code
beside it (``code/womac``) and pinned requirements; MLflow runs this file to load the model.
Nothing is pickled: the pipeline is loaded with skops trusting exactly the types our code
lists, never a list read from the artifact. It loads wherever MLflow and the requirements
are installed, beside a project's own ``data`` or ``models`` packages.

``predict`` takes patients as a clinic exports them (a cohort CSV read by ``pd.read_csv``,
a Spark DataFrame's rows, a JSON request to ``mlflow models serve``) and returns one row per
patient: ``expected_improvement``, ``interval_lower``, ``interval_upper``, ``level``,
``p_clinically_important``, ``candidate``, ``reasons``, ``warnings``, ``base_value`` and one
``contribution_<field>`` per contract field (the output signature). It applies the API's
rules; a patient who breaks one is refused with :class:`PatientDataError`, naming each
field, rule and position, never a value. The clinic's protocol comes from the model's
``model_config`` (set at training; ``mlflow.pyfunc.load_model(uri, model_config=...)``
overrides it).

For data scientists: ``model.unwrap_python_model().pipeline`` is the fitted sklearn
Pipeline, and ``model.unwrap_python_model().explain(frame)`` a ``shap.Explanation`` of the
patients in WOMAC points.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

if TYPE_CHECKING:
    import shap
    from sklearn.pipeline import Pipeline

    from womac.models.scoring import Scorer


class PatientDataError(MlflowException, ValueError):
    """Patients that break the cohort contract; the message names each field, rule and position.

    MLflow's model server prefixes the message of an error raised in ``predict`` with the
    whole input frame (``Failed to predict data '<frame>'``), which would send a patient's
    values back in the response; this message keeps its own words.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._refusal

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_refusal"):
            self._refusal = value


class WomacModel(PythonModel):
    """Expected 12-month WOMAC improvement after MSC therapy, explained, for patients."""

    pipeline: Pipeline
    scorer: Scorer

    def load_context(self, context: Any) -> None:
        """Load the pipeline (skops, our trusted types) and prepare the scorer once."""
        from womac.models.eligibility import Protocol
        from womac.models.scoring import Scorer
        from womac.models.store import PIPELINE_ARTIFACT, load_skops

        config = dict(context.model_config or {})
        default = Protocol()
        protocol = Protocol(
            excluded_kl_grades=tuple(
                int(grade)
                for grade in config.get("excluded_kl_grades", default.excluded_kl_grades)
            ),
            exclusion_flags=tuple(config.get("exclusion_flags", default.exclusion_flags)),
        )
        self.pipeline = load_skops(context.artifacts[PIPELINE_ARTIFACT])
        self.scorer = Scorer(self.pipeline, protocol)

    # model_input is annotated with a type MLflow does not validate: the contract's rules do.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """One answer row per patient (see the module docstring); refuses what breaks a rule."""
        with _refusing():
            return self.scorer.predict(_frame(model_input))

    def explain(self, patients: pd.DataFrame) -> shap.Explanation:
        """SHAP values of ``patients`` in WOMAC points (one column per contract field)."""
        with _refusing():
            return self.scorer.explain(_frame(patients))


@contextmanager
def _refusing() -> Iterator[None]:
    """The contract's refusal, as MLflow's tools expect an input error."""
    from womac.data.problems import CohortError

    try:
        yield
    except CohortError as refused:
        raise PatientDataError(str(refused)) from None


def _frame(patients: Any) -> pd.DataFrame:
    return patients if isinstance(patients, pd.DataFrame) else pd.DataFrame(patients)


mlflow.models.set_model(WomacModel())
