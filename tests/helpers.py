"""What tests share that is not a fixture: settings for a throwaway store, the environment of
a subprocess, running the installed ``womac`` and ``womac serve``, patients new to every model.

A plain module: tests import it as ``tests.helpers``; fixtures stay in the conftest files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from womac.data.cohort import Cohort, read_cohort
from womac.data.contract import ELIGIBILITY_FLAGS, FIELD_BY_NAME, FOLLOW_UP_SUBSCALES, Kind
from womac.data.simulate import simulate_cohort
from womac.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The simulator's default size (Settings.default_cohort_size). The clinical-trust acceptance
# test needs it: about 880 held-out patients, so the promotion gates judge coverage within
# 3 points, and a model whose interval and responder probability hold on 20,000 new patients.
# (At 1,000 patients the baseline-only comparator wins CV; the product reports that honestly.)
SESSION_COHORT = 5000


def store_settings(root: Path, **overrides: object) -> Settings:
    """Settings pointing every output into ``root``: store, artifacts, generated data."""
    values: dict[str, object] = {
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "artifact_root": root / "mlruns",
        "generated_dir": root / "generated",
        "default_cohort_size": SESSION_COHORT,
        "cv_folds": 3,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess (CLI or server) that should use ``settings``' store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WOMAC_", "MLFLOW_"))}
    env |= {
        "WOMAC_TRACKING_URI": settings.resolved_tracking_uri(),
        "WOMAC_ARTIFACT_ROOT": str(settings.artifact_root),
        "WOMAC_GENERATED_DIR": str(settings.generated_dir),
        "WOMAC_DEFAULT_COHORT_SIZE": str(settings.default_cohort_size),
        "WOMAC_CV_FOLDS": str(settings.cv_folds),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return env


def registry_client(settings: Settings) -> MlflowClient:
    """A client of ``settings``' tracking store and model registry (no global MLflow state)."""
    from mlflow import MlflowClient

    uri = settings.resolved_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def womac_command() -> str:
    """The installed ``womac`` console script of this environment."""
    return str(Path(sys.executable).parent / "womac")


def free_port() -> int:
    """A TCP port free on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running ``womac serve``: its base URL, its process and the file holding its output."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the process has written so far (stdout and stderr)."""
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serving(
    settings: Settings, cwd: Path, env: dict[str, str] | None = None, timeout: float = 90.0
) -> Iterator[Server]:
    """Start ``womac serve`` on 127.0.0.1 with ``settings``' store; stop it by PID at the end.

    Yields the process too (for signals and liveness) and the path of its combined output
    (for what it logged).
    """
    port = free_port()
    log = cwd / f"server-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [womac_command(), "serve", "--port", str(port)],
            cwd=cwd,
            env=settings_env(settings) | (env or {}),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        server = Server(f"http://127.0.0.1:{port}", process, log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {process.returncode}:\n{server.output()}"
                    )
                try:
                    if httpx.get(f"{server.url}/health", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not up after {timeout} s:\n{server.output()}")
                time.sleep(0.1)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def running_server(settings: Settings, cwd: Path, timeout: float = 90.0) -> Iterator[str]:
    """Start ``womac serve`` as a real uvicorn process; yield its base URL; stop it by PID."""
    with serving(settings, cwd, timeout=timeout) as server:
        yield server.url


def run_womac(
    *args: str, cwd: Path, env: dict[str, str], columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (a wide terminal by default); the caller checks the
    outcome."""
    return subprocess.run(
        [womac_command(), *args],
        cwd=cwd,
        env=env | {"COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# A seed no training in this suite uses: these patients are new to every model.
FRESH_SEED = 987654
FRESH_SIZE = 500


def read_simulated(path: Path, n: int, seed: int, *, outcomes: bool = False) -> Cohort:
    """Simulate ``n`` patients, write them as a clinic export and read them back."""
    cohort, _ = simulate_cohort(n, seed)
    if not outcomes:
        cohort = cohort.drop(columns=list(FOLLOW_UP_SUBSCALES))
    cohort.to_csv(path, index=False)
    return read_cohort(path)


# -- a REDCap project, as a clinic exports it ----------------------------------------------

REDCAP_EVENTS = ("baseline_arm_1", "month_12_arm_1")
_REDCAP_CODED = {
    # variable: (contract field, label, {code: contract value}, {code: choice label})
    "sex": ("sex", "Sex", {"1": "male", "2": "female"}, {"1": "Male", "2": "Female"}),
    "index_joint": (
        "joint",
        "Treated joint",
        {"1": "knee", "2": "hip"},
        {"1": "Knee", "2": "Hip"},
    ),
    "activity": (
        "activity_level",
        "Activity level",
        {"1": "low", "2": "moderate", "3": "high"},
        {"1": "Low", "2": "Moderate", "3": "High"},
    ),
    "msc_source": (
        "cell_source",
        "Cell source",
        {"1": "bone_marrow", "2": "adipose", "3": "umbilical_cord"},
        {"1": "Bone marrow", "2": "Adipose", "3": "Umbilical cord"},
    ),
    "msc_donor": (
        "donor",
        "Cell donor",
        {"1": "autologous", "2": "allogeneic"},
        {"1": "Autologous", "2": "Allogeneic"},
    ),
}
# The clinic's own variable names and labels; the REDCap field type follows from the contract.
_REDCAP_PLAIN = {  # variable: (contract field, label)
    "age_years": ("age", "Age"),
    "bmi": ("bmi", "BMI (kg/m2)"),
    "kl": ("kl_grade", "Kellgren-Lawrence grade"),
    "symptom_duration": ("symptom_years", "Years with symptoms"),
    "cell_dose": ("cell_dose_millions", "Cell dose"),
    "n_injections": ("injections", "Injections"),
    "diabetes": ("diabetes", "Diabetes"),
    "smoker": ("smoker", "Current smoker"),
    "prp": ("prp", "PRP with cells"),
    "rehab": ("rehab", "Rehabilitation"),
}
# One checkbox per protocol exclusion, coded 1, 2, ... in contract order.
_REDCAP_EXCLUSIONS = {str(code): flag.name for code, flag in enumerate(ELIGIBILITY_FLAGS, 1)}
_REDCAP_WOMAC = {"womac_pain": "pain", "womac_stiff": "stiffness", "womac_func": "function"}


def redcap_project(cohort: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A simulated cohort as a REDCap project holds it: the equivalent contract frame, the
    "raw" export in long form (one row per record and event, codes for labels, a checkbox
    column per exclusion, the form-status columns REDCap adds) and its data dictionary.

    A REDCap checkbox has no "unknown" (unticked is 0), so the contract frame's exclusion
    flags are false where the cohort has them blank."""
    contract = cohort.copy()
    flags = list(_REDCAP_EXCLUSIONS.values())
    contract[flags] = contract[flags].astype(object).where(contract[flags].notna(), False)
    baseline = pd.DataFrame(
        {"record_id": contract["patient_id"], "redcap_event_name": REDCAP_EVENTS[0]}
    )
    for variable, (name, _, codes, _) in _REDCAP_CODED.items():
        back = {value: code for code, value in codes.items()}
        baseline[variable] = contract[name].map(back)
    for variable, (name, _) in _REDCAP_PLAIN.items():
        values = contract[name]
        if _redcap_type(name) == "yesno":
            values = values.map({True: "1", False: "0"})  # 1.0 and 0.0 hash as True, False
        baseline[variable] = values
    for code, flag in _REDCAP_EXCLUSIONS.items():
        baseline[f"exclusion___{code}"] = contract[flag].map({True: 1, False: 0})
    for variable, subscale in _REDCAP_WOMAC.items():
        baseline[variable] = contract[f"womac_{subscale}_0"]
    baseline["baseline_complete"] = 2
    followed = contract["womac_pain_12"].notna()
    later = pd.DataFrame(
        {"record_id": contract.loc[followed, "patient_id"], "redcap_event_name": REDCAP_EVENTS[1]}
    )
    for variable, subscale in _REDCAP_WOMAC.items():
        later[variable] = contract.loc[followed, f"womac_{subscale}_12"]
    later["month_12_complete"] = 2
    export = pd.concat([baseline, later]).sort_index(kind="stable").reset_index(drop=True)
    return contract, export, _redcap_dictionary()


def _redcap_type(name: str) -> str:
    """The REDCap field type a clinic would give the contract field: yes/no for a flag, radio
    buttons for a scale with words for its values, text otherwise."""
    spec = FIELD_BY_NAME[name]
    if spec.kind is Kind.BOOLEAN:
        return "yesno"
    return "radio" if spec.value_labels else "text"


def _redcap_dictionary() -> pd.DataFrame:
    rows = [("record_id", "Record ID", "text", "")]
    for variable, (_, label, _, choices) in _REDCAP_CODED.items():
        rows.append(
            (variable, label, "radio", " | ".join(f"{c}, {t}" for c, t in choices.items()))
        )
    for variable, (name, label) in _REDCAP_PLAIN.items():
        kind = _redcap_type(name)
        choices = {
            "yesno": "1, Yes | 0, No",
            "radio": " | ".join(f"{v}, {v} - {w}" for v, w in FIELD_BY_NAME[name].value_labels),
        }.get(kind, "")
        rows.append((variable, label, kind, choices))
    exclusions = " | ".join(
        f"{code}, {FIELD_BY_NAME[flag].label}" for code, flag in _REDCAP_EXCLUSIONS.items()
    )
    rows.append(("exclusion", "Protocol exclusions", "checkbox", exclusions))
    rows += [(v, f"WOMAC {s}", "text", "") for v, s in _REDCAP_WOMAC.items()]
    return pd.DataFrame(
        rows,
        columns=[
            "Variable / Field Name",
            "Field Label",
            "Field Type",
            "Choices, Calculations, OR Slider Labels",
        ],
    )


def assert_one_patient_answers_as_the_batch(scorer: Any, records: list[dict[str, Any]]) -> None:
    """Each record scored alone (the compiled single-patient path) gives the answer the array
    path gives it in a batch: point, explanation, interval, chance, eligibility, warnings."""
    import numpy as np
    import pytest

    from womac.data.patients import patients_columns

    batch = scorer.answer_columns(patients_columns(records))
    for i, record in enumerate(records):
        one = scorer.answer_records([record])
        assert one.expected_improvement[0] == pytest.approx(
            batch.expected_improvement[i], abs=1e-9
        )
        assert one.base_value == pytest.approx(batch.base_value, abs=1e-9)
        np.testing.assert_allclose(one.contributions[0], batch.contributions[i], atol=1e-9)
        assert one.lower[0] == pytest.approx(batch.lower[i], abs=1e-9)
        assert one.upper[0] == pytest.approx(batch.upper[i], abs=1e-9)
        assert one.p_clinically_important[0] == pytest.approx(
            batch.p_clinically_important[i], abs=1e-9
        )
        assert bool(one.candidate[0]) == bool(batch.candidate[i])
        assert one.reasons[0] == batch.reasons[i]
        assert one.warnings[0] == batch.warnings[i]
