"""A model version's latest monitoring verdict, as tags on the version in the registry.

``womac monitor`` writes these tags on the model version it judged; the service reads them
with the champion (``GET /v1/model``, the clinician page's notice). Tags hold the verdict,
when, on how many patients, the monitoring run and its reasons: never a patient's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel, Field, ValidationError

TAG_VERDICT = "monitor.verdict"
TAG_LAST_MONITORED = "monitor.last_monitored"
TAG_PATIENTS = "monitor.patients"
TAG_RUN_ID = "monitor.run_id"
TAG_REASONS = "monitor.reasons"

# MLflow keeps at most 5,000 characters of a model version's tag value.
_TAG_VALUE_LIMIT = 5000


class Verdict(StrEnum):
    """What monitoring concluded about a model on patients treated since its training."""

    holds = "holds"
    degraded = "degraded"
    not_judged = "not_judged"  # no 12-month scores yet: drift only


class MonitoringStatus(BaseModel):
    """The latest monitoring of a model version."""

    verdict: Verdict
    last_monitored: str = Field(description="When (ISO 8601, UTC).")
    patients: int = Field(description="Patients in the monitored export.")
    reasons: list[str] = Field(default_factory=list, description="Why, one sentence each.")
    run_id: str | None = Field(default=None, description="The monitoring run in MLflow.")


def status_tags(status: MonitoringStatus) -> dict[str, str]:
    """The version tags that record ``status``."""
    tags = {
        TAG_VERDICT: status.verdict.value,
        TAG_LAST_MONITORED: status.last_monitored,
        TAG_PATIENTS: str(status.patients),
        TAG_REASONS: "\n".join(status.reasons)[:_TAG_VALUE_LIMIT],
    }
    if status.run_id:
        tags[TAG_RUN_ID] = status.run_id
    return tags


def status_from_tags(tags: Mapping[str, str]) -> MonitoringStatus | None:
    """The status recorded in a version's tags; ``None`` when never (or illegibly) monitored."""
    if TAG_VERDICT not in tags:
        return None
    try:
        return MonitoringStatus(
            verdict=Verdict(tags[TAG_VERDICT]),
            last_monitored=tags.get(TAG_LAST_MONITORED, ""),
            patients=int(tags.get(TAG_PATIENTS, "0")),
            reasons=[line for line in tags.get(TAG_REASONS, "").splitlines() if line],
            run_id=tags.get(TAG_RUN_ID) or None,
        )
    except (ValueError, ValidationError):  # tags edited by hand into something else
        return None
