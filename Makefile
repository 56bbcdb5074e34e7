# One command sets up and runs the product; one runs the tests. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# A standard install (no spark extra), for lint-standard.
STANDARD_VENV := .venv-standard

# Never download a Python: use the machine's. A clinic's install does not phone out.
export UV_PYTHON_DOWNLOADS := never
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true

.PHONY: run setup setup-spark bench train serve test lint lint-standard format clean

run: setup ## set up, train on the simulated default cohort, register, serve
	$(BIN)/womac train
	$(BIN)/womac serve

setup: $(VENV)/.installed ## install the locked environment into .venv

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --inexact --python $(PYTHON)
	touch $@

# The optional Spark engine (pyspark) for registry-scale scoring; its tests need it and Java.
setup-spark: $(VENV)/.installed-spark

$(VENV)/.installed-spark: $(VENV)/.installed
	$(UV) sync --frozen --inexact --extra spark --python $(PYTHON)
	touch $@

train: setup
	$(BIN)/womac train

serve: setup
	$(BIN)/womac serve

test: setup setup-spark ## run the test suite
	$(BIN)/pytest

bench: setup setup-spark ## every benchmark (quiet machine; installs wrk if root); bench/results/
	bash bench/run

lint: setup ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The same checks where pyspark is absent, as on a standard install: the Spark engine's
# typing must hold with and without the extra (an ignore pyspark needs is unused without it).
lint-standard: $(STANDARD_VENV)/.installed ## ruff and mypy without the spark extra
	$(STANDARD_VENV)/bin/ruff check .
	$(STANDARD_VENV)/bin/ruff format --check .
	$(STANDARD_VENV)/bin/mypy

# An exact sync: the spark extra is never installed here.
$(STANDARD_VENV)/.installed: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(STANDARD_VENV) $(UV) sync --frozen --python $(PYTHON)
	touch $@

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove generated data and the local MLflow store (not the environment)
	rm -rf generated mlflow.db mlruns mlartifacts .pytest_cache
