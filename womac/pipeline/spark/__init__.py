"""Registry-scale batch scoring on Spark: ``womac predict --engine spark``.

The same model, rules and numbers as ``womac predict``, with the scoring spread over a Spark
cluster (or every core of this machine with ``local[*]``). pyspark is optional (the ``spark``
extra) and imported only inside these modules' functions, only when the engine runs.

How it works
------------
* **One model, the registered artifact** (:mod:`.model`). The champion (or ``--model-uri``)
  is resolved once, on the driver, and its skops file downloaded and checked there (loaded
  as a served model). Its bytes are broadcast to the executors; each Python worker loads
  them once (cached by their SHA-256) with skops trusting our own type list, exactly as the
  service does, and builds the same :class:`~womac.models.scoring.Scorer` (:mod:`.tasks`).
  Every task therefore scores with the same version, even if the alias moves during the
  job. (``mlflow.pyfunc.spark_udf`` on the registered model gives the same answer columns,
  but checks each task's values by raising, where this engine lists every problem of the
  whole input by row.)
* **One row format.** Each piece of the cohort goes through
  :func:`womac.pipeline.predict.score_frame`, the function the single-process path calls on
  each chunk, so both engines write the same columns with the same values.
* **Rows keep their order** (:mod:`.pieces`, :mod:`.job`). The cohort is cut into pieces of
  at most ``chunk_rows`` rows in file order; piece *i* is partition *i* of the job and
  becomes ``part-<i>`` of the output, so the output lists patients in input order (one
  patient may have several rows, and the output names only ``patient_id``). Spark's own
  file scan would not keep it: it orders its splits by size. Each task reads its piece with
  pyarrow (:mod:`.reading`).
* **CSV input** is read and validated on the driver by the single path's streaming reader
  (encodings, separators, decimal commas, every problem with its file line), before any
  Spark work starts; its typed chunks are staged as Parquet beside the output for the tasks
  (:mod:`.staging`).
* **Parquet input** is validated where it is read, in the tasks. Column names, types and
  required columns are checked on the driver from the files' footers; then every value goes
  through the contract's own parsing rules as text (so a Parquet file passes or fails exactly
  as its CSV export would), problems are gathered from all tasks with their row numbers
  (counted from 1 across the files in name order), and if there is any the job is refused
  with all of them and nothing is written.
* **Whole output or none** (:mod:`.output`). Spark writes a Parquet directory into a
  temporary folder beside the target; it is renamed into place only when the job succeeded.
* **No patient data in messages.** A task's failure is reported by exception type and code
  location only, and the Spark loggers that would print a task's exception are off
  (:mod:`.session`, ``spark-log4j2.properties``).

The steps, in order, are :func:`score_cohort_spark` (:mod:`.engine`).
"""

from womac.pipeline.spark.engine import score_cohort_spark
from womac.pipeline.spark.errors import SparkEngineError
from womac.pipeline.spark.session import start_spark

__all__ = ["SparkEngineError", "score_cohort_spark", "start_spark"]
