"""The registered champion is the product, loaded by ``mlflow.pyfunc.load_model``.

In this process, and in a clean Python that has only the model's own requirements (not this
project, not on ``sys.path``), from a folder elsewhere and inside a data scientist's project
with its own ``models`` and ``data`` packages: the same answers as the product's scorer, for
a cohort export read by plain ``pd.read_csv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from sklearn.pipeline import Pipeline

from tests.registry.helpers import CHAMPION, PROJECT, CleanPython, read_export
from womac.data.contract import FIELDS, PREDICTOR_NAMES, Role
from womac.models.answers import ANSWER_COLUMNS, CONTRIBUTION
from womac.models.eligibility import protocol_from
from womac.models.scoring import Scorer
from womac.models.store import connect
from womac.settings import Settings

ANSWER_NAMES = [name for name, _ in ANSWER_COLUMNS]
REQUIRED = [f.name for f in FIELDS if f.required and f.role is Role.PREDICTOR]


@pytest.fixture(scope="module")
def champion(trained: Any, store: Settings) -> Any:
    connect(store.resolved_tracking_uri())
    return mlflow.pyfunc.load_model(CHAMPION)


@pytest.fixture(scope="module")
def expected(trained: Any, store: Settings, cohort_export: Path) -> pd.DataFrame:
    """The product's own scorer on the export, with the clinic's protocol."""
    return Scorer(trained.pipeline, protocol_from(store)).predict(read_export(cohort_export))


def assert_same_answers(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Every answer column, every patient, exactly."""
    assert list(got.columns) == ANSWER_NAMES
    assert len(got) == len(expected)
    for name, kind in ANSWER_COLUMNS:
        if kind == "double":
            np.testing.assert_array_equal(
                got[name].to_numpy(dtype=float), expected[name].to_numpy(dtype=float), name
            )
        else:
            assert [_plain(v) for v in got[name]] == [_plain(v) for v in expected[name]], name


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | np.ndarray) else bool(value)


def test_a_cohort_export_read_by_pandas_gets_every_answer_column(
    champion: Any, cohort_export: Path, expected: pd.DataFrame
) -> None:
    export = read_export(cohort_export)
    # What pd.read_csv makes of a clinic's export: booleans with blanks, pandas' strings.
    assert export["prp"].dtype == object
    assert isinstance(export["sex"].dtype, pd.StringDtype)

    answers = champion.predict(export)

    assert_same_answers(answers, expected)
    pd.testing.assert_index_equal(answers.index, export.index)
    contributions = answers[[f"{CONTRIBUTION}{name}" for name in PREDICTOR_NAMES]]
    np.testing.assert_allclose(
        answers["base_value"] + contributions.sum(axis=1), answers["expected_improvement"]
    )
    assert (answers["interval_lower"] <= answers["interval_upper"]).all()
    assert answers["candidate"].tolist() == [not reasons for reasons in answers["reasons"]]
    blank = export["prp"].isna().to_numpy()
    assert all(
        any(w.startswith("Not known for this patient") for w in warnings)
        for warnings in answers["warnings"][blank]
    )


def test_optional_columns_may_be_absent(champion: Any, cohort_export: Path) -> None:
    export = read_export(cohort_export)[["patient_id", *REQUIRED]].head(50)
    answers = champion.predict(export)
    assert len(answers) == 50
    assert answers["expected_improvement"].notna().all()
    assert all("Not known for this patient" in " ".join(w) for w in answers["warnings"])


def test_a_bad_value_is_refused_naming_each_field_and_rule_never_the_value(
    champion: Any, cohort_export: Path
) -> None:
    export = read_export(cohort_export).head(5).astype({"joint": object, "sex": object})
    export["patient_id"] = "CANARY-4711"
    export.loc[1, "age"] = 300
    export.loc[2, "joint"] = "elbow"
    export.loc[3, "kl_grade"] = 7
    export.loc[4, "bmi"] = None

    with pytest.raises(MlflowException) as refused:
        champion.predict(export)

    assert isinstance(refused.value, ValueError)
    message = refused.value.message
    assert "age: out of range: must be a number from 18 to 100 years (position 1)" in message
    assert "joint: not an allowed value: must be one of knee, hip (position 2)" in message
    assert "kl_grade: out of range" in message
    assert "bmi: must not be blank (position 4)" in message
    for value in ("300", "elbow", "CANARY"):
        assert value not in message


def test_a_missing_required_column_is_refused_by_name(champion: Any, cohort_export: Path) -> None:
    export = read_export(cohort_export).head(3).drop(columns=["womac_pain_0", "kl_grade"])
    with pytest.raises(MlflowException) as refused:
        champion.predict(export)
    assert "womac_pain_0: required column is missing" in refused.value.message
    assert "kl_grade: required column is missing" in refused.value.message


def test_no_patients_get_no_answers(champion: Any, cohort_export: Path) -> None:
    answers = champion.predict(read_export(cohort_export).head(0))
    assert list(answers.columns) == ANSWER_NAMES
    assert len(answers) == 0


def test_the_sklearn_pipeline_and_a_shap_explanation_are_reachable(
    champion: Any, trained: Any, cohort_export: Path
) -> None:
    export = read_export(cohort_export).head(200)
    model = champion.unwrap_python_model()

    assert isinstance(model.pipeline, Pipeline)
    encoder = trained.pipeline.named_steps["preprocess"]
    from womac.data.cohort import model_input
    from womac.data.patients import read_patients

    typed = model_input(read_patients(export)[0])
    np.testing.assert_array_equal(model.pipeline.predict(typed), trained.pipeline.predict(typed))
    assert model.pipeline.named_steps["preprocess"].fields_used == encoder.fields_used

    explanation = model.explain(export)
    answers = champion.predict(export)
    assert explanation.values.shape == (200, len(PREDICTOR_NAMES))
    assert list(explanation.feature_names) == list(PREDICTOR_NAMES)
    np.testing.assert_allclose(
        explanation.base_values + explanation.values.sum(axis=1), answers["expected_improvement"]
    )
    np.testing.assert_array_equal(
        explanation.values[:, PREDICTOR_NAMES.index("bmi")], answers["contribution_bmi"]
    )


def test_the_protocol_is_the_models_config_and_can_be_overridden(
    trained: Any, store: Settings, cohort_export: Path
) -> None:
    connect(store.resolved_tracking_uri())
    stricter = mlflow.pyfunc.load_model(
        CHAMPION, model_config={"excluded_kl_grades": [3, 4], "exclusion_flags": []}
    )
    export = read_export(cohort_export).head(300)
    answers = stricter.predict(export)
    grade_3 = (export["kl_grade"] == 3).to_numpy()
    assert grade_3.any()
    assert not answers["candidate"][grade_3].any()
    assert all("Kellgren-Lawrence grade 3" in r[0] for r in answers["reasons"][grade_3])


# -- outside this checkout ----------------------------------------------------------------

LOAD_AND_PREDICT = """
import importlib.util, json, sys
from pathlib import Path
{before}
project = {project!r}
assert importlib.util.find_spec("womac") is None, "womac is installed here"
assert not any(p and Path(p).resolve() == Path(project) for p in sys.path), sys.path
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/womac-improvement@champion")
answers = model.predict(pd.read_csv({export!r}))
{after}
import womac
Path("answers.json").write_text(json.dumps({{
    "answers": {{name: answers[name].tolist() for name in answers.columns}},
    "womac": womac.__file__,
    "loaded": sorted(name for name in sys.modules if name.startswith("womac.")),
}}))
"""


def run_elsewhere(
    clean_python: CleanPython, folder: Path, store: Settings, cohort_export: Path, **parts: str
) -> dict[str, Any]:
    script = LOAD_AND_PREDICT.format(
        project=str(PROJECT),
        export=str(cohort_export),
        before=parts.get("before", ""),
        after=parts.get("after", ""),
    )
    (folder / "score.py").write_text(script)
    done = clean_python.run(
        "score.py", folder, {"MLFLOW_TRACKING_URI": store.resolved_tracking_uri()}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads((folder / "answers.json").read_text())
    result["stderr"] = done.stderr
    return result


def test_loads_and_predicts_in_a_clean_environment_from_a_folder_elsewhere(
    clean_python: CleanPython,
    store: Settings,
    cohort_export: Path,
    expected: pd.DataFrame,
    tmp_path: Path,
) -> None:
    result = run_elsewhere(clean_python, tmp_path, store, cohort_export)

    assert_same_answers(pd.DataFrame(result["answers"]), expected)
    # Our code came with the model, and only the scoring part of it was imported.
    assert "/artifacts/code/womac/" in result["womac"] or "/code/womac/" in result["womac"]
    assert not any(name.startswith(("womac.serve", "womac.pipeline")) for name in result["loaded"])


THEIR_PACKAGES = {
    "models/__init__.py": 'OWNER = "the data scientist"\n',
    "models/scoring.py": "def score():\n    return 'theirs'\n",
    "data/__init__.py": 'OWNER = "the data scientist"\n',
    "data/contract.py": "FIELDS = ('their own',)\n",
}


def test_loads_beside_a_projects_own_models_and_data_packages_without_displacing_them(
    clean_python: CleanPython,
    store: Settings,
    cohort_export: Path,
    expected: pd.DataFrame,
    tmp_path: Path,
) -> None:
    project = tmp_path / "their-project"
    for name, text in THEIR_PACKAGES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    before = "import models, models.scoring, data, data.contract"
    after = (
        "import models as again, data.contract as contract\n"
        "assert again is models and models.OWNER == 'the data scientist'\n"
        "assert models.scoring.score() == 'theirs' and contract.FIELDS == ('their own',)\n"
        "assert Path(models.__file__).parent.parent == Path.cwd()\n"
    )

    result = run_elsewhere(clean_python, project, store, cohort_export, before=before, after=after)

    assert_same_answers(pd.DataFrame(result["answers"]), expected)
