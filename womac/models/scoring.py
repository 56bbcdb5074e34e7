"""The one scorer: every answer the product gives about a patient is made here.

For each patient: the expected improvement and its per-field explanation (base value plus one
contribution per contract field), the interval and the chance of a clinically important
improvement, eligibility under the clinic's protocol with reasons, and warnings wherever the
model extrapolates or a field was unknown or not used. The API and the clinician page
(:meth:`Scorer.respond`), ``womac predict`` on both engines (:meth:`Scorer.answer_columns`
and :meth:`Answers.frame`) and the registered MLflow model (:meth:`Scorer.predict`) all call
it, so they cannot disagree.

:class:`Scorer` is prepared once per model (at load) and works on plain arrays, one per
field, so a batch costs NumPy operations and a few LightGBM calls, not DataFrames; one
patient alone takes :mod:`womac.models.compiled`'s scalar path to the same numbers. It runs
the fitted pipeline's own objects (the encoder's ``encode``, the regressor's booster, the
outcome model's distribution); ``tests/model`` checks it against the sklearn pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from womac.data.cohort import CohortError, patients_columns, read_patients
from womac.data.contract import (
    BASELINE_SUBSCALES,
    FIELD_BY_NAME,
    PREDICTOR_NAMES,
    WOMAC_TOTAL_MAX,
    Kind,
)
from womac.features.encoding import CategoryEncoding, PatientEncoder, frame_columns
from womac.models.compiled import CompiledPatient, PatientScore
from womac.models.eligibility import Eligibility, Protocol, assess, assess_record
from womac.models.explain import Attributor
from womac.models.uncertainty import OutcomeModel

if TYPE_CHECKING:
    import shap

ATYPICAL = (
    "This combination of characteristics is unusual among the patients the model was trained "
    "on (farther from them than 99% of them are): treat the estimate with caution."
)
CAPPED = (
    "The model's estimate was beyond what this baseline allows (the WOMAC total cannot go "
    "below 0 or above 96); it is capped, and the cap is counted in the contributions of the "
    "baseline WOMAC scores."
)
CONTRIBUTION = "contribution_"
_KNOWN_PATTERNS = 4096  # patterns of known fields remembered (one request cannot add more)
# The registered model's output, one row per patient (also its MLflow output signature and
# the Spark schema): name and MLflow type.
ANSWER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("expected_improvement", "double"),
    ("interval_lower", "double"),
    ("interval_upper", "double"),
    ("level", "double"),
    ("p_clinically_important", "double"),
    ("candidate", "boolean"),
    ("reasons", "array<string>"),
    ("warnings", "array<string>"),
    ("base_value", "double"),
    *((f"{CONTRIBUTION}{name}", "double") for name in PREDICTOR_NAMES),
)


@dataclass(frozen=True, slots=True)
class Answers:
    """Everything the product says about a batch of patients, one row per patient.

    ``base_value + contributions.sum(axis=1) == expected_improvement`` for every patient.
    """

    expected_improvement: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    p_clinically_important: np.ndarray
    candidate: np.ndarray
    reasons: list[list[str]]
    warnings: list[list[str]]
    base_value: float
    fields: tuple[str, ...]
    contributions: np.ndarray  # (patients, fields), in the order of ``fields``

    def __len__(self) -> int:
        return len(self.expected_improvement)

    def frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """The answers as :data:`ANSWER_COLUMNS`, the registered model's output."""
        n = len(self)
        columns: dict[str, Any] = {
            "expected_improvement": self.expected_improvement,
            "interval_lower": self.lower,
            "interval_upper": self.upper,
            "level": np.full(n, self.level),
            "p_clinically_important": self.p_clinically_important,
            "candidate": np.asarray(self.candidate, dtype=bool),
            "reasons": pd.Series(self.reasons, dtype=object),
            "warnings": pd.Series(self.warnings, dtype=object),
            "base_value": np.full(n, self.base_value),
        }
        for position, name in enumerate(self.fields):
            columns[f"{CONTRIBUTION}{name}"] = self.contributions[:, position]
        frame = pd.DataFrame(columns)
        if index is not None:
            frame.index = index
        return frame

    def top(self, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per rank up to ``k``: each patient's field with that rank of |contribution|, and it."""
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")
        names = np.asarray(self.fields, dtype=object)
        return [
            (
                names[order[:, rank]],
                np.take_along_axis(self.contributions, order[:, rank : rank + 1], axis=1)[:, 0],
            )
            for rank in range(min(k, len(self.fields)))
        ]


class Scorer:
    """The served pipeline and the clinic's protocol, prepared to answer for patients.

    Parameters
    ----------
    pipeline
        The served pipeline: ``preprocess`` -> :class:`~womac.models.uncertainty.OutcomeModel`.
    protocol
        The clinic's exclusions (default: DESIGN.md's protocol).
    """

    def __init__(self, pipeline: Pipeline, protocol: Protocol | None = None) -> None:
        self.pipeline = pipeline
        self.protocol = protocol or Protocol()
        self.encoder: PatientEncoder = pipeline.named_steps["preprocess"]
        outcome = pipeline.named_steps["model"]
        if not isinstance(outcome, OutcomeModel):
            raise TypeError("the pipeline has no predictive distribution (not a served model)")
        self.outcome = outcome
        self.attributor = Attributor(pipeline)
        self.fields = self.attributor.fields
        self.fields_used = self.encoder.fields_used
        self.notes = field_notes(self.encoder)
        self._encodings = {encoding.field: encoding for encoding in self.encoder.encodings_}
        self._baseline_fields = [self.fields.index(name) for name in BASELINE_SUBSCALES]
        self._compiled = CompiledPatient(self.encoder, outcome, self.attributor)
        # What an explanation says about each field besides the patient's value and points.
        self._described = [
            (
                name,
                FIELD_BY_NAME[name].label,
                FIELD_BY_NAME[name].unit,
                FIELD_BY_NAME[name].kind is Kind.INTEGER,
                self.notes[name],
            )
            for name in self.fields
        ]
        # Patterns of known fields, worded once each (requests repeat a few patterns).
        self._worded_known: dict[tuple[bool, ...], tuple[str, ...]] = {}

    # -- entry points -------------------------------------------------------------------

    def predict(self, patients: pd.DataFrame, level: float | None = None) -> pd.DataFrame:
        """Answers for patients as a clinic exports them (the registered model's predict).

        Parameters
        ----------
        patients
            Contract columns as ``pd.read_csv`` gives them from a cohort export, or as Spark
            or a model server hands them over: headers in any case, booleans as ``object``,
            text as pandas' string dtype, optional columns absent, other columns ignored.
        level
            Interval coverage; the model's default when ``None``.

        Returns
        -------
        pandas.DataFrame
            :data:`ANSWER_COLUMNS`, one row per patient, on the input's index.

        Raises
        ------
        womac.data.cohort.CohortError
            A value breaks the contract (every problem, by field, rule and position from 0;
            never the value), as the API refuses it.
        """
        typed = _typed(patients)
        return self.answer_columns(frame_columns(typed), level).frame(index=patients.index)

    def explain(self, patients: pd.DataFrame) -> shap.Explanation:
        """SHAP values of patients, in WOMAC points, as a ``shap.Explanation``.

        One column per contract predictor (``feature_names``), ``values[i].sum() +
        base_values[i] == expected_improvement`` of patient ``i``; ``data`` holds numbers
        (category levels as their codes in the contract's order, unknown as NaN) for shap's
        plots and ``display_data`` the values themselves. Same input rules as
        :meth:`predict`.
        """
        import shap

        typed = _typed(patients)
        answers = self.answer_columns(frame_columns(typed))
        data = (
            np.column_stack(
                [_plotted(typed[name], FIELD_BY_NAME[name].categories) for name in self.fields]
            )
            if len(typed)
            else np.zeros((0, len(self.fields)))
        )
        return shap.Explanation(
            values=answers.contributions,
            base_values=np.full(len(answers), answers.base_value),
            data=data,
            display_data=typed[list(self.fields)].to_numpy(dtype=object),
            feature_names=list(self.fields),
        )

    def answer_records(
        self, records: Sequence[Mapping[str, Any]], level: float | None = None
    ) -> Answers:
        """Answers for validated patient records (API requests); one alone takes the fast path."""
        if len(records) != 1:
            return self.answer_columns(patients_columns(records), level)
        record = records[0]
        score = self._compiled.score(record, level)
        eligibility = assess_record(record, self.protocol)
        known = tuple(record.get(name) is not None for name in self.fields)
        warnings = self._warnings(
            [(name, record[name]) for name in score.outside],
            score.atypical,
            score.capped,
            eligibility.unchecked[0],
            self._unknown_and_unused(known),
        )
        level = self.outcome.level if level is None else level
        return _one(score, level, eligibility, warnings, self.fields)

    def answer_columns(
        self, columns: Mapping[str, np.ndarray], level: float | None = None
    ) -> Answers:
        """Answers for patients given as one array per field.

        Parameters
        ----------
        columns
            Every predictor field (numbers as floats with NaN unknown, categories as objects
            with None or NaN unknown) and, where known, the eligibility flags.
        level
            Interval coverage; the model's default when ``None``.
        """
        level = self.outcome.level if level is None else level
        encoded = self.encoder.encode(columns)
        if len(encoded) == 0:
            return _none(level, self.fields)
        explanation = self.attributor(encoded)
        baseline = np.sum([np.asarray(columns[n], dtype=float) for n in BASELINE_SUBSCALES], 0)
        raw = explanation.expected_improvement
        lower, upper, probability = self.outcome.distribution(encoded, raw, baseline, level)
        expected, contributions, capped = self._cap(raw, explanation.contributions, columns)
        eligibility = assess(columns, self.protocol)

        n = len(raw)
        outside: list[list[tuple[str, Any]]] = [[] for _ in range(n)]
        for name, mask in self.encoder.outside_training(columns).items():
            for row in np.flatnonzero(mask):
                outside[row].append((name, columns[name][row]))
        atypical = self.outcome.atypical(encoded)
        # Patients share a handful of patterns of known fields: word each pattern once (a
        # pattern is one integer, a bit per field).
        known = np.column_stack([_known(columns[name]) for name in self.fields])
        codes = known.astype(np.int64) @ (1 << np.arange(len(self.fields), dtype=np.int64))
        _, first, pattern_of = np.unique(codes, return_index=True, return_inverse=True)
        unknown_and_unused = [self._unknown_and_unused(tuple(known[row])) for row in first]
        warnings = [
            self._warnings(
                outside[row],
                bool(atypical[row]),
                bool(capped[row]),
                eligibility.unchecked[row],
                unknown_and_unused[pattern_of[row]],
            )
            for row in range(n)
        ]
        return Answers(
            expected_improvement=expected,
            lower=lower,
            upper=upper,
            level=level,
            p_clinically_important=probability,
            candidate=eligibility.candidate,
            reasons=eligibility.reasons,
            warnings=warnings,
            base_value=explanation.base_value,
            fields=self.fields,
            contributions=contributions,
        )

    def respond(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The API's answer for each validated record (``serve.schemas.Prediction``, less
        the ``model`` reference the service adds): contributions carry the field's label,
        the patient's value, its unit and a note when unknown or not used."""
        answers = self.answer_records(records)
        responses = []
        for row, record in enumerate(records):
            contributions = []
            points = answers.contributions[row].tolist()
            for column, (name, label, unit, whole, notes) in enumerate(self._described):
                value = record.get(name)
                contributions.append(
                    {
                        "feature": name,
                        "label": label,
                        "value": int(value) if whole and value is not None else value,
                        "unit": unit,
                        "contribution": points[column],
                        "note": notes[value is None],
                    }
                )
            responses.append(
                {
                    "patient_id": record.get("patient_id"),
                    "expected_improvement": float(answers.expected_improvement[row]),
                    "interval": {
                        "lower": float(answers.lower[row]),
                        "upper": float(answers.upper[row]),
                        "level": answers.level,
                    },
                    "p_clinically_important": float(answers.p_clinically_important[row]),
                    "eligibility": {
                        "candidate": bool(answers.candidate[row]),
                        "reasons": answers.reasons[row],
                    },
                    "explanation": {
                        "base_value": answers.base_value,
                        "contributions": contributions,
                    },
                    "warnings": answers.warnings[row],
                }
            )
        return responses

    def distribution(
        self, columns: Mapping[str, np.ndarray], level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Expected improvement (capped to the scale), interval and probability, unexplained.

        For evaluating many patients: the same numbers as :meth:`answer_columns` without the
        cost of attributions, eligibility and warnings.
        """
        encoded = self.encoder.encode(columns)
        raw = np.asarray(self.outcome.predict(encoded), dtype=float)
        baseline = np.sum([np.asarray(columns[n], dtype=float) for n in BASELINE_SUBSCALES], 0)
        lower, upper, probability = self.outcome.distribution(encoded, raw, baseline, level)
        expected = np.clip(raw, baseline - WOMAC_TOTAL_MAX, baseline)
        return expected, lower, upper, probability

    # -- parts of an answer -------------------------------------------------------------

    def _cap(
        self, raw: np.ndarray, contributions: np.ndarray, columns: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keep the estimate within what the scale allows, contributions still adding up.

        The 12-month total lies in 0-96, so the improvement lies in [baseline - 96,
        baseline]. The floor is a property of the baseline scores, so the adjustment is
        shared among the three baseline subscales in proportion to their values.
        """
        subscales = np.stack(
            [np.asarray(columns[n], dtype=float) for n in BASELINE_SUBSCALES], axis=1
        ).reshape(len(raw), len(BASELINE_SUBSCALES))
        baseline = subscales.sum(axis=1)
        bounded = np.clip(raw, baseline - WOMAC_TOTAL_MAX, baseline)
        capped = bounded != raw
        if not capped.any():
            return bounded, contributions, capped
        totals = baseline[:, None]
        shares = np.where(totals > 0, subscales / np.where(totals > 0, totals, 1.0), 1 / 3)
        contributions = contributions.copy()
        contributions[:, self._baseline_fields] += (bounded - raw)[:, None] * shares
        return bounded, contributions, capped

    def _warnings(
        self,
        outside: Sequence[tuple[str, Any]],
        atypical: bool,
        capped: bool,
        unchecked: Sequence[str],
        unknown_and_unused: Sequence[str],
    ) -> list[str]:
        """One patient's warnings, in the order the answer lists them."""
        warnings = [self._outside_warning(name, value) for name, value in outside]
        if atypical:
            warnings.append(ATYPICAL)
        if capped:
            warnings.append(CAPPED)
        if unchecked:
            warnings.append(
                "Not recorded, so not checked against the protocol: " + ", ".join(unchecked) + "."
            )
        warnings.extend(unknown_and_unused)
        return warnings

    def _unknown_and_unused(self, known: tuple[bool, ...]) -> list[str]:
        """Warnings for the fields a patient lacks that the model uses, and the reverse."""
        worded = self._worded_known.get(known)
        if worded is None:
            worded = self._word_known(known)
            if len(self._worded_known) < _KNOWN_PATTERNS:
                self._worded_known[known] = worded
        return list(worded)

    def _word_known(self, known: tuple[bool, ...]) -> tuple[str, ...]:
        unknown = [
            FIELD_BY_NAME[name].label
            for name, is_known in zip(self.fields, known, strict=True)
            if not is_known and name in self._encodings
        ]
        unused = [
            FIELD_BY_NAME[name].label
            for name, is_known in zip(self.fields, known, strict=True)
            if is_known and name not in self._encodings
        ]
        warnings = []
        if unknown:
            warnings.append("Not known for this patient: " + ", ".join(unknown) + ".")
        if unused:
            warnings.append("Given but not used by this model: " + ", ".join(unused) + ".")
        return tuple(warnings)

    def _outside_warning(self, name: str, value: object) -> str:
        """Names the field, the side and the training range; never repeats the value itself."""
        spec = FIELD_BY_NAME[name]
        encoding = self._encodings[name]
        if isinstance(encoding, CategoryEncoding):
            return (
                f"{spec.label}: this value was not among the patients the model was trained "
                "on, so the model treats it as unknown."
            )
        side = "above" if float(value) > encoding.maximum else "below"  # type: ignore[arg-type]
        unit = f" {spec.unit}" if spec.unit else ""
        return (
            f"{spec.label} is {side} the range of the patients the model was trained on "
            f"({encoding.minimum:g}-{encoding.maximum:g}{unit}): the estimate extrapolates."
        )


def field_notes(encoder: PatientEncoder) -> dict[str, tuple[str | None, str]]:
    """Per field: the explanation's note when the patient's value is known, and when not."""
    learned_unknown = {e.field: e.indicator for e in encoder.encodings_}
    never_known = set(encoder.unused_fields_)
    notes: dict[str, tuple[str | None, str]] = {}
    for name in PREDICTOR_NAMES:
        if name in learned_unknown:
            notes[name] = (
                None,
                "unknown; the model learned from training patients for whom it was unknown"
                if learned_unknown[name]
                else "unknown; the model assumed the typical value of its training patients",
            )
        elif name in never_known:
            unused = "not used: the training cohort did not record it"
            notes[name] = (unused, "unknown; " + unused)
        else:
            notes[name] = ("not an input of this model", "unknown; not an input of this model")
    return notes


def _one(
    score: PatientScore,
    level: float,
    eligibility: Eligibility,
    warnings: list[str],
    fields: tuple[str, ...],
) -> Answers:
    return Answers(
        expected_improvement=np.array([score.expected_improvement]),
        lower=np.array([score.lower]),
        upper=np.array([score.upper]),
        level=level,
        p_clinically_important=np.array([score.p_clinically_important]),
        candidate=eligibility.candidate,
        reasons=eligibility.reasons,
        warnings=[warnings],
        base_value=score.base_value,
        fields=fields,
        contributions=score.contributions[None, :],
    )


def _typed(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients typed by the contract's rules for a request, or refused with every problem."""
    typed, problems = read_patients(patients)
    if problems:
        raise CohortError("the frame", problems)
    return typed


def _none(level: float, fields: tuple[str, ...]) -> Answers:
    """The answers for no patients (an empty frame gets an empty frame back)."""
    empty = np.zeros(0)
    return Answers(
        expected_improvement=empty,
        lower=empty,
        upper=empty,
        level=level,
        p_clinically_important=empty,
        candidate=np.zeros(0, dtype=bool),
        reasons=[],
        warnings=[],
        base_value=float("nan"),
        fields=fields,
        contributions=np.zeros((0, len(fields))),
    )


def _known(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.asarray(pd.notna(values), dtype=bool)
    return np.isfinite(np.asarray(values, dtype=float))


def _plotted(values: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """A field's values as numbers for shap's plots: category levels by their code."""
    if not categories:
        return values.to_numpy(dtype=float, na_value=np.nan)
    codes = pd.Categorical(values, categories=list(categories)).codes.astype(float)
    return np.where(codes < 0, np.nan, codes)
