"""Batch scoring of a cohort file with a registered model, a chunk of rows at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from womac.data.cohort import AS_CONTRACT, CHUNK_ROWS, REQUIRED_PREDICTORS, CohortReader, Layout
from womac.data.problems import CohortError
from womac.features.encoding import frame_columns
from womac.models.answers import ANSWER_COLUMNS, CONTRIBUTION
from womac.models.eligibility import Protocol
from womac.models.scoring import Scorer
from womac.models.store import connect, load_pipeline
from womac.pipeline.detail import Detail
from womac.pipeline.files import spreadsheet_safe
from womac.pipeline.outputs import check_suffix, scores_file

TOP_CONTRIBUTIONS = 3
# A CSV cell holds text: the answer's lists are joined with these.
LIST_SEPARATORS = {"reasons": "; ", "warnings": " | "}


def score_columns(detail: Detail) -> tuple[tuple[str, str], ...]:
    """The columns of a scores file, in order, with their type (also the Spark schema).

    ``patient_id``, the registered model's answer columns (:data:`ANSWER_COLUMNS`: the
    estimate, its interval and level, the chance, eligibility and reasons, warnings; and with
    ``full`` the base value and every field's contribution, or else the top three
    contributions), then ``note``: why a row was not scored.
    """
    explained = {"base_value", *(n for n, _ in ANSWER_COLUMNS if n.startswith(CONTRIBUTION))}
    answer = [column for column in ANSWER_COLUMNS if column[0] not in explained]
    if detail is Detail.full:
        answer += [column for column in ANSWER_COLUMNS if column[0] in explained]
    else:
        answer += [
            column
            for rank in range(1, TOP_CONTRIBUTIONS + 1)
            for column in ((f"top{rank}_field", "string"), (f"top{rank}_contribution", "double"))
        ]
    return (("patient_id", "string"), *answer, ("note", "string"))


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
    *,
    detail: Detail = Detail.top3,
    chunk_rows: int | None = None,
    layout: Layout = AS_CONTRACT,
) -> BatchSummary:
    """Score every row of a cohort export; rows with a blank required field are not scored.

    The output has the columns of :func:`score_columns`. The file is read and scored a chunk
    at a time, so memory stays flat however many patients it holds; the output is written
    whole or not at all (a file that breaks the contract anywhere leaves no output).

    Parameters
    ----------
    data, out
        The cohort export (CSV, workbook or Parquet), and the scores to write: a CSV, a
        Parquet file or an .xlsx workbook, by suffix (:mod:`womac.pipeline.outputs`).
    model_uri, tracking_uri
        The model to score with and the MLflow store it is registered in.
    protocol
        The clinic's exclusions.
    detail
        How much of each explanation to write.
    chunk_rows
        Rows read and scored at a time.
    layout
        The sheet and the column mapping of ``data``, when it is not laid out as the contract.
    """
    out = Path(out)
    check_suffix(out)
    reader = CohortReader(data, chunk_rows=chunk_rows or CHUNK_ROWS, layout=layout)
    connect(tracking_uri)
    scorer = Scorer(load_pipeline(model_uri), protocol)
    counts = Counts()
    with scores_file(out, as_text) as scores:
        for chunk in reader.chunks():
            output = score_frame(chunk.frame, scorer, detail)
            scores.write(output)
            counts.add(output)
        problems = reader.problems()
        if problems:
            raise CohortError(reader.source, problems)
    return counts.summary(out, model_uri, list(reader.notes))


@dataclass(slots=True)
class Counts:
    """Rows written, how many were scored, and how many are protocol candidates (both
    engines count their output with this)."""

    rows: int = 0
    scored: int = 0
    candidates: int = 0

    def add(self, output: pd.DataFrame) -> None:
        """Count one chunk of :func:`score_frame`'s output."""
        self.rows += len(output)
        self.scored += int(output["expected_improvement"].notna().sum())
        self.candidates += int(output["candidate"].sum())

    def summary(self, out: Path, model_uri: str, notes: list[str]) -> BatchSummary:
        """The batch's summary, naming the output ``out``."""
        return BatchSummary(self.rows, self.scored, self.candidates, out, model_uri, notes)


def score_frame(frame: pd.DataFrame, scorer: Scorer, detail: Detail = Detail.top3) -> pd.DataFrame:
    """Score typed cohort rows: one output row per input row, in order (:func:`score_columns`).

    Both engines call this on each piece of a cohort (``womac predict`` on each chunk of the
    file, the Spark engine on each piece in its workers), so their files hold the same values
    as the registered model's answer for the same patients.

    Parameters
    ----------
    frame
        Contract columns typed as :class:`~womac.data.cohort.Cohort` holds them (numbers as
        floats, text as objects, unknown as NaN); rows with a blank required predictor are not
        scored and say why in ``note``.
    scorer
        The model and protocol, prepared once.
    detail
        How much of each explanation to write.
    """
    frame = frame.reset_index(drop=True)
    complete = frame[list(REQUIRED_PREDICTORS)].notna().all(axis=1).to_numpy()
    rows = np.flatnonzero(complete)
    answers = scorer.answer_columns(frame_columns(frame.iloc[rows]))
    scored = answers.frame(index=pd.Index(rows))
    if detail is Detail.top3:
        for rank, (names, points) in enumerate(answers.top(TOP_CONTRIBUTIONS), start=1):
            scored[f"top{rank}_field"] = names
            scored[f"top{rank}_contribution"] = points
    columns = score_columns(detail)
    # Rows not scored get blanks: NaN numbers, no verdict, no lists.
    output = scored.reindex(pd.RangeIndex(len(frame)))
    output["candidate"] = output["candidate"].astype("boolean")
    for name in LIST_SEPARATORS:
        output[name] = output[name].where(output[name].notna(), None)
    output.insert(0, "patient_id", frame["patient_id"])
    output["note"] = None
    blank = frame.loc[~complete, list(REQUIRED_PREDICTORS)].isna()
    for row, flags in blank.iterrows():
        output.at[row, "note"] = "not scored: blank " + ", ".join(flags.index[flags])
    return output[[name for name, _ in columns]]


def as_text(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores as a text file holds them: each list joined into one cell, and no cell that a
    spreadsheet would run as a formula (:func:`~womac.pipeline.files.spreadsheet_safe`)."""
    scores = scores.copy()
    for name, separator in LIST_SEPARATORS.items():
        scores[name] = [
            separator.join(items) if isinstance(items, list) else None for items in scores[name]
        ]
    return spreadsheet_safe(scores)
