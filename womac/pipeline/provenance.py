"""What a training run records about where its model came from, in MLflow's own terms.

MLflow's standard source tags (``mlflow.source.git.commit``, ``.branch``, ``.repoURL``), the
package versions, the training and held-out data as MLflow dataset inputs (schema, row count
and digest: never a patient's row), and the descriptions a team reads in the registry.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from womac.data.contract import TARGET

if TYPE_CHECKING:
    from womac.models.evaluation import Evaluation

# The checkout holding this package (when it is one: an installed wheel has no git).
_CODE = Path(__file__).resolve().parent.parent
PACKAGES = (
    "womac",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "lightgbm",
    "skops",
    "mlflow",
    "shap",
    "matplotlib",
)
MODEL_DESCRIPTION = (
    "Expected improvement of the WOMAC total (0-96 Likert points; positive is better) 12 "
    "months after mesenchymal stem cell therapy for knee or hip osteoarthritis, for one "
    "treated joint. Each answer carries an interval, the chance of a clinically important "
    "improvement, eligibility under the clinic's protocol, warnings and one SHAP contribution "
    "per contract field (base_value + contributions = expected_improvement). Load it with "
    "mlflow.pyfunc.load_model; the serving alias is 'champion'."
)


def environment() -> dict[str, str]:
    """Versions of Python and of every package the model depends on."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_CODE), *arguments],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    ).stdout.strip()


def source_tags() -> dict[str, str]:
    """MLflow's standard git tags for the code that trained, and ``code.git_commit``.

    ``code.git_commit`` also says when the tree had uncommitted changes; outside a git
    checkout (an installed wheel) it says so, and MLflow's git tags are left out.
    """
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"code.git_commit": "unknown (not a git checkout)"}
    tags = {
        "mlflow.source.git.commit": commit,
        "code.git_commit": commit + ("+uncommitted changes" if dirty else ""),
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        tags["mlflow.source.git.branch"] = _git("rev-parse", "--abbrev-ref", "HEAD")
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # a checkout may have none
        tags["mlflow.source.git.repoURL"] = _git("remote", "get-url", "origin")
    return tags


def log_datasets(
    source: str, training: pd.DataFrame, held_out: pd.DataFrame, y_fit: Any, y_test: Any
) -> None:
    """Log the training and held-out patients as MLflow dataset inputs of the active run.

    MLflow stores a dataset's name, digest, schema and row count, not its rows; the frames
    hold the model's input fields and the target only (no identifier).
    """
    import mlflow
    import mlflow.data

    for context, frame, target in (
        ("training", training, y_fit),
        ("held-out", held_out, y_test),
    ):
        data = frame.reset_index(drop=True).assign(**{TARGET: target})
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            data, name=f"{source} ({context})", targets=TARGET
        )
        mlflow.log_input(dataset, context=context)


def version_description(
    candidate: str, evaluation: Evaluation, data_source: str, data_sha256: str, n_train: int
) -> str:
    """The registered version's description: what was chosen, how it did, on which data."""
    point, responder = evaluation.point, evaluation.responder
    return (
        f"{candidate} trained on {n_train} patients of {data_source} "
        f"(SHA-256 {data_sha256[:16]}...). Held-out ({evaluation.n} patients): RMSE "
        f"{point['rmse']:.2f} points, R² {point['r2']:.3f}, calibration slope "
        f"{point['calibration_slope']:.2f}; {evaluation.level:.0%} interval covers "
        f"{evaluation.coverage:.1%}; responder AUROC {responder.get('auroc', float('nan')):.3f}."
    )
