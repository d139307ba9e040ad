# Two commands on a fresh clone (with ../shared beside it):
#   make reproduce   set-up, dvc pull, dvc repro, headline table
#   make test        set-up, the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
STAMP := $(VENV)/.installed

.PHONY: setup reproduce test test-fast benchmark check-remote pull sweep storage storage-stop push pull-storage clean-venv

setup: $(STAMP)
	@$(BIN)/python -m labelbench.ops.plots_template --if-needed --out .dvc/plots_template.html \
	  || echo "warning: offline plots page not built (npm unavailable?); dvc plots pages will need network" >&2

# Exact versions from requirements.lock; the package itself is installed editable without deps.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

check-remote:
	@$(BIN)/python -m labelbench.ops.remote_check

pull: setup check-remote
	dvc pull data/published.dvc

reproduce: pull
	dvc repro
	@$(BIN)/python stages/show.py

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

benchmark: pull
	$(BIN)/python benchmarks/bench_benchmark_stage.py

# Every score x adjust_pred_probs variant as a queued DVC experiment (2 workers) -> table + reports/sweep.md.
# `dvc repro evaluate` first, so that digits is trained once, not inside every experiment.
sweep: pull
	dvc repro evaluate
	$(BIN)/python -m labelbench.ops.sweep --jobs 2

# Team storage (docs/storage.md), always named: `dvc pull` alone uses the public remote `published`.
# storage: a local file-backed S3 server on 127.0.0.1 that `storage` then points at (.dvc/config.local);
# STORAGE_DIR=<another clone>/.cache/s3 shares that clone's server instead.
storage: setup
	$(BIN)/python -m labelbench.ops.storage start $(if $(STORAGE_DIR),--state-dir $(STORAGE_DIR))

storage-stop:
	$(BIN)/python -m labelbench.ops.storage stop $(if $(STORAGE_DIR),--state-dir $(STORAGE_DIR))

# The outputs first (with the server down: one clear error), then the run-cache as well (what another
# clone's `dvc repro --pull` restores stages from).
push: setup
	dvc push -r storage
	dvc push -r storage --run-cache

pull-storage: pull
	dvc pull -r storage

clean-venv:
	rm -rf $(VENV)
