"""The Spark session of this process: checking it can start, starting it quietly, stopping it.

pyspark is optional (the ``spark`` extra) and imported only inside these functions, only when
the engine runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from womac.pipeline.spark.errors import SparkEngineError
from womac.settings import DEFAULT_SPARK_MASTER

if TYPE_CHECKING:
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

INSTALL_HINT = "pip install '.[spark]' (or `make setup-spark` in a clone)"
LOG4J2_CONFIG = Path(__file__).with_name("spark-log4j2.properties")
# pyspark warns on every import path that it does not yet fully support pandas 3; what this
# engine uses (mapInPandas over plain float, text and boolean columns) is tested with it.
_PANDAS_3_WARNING = "PySpark does not yet fully support pandas"
# The JVM's own start-up notice (Spark starts it with the incubating vector module).
_JVM_NOTICES = (b"WARNING: Using incubator modules",)


def require_spark() -> None:
    """Check that the Spark engine can start; raise :class:`SparkEngineError` saying how if not."""
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkEngineError(
            f"the Spark engine needs the optional spark extra (pyspark, pyarrow): {INSTALL_HINT}"
        ) from None
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise SparkEngineError(
            "the Spark engine needs a Java runtime (17 or later) on PATH or in JAVA_HOME"
        )


def start_spark(master: str = DEFAULT_SPARK_MASTER) -> SparkSession:
    """Start (or join) the Spark session of this process, configured for scoring.

    Workers run this interpreter (it has pyarrow and the model's packages), the web UI and
    console progress are off, the driver logs errors only, and on a ``local`` master the
    driver listens on loopback only. A session already running in this process is reused
    as it is.
    """
    require_spark()
    quiet_pyspark()
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    # Respect an explicit PYSPARK_PYTHON (a cluster's executors may keep Python elsewhere).
    python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = SparkConf().setMaster(master).setAppName("womac-predict")
    conf.set("spark.pyspark.python", python)
    conf.set("spark.ui.enabled", "false")
    conf.set("spark.ui.showConsoleProgress", "false")
    conf.set(
        "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}"
    )
    conf.set("spark.executorEnv.PYTHONWARNINGS", f"ignore:{_PANDAS_3_WARNING}:FutureWarning")
    if master.startswith("local"):
        conf.set("spark.driver.host", "127.0.0.1")
        conf.set("spark.driver.bindAddress", "127.0.0.1")
    if SparkContext._active_spark_context is None:
        gateway = _quiet_gateway(conf) if SparkContext._gateway is None else None
        SparkContext(conf=conf, gateway=gateway)
    session = SparkSession.builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def quiet_pyspark() -> None:
    """Silence pyspark's warning about pandas 3 in this process (workers: PYTHONWARNINGS).

    py4j's own log lines are off too: it logs at ERROR when the connection to the JVM goes
    while the JVM shuts down (``Broken pipe`` after a successful job); a real failure during
    a job reaches us as an exception, which the engine reports itself.
    """
    warnings.filterwarnings("ignore", message=_PANDAS_3_WARNING, category=FutureWarning)
    logging.getLogger("py4j").setLevel(logging.CRITICAL)


@contextmanager
def starting_spark(
    master: str, spark: SparkSession | None, step: Callable[[str], None]
) -> Iterator[Callable[[], SparkSession]]:
    """The session to score with: ``spark`` (left running), else one started in the background.

    Spark's JVM takes seconds to start: it starts while the driver loads the model and reads
    the CSV, and is stopped (once started) whatever happens. Yields the function that waits
    for it (saying so through ``step``).
    """
    if spark is not None:
        given = spark
        yield lambda: given
        return
    starter = ThreadPoolExecutor(1, thread_name_prefix="spark-start")
    starting = starter.submit(start_spark, master)

    def started() -> SparkSession:
        step(f"Starting Spark ({master})")
        return starting.result()

    try:
        yield started
    finally:
        starter.shutdown(wait=True)
        if starting.exception() is None:
            starting.result().stop()


def _quiet_gateway(conf: SparkConf) -> Any:
    """Start Spark's JVM with its stderr passed on without the JVM's start-up notice."""
    from pyspark.java_gateway import launch_gateway

    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(
        target=_pass_on, args=(gateway.proc.stderr,), name="spark-stderr", daemon=True
    ).start()
    return gateway


def _pass_on(stream: Any) -> None:
    for line in iter(stream.readline, b""):
        if not line.startswith(_JVM_NOTICES):
            os.write(2, line)
