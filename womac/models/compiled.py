"""The scorer's fast path for one patient: the same fitted objects, read once, on scalars.

A clinician asks about one patient; the array path of :class:`~womac.models.scoring.Scorer`
pays NumPy's per-call overhead on ~100 tiny arrays for that. This path reads the same fitted
objects (the encoder's typed encodings and scaling, the boosters, the conformal scores, the
training domain) once, at load, and then works on Python scalars and one encoded row. It is
an implementation detail of the scorer, which builds the answer from what this returns
exactly as it does from the array path; ``tests/model/test_compiled.py`` checks both against
the sklearn pipeline on thousands of simulated patients (features, predictions,
contributions, interval and probability to 1e-9, warnings and eligibility equal).

Private LightGBM calls it relies on (``lightgbm.basic._LIB``, ``_safe_call``, ``_c_str`` and
``Booster._handle``), and why: LightGBM's public ``Booster.predict`` re-parses its parameters
and re-checks its input on every call, about 90 microseconds, more than the rest of an answer.
The C API's single-row fast prediction (``LGBM_BoosterPredictForMatSingleRowFastInit`` /
``...SingleRowFast``, public in LightGBM's C API) skips that, and the Python package exposes
it only through those private names. If they change, :class:`SingleRowBooster` falls back to
``Booster.predict`` (the same numbers, slower).
"""

from __future__ import annotations

import ctypes
import math
import threading
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from womac.data.contract import BASELINE_SUBSCALES, WOMAC_TOTAL_MAX
from womac.features.encoding import CategoryEncoding, NumericEncoding, PatientEncoder
from womac.models.explain import Attributor
from womac.models.uncertainty import OutcomeModel

_PREDICT_NORMAL, _PREDICT_CONTRIB = 0, 3
_FLOAT64 = 1


class SingleRowBooster:
    """LightGBM's single-row fast prediction (``LGBM_BoosterPredictForMatSingleRowFast``).

    Falls back to ``Booster.predict`` if the C API cannot be reached.
    """

    def __init__(self, booster: Any, contributions: bool) -> None:
        self.booster = booster  # keeps the model (and its C handle) alive
        self.contributions = contributions
        self.width = booster.num_feature()
        self.out = np.empty(self.width + 1 if contributions else 1)
        self.lock = threading.Lock()
        self.config: ctypes.c_void_p | None = None
        try:
            from lightgbm.basic import _LIB, _c_str, _safe_call

            config = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    booster._handle,
                    ctypes.c_int(_PREDICT_CONTRIB if contributions else _PREDICT_NORMAL),
                    ctypes.c_int(0),
                    ctypes.c_int(-1),
                    ctypes.c_int(_FLOAT64),
                    ctypes.c_int32(self.width),
                    _c_str("num_threads=1"),
                    ctypes.byref(config),
                )
            )
            self._lib, self._check, self.config = _LIB, _safe_call, config
        except (ImportError, AttributeError, OSError):
            self.config = None

    def predict(self, row: np.ndarray) -> np.ndarray:
        """Prediction (or SHAP values and base value) for one encoded row."""
        if self.config is None:
            return np.asarray(
                self.booster.predict(row[None, :], pred_contrib=self.contributions, num_threads=1)
            )[0]
        row = np.ascontiguousarray(row, dtype=np.float64)
        length = ctypes.c_int64()
        with self.lock:  # the fast config's buffers are shared
            self._check(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self.config,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(length),
                    self.out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                )
            )
            return self.out.copy()

    def __del__(self) -> None:
        if getattr(self, "config", None) is not None:
            self._lib.LGBM_FastConfigFree(self.config)


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where one field's encoded columns start, with its fitted encoding."""

    encoding: NumericEncoding | CategoryEncoding
    start: int
    positions: Mapping[str, int]  # category level -> column offset (empty for numbers)


@dataclass(frozen=True, slots=True)
class PatientScore:
    """One patient's numbers, and the facts the scorer words as warnings."""

    expected_improvement: float
    base_value: float
    contributions: np.ndarray  # per predictor field, the cap's share included
    lower: float
    upper: float
    p_clinically_important: float
    outside: tuple[str, ...]  # fields with a known value beyond the training data
    atypical: bool
    capped: bool


class CompiledPatient:
    """One patient's scores from the served pipeline, without DataFrames or batch overhead.

    Parameters
    ----------
    encoder
        The fitted :class:`~womac.features.encoding.PatientEncoder`.
    outcome
        The fitted :class:`~womac.models.uncertainty.OutcomeModel`.
    attributor
        The pipeline's :class:`~womac.models.explain.Attributor`.
    """

    def __init__(
        self, encoder: PatientEncoder, outcome: OutcomeModel, attributor: Attributor
    ) -> None:
        self.mean = encoder.mean_
        self.scale = encoder.scale_
        self.width = len(self.mean)
        self.slots: list[_Slot] = []
        start = 0
        for encoding in encoder.encodings_:
            positions = (
                {level: i for i, level in enumerate(encoding.levels)}
                if isinstance(encoding, CategoryEncoding)
                else {}
            )
            self.slots.append(_Slot(encoding, start, positions))
            start += len(encoding.columns)

        self.attributor = attributor
        self.contributions = (
            SingleRowBooster(attributor.booster, contributions=True)
            if attributor.booster is not None
            else None
        )
        self.baseline_index = [attributor.fields.index(name) for name in BASELINE_SUBSCALES]

        self.outcome = outcome
        booster = getattr(outcome.difficulty_, "booster_", None)
        self.difficulty = (
            SingleRowBooster(booster, contributions=False) if booster is not None else None
        )
        self.scores = outcome.scores_.tolist()
        self.quantiles = {outcome.level: outcome.quantiles(outcome.level)}
        self.recalibration = tuple(float(v) for v in outcome.recalibration_)

    def encode(self, record: Mapping[str, Any]) -> np.ndarray:
        """The encoded, centred and scaled row of one patient (as the pipeline would)."""
        row = np.zeros(self.width)
        for slot in self.slots:
            encoding, start = slot.encoding, slot.start
            value = record.get(encoding.field)
            if isinstance(encoding, CategoryEncoding):
                position = slot.positions.get(value) if isinstance(value, str) else None
                if position is not None:
                    row[start + position] = 1.0
                elif encoding.indicator:
                    row[start + len(encoding.levels)] = 1.0
                else:
                    row[start + slot.positions[encoding.fill]] = 1.0
                continue
            known = value is not None and math.isfinite(float(value))
            number = float(value) if value is not None and known else encoding.fill
            if encoding.spline is None:
                row[start] = number
                width = 1
            else:
                basis = encoding.spline.transform(np.array([[number]]))[0]
                width = len(basis)
                row[start : start + width] = basis
            if encoding.indicator and not known:
                row[start + width] = 1.0
        return (row - self.mean) / self.scale

    def attribute(self, row: np.ndarray) -> tuple[float, np.ndarray]:
        """Base value and per-field contributions of one encoded row."""
        if self.contributions is not None:
            shap_values = self.contributions.predict(row)
            columns, base = shap_values[:-1], float(shap_values[-1])
            return base, columns @ self.attributor.to_field
        base, columns = self.attributor.linear_terms(row[None, :])
        return base, columns[0] @ self.attributor.to_field

    def score(self, record: Mapping[str, Any], level: float | None = None) -> PatientScore:
        """The same quantities as the scorer's array path, for one validated record."""
        outcome = self.outcome
        row = self.encode(record)
        base, contributions = self.attribute(row)
        raw = base + float(contributions.sum())
        baseline = sum(float(record[name]) for name in BASELINE_SUBSCALES)

        if self.difficulty is not None:
            scale = max(float(self.difficulty.predict(row)[0]), 1.0)
        else:
            scale = max(float(outcome.difficulty_.predict(row[None, :])[0]), 1.0)
        scale *= float(outcome.widening(row[None, :])[0])
        level = outcome.level if level is None else level
        if level not in self.quantiles:
            self.quantiles[level] = outcome.quantiles(level)
        low_score, high_score = self.quantiles[level]
        low_limit, high_limit = baseline - WOMAC_TOTAL_MAX, baseline
        lower = min(max(raw + low_score * scale, low_limit), high_limit)
        upper = min(max(raw + high_score * scale, low_limit), high_limit)

        # responder_threshold's rule, on a scalar.
        threshold = max(outcome.responder_min_points, outcome.responder_min_fraction * baseline)
        if threshold > baseline:
            probability = 0.0
        else:
            below = bisect_left(self.scores, (threshold - raw) / scale)
            chance = 1.0 - (below + 0.5) / (len(self.scores) + 1)
            intercept, slope = self.recalibration
            chance = min(max(chance, 1e-4), 1 - 1e-4)
            probability = 1.0 / (
                1.0 + math.exp(-(intercept + slope * math.log(chance / (1 - chance))))
            )

        outside = tuple(
            slot.encoding.field
            for slot in self.slots
            if record.get(slot.encoding.field) is not None
            and slot.encoding.outside(record[slot.encoding.field])
        )
        bounded = min(max(raw, low_limit), high_limit)
        if bounded != raw:
            subscales = np.array([float(record[name]) for name in BASELINE_SUBSCALES])
            total = subscales.sum()
            shares = subscales / total if total > 0 else np.full(3, 1 / 3)
            contributions = contributions.copy()
            contributions[self.baseline_index] += (bounded - raw) * shares
        return PatientScore(
            expected_improvement=bounded,
            base_value=base,
            contributions=contributions,
            lower=lower,
            upper=upper,
            p_clinically_important=probability,
            outside=outside,
            atypical=bool(outcome.atypical(row[None, :])[0]),
            capped=bounded != raw,
        )
