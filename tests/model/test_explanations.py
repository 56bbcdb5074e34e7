"""SHAP attributions per contract field are correct, not only additive, for every candidate.

Additivity alone proves little (DESIGN.md pitfalls: wrong attributions can still add up), so
attributions are also checked against what a model cannot use (exactly zero), against
``shap.TreeExplainer`` for the tree model, and against a model-agnostic permutation
explainer working on contract fields directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import shap
from lightgbm import LGBMRegressor
from sklearn.dummy import DummyRegressor
from sklearn.pipeline import Pipeline

from womac.data.contract import BASELINE_SUBSCALES, FIELD_BY_NAME, PREDICTOR_NAMES, Kind
from womac.data.simulate import simulated_fields
from womac.features.encoding import field_of
from womac.models.blend import BlendedRegressor
from womac.models.candidates import BLEND, CANDIDATES
from womac.models.explain import explain

# Additive in the contract fields: interventional Shapley values are exact and closed-form.
ADDITIVE = ("mean", "baseline_womac", "ridge")
TRAINED = [*CANDIDATES, BLEND]  # every candidate a training compares
EXPLAINED_PATIENTS = 300
AGNOSTIC_PATIENTS = 6
BACKGROUND_PATIENTS = 50


def candidate(trained: Any, name: str) -> Pipeline:
    """The fitted pipeline of one candidate of the session's training run."""
    pipeline: Pipeline = next(c for c in trained.candidates if c.name == name).pipeline
    return pipeline


def fields_used(pipeline: Pipeline) -> set[str]:
    """Contract fields the fitted model reads: a non-zero weight or a split on their inputs."""
    columns = list(pipeline.named_steps["preprocess"].get_feature_names_out())
    return _read(pipeline.named_steps["model"], np.asarray(columns, dtype=object))


def _read(model: Any, columns: np.ndarray) -> set[str]:
    if isinstance(model, BlendedRegressor):
        return set().union(*(_read(member, columns[cols]) for member, cols, _ in model.active()))
    if isinstance(model, DummyRegressor):
        weights = np.zeros(len(columns))
    elif isinstance(model, LGBMRegressor):
        weights = model.booster_.feature_importance(importance_type="split")
    else:
        weights = np.ravel(model.coef_)
    return {field_of(column) for column, weight in zip(columns, weights, strict=True) if weight}


def assert_contributions_exactly_where_read(explanation: Any, read: set[str], what: str) -> None:
    """Every field the model reads contributes for some patient; every other, exactly zero."""
    for column, field in enumerate(PREDICTOR_NAMES):
        values = explanation.contributions[:, column]
        if field in read:
            assert np.any(values != 0), f"{what}: {field} is read but never contributes"
        else:
            assert np.all(values == 0), f"{what}: {field} is not read but contributes"


@pytest.mark.parametrize("name", TRAINED)
def test_one_contribution_per_field_adding_up_to_the_prediction(
    trained: Any, fresh_patients: pd.DataFrame, name: str
) -> None:
    pipeline = candidate(trained, name)
    patients = fresh_patients.iloc[:EXPLAINED_PATIENTS]
    explanation = explain(pipeline, patients)
    predicted = pipeline.predict(patients)

    assert explanation.fields == PREDICTOR_NAMES
    assert explanation.contributions.shape == (len(patients), len(PREDICTOR_NAMES))
    assert np.isfinite(explanation.contributions).all()
    reconstructed = explanation.base_value + explanation.contributions.sum(axis=1)
    np.testing.assert_allclose(reconstructed, predicted, rtol=0, atol=1e-6)
    np.testing.assert_allclose(explanation.expected_improvement, predicted, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", TRAINED)
def test_fields_a_model_does_not_use_contribute_exactly_zero(
    trained: Any, fresh_patients: pd.DataFrame, name: str
) -> None:
    pipeline = candidate(trained, name)
    explanation = explain(pipeline, fresh_patients.iloc[:EXPLAINED_PATIENTS])
    assert_contributions_exactly_where_read(explanation, fields_used(pipeline), name)


def test_a_field_given_to_trees_that_never_split_on_it_contributes_exactly_zero(
    training_patients: pd.DataFrame, fresh_patients: pd.DataFrame
) -> None:
    """A probe, not a consequence of construction: every field known in training is in the
    model's input, and trees small enough to leave most of them unsplit are fitted; the
    explanation must find, from the trees alone, which fields the model reads."""
    pipeline = CANDIDATES["lightgbm"].build(7)
    pipeline.set_params(model__n_estimators=3, model__max_depth=1, model__num_leaves=2)
    outcome = training_patients["womac_pain_0"] - 0.5 * training_patients["age"]
    pipeline.fit(training_patients, outcome)
    encoder = pipeline.named_steps["preprocess"]
    # Every field the simulator draws was given and encoded; only those it has no figures
    # for (blank columns of the simulated export) were left out, never known in training.
    simulated = [field for field in PREDICTOR_NAMES if field in simulated_fields()]
    assert set(encoder.unused_fields_) == set(PREDICTOR_NAMES) - set(simulated)
    split_on = fields_used(pipeline)
    unsplit = [field for field in simulated if field not in split_on]
    assert split_on
    assert len(unsplit) >= len(simulated) - 3  # stumps: at most 3 fields split on

    explanation = explain(pipeline, fresh_patients.iloc[:EXPLAINED_PATIENTS])
    assert_contributions_exactly_where_read(explanation, split_on, "stumps")


def test_baseline_womac_comparator_is_explained_by_the_three_baseline_subscales_only(
    trained: Any, fresh_patients: pd.DataFrame
) -> None:
    explanation = explain(candidate(trained, "baseline_womac"), fresh_patients)
    assert_contributions_exactly_where_read(explanation, set(BASELINE_SUBSCALES), "comparator")


def test_mean_model_attributes_nothing_to_any_field(
    trained: Any, fresh_patients: pd.DataFrame
) -> None:
    pipeline = candidate(trained, "mean")
    explanation = explain(pipeline, fresh_patients)
    assert np.all(explanation.contributions == 0)
    np.testing.assert_allclose(explanation.base_value, pipeline.predict(fresh_patients))


def test_lightgbm_attributions_match_shap_tree_explainer_summed_per_field(
    trained: Any, fresh_patients: pd.DataFrame
) -> None:
    pipeline = candidate(trained, "lightgbm")
    patients = fresh_patients.iloc[:EXPLAINED_PATIENTS]
    encoded = pipeline.named_steps["preprocess"].transform(patients)
    tree_explainer = shap.TreeExplainer(pipeline.named_steps["model"])
    column_values = np.asarray(tree_explainer.shap_values(encoded))
    per_field = np.zeros((len(patients), len(PREDICTOR_NAMES)))
    for i, column in enumerate(encoded.columns):
        per_field[:, PREDICTOR_NAMES.index(field_of(column))] += column_values[:, i]

    explanation = explain(pipeline, patients)
    np.testing.assert_allclose(explanation.contributions, per_field, rtol=0, atol=1e-6)
    assert explanation.base_value == pytest.approx(
        float(np.ravel(tree_explainer.expected_value)[0]), abs=1e-6
    )


def test_blend_attributions_are_its_members_shap_values_weighted(
    trained: Any, fresh_patients: pd.DataFrame
) -> None:
    """Tree SHAP of the tree member (by shap itself) and coef * x of the linear member, each on
    the member's own columns, weighted by the blend's weights and summed per field."""
    pipeline = candidate(trained, BLEND)
    patients = fresh_patients.iloc[:EXPLAINED_PATIENTS]
    encoded = pipeline.named_steps["preprocess"].transform(patients)
    names = list(encoded.columns)
    blend: BlendedRegressor = pipeline.named_steps["model"]
    per_field = np.zeros((len(patients), len(PREDICTOR_NAMES)))
    base = 0.0
    for member, columns, weight in blend.active():
        part = encoded.to_numpy()[:, columns]
        if isinstance(member, LGBMRegressor):
            tree_explainer = shap.TreeExplainer(member)
            values = np.asarray(tree_explainer.shap_values(part))
            base += weight * float(np.ravel(tree_explainer.expected_value)[0])
        else:
            values = part * np.ravel(member.coef_)
            base += weight * float(member.intercept_)
        for i, column in zip(columns, values.T, strict=True):
            per_field[:, PREDICTOR_NAMES.index(field_of(names[i]))] += weight * column
    assert len(blend.active()) >= 1
    explanation = explain(pipeline, patients)
    np.testing.assert_allclose(explanation.contributions, per_field, rtol=0, atol=1e-6)
    assert explanation.base_value == pytest.approx(base, abs=1e-6)


def _field_codes(patients: pd.DataFrame) -> np.ndarray:
    """Contract fields as numbers for a masker: category levels as codes, unknown as NaN."""
    columns = []
    for name in PREDICTOR_NAMES:
        spec = FIELD_BY_NAME[name]
        if spec.kind is Kind.CATEGORY:
            codes = {level: float(i) for i, level in enumerate(spec.categories)}
            columns.append(patients[name].map(codes).to_numpy(dtype=float))
        else:
            columns.append(patients[name].to_numpy(dtype=float))
    return np.column_stack(columns)


def _from_field_codes(codes: np.ndarray) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for j, name in enumerate(PREDICTOR_NAMES):
        spec = FIELD_BY_NAME[name]
        if spec.kind is Kind.CATEGORY:
            columns[name] = np.array(
                [spec.categories[int(c)] if np.isfinite(c) else np.nan for c in codes[:, j]],
                dtype=object,
            )
        else:
            columns[name] = codes[:, j].astype(float)
    return pd.DataFrame(columns)


@pytest.mark.parametrize("name", TRAINED)
def test_attributions_agree_with_a_model_agnostic_explainer_over_contract_fields(
    trained: Any,
    fresh_patients: pd.DataFrame,
    training_patients: pd.DataFrame,
    name: str,
) -> None:
    """Interventional Shapley values over the fields, with training patients as background.

    Against a background B, the interventional value of a field is its attribution minus
    its average attribution over B, exactly for additive models. Tree SHAP (path-dependent)
    differs from the interventional values a little, so for trees the size is compared
    loosely and the ranking of the leading fields exactly.
    """
    pipeline = candidate(trained, name)
    background = training_patients.sample(BACKGROUND_PATIENTS, random_state=7)
    patients = fresh_patients.iloc[:AGNOSTIC_PATIENTS]

    additive = name in ADDITIVE
    permutations = 1 if additive else 10
    explainer = shap.explainers.Permutation(
        lambda codes: pipeline.predict(_from_field_codes(codes)),
        shap.maskers.Independent(_field_codes(background), max_samples=BACKGROUND_PATIENTS),
        seed=0,
    )
    agnostic = explainer(
        _field_codes(patients), max_evals=permutations * 2 * (len(PREDICTOR_NAMES) + 1)
    )
    ours = explain(pipeline, patients).contributions - explain(
        pipeline, background
    ).contributions.mean(axis=0)
    np.testing.assert_allclose(
        agnostic.base_values, pipeline.predict(background).mean(), rtol=0, atol=1e-6
    )
    if additive:
        np.testing.assert_allclose(ours, agnostic.values, rtol=0, atol=1e-6)
        return

    np.testing.assert_allclose(ours, agnostic.values, rtol=0, atol=1.0)
    for row in range(len(patients)):
        top_ours = np.argsort(-np.abs(ours[row]))[:3]
        top_agnostic = np.argsort(-np.abs(agnostic.values[row]))[:3]
        assert top_ours[0] == top_agnostic[0], f"patient {row}: different leading field"
        assert len(set(top_ours) & set(top_agnostic)) >= 2, f"patient {row}: top fields differ"
        leading = top_ours[0]
        assert np.sign(ours[row, leading]) == np.sign(agnostic.values[row, leading])
