"""Batch scoring of a cohort file with a registered model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.cohort import REQUIRED_PREDICTORS, read_cohort
from models.eligibility import Protocol
from models.scoring import score
from models.store import connect, load_pipeline
from pipeline.files import atomic_write_csv

TOP_CONTRIBUTIONS = 3
WARNING_SEPARATOR = " | "


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What a batch scoring wrote."""

    rows: int
    scored: int
    candidates: int
    out: Path
    model_uri: str


def score_cohort(
    data: Path, out: Path, model_uri: str, tracking_uri: str, protocol: Protocol
) -> BatchSummary:
    """Score every row of a cohort CSV; rows with a blank required field are not scored.

    The output has, per row: ``patient_id``, ``expected_improvement``, ``interval_lower``,
    ``interval_upper``, ``p_clinically_important``, ``candidate`` (and why not), the three
    largest contributions (field and points), ``warnings`` and ``note`` (why a row was not
    scored). It is written whole or not at all.
    """
    cohort = read_cohort(data)
    connect(tracking_uri)
    pipeline = load_pipeline(model_uri)
    complete = cohort.complete.to_numpy()
    rows = np.flatnonzero(complete)

    output = pd.DataFrame({"patient_id": cohort.frame["patient_id"]})
    numeric = (
        "expected_improvement",
        "interval_lower",
        "interval_upper",
        "p_clinically_important",
    )
    for column in numeric:
        output[column] = np.nan
    output["candidate"] = pd.Series(pd.NA, index=output.index, dtype="boolean")
    output["not_candidate_because"] = ""
    for rank in range(1, TOP_CONTRIBUTIONS + 1):
        output[f"top{rank}_field"] = pd.Series(pd.NA, index=output.index, dtype=object)
        output[f"top{rank}_contribution"] = np.nan
    output["warnings"] = ""
    output["note"] = ""

    if len(rows):
        scores = score(pipeline, cohort.frame.iloc[rows], protocol)
        explanation = scores.explanation
        output.loc[rows, "expected_improvement"] = explanation.expected_improvement.round(3)
        output.loc[rows, "interval_lower"] = scores.lower.round(3)
        output.loc[rows, "interval_upper"] = scores.upper.round(3)
        output.loc[rows, "p_clinically_important"] = scores.p_clinically_important.round(4)
        output.loc[rows, "candidate"] = scores.eligibility.candidate
        output.loc[rows, "not_candidate_because"] = [
            "; ".join(reasons) for reasons in scores.eligibility.reasons
        ]
        order = np.argsort(-np.abs(explanation.contributions), axis=1, kind="stable")
        for rank in range(TOP_CONTRIBUTIONS):
            columns = order[:, rank]
            output.loc[rows, f"top{rank + 1}_field"] = np.asarray(explanation.fields)[columns]
            output.loc[rows, f"top{rank + 1}_contribution"] = np.take_along_axis(
                explanation.contributions, columns[:, None], axis=1
            )[:, 0].round(3)
        output.loc[rows, "warnings"] = [
            WARNING_SEPARATOR.join(warnings) for warnings in scores.warnings
        ]
    blank = cohort.frame.loc[~complete, list(REQUIRED_PREDICTORS)].isna()
    for row, flags in blank.iterrows():
        output.at[row, "note"] = "not scored: blank " + ", ".join(flags.index[flags])
    atomic_write_csv(output, out)
    return BatchSummary(
        rows=len(output),
        scored=len(rows),
        candidates=int(output["candidate"].sum()),
        out=out,
        model_uri=model_uri,
    )
