"""What the service tests share that is not a fixture: the clinical cases every way of serving
is checked on, and what a clinician must be told about each."""

from __future__ import annotations

from typing import Any

HIGH_BMI = 60.0  # within the contract (12-70), far above the simulated cohort (18-45)
NO_FLAGS = {"avascular_necrosis": False, "active_infection": False, "immune_disorder": False}


def clinical_cases(patient: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One ordinary patient and the issue's three: KL grade 4, active infection, BMI 60."""
    ordinary = patient | NO_FLAGS | {"kl_grade": 2}
    return {
        "ordinary": ordinary,
        "kl_grade_4": ordinary | {"kl_grade": 4},
        "active_infection": ordinary | {"active_infection": True},
        "bmi_60": ordinary | {"bmi": HIGH_BMI},
    }


def assert_answer_shape(answer: dict[str, Any], level: float = 0.8) -> None:
    """Every answer carries a range, a chance, eligibility and warnings (issue 3, item 7)."""
    interval = answer["interval"]
    assert set(interval) == {"lower", "upper", "level"}
    assert interval["level"] == level
    assert interval["lower"] <= interval["upper"]
    assert 0.0 <= answer["p_clinically_important"] <= 1.0
    eligibility = answer["eligibility"]
    assert set(eligibility) == {"candidate", "reasons"}
    assert isinstance(eligibility["candidate"], bool)
    assert all(isinstance(reason, str) for reason in eligibility["reasons"])
    assert eligibility["candidate"] is (not eligibility["reasons"])
    assert all(isinstance(warning, str) for warning in answer["warnings"])


def assert_clinical_case(
    case: str, answer: dict[str, Any], bmi_range: tuple[float, float]
) -> None:
    """What a clinician must be told about each of :func:`clinical_cases`."""
    assert_answer_shape(answer)
    eligibility = answer["eligibility"]
    bmi_warnings = [w for w in answer["warnings"] if w.startswith("BMI")]
    if case == "kl_grade_4":
        assert eligibility["candidate"] is False
        assert any("Kellgren-Lawrence grade 4" in r for r in eligibility["reasons"])
    elif case == "active_infection":
        assert eligibility["candidate"] is False
        assert eligibility["reasons"] == ["Active infection: outside the protocol"]
    else:
        assert eligibility == {"candidate": True, "reasons": []}
    if case == "bmi_60":
        (warning,) = bmi_warnings
        low, high = bmi_range
        assert 18 <= low < high <= 45  # the simulated cohort's range (DESIGN.md)
        assert f"({low:g}-{high:g} kg/m2)" in warning
        assert "above the range" in warning
        assert "60" not in " ".join(answer["warnings"])  # the value is not echoed
    else:
        assert not bmi_warnings
    # Outside the protocol or not, the estimate is still given where the model can make one.
    assert answer["interval"]["lower"] <= answer["expected_improvement"]


def bmi_training_range(trained: Any) -> tuple[float, float]:
    """The BMI range the served model saw in training."""
    encoder = trained.pipeline.named_steps["preprocess"]
    bmi = encoder.encoding_of("bmi")
    return bmi.minimum, bmi.maximum
