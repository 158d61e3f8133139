# The two commands: `make demo` and `make test`. Both bootstrap .venv on a fresh machine.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LAB_DIR ?= .lab
export CUTOVER_LAB_DIR := $(abspath $(LAB_DIR))

.PHONY: demo demo-rollback test lab-up lab-down notebooks clean-lab benchmark

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@$(PY) -m venv --help >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq python3-venv)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

## make demo: lab up, then readiness, rehearsal and cutover on `local`; prints the report path.
demo: $(STAMP)
	@$(BIN)/python -m cutover_lib.demo

## make demo-rollback: the same with a lab fault that fails a smoke test, so rollback runs.
demo-rollback: $(STAMP)
	@$(BIN)/python -m cutover_lib.demo --fault runtime.ingest_error

## make test: every test (unit, lab, notebooks, docker); starts and stops what it needs.
test: $(STAMP)
	$(BIN)/python -m pytest

benchmark: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks -s -p no:cacheprovider

lab-up: $(STAMP)
	$(BIN)/cutover lab up

lab-down: $(STAMP)
	$(BIN)/cutover lab down

notebooks: $(STAMP)
	$(BIN)/python tools/nbgen.py
