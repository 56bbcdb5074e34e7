"""What the command line says about itself: its version, its defaults, and refusals that
come before any work."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from womac.pipeline.cli import app
from womac.settings import Settings

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"womac {version('womac')}"


def test_serve_help_shows_the_defaults_of_the_settings() -> None:
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    host, port = Settings.model_fields["host"].default, Settings.model_fields["port"].default
    assert f"WOMAC_HOST, else {host}" in result.output
    assert f"WOMAC_PORT, else {port}" in result.output


def test_an_output_of_unknown_format_is_refused_before_any_work(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["predict", "--data", str(tmp_path / "absent.csv"), "--out", "scores.json"]
    )
    assert result.exit_code == 1
    assert "--out must end in .csv, .parquet, .xlsx" in result.output


@pytest.mark.parametrize("command", ["validate", "train", "predict"])
def test_mapping_and_dictionary_together_are_refused(tmp_path: Path, command: str) -> None:
    (tmp_path / "m.toml").write_text('[columns]\nage = "Age"\n')
    (tmp_path / "d.csv").write_text("Variable / Field Name\nage\n")
    data = tmp_path / "export.csv"
    data.write_text("Age\n61\n")
    where = [str(data)] if command == "validate" else ["--data", str(data)]
    extra = ["--out", str(tmp_path / "s.csv")] if command == "predict" else []
    result = runner.invoke(
        app,
        [
            command,
            *where,
            *extra,
            "--mapping",
            str(tmp_path / "m.toml"),
            "--dictionary",
            str(tmp_path / "d.csv"),
        ],
    )
    assert result.exit_code == 1
    assert "give --mapping or --dictionary, not both" in result.output
