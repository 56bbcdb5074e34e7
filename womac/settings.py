"""The one settings object: paths, store, registry names, seed, thresholds, limits, serving.

Read from the environment (prefix ``WOMAC_``) and a ``.env`` file in the working directory.
MLflow's own ``MLFLOW_TRACKING_URI`` is honoured. Nothing happens at import time.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from womac.data import defaults
from womac.data.contract import ELIGIBILITY_FLAGS

MAX_BATCH_CEILING = 5000
"""The most patients a batch request may ever hold, whatever the setting: the request schema
refuses a longer list before validating a single patient in it (bounded work per request)."""

DEFAULT_SPARK_MASTER = "local[*]"
"""Spark's master when neither WOMAC_SPARK_MASTER nor SPARK_MASTER is set: every core here."""


class Settings(BaseSettings):
    """Configuration of training, scoring and serving."""

    model_config = SettingsConfigDict(
        env_prefix="WOMAC_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.",
    )
    artifact_root: Path = Field(
        default=Path("mlruns"),
        description="Where new experiments keep their artifacts when the store is local.",
    )
    generated_dir: Path = Field(
        default=Path("generated"), description="Where simulated cohorts are written."
    )
    experiment_name: str = "womac"
    model_name: str = "womac-improvement"
    champion_alias: str = "champion"

    seed: int = Field(default=20261125, description="Seed of every random choice.")
    default_cohort_size: int = Field(default=5000, ge=50)
    test_fraction: float = Field(default=0.2, gt=0.05, lt=0.5)
    cv_folds: int = Field(default=5, ge=2, le=20)
    interval_level: float = Field(default=0.8, gt=0.5, lt=1.0, description="Interval coverage.")
    store_lock_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description="How long a training waits for another one to finish with a local store.",
    )
    tuning_rows: int = Field(
        default=50_000,
        ge=100,
        description="At most this many training patients for model selection and calibration; "
        "the chosen model is fitted on all of them.",
    )

    refit_on_all: bool = Field(
        default=True,
        description="Serve the chosen model refitted on every followed-up patient (held-out "
        "included) after its held-out evaluation; otherwise serve the training-split fit.",
    )

    promote: bool = Field(
        default=True,
        description="Make a new version the champion when it passes the gates; false "
        "registers it without moving the alias (womac train --no-promote).",
    )
    gate_slope_min: float = Field(default=0.8, description="Promotion: lowest calibration slope.")
    gate_slope_max: float = Field(
        default=1.25, description="Promotion: highest calibration slope."
    )
    gate_coverage_tolerance: float = Field(
        default=0.03,
        description="Promotion: an interval covering down to nominal minus this is sound "
        "(refused only below it beyond sampling error).",
    )
    gate_coverage_wide: float = Field(
        default=0.10,
        description="Promotion: a conservative interval covering up to nominal plus this passes.",
    )
    gate_false_refusal: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="Promotion: chance that each statistical gate (slope, coverage) refuses a "
        "sound model by sampling error alone; about twice this for both together.",
    )

    monitor_false_alarm: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="Monitoring: chance that each check (slope, calibration in the large, "
        "coverage, RMSE, each subgroup's coverage after Bonferroni) calls a model that still "
        "holds degraded by sampling error alone.",
    )
    monitor_mean_shift_points: float = Field(
        default=3.0,
        gt=0,
        description="Monitoring: mean observed minus mean predicted improvement beyond this "
        "many points (beyond sampling error) is degraded (calibration in the large).",
    )
    monitor_rmse_tolerance: float = Field(
        default=0.10,
        ge=0,
        description="Monitoring: RMSE on new patients worse than held-out by more than this "
        "fraction, beyond its confidence interval, is degraded.",
    )
    monitor_min_subgroup: int = Field(
        default=50,
        ge=10,
        description="Monitoring: subgroups (KL grade, sex, joint, age band) with fewer "
        "followed-up patients are shown but not judged.",
    )
    drift_min_psi: float = Field(
        default=0.10,
        ge=0,
        description="Monitoring: a field has drifted when its population stability index "
        "is at least this and its chi-square test rejects at monitor_false_alarm.",
    )

    excluded_kl_grades: list[int] = Field(
        default=list(defaults.EXCLUDED_KL_GRADES),
        description="Protocol: KL grades excluded from MSC therapy.",
    )
    exclusion_flags: list[str] = Field(
        default=list(defaults.EXCLUSION_FLAGS),
        description="Protocol: conditions that exclude a patient.",
    )

    responder_min_points: float = Field(
        default=defaults.RESPONDER_MIN_POINTS,
        description="Clinically important improvement: at least this many points.",
    )
    responder_min_fraction: float = Field(
        default=defaults.RESPONDER_MIN_FRACTION,
        description="... and at least this fraction of the baseline total.",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: SecretStr | None = Field(
        default=None, description="Required in X-API-Key on every route but /health and the page."
    )
    allow_network_without_key: bool = Field(
        default=False,
        description="Serve beyond 127.0.0.1 without an API key (otherwise it binds to loopback).",
    )
    cors_origins: list[str] = Field(
        default=[], description="Origins allowed to call the API from a browser (none by default)."
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1_000, description="Larger bodies get 413.")
    max_batch_size: int = Field(
        default=1000,
        ge=1,
        le=MAX_BATCH_CEILING,
        description="Patients per /v1/predict/batch request; larger batches get 413.",
    )

    spark_master: str | None = Field(
        default=None,
        description="Spark master of `womac predict --engine spark` (local[2], spark://host:7077, "
        "yarn, ...); default SPARK_MASTER, else local[*] (every core of this machine).",
    )

    def resolved_tracking_uri(self) -> str:
        """The tracking URI to use: ours, then MLflow's variable, then a local SQLite file."""
        if self.tracking_uri:
            return self.tracking_uri
        env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if env_uri:
            return env_uri
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"

    def resolved_spark_master(self) -> str:
        """The Spark master to use: ours, then Spark's ``SPARK_MASTER``, then every local core."""
        return self.spark_master or os.environ.get("SPARK_MASTER") or DEFAULT_SPARK_MASTER

    def resolved_artifact_root(self) -> str:
        """Absolute artifact location for new experiments, so the store works from any folder."""
        return self.artifact_root.resolve().as_uri()

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not key.get_secret_value().strip():
            raise ValueError(
                "set but empty, which would lock every route: set a key, or unset it to "
                "serve 127.0.0.1 without one"
            )
        return key

    @field_validator("exclusion_flags")
    @classmethod
    def _known_flags(cls, flags: list[str]) -> list[str]:
        known = {field.name for field in ELIGIBILITY_FLAGS}
        unknown = [flag for flag in flags if flag not in known]
        if unknown:
            raise ValueError(f"not eligibility fields of the contract: {', '.join(unknown)}")
        return flags

    @property
    def model_uri(self) -> str:
        """URI of the served model: the champion alias of the registered model."""
        return f"models:/{self.model_name}@{self.champion_alias}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
