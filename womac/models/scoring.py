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
The answer's shape and columns are defined in :mod:`womac.models.answers`, the words of its
warnings and notes in :mod:`womac.models.wording`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from womac.data.contract import BASELINE_SUBSCALES, FIELD_BY_NAME, WOMAC_TOTAL_MAX, Kind
from womac.data.patients import patients_columns, read_patients
from womac.data.problems import CohortError
from womac.features.encoding import PatientEncoder, frame_columns
from womac.models.answers import Answers
from womac.models.compiled import CompiledPatient
from womac.models.eligibility import Protocol, assess, assess_record
from womac.models.explain import Attributor
from womac.models.uncertainty import OutcomeModel
from womac.models.wording import PatientWarnings, field_notes

if TYPE_CHECKING:
    import shap

# Imported from here by the layers that use the scorer; defined where they are owned.


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
        self._warnings = PatientWarnings(self.encoder, self.fields)
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
        warnings = self._warnings.for_patient(
            [(name, record[name]) for name in score.outside],
            score.atypical,
            score.capped,
            eligibility.unchecked[0],
            self._warnings.unknown_and_unused(known),
        )
        level = self.outcome.level if level is None else level
        return Answers.of_one(score, level, eligibility, warnings, self.fields)

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
            return Answers.of_none(level, self.fields)
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
        unknown_and_unused = self._unknown_and_unused(columns)
        warnings = [
            self._warnings.for_patient(
                outside[row],
                bool(atypical[row]),
                bool(capped[row]),
                eligibility.unchecked[row],
                unknown_and_unused[row],
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

    def _unknown_and_unused(self, columns: Mapping[str, np.ndarray]) -> list[list[str]]:
        """Each patient's warnings about fields unknown and fields not used."""
        # Patients share a handful of patterns of known fields: word each pattern once (a
        # pattern is one integer, a bit per field).
        known = np.column_stack([_known(columns[name]) for name in self.fields])
        codes = known.astype(np.int64) @ (1 << np.arange(len(self.fields), dtype=np.int64))
        _, first, pattern_of = np.unique(codes, return_index=True, return_inverse=True)
        worded = [self._warnings.unknown_and_unused(tuple(known[row])) for row in first]
        return [worded[pattern] for pattern in pattern_of]

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


def _typed(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients typed by the contract's rules for a request, or refused with every problem."""
    typed, problems = read_patients(patients)
    if problems:
        raise CohortError("the frame", problems)
    return typed


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
