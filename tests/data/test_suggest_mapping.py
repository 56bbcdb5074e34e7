"""The suggested mapping places headers by the contract's names, labels and aliases, reads a
code legend in a header, follows REDCap's conventions, and marks what it could not place; the
file it writes is a mapping that reads."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from womac.data.mapping import ColumnMapping
from womac.data.suggest import header_key, suggest_mapping


def test_header_keys_ignore_case_punctuation_and_brackets() -> None:
    assert header_key("BMI (kg/m2)") == "bmi"
    assert header_key("Sex (1=M,2=F)") == "sex"
    assert header_key("  Kellgren-Lawrence grade ") == "kellgren_lawrence_grade"
    assert header_key("WOMAC Pain [0-20], 12 months") == "womac_pain_12_months"


CLINIC = pd.DataFrame(
    {
        "Patient": ["p1", "p2"],
        "Age": ["61", "70"],
        "Sex (1=M,2=F)": ["1", "2"],
        "BMI (kg/m2)": ["27", "31"],
        "Joint": ["Knee", "hip"],
        "KL": ["III", "II"],
        "WOMAC pain (baseline)": ["12", "9"],
        "WOMAC stiffness (baseline)": ["4", "3"],
        "WOMAC function (baseline)": ["40", "30"],
        "WOMAC pain 12m": ["5", ""],
        "WOMAC stiffness 12m": ["2", ""],
        "WOMAC function 12m": ["20", ""],
        "Diabetes": ["ja", "nein"],
        "Surgeon": ["Dr A", "Dr B"],
    }
)


def test_renamed_headers_and_coded_values_are_placed(tmp_path: Path) -> None:
    suggestion = suggest_mapping(CLINIC)
    assert suggestion.columns == {
        "patient_id": "Patient",
        "age": "Age",
        "sex": "Sex (1=M,2=F)",
        "bmi": "BMI (kg/m2)",
        "joint": "Joint",
        "kl_grade": "KL",
        "womac_pain_0": "WOMAC pain (baseline)",
        "womac_stiffness_0": "WOMAC stiffness (baseline)",
        "womac_function_0": "WOMAC function (baseline)",
        "womac_pain_12": "WOMAC pain 12m",
        "womac_stiffness_12": "WOMAC stiffness 12m",
        "womac_function_12": "WOMAC function 12m",
        "diabetes": "Diabetes",
    }
    assert suggestion.codes["sex"] == {"1": "male", "2": "female"}  # from the header's legend
    assert suggestion.codes["kl_grade"] == {"II": "2", "III": "3"}
    assert "joint" not in suggestion.codes  # "Knee" already follows the contract
    assert suggestion.unknown_codes == {"diabetes": ["ja", "nein"]}
    assert suggestion.unplaced == ["Surgeon"]
    assert not suggestion.missing_required

    text = suggestion.toml("clinic.csv")
    assert '# Not placed (ignored unless you add them): "Surgeon"' in text
    assert 'ja = ""  # CHECK: which of true, false?' in text
    path = tmp_path / "mapping.toml"
    path.write_text(text.replace('ja = ""', 'ja = "true"').replace('nein = ""', 'nein = "false"'))
    mapped = ColumnMapping.read(path).apply(CLINIC, np.arange(2, 4))
    assert not mapped.problems
    assert mapped.frame.loc[0, ["sex", "kl_grade", "diabetes"]].tolist() == ["male", "3", "true"]


def test_an_unfilled_suggestion_still_reads_and_names_its_blanks(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(suggest_mapping(CLINIC).toml("clinic.csv"))
    assert tomllib.loads(path.read_text())["codes"]["diabetes"] == {"ja": "", "nein": ""}


def test_redcap_conventions() -> None:
    export = pd.DataFrame(
        {
            "record_id": ["1", "1"],
            "redcap_event_name": ["baseline_arm_1", "month_12_arm_1"],
            "womac_pain": ["12", "5"],
            "avascular_necrosis___1": ["0", ""],
            "exclusion___9": ["1", ""],
        }
    )
    suggestion = suggest_mapping(export)
    assert suggestion.columns == {
        "patient_id": "record_id",
        "womac_pain_0": "womac_pain",
        "womac_pain_12": "womac_pain",  # one column holds the subscale at both events
    }
    assert suggestion.checkboxes == {"avascular_necrosis": "avascular_necrosis___1"}
    assert suggestion.redcap_events == ["baseline_arm_1", "month_12_arm_1"]
    assert suggestion.unplaced == ["exclusion___9"]
    text = suggestion.toml("redcap.csv")
    assert 'baseline = "baseline_arm_1"  # CHECK' in text
    assert "CHECK: required, not found: age, sex, bmi, joint, kl_grade" in text
