"""Evaluation figures of a model of 12-month improvement."""

from __future__ import annotations

import math

import numpy as np


def regression_metrics(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R^2 and calibration of observed on predicted improvement.

    Calibration is the least-squares line ``observed = intercept + slope * predicted``: a
    slope of 1 and intercept of 0 mean the predictions are on the right scale; a slope below
    1 means they are too spread out (over-fitted). With constant predictions the slope is
    undefined (NaN). ``calibration_slope_se`` is the slope's ordinary least-squares standard
    error, what the promotion gate needs to tell a miscalibrated model from sampling noise.
    """
    observed = np.asarray(observed, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    residual = observed - predicted
    total = float(np.sum((observed - observed.mean()) ** 2))
    spread = float(np.var(predicted))
    slope_se = float("nan")
    if spread > 1e-12:
        slope = float(np.cov(predicted, observed, bias=True)[0, 1] / spread)
        intercept = float(observed.mean() - slope * predicted.mean())
        if len(observed) > 2:
            unexplained = observed - intercept - slope * predicted
            variance = float(np.sum(unexplained**2)) / (len(observed) - 2)
            slope_se = float(np.sqrt(variance / (spread * len(observed))))
    else:
        slope, intercept = float("nan"), float("nan")
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "r2": 1.0 - float(np.sum(residual**2)) / total if total > 0 else float("nan"),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "calibration_slope_se": slope_se,
    }


def wilson_interval(
    fraction: float | None, n: int, z: float = 1.959964
) -> tuple[float, float] | None:
    """Wilson score interval (95% by default) of a proportion observed among ``n``.

    It needs only the aggregate, so a report can show it without patient data. ``None``
    when the proportion is unknown or there is nobody to count.
    """
    if fraction is None or n <= 0 or not math.isfinite(fraction):
        return None
    centre = (fraction + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
