"""Batch scoring of a cohort file with a registered model, a chunk of rows at a time."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from womac.data.cohort import REQUIRED_PREDICTORS, CohortError, CohortReader
from womac.features.encoding import frame_columns
from womac.models.eligibility import Protocol
from womac.models.scoring import Scorer
from womac.models.store import connect, load_pipeline

TOP_CONTRIBUTIONS = 3
WARNING_SEPARATOR = " | "
# The columns of a scores file, in order, with their type (also the Spark engine's schema).
SCORE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient_id", "string"),
    ("expected_improvement", "double"),
    ("interval_lower", "double"),
    ("interval_upper", "double"),
    ("p_clinically_important", "double"),
    ("candidate", "boolean"),
    ("not_candidate_because", "string"),
    *(
        column
        for rank in range(1, TOP_CONTRIBUTIONS + 1)
        for column in ((f"top{rank}_field", "string"), (f"top{rank}_contribution", "double"))
    ),
    ("warnings", "string"),
    ("note", "string"),
)


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What a batch scoring wrote."""

    rows: int
    scored: int
    candidates: int
    out: Path
    model_uri: str
    notes: list[str] = field(default_factory=list)


def score_cohort(
    data: Path,
    out: Path,
    model_uri: str,
    tracking_uri: str,
    protocol: Protocol,
    chunk_rows: int | None = None,
) -> BatchSummary:
    """Score every row of a cohort CSV; rows with a blank required field are not scored.

    The output has, per row: ``patient_id``, ``expected_improvement``, ``interval_lower``,
    ``interval_upper``, ``p_clinically_important``, ``candidate`` (and why not), the three
    largest contributions (field and points), ``warnings`` and ``note`` (why a row was not
    scored). The file is read and scored a chunk at a time, so memory stays flat however
    many patients it holds; the output is written whole or not at all (a file that breaks
    the contract anywhere leaves no output).
    """
    reader = CohortReader(data, chunk_rows=chunk_rows) if chunk_rows else CohortReader(data)
    connect(tracking_uri)
    scorer = Scorer(load_pipeline(model_uri))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    rows = scored = candidates = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            for chunk in reader.chunks():
                output = score_frame(chunk.frame, scorer, protocol)
                output.to_csv(stream, index=False, header=rows == 0)
                rows += len(output)
                scored += int(output["expected_improvement"].notna().sum())
                candidates += int(output["candidate"].sum())
        problems = reader.problems()
        if problems:
            raise CohortError(reader.source, problems)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return BatchSummary(
        rows=rows,
        scored=scored,
        candidates=candidates,
        out=out,
        model_uri=model_uri,
        notes=list(reader.notes),
    )


def score_frame(frame: pd.DataFrame, scorer: Scorer, protocol: Protocol) -> pd.DataFrame:
    """Score typed cohort rows: one output row per input row, in order (:data:`SCORE_COLUMNS`).

    Both engines call this on each piece of a cohort (``womac predict`` on each chunk of the
    file, the Spark engine on each piece in its workers), so their files hold the same values.

    Parameters
    ----------
    frame
        Contract columns typed as :class:`~data.cohort.Cohort` holds them (numbers as floats,
        text as objects, unknown as NaN); rows with a blank required predictor are not scored
        and say why in ``note``.
    scorer
        The model, prepared once.
    protocol
        The clinic's exclusions.
    """
    frame = frame.reset_index(drop=True)
    complete = frame[list(REQUIRED_PREDICTORS)].notna().all(axis=1).to_numpy()
    rows = np.flatnonzero(complete)
    output = pd.DataFrame({"patient_id": frame["patient_id"]})
    for column in (
        "expected_improvement",
        "interval_lower",
        "interval_upper",
        "p_clinically_important",
    ):
        output[column] = np.nan
    output["candidate"] = pd.Series(pd.NA, index=output.index, dtype="boolean")
    output["not_candidate_because"] = ""
    for rank in range(1, TOP_CONTRIBUTIONS + 1):
        output[f"top{rank}_field"] = pd.Series(pd.NA, index=output.index, dtype=object)
        output[f"top{rank}_contribution"] = np.nan
    output["warnings"] = ""
    output["note"] = ""
    if len(rows):
        scores = scorer.score(frame_columns(frame.iloc[rows]), protocol)
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
    blank = frame.loc[~complete, list(REQUIRED_PREDICTORS)].isna()
    for row, flags in blank.iterrows():
        output.at[row, "note"] = "not scored: blank " + ", ".join(flags.index[flags])
    return output[[name for name, _ in SCORE_COLUMNS]]
