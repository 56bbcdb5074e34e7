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
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from womac.data.contract import BASELINE_SUBSCALES, WOMAC_TOTAL_MAX
from womac.features.encoding import CategoryEncoding, NumericEncoding, PatientEncoder
from womac.models.explain import Attributor
from womac.models.uncertainty import IntervalScores, OutcomeModel, interval_bounds

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


class ScalarSpline:
    """A fitted cubic B-spline basis (scikit-learn's ``SplineTransformer``) at one value.

    ``SplineTransformer.transform`` costs ~40 microseconds per call on one value, several times
    the rest of an answer when every numeric field has a basis. This is de Boor's recurrence
    on the same knots, with the transformer's linear extrapolation beyond its boundary knots
    (value and slope of the basis at the boundary), in plain Python.
    """

    def __init__(self, spline: Any) -> None:
        bspline = spline.bsplines_[0]
        self.knots = [float(k) for k in bspline.t]
        self.degree = int(bspline.k)
        self.width = len(self.knots) - self.degree - 1
        self.low, self.high = self.knots[self.degree], self.knots[-self.degree - 1]
        self.at_low = [float(v) for v in bspline(self.low)]
        self.at_high = [float(v) for v in bspline(self.high)]
        self.slope_low = [float(v) for v in bspline(self.low, nu=1)]
        self.slope_high = [float(v) for v in bspline(self.high, nu=1)]

    def __call__(self, x: float) -> list[float]:
        """The basis functions' values at ``x``."""
        if x < self.low:
            return [
                v + (x - self.low) * d for v, d in zip(self.at_low, self.slope_low, strict=True)
            ]
        if x > self.high:
            return [
                v + (x - self.high) * d for v, d in zip(self.at_high, self.slope_high, strict=True)
            ]
        t, k = self.knots, self.degree
        # The knot span holding x (the last inner span for x at the upper boundary).
        span = min(bisect_right(t, x) - 1, len(t) - k - 2)
        basis = [1.0]
        left, right = [0.0] * (k + 1), [0.0] * (k + 1)
        for j in range(1, k + 1):
            left[j] = x - t[span + 1 - j]
            right[j] = t[span + j] - x
            saved = 0.0
            for r in range(j):
                term = basis[r] / (right[r + 1] + left[j - r])
                basis[r] = saved + right[r + 1] * term
                saved = left[j - r] * term
            basis.append(saved)
        row = [0.0] * self.width
        row[span - k : span + 1] = basis
        return row


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where one field's encoded columns start, with its fitted encoding."""

    encoding: NumericEncoding | CategoryEncoding
    start: int
    positions: Mapping[str, int]  # category level -> column offset (empty for numbers)
    spline: ScalarSpline | None = None


@dataclass(frozen=True, slots=True)
class _Booster:
    """A tree term of the prediction, with LightGBM's single-row path."""

    weight: float
    columns: np.ndarray | None  # None: every column
    contributions: SingleRowBooster


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
            spline = (
                ScalarSpline(encoding.spline)
                if isinstance(encoding, NumericEncoding) and encoding.spline is not None
                else None
            )
            self.slots.append(_Slot(encoding, start, positions, spline))
            start += len(encoding.columns)

        self.attributor = attributor
        self.boosters = [
            _Booster(
                term.weight,
                None if len(term.columns) == self.width else term.columns,
                SingleRowBooster(term.booster, contributions=True),
            )
            for term in attributor.boosters
        ]
        self.additive = bool(np.any(attributor.coefficients != 0))
        self.baseline_index = [attributor.fields.index(name) for name in BASELINE_SUBSCALES]

        self.outcome = outcome
        booster = getattr(outcome.difficulty_, "booster_", None)
        self.difficulty = (
            SingleRowBooster(booster, contributions=False) if booster is not None else None
        )
        self.scores = outcome.scores_.tolist()
        self.quantiles: dict[float, IntervalScores] = {
            outcome.level: outcome.quantiles(outcome.level)
        }

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
            row[start] = number
            width = 1
            if slot.spline is not None:
                basis = slot.spline(number)
                row[start + 1 : start + 1 + len(basis)] = basis
                width += len(basis)
            if encoding.indicator and not known:
                row[start + width] = 1.0
        return (row - self.mean) / self.scale

    def attribute(self, row: np.ndarray) -> tuple[float, np.ndarray]:
        """Base value and per-field contributions of one encoded row."""
        attributor = self.attributor
        base = attributor.intercept
        columns = row * attributor.coefficients if self.additive else np.zeros(self.width)
        for term in self.boosters:
            if term.columns is None:
                shap_values = term.contributions.predict(row)
                columns += term.weight * shap_values[:-1]
            else:
                shap_values = term.contributions.predict(row[term.columns])
                columns[term.columns] += term.weight * shap_values[:-1]
            base += term.weight * float(shap_values[-1])
        return base, columns @ attributor.to_field

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
        lower, upper = interval_bounds(raw, scale, baseline, self.quantiles[level])
        low_limit, high_limit = baseline - WOMAC_TOTAL_MAX, baseline

        # responder_threshold's rule, on a scalar.
        threshold = max(outcome.responder_min_points, outcome.responder_min_fraction * baseline)
        if threshold > baseline:
            probability = 0.0
        else:
            below = bisect_left(self.scores, (threshold - raw) / scale)
            chance = 1.0 - (below + 0.5) / (len(self.scores) + 1)
            # NumPy's exp and log, as on the array path: libm's may differ in the last bit.
            probability = float(outcome.recalibrated(np.array([chance]))[0])

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
            lower=float(lower),
            upper=float(upper),
            p_clinically_important=probability,
            outside=outside,
            atypical=bool(outcome.atypical(row[None, :])[0]),
            capped=bounded != raw,
        )
