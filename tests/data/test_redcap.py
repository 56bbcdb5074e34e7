"""A REDCap project's raw export (long form, coded values, checkbox columns) read with its
data dictionary is the same cohort as the equivalent contract CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import redcap_project
from womac.data.cohort import Layout, read_cohort
from womac.data.mapping import MappingError
from womac.data.simulate import simulate_cohort
from womac.data.suggest import mapping_from_dictionary


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The contract CSV, the raw export and the data dictionary, as files."""
    folder = tmp_path_factory.mktemp("redcap")
    contract, export, dictionary = redcap_project(simulate_cohort(400, 31)[0])
    contract.to_csv(folder / "contract.csv", index=False)
    export.to_csv(folder / "export.csv", index=False)
    dictionary.to_csv(folder / "dictionary.csv", index=False)
    return folder / "contract.csv", folder / "export.csv", folder / "dictionary.csv"


def test_the_raw_export_with_its_dictionary_is_the_contract_cohort(
    project: tuple[Path, Path, Path],
) -> None:
    contract, export, dictionary = project
    mapping = mapping_from_dictionary(export, None, dictionary)
    assert mapping.redcap is not None
    assert (mapping.redcap.baseline, mapping.redcap.follow_up) == (
        "baseline_arm_1",
        "month_12_arm_1",
    )
    assert mapping.checkboxes == {
        "avascular_necrosis": "exclusion___1",
        "active_infection": "exclusion___2",
        "immune_disorder": "exclusion___3",
    }
    expected = read_cohort(contract, require_outcomes=True)
    cohort = read_cohort(export, require_outcomes=True, layout=Layout(mapping=mapping))
    pd.testing.assert_frame_equal(cohort.frame, expected.frame)
    assert int(cohort.lost_to_follow_up.sum()) > 0  # records with no 12-month event


def test_without_the_events_or_a_code_the_dictionary_is_refused_saying_what_to_do(
    project: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, export, dictionary = project
    frame = pd.read_csv(dictionary)
    frame.loc[
        frame["Variable / Field Name"] == "sex", "Choices, Calculations, OR Slider Labels"
    ] = "1, M | 2, W"
    broken = tmp_path / "dictionary.csv"
    frame.to_csv(broken, index=False)
    with pytest.raises(
        MappingError, match=r"codes of sex not in the dictionary.*--suggest-mapping"
    ):
        mapping_from_dictionary(export, None, broken)
