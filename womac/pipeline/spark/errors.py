"""The Spark engine's one error: it cannot run, may not write there, or its job failed."""

from __future__ import annotations


class SparkEngineError(RuntimeError):
    """The Spark engine cannot run (no pyspark or Java), may not write there, or its job failed."""
