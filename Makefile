# The two commands: `make demo` and `make test`. Both bootstrap .venv on a fresh machine.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LAB_DIR ?= .lab
export CUTOVER_LAB_DIR := $(abspath $(LAB_DIR))

.PHONY: demo demo-rollback test test-docker docker-lab-up docker-lab-down lab-up lab-down benchmark

$(STAMP): pyproject.toml lab/pyproject.toml
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@$(PY) -m venv --help >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq python3-venv)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -e ./lab
	@# bytecode now, as pip does for an installed package (an editable install is compiled at first
	@# import, or, with PYTHONDONTWRITEBYTECODE set, again by every process and kernel)
	$(BIN)/python -m compileall -q cutover_lib lab/stellaops_lab
	@touch $(STAMP)

## make demo: lab up, then readiness, rehearsal and cutover on `local`; prints the report path.
demo: $(STAMP)
	@$(BIN)/python -m stellaops_lab.demo

## make demo-rollback: the same with a lab fault that fails a smoke test, so rollback runs.
demo-rollback: $(STAMP)
	@$(BIN)/python -m stellaops_lab.demo --fault runtime.ingest_error

## make test: every test (unit, lab, notebooks, docker); starts and stops what it needs.
## Two pytest runs side by side: the Docker engine tests (mostly waiting on containers) in one,
## everything else on $(TEST_WORKERS) pytest-xdist workers in the other; the engine tests' output
## follows the other's.  Prints the total duration; fails if either run fails.
TEST_WORKERS ?= 2
test: $(STAMP)
	@start=$$(date +%s); log=$$(mktemp); \
	$(BIN)/python -m pytest -p no:cacheprovider -m "docker and not benchmark" >"$$log" 2>&1 & docker_pid=$$!; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not docker and not benchmark"; rc=$$?; \
	wait $$docker_pid; docker_rc=$$?; \
	echo; echo "---- Docker engine tests (run alongside) ----"; cat "$$log"; rm -f "$$log"; \
	echo "make test: $$(( $$(date +%s) - start )) s (exit $$rc, docker $$docker_rc)"; \
	[ $$rc -eq 0 ] && [ $$docker_rc -eq 0 ]

benchmark: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks -s -p no:cacheprovider -m benchmark

lab-up: $(STAMP)
	$(BIN)/cutover lab up

lab-down: $(STAMP)
	$(BIN)/cutover lab down

## make test-docker: the compose deploy mode against private Docker engines (started and stopped by the fixtures)
test-docker: $(STAMP)
	$(BIN)/python -m pytest tests/docker

## make docker-lab-up: a private dockerd + local registry + lab images, for `cutover run --env lab-compose`
docker-lab-up:
	bash tools/dockerlab.sh install
	bash tools/dockerlab.sh start-engine lab1 /tmp/cutover-docker/lab1 127.0.0.1
	bash tools/dockerlab.sh start-registry
	bash tools/dockerlab.sh build-images lab1

docker-lab-down:
	-bash tools/dockerlab.sh stop-engine lab2
	-bash tools/dockerlab.sh stop-engine lab1
	-bash tools/dockerlab.sh stop-registry
