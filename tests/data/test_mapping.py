"""A mapping file turns a clinic's columns, codes and units into the contract's, as text the
contract's own rules then check; a mapping that cannot be used is refused naming the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from womac.data.koos import KOOS_ITEMS
from womac.data.mapping import ColumnMapping, MappingError


def mapping(tmp_path: Path, text: str) -> ColumnMapping:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    return ColumnMapping.read(path)


def lines(frame: pd.DataFrame) -> np.ndarray:
    return np.arange(2, len(frame) + 2)


RENAMED = """
[columns]
patient_id = "ID"
age = "Age"
sex = "Sex (1=M,2=F)"
bmi = "BMI (kg/m2)"
kl_grade = "KL"
diabetes = "Diabetes"

[codes.sex]
1 = "male"
2 = "female"

[codes.kl_grade]
I = 1
II = 2
III = 3
IV = 4

[codes.diabetes]
ja = true
nein = false
"""


def test_columns_codes_and_booleans_in_another_language(tmp_path: Path) -> None:
    export = pd.DataFrame(
        {
            "ID": ["a", "b", "c"],
            " age ": ["61", "70", ""],  # headers match whatever their case and spaces
            "Sex (1=M,2=F)": ["1", "2", " 2 "],
            "BMI (kg/m2)": ["27.5", "31", "22"],
            "KL": ["III", "ii", None],
            "Diabetes": ["Ja", "nein", ""],
            "Comments": ["x", "y", "z"],
        }
    )
    mapped = mapping(tmp_path, RENAMED).apply(export, lines(export))
    assert not mapped.problems
    assert mapped.frame.to_dict("list") == {
        "patient_id": ["a", "b", "c"],
        "age": ["61", "70", ""],
        "sex": ["male", "female", "female"],
        "bmi": ["27.5", "31", "22"],
        "kl_grade": ["3", "2", ""],
        "diabetes": ["true", "false", ""],
    }


def test_an_unknown_code_is_refused_by_field_and_line_naming_short_codes_only(
    tmp_path: Path,
) -> None:
    export = pd.DataFrame(
        {
            "ID": ["a", "b", "c", "d"],
            "Age": ["61"] * 4,
            "Sex (1=M,2=F)": ["1", "3", "Jane Doe", "2"],
            "BMI (kg/m2)": ["27"] * 4,
            "KL": ["I"] * 4,
            "Diabetes": [""] * 4,
        }
    )
    (problem,) = mapping(tmp_path, RENAMED).apply(export, lines(export)).problems
    assert problem.column == "sex"
    assert problem.lines == (3, 4)
    assert "'3'" in problem.rule
    assert "[codes.sex]" in problem.rule
    assert "Jane" not in str(problem)  # a value that is not plainly a code is not echoed


def test_a_mapping_naming_a_column_the_file_lacks_is_refused_naming_it(tmp_path: Path) -> None:
    problems = mapping(tmp_path, RENAMED).missing_headers(["ID", "Age", "KL", "Diabetes"])
    assert [str(p) for p in problems] == [
        "mapping: [columns] sex names column 'Sex (1=M,2=F)', which the file does not have",
        "mapping: [columns] bmi names column 'BMI (kg/m2)', which the file does not have",
    ]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[columns]\nheight = "Height"\n', "not fields of the cohort contract: height"),
        ('[columns]\nage = "Age"\n[codes.age]\n1 = 2\n', "age is measured, not coded"),
        ('[codes.sex]\n1 = "male"\n', "[columns] does not name sex"),
        ('[scales]\nage = "0-100"\n', "only WOMAC subscales"),
        ('[columns]\nwomac_pain_0 = "p"\n[scales]\nwomac_pain_0 = "1-10"\n', "scales"),
        ('[columns]\nbmi = "BMI"\n[bmi]\nheight = "H"\nweight = "W"\n', "keep one"),
        ('[koos]\nbaseline = "koos_0"\n', "must contain {item}"),
        ('[colums]\nage = "Age"\n', "colums"),
        ("[columns\n", "not a TOML mapping file"),
    ],
)
def test_a_mapping_that_cannot_be_used_is_refused_naming_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    with pytest.raises(MappingError, match="mapping") as refused:
        mapping(tmp_path, text)
    assert named in str(refused.value)


def test_womac_on_the_normalized_scales_becomes_likert_points(tmp_path: Path) -> None:
    text = """
[columns]
womac_pain_0 = "pain"
womac_function_0 = "function"
[scales]
womac_pain_0 = "0-100"
womac_function_0 = "0-100 best"
"""
    export = pd.DataFrame({"pain": ["50", "100", "", "n/a"], "function": ["100", "0", "25", ""]})
    frame = mapping(tmp_path, text).apply(export, lines(export)).frame
    assert frame["womac_pain_0"].tolist() == ["10", "20", "", "n/a"]  # the contract judges text
    assert frame["womac_function_0"].tolist() == ["0", "68", "51", ""]


def test_bmi_from_height_and_weight_in_either_unit(tmp_path: Path) -> None:
    text = '[bmi]\nheight = "Height"\nheight_unit = "in"\nweight = "Weight"\nweight_unit = "lb"\n'
    export = pd.DataFrame({"Height": ["70", "", "0"], "Weight": ["180", "80", "80"]})
    bmi = mapping(tmp_path, text).apply(export, lines(export)).frame["bmi"]
    assert float(bmi[0]) == pytest.approx(25.83, abs=0.01)  # 180 lb at 5 ft 10 in
    assert bmi[1] == ""  # no height: no BMI (then reported blank by the contract)
    assert bmi[2] == ""  # a height of zero gives no BMI either


def test_checkbox_columns_become_flags(tmp_path: Path) -> None:
    text = (
        '[checkboxes]\navascular_necrosis = "exclusion___1"\nactive_infection = "exclusion___2"\n'
    )
    export = pd.DataFrame({"exclusion___1": ["1", "0"], "exclusion___2": ["0", "0"]})
    frame = mapping(tmp_path, text).apply(export, lines(export)).frame
    assert frame.to_dict("list") == {
        "avascular_necrosis": ["1", "0"],
        "active_infection": ["0", "0"],
    }


def koos_export(rows: int, seed: int, suffix: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=(rows, len(KOOS_ITEMS)))
    return pd.DataFrame(scores.astype(str), columns=[f"koos_{i}{suffix}" for i in KOOS_ITEMS])


def test_koos_items_give_the_womac_subscales_by_hand(tmp_path: Path) -> None:
    text = '[koos]\nbaseline = "koos_{item}_0"\nfollow_up = "koos_{item}_12"\n'
    export = pd.concat([koos_export(20, 1, "_0"), koos_export(20, 2, "_12")], axis=1)
    export.loc[3, "koos_P5_0"] = "7"  # not a KOOS score
    mapped = mapping(tmp_path, text).apply(export, lines(export))
    items = export.apply(pd.to_numeric, errors="coerce")
    pain_0 = items[[f"koos_P{n}_0" for n in range(5, 10)]]
    expected = pain_0.mean(axis=1) * 5  # the one bad item is left out of its row's mean
    np.testing.assert_allclose(
        mapped.frame["womac_pain_0"].astype(float),
        expected.where(items["koos_P5_0"] <= 4, pain_0.iloc[:, 1:].mean(axis=1) * 5),
    )
    function_12 = items[[f"koos_A{n}_12" for n in range(1, 18)]].sum(axis=1)
    np.testing.assert_allclose(mapped.frame["womac_function_12"].astype(float), function_12)
    (problem,) = mapped.problems
    assert (problem.column, problem.lines) == ("KOOS P5 (koos_P5_0)", (5,))


REDCAP = """
[columns]
patient_id = "record_id"
womac_pain_0 = "womac_pain"
womac_pain_12 = "womac_pain"
[redcap]
baseline = "baseline_arm_1"
follow_up = "month_12_arm_1"
"""


def test_redcap_long_form_becomes_one_row_per_record(tmp_path: Path) -> None:
    text = REDCAP.replace("[columns]", '[columns]\nage = "age"')
    export = pd.DataFrame(
        {
            "record_id": ["1", "1", "2", "3", "3"],
            "redcap_event_name": [
                "baseline_arm_1",
                "month_12_arm_1",
                "baseline_arm_1",
                "month_12_arm_1",
                "baseline_arm_1",
            ],
            "age": ["60", "", "70", "", "65"],
            "womac_pain": ["12", "5", "9", "4", "15"],
        }
    )
    mapped = mapping(tmp_path, text).apply(export, lines(export))
    assert not mapped.problems
    assert mapped.frame.to_dict("list") == {
        "patient_id": ["1", "2", "3"],
        "age": ["60", "70", "65"],
        "womac_pain_0": ["12", "9", "15"],
        "womac_pain_12": ["5", "", "4"],  # record 2 has no 12-month event: lost
    }
    assert mapped.lines.tolist() == [2, 4, 6]  # each record's baseline row


def test_a_redcap_follow_up_without_its_baseline_is_reported(tmp_path: Path) -> None:
    export = pd.DataFrame(
        {
            "record_id": ["1", "1", "1", "9"],
            "redcap_event_name": [
                "baseline_arm_1",
                "baseline_arm_1",
                "month_12_arm_1",
                "month_12_arm_1",
            ],
            "womac_pain": ["12", "11", "5", "4"],
        }
    )
    problems = mapping(tmp_path, REDCAP).apply(export, lines(export)).problems
    assert [(p.column, p.lines) for p in problems] == [
        ("patient_id", (2, 3)),
        ("patient_id", (5,)),
    ]
    assert "more than one 'baseline_arm_1' row" in problems[0].rule
    assert "no 'baseline_arm_1' row" in problems[1].rule


def test_a_renamed_and_coded_export_reads_as_the_same_cohort_as_the_contract_csv(
    tmp_path: Path,
) -> None:
    from womac.data.cohort import Layout, read_cohort
    from womac.data.simulate import simulate_cohort

    frame, _ = simulate_cohort(200, 99)
    frame.to_csv(tmp_path / "contract.csv", index=False)
    clinic = frame.rename(
        columns={"patient_id": "ID", "age": "Age", "sex": "Sex (1=M,2=F)", "bmi": "BMI (kg/m2)"}
    )
    clinic["Sex (1=M,2=F)"] = clinic["Sex (1=M,2=F)"].map({"male": 1, "female": 2})
    clinic["Surgeon"] = "Dr A"
    clinic.to_csv(tmp_path / "clinic.csv", index=False)
    text = (
        '[columns]\npatient_id = "ID"\nage = "Age"\nsex = "Sex (1=M,2=F)"\nbmi = "BMI (kg/m2)"\n'
    )
    text += "".join(
        f'{name} = "{name}"\n'
        for name in frame.columns
        if name not in ("patient_id", "age", "sex", "bmi")
    )
    text += '[codes.sex]\n1 = "male"\n2 = "female"\n'
    layout = Layout(mapping=mapping(tmp_path, text))

    expected = read_cohort(tmp_path / "contract.csv", require_outcomes=True)
    cohort = read_cohort(tmp_path / "clinic.csv", require_outcomes=True, layout=layout)
    pd.testing.assert_frame_equal(cohort.frame, expected.frame)
    assert "ignored 1 column(s) not in the contract: Surgeon" in cohort.notes


def test_a_mapping_naming_a_missing_column_refuses_the_file_naming_it(tmp_path: Path) -> None:
    from womac.data.cohort import Layout, read_cohort
    from womac.data.problems import CohortError

    (tmp_path / "clinic.csv").write_text("ID,Age\np1,61\n")
    layout = Layout(mapping=mapping(tmp_path, '[columns]\npatient_id = "ID"\nbmi = "BMI"\n'))
    with pytest.raises(CohortError, match="names column 'BMI', which the file does not have"):
        read_cohort(tmp_path / "clinic.csv", layout=layout)


def test_the_readme_worked_mapping_is_a_usable_mapping(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bringing your clinic's export", 1)[1]
    worked = section.split("```toml\n", 1)[1].split("```", 1)[0]
    read = mapping(tmp_path, worked)
    assert read.codes["joint"] == {"Knie": "knee", "Hüfte": "hip"}
    assert read.bmi is not None
    assert "bmi" in read.fields()
