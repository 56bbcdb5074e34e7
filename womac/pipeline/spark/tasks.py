"""What runs on the executors: a task scores its piece, or reports the piece's problems.

Each Python worker loads the broadcast model once (cached by its SHA-256) with skops trusting
our own type list, exactly as the service does, and builds the same
:class:`~womac.models.scoring.Scorer`. Each piece goes through
:func:`womac.pipeline.predict.score_frame`, the function the single-process path calls on each
chunk, so both engines write the same columns with the same values.

No patient data in messages: a task's failure is reported by exception type and code
location only.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from womac.data.problems import Problem
from womac.models.eligibility import Protocol
from womac.models.scoring import Scorer
from womac.models.store import loads_skops
from womac.pipeline.detail import Detail
from womac.pipeline.predict import score_frame
from womac.pipeline.spark.pieces import Piece
from womac.pipeline.spark.reading import read_piece

if TYPE_CHECKING:
    from pyspark.broadcast import Broadcast

WORKER_FAILURE = "womac task failed"
# The problems of a job's pieces: rows by (column, rule).
RowsByRule = dict[tuple[str, str], set[int]]


class ProblemRows:
    """Spark accumulator of problems: ``{(column, rule): set of rows}`` (a retried task adds
    the same rows again, which a set absorbs)."""

    def zero(self, value: RowsByRule) -> RowsByRule:
        return {}

    def addInPlace(  # noqa: N802 - pyspark's AccumulatorParam interface
        self, total: RowsByRule, more: RowsByRule
    ) -> RowsByRule:
        for key, rows in more.items():
            total.setdefault(key, set()).update(rows)
        return total


_SCORERS: dict[str, Scorer] = {}  # per Python worker: the model, loaded once


def _scorer(model: Broadcast[bytes], digest: str, protocol: Protocol) -> Scorer:
    key = f"{digest}:{protocol}"
    scorer = _SCORERS.get(key)
    if scorer is None:
        _SCORERS.clear()  # one model per worker: a later job's model replaces it
        scorer = _SCORERS[key] = Scorer(loads_skops(model.value), protocol)
    return scorer


def score_pieces(
    batches: Iterable[pd.DataFrame],
    *,
    model: Broadcast[bytes],
    digest: str,
    protocol: Protocol,
    detail: Detail,
    problems: Any,
) -> Iterator[pd.DataFrame]:
    """The task: score each piece of its partition (one piece per partition)."""
    try:
        for pieces in batches:
            for values in pieces.itertuples(index=False):
                frame, found = read_piece(Piece(*values))
                if found:
                    problems.add(_rows_by_rule(found))
                    continue  # the job will be refused: these rows need no scores
                yield score_frame(frame, _scorer(model, digest, protocol), detail)
    except Exception as error:
        # Never the message: it may quote a patient's value. Type and place are enough.
        place = traceback.extract_tb(error.__traceback__)[-1]
        raise RuntimeError(
            f"{WORKER_FAILURE}: {type(error).__name__} at "
            f"{Path(place.filename).name}:{place.lineno}"
        ) from None


def _rows_by_rule(found: list[Problem]) -> RowsByRule:
    rows: RowsByRule = {}
    for problem in found:
        rows.setdefault((problem.column, problem.rule), set()).update(problem.lines)
    return rows
