"""Eligibility under the clinic's protocol (models.eligibility): who is excluded, why, and
what could not be checked."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from womac.data.contract import ELIGIBILITY_FLAGS, FIELD_BY_NAME
from womac.data.patients import patients_frame
from womac.models.eligibility import Protocol, assess, protocol_from
from womac.settings import Settings

FLAGS = [flag.name for flag in ELIGIBILITY_FLAGS]
CLEAR = dict.fromkeys(FLAGS, False)


@pytest.fixture(autouse=True)
def no_womac_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built here come from the test alone, not from the machine's WOMAC_ variables."""
    for variable in [name for name in os.environ if name.startswith("WOMAC_")]:
        monkeypatch.delenv(variable)


def patients(*changes: dict[str, Any]) -> pd.DataFrame:
    """Typed patients, each KL grade 2 with every flag recorded as absent, then changed."""
    return patients_frame([{"kl_grade": 2, **CLEAR, **change} for change in changes])


def test_patient_with_nothing_excluding_them_is_a_candidate_with_nothing_unchecked() -> None:
    eligibility = assess(patients({}), Protocol())
    assert eligibility.candidate.tolist() == [True]
    assert eligibility.reasons == [[]]
    assert eligibility.unchecked == [[]]


def test_kl_grade_4_is_not_a_candidate_and_the_reason_says_bone_on_bone() -> None:
    eligibility = assess(patients({"kl_grade": 4}, {"kl_grade": 3}), Protocol())
    assert eligibility.candidate.tolist() == [False, True]
    (reason,) = eligibility.reasons[0]
    assert reason.startswith("Kellgren-Lawrence grade 4")
    assert "bone on bone" in reason
    assert "outside the protocol" in reason
    assert eligibility.reasons[1] == []


@pytest.mark.parametrize("flag", FLAGS)
def test_each_exclusion_flag_makes_a_patient_not_a_candidate_naming_it(flag: str) -> None:
    eligibility = assess(patients({flag: True}), Protocol())
    assert eligibility.candidate.tolist() == [False]
    assert eligibility.reasons == [[f"{FIELD_BY_NAME[flag].label}: outside the protocol"]]


def test_every_reason_is_listed_when_several_apply() -> None:
    eligibility = assess(patients({"kl_grade": 4, **dict.fromkeys(FLAGS, True)}), Protocol())
    assert not eligibility.candidate[0]
    assert len(eligibility.reasons[0]) == 1 + len(FLAGS)


def test_unknown_kl_grade_and_flags_stay_candidate_but_are_listed_unchecked() -> None:
    unknown = {"kl_grade": None, **dict.fromkeys(FLAGS)}
    eligibility = assess(patients(unknown), Protocol())
    assert eligibility.candidate.tolist() == [True]
    assert eligibility.reasons == [[]]
    unchecked = eligibility.unchecked[0]
    assert unchecked[0] == "Kellgren-Lawrence grade (the protocol excludes grade 4)"
    assert unchecked[1:] == [FIELD_BY_NAME[flag].label.lower() for flag in FLAGS]


def test_flag_column_absent_from_the_table_is_unchecked() -> None:
    table = patients({}).drop(columns=["immune_disorder"])
    eligibility = assess(table, Protocol())
    assert eligibility.candidate.tolist() == [True]
    assert eligibility.unchecked == [["immune disorder"]]


def test_custom_protocol_excluding_kl_3_and_4_and_only_infection_is_honoured() -> None:
    protocol = Protocol(excluded_kl_grades=(3, 4), exclusion_flags=("active_infection",))
    table = patients(
        {"kl_grade": 3},
        {"kl_grade": 4},
        {"kl_grade": 2, "avascular_necrosis": True, "immune_disorder": True},
        {"kl_grade": 2, "active_infection": True},
        {"kl_grade": None, "avascular_necrosis": None},
    )
    eligibility = assess(table, protocol)
    assert eligibility.candidate.tolist() == [False, False, True, False, True]
    assert eligibility.reasons[0] == ["Kellgren-Lawrence grade 3 (moderate): outside the protocol"]
    assert eligibility.reasons[3] == ["Active infection: outside the protocol"]
    # Flags outside the protocol are neither reasons nor "unchecked".
    assert eligibility.unchecked[4] == [
        "Kellgren-Lawrence grade (the protocol excludes grade 3, 4)"
    ]


def test_protocol_excluding_no_kl_grade_does_not_ask_for_one() -> None:
    eligibility = assess(patients({"kl_grade": 4}, {"kl_grade": None}), Protocol((), ()))
    assert eligibility.candidate.tolist() == [True, True]
    assert eligibility.unchecked == [[], []]


def test_protocol_is_read_from_the_settings() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, excluded_kl_grades=[3, 4], exclusion_flags=["immune_disorder"]
    )
    assert protocol_from(settings) == Protocol((3, 4), ("immune_disorder",))
    assert protocol_from(Settings(_env_file=None)) == Protocol()  # type: ignore[call-arg]


def test_settings_refuse_an_exclusion_flag_the_contract_does_not_have() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(  # type: ignore[call-arg]
            _env_file=None, exclusion_flags=["active_infection", "pregnancy"]
        )
    message = str(refused.value)
    assert "exclusion_flags" in message
    assert "pregnancy" in message


def test_settings_refuse_a_predictor_as_an_exclusion_flag() -> None:
    """Only eligibility fields exclude; a predictor such as diabetes is not a flag."""
    with pytest.raises(ValidationError, match="diabetes"):
        Settings(_env_file=None, exclusion_flags=["diabetes"])  # type: ignore[call-arg]
