"""Spark with the registered champion: MLflow's ``spark_udf`` and a real standalone cluster.

(``womac predict --engine spark`` as its own process, with its own driver JVM, is tested here
on the cluster; ``tests/pipeline/test_spark.py`` tests the engine on the session's local Spark.)

``mlflow.pyfunc.spark_udf`` with the champion's struct result gives the columns and numbers of
``womac predict --engine spark --explanation full``. On a standalone cluster (a master and a
worker started on loopback, not ``local[*]``) the engine takes paths as the user typed them,
relative ones included, and a successful run prints no error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import free_port, settings_env, womac_command
from tests.registry.helpers import CHAMPION, read_export, wait_for
from womac.models.answers import ANSWER_COLUMNS
from womac.models.eligibility import protocol_from
from womac.models.store import connect
from womac.pipeline.detail import Detail
from womac.pipeline.predict import LIST_SEPARATORS, score_cohort, score_columns
from womac.settings import Settings

pytestmark = pytest.mark.spark


def _values(frame: pd.DataFrame, name: str, kind: str) -> list[Any]:
    if kind == "double":
        return frame[name].to_numpy(dtype=float).tolist()
    if kind == "boolean":
        return [None if pd.isna(v) else bool(v) for v in frame[name]]
    return [None if v is None else list(v) for v in frame[name]]


def test_spark_udf_with_a_struct_result_gives_the_engines_columns_and_numbers(
    spark: Any, trained: Any, store: Settings, cohort_export: Path, tmp_path: Path
) -> None:
    import mlflow
    from pyspark.sql import functions

    from womac.pipeline.spark import score_cohort_spark

    parquet = tmp_path / "patients.parquet"
    read_export(cohort_export).head(600).to_parquet(parquet, index=False)
    connect(store.resolved_tracking_uri())
    patients = spark.read.parquet(str(parquet))
    answer = mlflow.pyfunc.spark_udf(spark, CHAMPION, env_manager="local")
    scored = (
        patients.withColumn("row", functions.monotonically_increasing_id())
        .select("row", answer(functions.struct(*patients.columns)).alias("answer"))
        .orderBy("row")
        .select("answer.*")
        .toPandas()
    )
    out = tmp_path / "engine.parquet"
    score_cohort_spark(
        parquet,
        out,
        CHAMPION,
        store.resolved_tracking_uri(),
        protocol_from(store),
        spark=spark,
        chunk_rows=200,
        detail=Detail.full,
    )
    engine = pd.read_parquet(out)

    assert list(scored.columns) == [name for name, _ in ANSWER_COLUMNS]
    assert len(scored) == len(engine) == 600
    for name, kind in ANSWER_COLUMNS:
        assert _values(scored, name, kind) == _values(engine, name, kind), name


# -- a standalone cluster -------------------------------------------------------------------


@pytest.fixture(scope="module")
def standalone_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark standalone master and one worker on loopback (pyspark's own scripts)."""
    import pyspark

    home = Path(pyspark.__file__).parent
    folder = tmp_path_factory.mktemp("standalone")
    env = os.environ | {"SPARK_HOME": str(home), "SPARK_LOG_DIR": str(folder)}
    port, worker_ui, master_ui = free_port(), free_port(), free_port()
    spark_class = str(home / "bin" / "spark-class")
    processes = []
    try:
        for name, command in (
            (
                "master",
                [
                    *(spark_class, "org.apache.spark.deploy.master.Master"),
                    *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(master_ui)),
                ],
            ),
            (
                "worker",
                [
                    *(spark_class, "org.apache.spark.deploy.worker.Worker"),
                    f"spark://127.0.0.1:{port}",
                    *("--host", "127.0.0.1", "--cores", "2", "--memory", "2g"),
                    *("--webui-port", str(worker_ui), "--work-dir", str(folder / "work")),
                ],
            ),
        ):
            log = folder / f"{name}.log"
            processes.append(
                subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
            )
            ui = master_ui if name == "master" else worker_ui
            wait_for(f"http://127.0.0.1:{ui}", processes[-1], log)
        wait_for_registration(folder / "master.log")
        yield f"spark://127.0.0.1:{port}"
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=60)


def wait_for_registration(log: Path, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while "Registering worker" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)


def test_womac_predict_on_a_standalone_cluster_with_relative_paths_prints_no_error(
    standalone_master: str, trained: Any, store: Settings, cohort_export: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "clinic"
    (folder / "in").mkdir(parents=True)
    export = read_export(cohort_export).head(400)
    export.to_csv(folder / "in" / "patients.csv", index=False)
    single = tmp_path / "single.csv"
    score_cohort(
        folder / "in" / "patients.csv",
        single,
        CHAMPION,
        store.resolved_tracking_uri(),
        protocol_from(store),
    )

    done = subprocess.run(
        [
            *(womac_command(), "predict", "--engine", "spark", "--master", standalone_master),
            *("--data", "in/patients.csv", "--out", "out/scores.parquet"),
        ],
        cwd=folder,
        env=settings_env(store) | {"COLUMNS": "200", "PYSPARK_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "Scored 400 of 400 rows" in done.stdout
    assert "wrote out/scores.parquet" in done.stdout
    assert not re.search(r"\bERROR\b|Broken pipe|Traceback", done.stdout), done.stdout
    # Quiet: no Spark log lines, JVM notices or pyspark warnings on the console.
    assert done.stderr.strip() == ""
    cluster = pd.read_parquet(folder / "out" / "scores.parquet")
    expected = pd.read_csv(single, keep_default_na=False, na_values=[""])
    for name, kind in score_columns(Detail.top3):
        if kind == "double":
            np.testing.assert_array_equal(
                cluster[name].to_numpy(dtype=float), expected[name].to_numpy(dtype=float), name
            )
        elif kind == "array<string>":
            joined = [None if v is None else LIST_SEPARATORS[name].join(v) for v in cluster[name]]
            assert [v or "" for v in joined] == expected[name].fillna("").tolist(), name
    assert sorted(path.name for path in folder.iterdir()) == ["in", "out"]
