"""Choosing a model with its sampling error in view (models.selection) and the blend's
weights (models.blend): the rules a data scientist relies on, on made-up out-of-fold errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer

from womac.models.blend import ALL_INPUTS, TREE_INPUTS, BlendedRegressor, blend_weights
from womac.models.candidates import BLEND
from womac.models.compiled import ScalarSpline
from womac.models.selection import Tuned, choose

RNG = np.random.default_rng(11)
N = 4000


def tuned(name: str, out_of_fold: np.ndarray) -> Tuned:
    return Tuned(name, name, {}, Pipeline([("model", LinearRegression())]), out_of_fold)


def test_blend_weights_recover_the_mix_that_made_the_data() -> None:
    a, b = RNG.normal(size=N), RNG.normal(size=N)
    observed = 0.3 * a + 0.7 * b + RNG.normal(scale=0.05, size=N)
    weights = blend_weights(np.column_stack([a, b]), observed)
    np.testing.assert_allclose(weights, [0.3, 0.7], atol=0.01)
    assert weights.sum() == pytest.approx(1.0)


def test_a_member_that_only_adds_noise_gets_no_weight_at_all() -> None:
    signal = RNG.normal(size=N)
    observed = signal + RNG.normal(scale=0.1, size=N)
    noise = RNG.normal(scale=3.0, size=N)
    weights = blend_weights(np.column_stack([signal, noise]), observed)
    assert weights[1] == 0.0  # exactly: the blend then never computes it
    assert weights[0] == 1.0


def test_equally_good_candidates_give_the_blend_and_say_why() -> None:
    truth = RNG.normal(size=N)
    observed = truth + RNG.normal(size=N)
    first = truth + RNG.normal(scale=0.5, size=N)
    second = truth + RNG.normal(scale=0.5, size=N)
    blended = (first + second) / 2
    choice = choose(
        [tuned("ridge", first), tuned("lightgbm", second), tuned(BLEND, blended)],
        observed,
        np.arange(N),
    )
    assert choice.name == BLEND
    assert choice.reason.startswith("blend: no single candidate is clearly better")
    assert "standard error" in choice.reason


def test_a_single_candidate_clearly_better_than_the_blend_is_chosen() -> None:
    truth = RNG.normal(size=N)
    observed = truth + RNG.normal(scale=0.3, size=N)
    good = truth + RNG.normal(scale=0.1, size=N)
    blended = truth + RNG.normal(scale=0.8, size=N)
    choice = choose(
        [tuned("ridge", good), tuned("lightgbm", good + 1.0), tuned(BLEND, blended)],
        observed,
        np.arange(N),
    )
    assert choice.name == "ridge"
    assert "ridge is clearly better than the blend" in choice.reason


def test_a_patients_two_joints_count_as_one_patient_for_the_standard_error() -> None:
    """The same errors, twice per patient: the evidence is that of N/2 patients, not N."""
    truth = RNG.normal(size=N // 2)
    observed = np.repeat(truth + RNG.normal(size=N // 2), 2)
    single = np.repeat(truth + RNG.normal(scale=0.5, size=N // 2), 2)
    blended = np.repeat(truth + RNG.normal(scale=0.5, size=N // 2), 2)
    candidates = [tuned("ridge", single), tuned(BLEND, blended)]
    as_joints = choose(candidates, observed, np.arange(N)).reason
    as_patients = choose(candidates, observed, np.repeat(np.arange(N // 2), 2)).reason

    def se(reason: str) -> float:
        return float(reason.split("\u00b1 ")[1].split(" ")[0])

    assert se(as_patients) > 1.3 * se(as_joints)


def test_blend_members_read_their_own_columns_and_add_up() -> None:
    names = ["bmi", "bmi__spline0", "bmi__spline1", "sex__female", "age__unknown"]
    X = pd.DataFrame(RNG.normal(size=(300, len(names))), columns=names)
    y = X.to_numpy() @ np.array([1.0, 2.0, -1.0, 0.5, 0.2])
    blend = BlendedRegressor(
        [("linear", LinearRegression(), ALL_INPUTS), ("values", LinearRegression(), TREE_INPUTS)],
        [0.25, 0.75],
    ).fit(X, y)
    np.testing.assert_array_equal(blend.columns_[0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(blend.columns_[1], [0, 3, 4])  # no spline bases
    first, second = blend.members_
    expected = 0.25 * first.predict(X.to_numpy()) + 0.75 * second.predict(
        X.to_numpy()[:, [0, 3, 4]]
    )
    np.testing.assert_allclose(blend.predict(X), expected)


@pytest.mark.parametrize("weights", [[0.5, 0.6], [-0.1, 1.1], [1.0]])
def test_blend_refuses_weights_that_are_not_a_convex_combination(weights: list[float]) -> None:
    X = pd.DataFrame(RNG.normal(size=(50, 2)), columns=["a", "b"])
    members = [("one", LinearRegression(), ALL_INPUTS), ("two", LinearRegression(), ALL_INPUTS)]
    with pytest.raises(ValueError, match="blend weights"):
        BlendedRegressor(members, weights).fit(X, X["a"])


def test_scalar_spline_equals_the_fitted_transformer_inside_at_and_beyond_the_knots() -> None:
    values = RNG.gamma(2.0, 3.5, size=800)
    spline = SplineTransformer(n_knots=4, degree=3, knots="quantile", extrapolation="linear")
    spline.fit(values[:, None])
    scalar = ScalarSpline(spline)
    knots = spline.bsplines_[0].t
    probes = [*knots, values.min() - 10, values.max() + 25, *RNG.uniform(-5, 60, size=500)]
    for x in probes:
        np.testing.assert_allclose(scalar(float(x)), spline.transform([[x]])[0], atol=1e-12)
