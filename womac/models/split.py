"""Which patients each step sees: held-out patients set aside first, grouped folds, and the
sample of training patients that tuning and calibration use on large cohorts.

A patient's joints always stay together (on one side of the split, in one fold), and every
random choice takes its seed from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from womac.models.selection import Folds
from womac.settings import Settings

# Offset of the seed that samples the tuning patients from the one that splits off the
# held-out patients, so that the two samples are not the same permutation.
TUNING_SEED_OFFSET = 2


@dataclass(frozen=True, slots=True)
class Split:
    """Row positions of the training and the held-out patients."""

    fit: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Patients in each part."""
        return {"training": len(self.fit), "held-out": len(self.test)}


@dataclass(frozen=True, slots=True)
class Sides:
    """Model input and observed improvement of the training and the held-out patients."""

    x_fit: pd.DataFrame
    y_fit: np.ndarray
    x_test: pd.DataFrame
    y_test: np.ndarray


def split_patients(frame: pd.DataFrame, settings: Settings) -> Split:
    """Held-out patients set aside first; a patient's joints stay on one side.

    Parameters
    ----------
    frame
        The usable rows of the cohort, with a ``patient_id`` column.
    settings
        ``test_fraction`` (share of patients held out) and ``seed``.
    """
    held_out = sample_patients(
        frame["patient_id"].to_numpy(), settings.test_fraction, settings.seed
    )
    rows = np.arange(len(frame))
    return Split(fit=rows[~held_out], test=rows[held_out])


def sample_patients(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Rows of a random ``fraction`` of patients (all of each one's joints), in linear time.

    scikit-learn's group splitters compare patient ids pairwise; at 400,000 patients that
    took minutes here.
    """
    codes, patients = pd.factorize(groups)
    chosen = np.zeros(len(patients), dtype=bool)
    count = round(fraction * len(patients))
    chosen[np.random.default_rng(seed).permutation(len(patients))[:count]] = True
    return chosen[codes]


def group_folds(groups: np.ndarray, n_folds: int, seed: int) -> Folds:
    """K folds with all of a patient's joints in one fold, patients shuffled by the seed.

    scikit-learn's ``GroupKFold(shuffle=True)`` takes 36 s for 40,000 patients here (it
    is quadratic in the number of groups); this is linear.
    """
    patient, _ = pd.factorize(groups)
    order = np.random.default_rng(seed).permutation(patient.max() + 1)
    fold_of_patient = np.empty_like(order)
    fold_of_patient[order] = np.arange(len(order)) % n_folds
    fold = fold_of_patient[patient]
    rows = np.arange(len(groups))
    return [(rows[fold != k], rows[fold == k]) for k in range(n_folds)]


def tuning_rows(training: np.ndarray, groups: np.ndarray, settings: Settings) -> np.ndarray:
    """Training rows for selection and calibration: all, or whole patients up to the cap.

    Selection curves and conformal quantiles are settled long before 50,000 rows, so large
    cohorts tune and calibrate on a sample (``settings.tuning_rows``); every model is then
    fitted on all the training patients.
    """
    if len(training) <= settings.tuning_rows:
        return training
    share = settings.tuning_rows / len(training)
    return training[sample_patients(groups[training], share, settings.seed + TUNING_SEED_OFFSET)]
