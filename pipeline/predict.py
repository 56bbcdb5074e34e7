"""Batch scoring of a cohort file with a registered model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.cohort import REQUIRED_PREDICTORS, model_input, read_cohort
from models.explain import explain
from models.store import connect, load_pipeline
from pipeline.files import atomic_write_csv

TOP_CONTRIBUTIONS = 3


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What a batch scoring wrote."""

    rows: int
    scored: int
    out: Path
    model_uri: str


def score_cohort(data: Path, out: Path, model_uri: str, tracking_uri: str) -> BatchSummary:
    """Score every row of a cohort CSV; rows with a blank required field are not scored.

    The output has ``patient_id``, ``expected_improvement``, the three largest contributions
    (field and points) and a ``note`` saying why a row was not scored. It is written whole
    or not at all.
    """
    cohort = read_cohort(data)
    connect(tracking_uri)
    pipeline = load_pipeline(model_uri)
    complete = cohort.complete.to_numpy()
    patients = model_input(cohort.frame[complete])

    output = pd.DataFrame({"patient_id": cohort.frame["patient_id"]})
    output["expected_improvement"] = np.nan
    for rank in range(1, TOP_CONTRIBUTIONS + 1):
        output[f"top{rank}_field"] = pd.Series(pd.NA, index=output.index, dtype=object)
        output[f"top{rank}_contribution"] = np.nan
    output["note"] = ""
    if complete.any():
        explanation = explain(pipeline, patients)
        rows = np.flatnonzero(complete)
        output.loc[rows, "expected_improvement"] = explanation.expected_improvement.round(3)
        order = np.argsort(-np.abs(explanation.contributions), axis=1, kind="stable")
        for rank in range(TOP_CONTRIBUTIONS):
            columns = order[:, rank]
            output.loc[rows, f"top{rank + 1}_field"] = np.asarray(explanation.fields)[columns]
            output.loc[rows, f"top{rank + 1}_contribution"] = np.take_along_axis(
                explanation.contributions, columns[:, None], axis=1
            )[:, 0].round(3)
    blank = cohort.frame.loc[~complete, list(REQUIRED_PREDICTORS)].isna()
    for row, flags in blank.iterrows():
        output.at[row, "note"] = "not scored: blank " + ", ".join(flags.index[flags])
    atomic_write_csv(output, out)
    return BatchSummary(rows=len(output), scored=int(complete.sum()), out=out, model_uri=model_uri)
