"""The training's MLflow run: its experiment, its params, metrics, tags, datasets and plots,
and a nested run per candidate. What is logged is read off :class:`Trained`."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from womac.data.cohort import Layout
from womac.data.contract import OUTCOMES, PREDICTOR_NAMES
from womac.data.simulate import simulate_cohort
from womac.models.candidates import COMPARATOR
from womac.models.leftovers import process_tags
from womac.models.scoring import Scorer
from womac.models.selection import CLEARLY_BETTER_SE
from womac.models.tracking import is_server
from womac.pipeline.plots import (
    decision_curve_plot,
    drawn,
    log_drawn,
    observed_vs_predicted,
    residuals,
    responder_calibration,
    shap_summary,
    subgroup_forest,
)
from womac.pipeline.provenance import environment, log_datasets, source_tags
from womac.pipeline.results import Trained
from womac.settings import Settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import ActiveRun

PLOTTED_PATIENTS = 5_000
# Fields left unknown in the second patient of the logged input example.
EXAMPLE_UNKNOWN = ("symptom_years", "activity_level", "cell_dose_millions", "prp")


def experiment(client: Any, settings: Settings) -> str:
    """The id of the training experiment, created if it is not there yet."""
    found = client.get_experiment_by_name(settings.experiment_name)
    if found is not None:
        return str(found.experiment_id)
    if is_server(settings.resolved_tracking_uri()):
        # The server chooses (its artifact store), so that every colleague can load the model.
        return str(client.create_experiment(settings.experiment_name))
    return str(
        client.create_experiment(
            settings.experiment_name, artifact_location=settings.resolved_artifact_root()
        )
    )


@contextmanager
def training_run(experiment_id: str) -> Iterator[ActiveRun]:
    """The training's MLflow run: closed as killed when interrupted, failed on an error.

    Tagged from its start with this process (host, PID, start time), so that if the process
    is killed outright the next command can tell the run is orphaned and close it.
    """
    import mlflow

    with mlflow.start_run(
        experiment_id=experiment_id, run_name="train", tags=process_tags()
    ) as run:
        try:
            yield run
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise


def log_training(
    trained: Trained, settings: Settings, on_step: Callable[[str], None]
) -> dict[str, bytes]:
    """Log the run, its candidates, its datasets and its plots; the plots (PNG), for the
    report."""
    on_step("Logging candidates to MLflow")
    _log_run(trained, settings)
    sides = trained.sides
    _log_selection(trained, settings, n_served=len(sides.y_fit) + len(sides.y_test))
    log_datasets(trained.cohort.source, sides.x_fit, sides.x_test, sides.y_fit, sides.y_test)
    on_step("Drawing plots and SHAP summary")
    pngs = drawn(_figures(trained, settings.seed))
    log_drawn(pngs)
    return pngs


def _log_selection(trained: Trained, settings: Settings, *, n_served: int) -> None:
    """Why this candidate, and which patients each figure and the served model come from."""
    import mlflow

    mlflow.set_tag("selection_reason", trained.choice.reason)
    served = (
        f"all {n_served} followed-up patients (training and held-out)"
        if settings.refit_on_all
        else "the training patients"
    )
    mlflow.log_params(
        {
            "selection_rule": "blend unless a single candidate is clearly better "
            f"(paired out-of-fold error lower by more than {CLEARLY_BETTER_SE:g} SE)",
            "served_model_fitted_on": served,
            "held_out_figures_from": "the chosen model fitted on the training patients only, "
            "calibrated on their out-of-fold errors",
            "cv_figures_from": "out-of-fold predictions on the training patients",
        }
    )


def _log_run(trained: Trained, settings: Settings) -> None:
    import mlflow

    cohort, report, chosen = trained.cohort, trained.report, trained.chosen
    mlflow.set_tags(
        {
            "data.source": cohort.source,
            "data.sha256": report.sha256 or "",
            "chosen_model": chosen.name,
            **source_tags(),
            "code.womac_version": environment()["womac"],
            "seed": str(settings.seed),
        }
    )
    mlflow.log_params(
        {
            "data_rows": report.rows,
            "lost_to_follow_up": report.lost_to_follow_up,
            "incomplete_predictors": report.incomplete_predictors,
            "n_train": len(trained.split.fit),
            "n_test": len(trained.split.test),
            "seed": settings.seed,
            "cv_folds": settings.cv_folds,
            "test_fraction": settings.test_fraction,
            "interval_level": settings.interval_level,
            "responder_min_points": settings.responder_min_points,
            "responder_min_fraction": settings.responder_min_fraction,
            "chosen_model": chosen.name,
            "fields_used": ",".join(name for name in PREDICTOR_NAMES if name in cohort.present),
        }
    )
    mlflow.log_dict(report.as_dict(), "data/summary.json")
    _log_layout(cohort.layout)
    mlflow.log_dict(environment(), "environment/packages.json")
    mlflow.log_dict(trained.evaluation.as_dict(), "evaluation/held_out.json")
    _log_candidates(trained)
    mlflow.log_metrics({k: v for k, v in _run_metrics(trained).items() if np.isfinite(v)})


def _log_candidates(trained: Trained) -> None:
    """A nested run per candidate; each candidate keeps its run's id."""
    import mlflow

    for result in trained.candidates:
        with mlflow.start_run(run_name=result.name, nested=True) as child:
            mlflow.set_tags({"candidate": result.name, "chosen": str(result is trained.chosen)})
            mlflow.log_params({"description": result.description, **result.params})
            mlflow.log_metrics({f"cv_{k}": v for k, v in result.cv.items()})
            mlflow.log_metrics({f"test_{k}": v for k, v in result.test.items() if np.isfinite(v)})
            result.run_id = child.info.run_id


def _log_layout(layout: Layout) -> None:
    """How the export was read: its sheet, and the mapping file itself (never the data)."""
    import mlflow

    if layout.sheet is not None:
        mlflow.set_tag("data.sheet", layout.sheet)
    if layout.mapping_file is not None:
        mlflow.set_tag("data.mapping", layout.mapping_file.name)
        mlflow.log_artifact(str(layout.mapping_file), "data")


def _run_metrics(trained: Trained) -> dict[str, float]:
    """The served model's held-out figures, its CV, the comparator's and the oracle's."""
    metrics = trained.evaluation.metrics()
    metrics |= {f"cv_{k}": v for k, v in trained.chosen.cv.items()}
    comparator = next(c for c in trained.candidates if c.name == COMPARATOR)
    metrics |= {f"comparator_test_{k}": v for k, v in comparator.test.items()}
    if trained.oracle_test is not None:
        metrics |= {f"oracle_test_{k}": v for k, v in trained.oracle_test.items()}
    return metrics


def _figures(trained: Trained, seed: int) -> dict[str, Figure]:
    """The run's plots of held-out patients (a sample of them, drawn with the run's seed)."""
    x_test, y_test = trained.sides.x_test, trained.sides.y_test
    if len(y_test) > PLOTTED_PATIENTS:  # a plot of more points shows nothing more
        shown = np.random.default_rng(seed).choice(len(y_test), PLOTTED_PATIENTS, replace=False)
        x_test, y_test = x_test.iloc[shown], y_test[shown]
    explanation = Scorer(trained.evaluated).explain(x_test)
    predicted = explanation.values.sum(axis=1) + explanation.base_values
    title = f"{trained.chosen.name}, held-out patients (n={len(y_test)})"
    return {
        "observed_vs_predicted": observed_vs_predicted(y_test, predicted, title),
        "residuals": residuals(y_test, predicted, title),
        "shap_summary": shap_summary(explanation, title),
        "responder_calibration": responder_calibration(trained.evaluation, title),
        "subgroups": subgroup_forest(trained.evaluation, title),
        # Every held-out patient, as the table of the report: net benefit is a share of them.
        "decision_curve": decision_curve_plot(
            trained.evaluation.decision_curve,
            f"{trained.chosen.name}, held-out patients (n={trained.evaluation.n})",
        ),
    }


def input_example(seed: int) -> pd.DataFrame:
    """Two simulated patients (never a real one) as ``pd.read_csv`` reads a clinic's export,
    the second with optional fields unknown."""
    simulated, _ = simulate_cohort(2, seed)
    example = simulated.drop(columns=["patient_id", *(spec.name for spec in OUTCOMES)])
    for name in EXAMPLE_UNKNOWN:
        example.loc[1, name] = None
    return pd.read_csv(io.StringIO(example.to_csv(index=False)))
