"""The command line's options that more than one command takes, or that would make a
command's signature long: each defined once, with its help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from womac.pipeline.detail import Detail
from womac.pipeline.engines import Engine
from womac.pipeline.monitor import Update

Sheet = Annotated[
    str | None,
    typer.Option(help="Sheet of a workbook to read (.xlsx, .xls, .ods); default: the first."),
]
MappingFile = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        help="TOML file mapping the export's columns and codes to the contract (see README: "
        "Bringing your clinic's export; `womac validate FILE --suggest-mapping` starts one).",
    ),
]

Seed = Annotated[int | None, typer.Option(help="Seed of every random choice.")]
Folds = Annotated[int | None, typer.Option(min=2, max=20, help="Cross-validation folds.")]
Experiment = Annotated[str | None, typer.Option(help="MLflow experiment to log to.")]
TrackingUri = Annotated[
    str | None, typer.Option(help="MLflow tracking URI (a SQLite file, a server, ...).")
]
Promote = Annotated[
    bool,
    typer.Option(
        "--promote/--no-promote",
        help="Make the new version the champion when it passes the gates.",
    ),
]

ModelUri = Annotated[
    str | None, typer.Option(help="Model to use; default: the registered champion.")
]
EngineOption = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="single: this process. spark: a Spark cluster, for registry-scale cohorts "
        "(needs the spark extra and Java).",
    ),
]
Master = Annotated[
    str | None,
    typer.Option(
        help="Spark master for --engine spark (local[2], spark://host:7077, yarn, ...); "
        "default WOMAC_SPARK_MASTER, else SPARK_MASTER, else local[*]."
    ),
]
Explanation = Annotated[
    Detail,
    typer.Option(
        help="top3: the three largest contributions per patient. full: the base value and "
        "one contribution_<field> column per contract field (base + sum = estimate)."
    ),
]
Dictionary = Annotated[
    Path | None,
    typer.Option(
        help="A REDCap project's data dictionary (CSV): read a raw REDCap export by its "
        "variables' labels and choices, without a mapping file.",
    ),
]


MonitorData = Annotated[
    Path,
    typer.Option(
        "--data",
        help="Export of patients treated after the model's training data, with their "
        "12-month scores where known (CSV, workbook or Parquet).",
    ),
]
MonitoredUri = Annotated[
    str | None,
    typer.Option(
        "--model-uri",
        help="models:/<name>@<alias> or models:/<name>/<version>; default: the champion.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the whole result as one JSON object.")]
UpdateOption = Annotated[
    Update | None,
    typer.Option(
        "--update",
        help="recalibrate: fit the smallest update the new patients support (intercept, "
        "slope, interval scale); refit: retrain on the training and new patients. Either "
        "is registered and becomes champion only through the promotion gates.",
    ),
]
TrainingData = Annotated[
    Path | None,
    typer.Option(
        "--training-data",
        help="For --update refit: the model's training export, when it is no longer "
        "where its training run says.",
    ),
]
