"""The served pipeline compiled, at load time, into a path for one patient at a time.

A clinician asks about one patient; the array path of :class:`~models.scoring.Scorer` pays
NumPy's per-call overhead on ~100 tiny arrays for that. This path reads the same fitted
objects (encodings, centring, boosters, conformal scores, training domain) once and then
works on Python scalars and one encoded row, calling LightGBM's single-row C API.
``tests/model/test_compiled.py`` checks it against the sklearn pipeline and the array path
on thousands of simulated patients: same features, predictions, contributions, interval
and probability to 1e-9.
"""

from __future__ import annotations

import ctypes
import math
import threading
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

import numpy as np

from womac.data.contract import BASELINE_SUBSCALES, WOMAC_TOTAL_MAX
from womac.models.eligibility import Protocol, assess
from womac.models.explain import Attributor, Explanation
from womac.models.uncertainty import OutcomeModel, responder_threshold

_PREDICT_NORMAL, _PREDICT_CONTRIB = 0, 3
_FLOAT64 = 1


class SingleRowBooster:
    """LightGBM's single-row fast prediction (``LGBM_BoosterPredictForMatSingleRowFast``).

    About 90 microseconds less per call than ``Booster.predict``, whose Python wrapper
    re-parses parameters and re-checks the input every time. Falls back to
    ``Booster.predict`` if the C API is not available.
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


class CompiledPatient:
    """One patient's scores from the served pipeline, without DataFrames or batch overhead.

    Parameters
    ----------
    encoder
        The fitted :class:`~features.encoding.PatientEncoder`.
    outcome
        The fitted :class:`~models.uncertainty.OutcomeModel`.
    attributor
        The pipeline's :class:`~models.explain.Attributor`.
    """

    def __init__(self, encoder: Any, outcome: OutcomeModel, attributor: Attributor) -> None:
        self.mean = encoder.mean_
        self.scale = encoder.scale_
        self.width = len(self.mean)
        self.fields: list[tuple[str, str, Any, int]] = []  # field, kind, details, start
        start = 0
        for encoding in encoder.encodings_:
            if encoding["kind"] == "category":
                levels = {level: i for i, level in enumerate(encoding["levels"])}
                details: Any = (levels, levels[encoding["fill"]], encoding["indicator"])
            else:
                details = (
                    encoding["fill"],
                    encoding["indicator"],
                    encoding["spline"],
                    encoding["minimum"],
                    encoding["maximum"],
                )
            self.fields.append((encoding["field"], encoding["kind"], details, start))
            start += len(encoding["columns"])

        self.attributor = attributor
        model = attributor.model
        self.contributions = (
            SingleRowBooster(attributor.booster, contributions=True)
            if hasattr(attributor, "booster")
            else None
        )
        self.coef = np.ravel(model.coef_) if hasattr(model, "coef_") else None
        self.baseline_index = [attributor.fields.index(name) for name in BASELINE_SUBSCALES]

        self.outcome = outcome
        difficulty = outcome.difficulty_
        self.difficulty = (
            SingleRowBooster(difficulty.booster_, contributions=False)
            if hasattr(difficulty, "booster_")
            else None
        )
        self.scores = outcome.scores_.tolist()
        self.quantiles = {outcome.level: outcome._quantiles(outcome.level)}
        self.recalibration = tuple(float(v) for v in outcome.recalibration_)

    def encode(self, record: Mapping[str, Any]) -> np.ndarray:
        """The encoded, centred and scaled row of one patient (as the pipeline would)."""
        row = np.zeros(self.width)
        for name, kind, details, start in self.fields:
            value = record.get(name)
            if kind == "category":
                levels, fill, indicator = details
                position = levels.get(value) if isinstance(value, str) else None
                if position is not None:
                    row[start + position] = 1.0
                elif indicator:
                    row[start + len(levels)] = 1.0
                else:
                    row[start + fill] = 1.0
                continue
            fill, indicator, spline, _, _ = details
            known = value is not None and math.isfinite(float(value))
            number = float(value) if value is not None and known else fill
            if spline is None:
                row[start] = number
                width = 1
            else:
                basis = spline.transform(np.array([[number]]))[0]
                width = len(basis)
                row[start : start + width] = basis
            if indicator and not known:
                row[start + width] = 1.0
        return (row - self.mean) / self.scale

    def attribute(self, row: np.ndarray) -> tuple[float, np.ndarray]:
        """Base value and per-field contributions of one encoded row."""
        if self.contributions is not None:
            shap_values = self.contributions.predict(row)
            columns, base = shap_values[:-1], float(shap_values[-1])
        elif self.coef is not None:
            columns = row * self.coef
            base = float(np.ravel(self.attributor.model.intercept_)[0])
        else:
            columns = np.zeros_like(row)
            base = float(np.ravel(self.attributor.model.constant_)[0])
        return base, columns @ self.attributor.to_field

    def score(
        self, record: Mapping[str, Any], protocol: Protocol, level: float | None = None
    ) -> tuple[Explanation, float, float, float, Any, list[str]]:
        """Explanation, interval, probability, eligibility and warning keys of one patient.

        Returns the same quantities as :meth:`models.scoring.Scorer.score` for one row; the
        warning texts are built by the caller from the keys ``("outside", field)``,
        ``("atypical",)`` and ``("capped",)``.
        """
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
            self.quantiles[level] = outcome._quantiles(level)
        low_score, high_score = self.quantiles[level]
        low_limit, high_limit = baseline - WOMAC_TOTAL_MAX, baseline
        lower = min(max(raw + low_score * scale, low_limit), high_limit)
        upper = min(max(raw + high_score * scale, low_limit), high_limit)

        threshold = float(
            responder_threshold(
                np.array([baseline]), outcome.responder_min_points, outcome.responder_min_fraction
            )[0]
        )
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

        keys: list[Any] = []
        for name, kind, details, _ in self.fields:
            value = record.get(name)
            if value is None:
                continue
            if kind == "category":
                if value not in details[0]:
                    keys.append(("outside", name))
            elif not details[3] <= float(value) <= details[4]:
                keys.append(("outside", name))
        if bool(outcome.atypical(row[None, :])[0]):
            keys.append(("atypical",))

        bounded = min(max(raw, low_limit), high_limit)
        if bounded != raw:
            subscales = np.array([float(record[name]) for name in BASELINE_SUBSCALES])
            total = subscales.sum()
            shares = subscales / total if total > 0 else np.full(3, 1 / 3)
            contributions = contributions.copy()
            contributions[self.baseline_index] += (bounded - raw) * shares
            keys.append(("capped",))
        explanation = Explanation(
            expected_improvement=np.array([bounded]),
            base_value=base,
            fields=self.attributor.fields,
            contributions=contributions[None, :],
        )
        flags = {
            name: np.array([np.nan if record.get(name) is None else float(record[name])])
            for name in ("kl_grade", *protocol.exclusion_flags)
        }
        return explanation, lower, upper, probability, assess(flags, protocol), keys
