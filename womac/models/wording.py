"""The words of an answer beside its numbers: a patient's warnings and the fields' notes.

:class:`PatientWarnings` words what the scorer found about one patient (a value beyond the
training data, an unusual combination, an estimate capped to the scale, a protocol check
that could not be made, fields unknown or not used); :func:`field_notes` gives each field's
note in an explanation. Warnings name the field, the side and the training range, never the
patient's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from womac.data.contract import FIELD_BY_NAME, PREDICTOR_NAMES
from womac.features.encoding import CategoryEncoding, PatientEncoder

ATYPICAL = (
    "This combination of characteristics is unusual among the patients the model was trained "
    "on (farther from them than 99% of them are): treat the estimate with caution."
)
CAPPED = (
    "The model's estimate was beyond what this baseline allows (the WOMAC total cannot go "
    "below 0 or above 96); it is capped, and the cap is counted in the contributions of the "
    "baseline WOMAC scores."
)
_KNOWN_PATTERNS = 4096  # patterns of known fields remembered (one request cannot add more)


class PatientWarnings:
    """The warnings of a patient's answer under one fitted encoder.

    Parameters
    ----------
    encoder
        The served pipeline's fitted :class:`~womac.features.encoding.PatientEncoder`.
    fields
        The explained fields, in the order a pattern of known fields follows.
    """

    def __init__(self, encoder: PatientEncoder, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self._encodings = {encoding.field: encoding for encoding in encoder.encodings_}
        # Patterns of known fields, worded once each (requests repeat a few patterns).
        self._worded_known: dict[tuple[bool, ...], tuple[str, ...]] = {}

    def for_patient(
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

    def unknown_and_unused(self, known: tuple[bool, ...]) -> list[str]:
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
