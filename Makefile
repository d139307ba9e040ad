# Two commands on a fresh clone (with ../shared beside it):
#   make reproduce   set-up, dvc pull, dvc repro, headline table
#   make test        set-up, the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
STAMP := $(VENV)/.installed

.PHONY: setup reproduce publish test test-fast benchmark check-params check-remote pull sweep storage storage-stop push pull-storage distribute clean-venv

setup: $(STAMP)
	@$(BIN)/python -m labelbench.ops.plots_template --if-needed --out .dvc/plots_template.html \
	  || echo "warning: offline plots page not built (vl-convert-python missing?); dvc plots will fail until it is" >&2

# Exact versions from requirements.lock; the package itself is installed editable without deps.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Every block of params.yaml, before anything runs: each stage checks only the blocks it reads, when it runs.
check-params: setup
	@$(BIN)/python -m labelbench check-params

check-remote:
	@$(BIN)/python -m labelbench.ops.remote_check

# Plain `dvc pull` from the public remote (the default): the authors' data and every published
# output of dvc.lock. Outputs not published yet are named by dvc; `dvc repro` rebuilds them.
# When plain `dvc pull` fails, `--allow-missing` tells apart outputs not yet published (then only a hint) from
# any other failure (then make fails).
pull: setup check-remote
	@dvc pull || { dvc pull -q --allow-missing && echo "dvc pull: the outputs named above are not in the public \
	remote yet; \`dvc repro\` rebuilds them (maintainers: \`make publish\` after the change lands)" >&2; }

# Maintainers, after a change lands: every cached output of the committed dvc.lock into the public remote's
# writable location (`dvc remote modify --local published url <path>`). Refused unless the workspace is the
# committed pipeline, reproduced: outputs that no commit names (this machine's other bytes, an experiment's, or those
# of a .dvc file not committed: `dvc push` pushes every .dvc file in the workspace) never reach the public remote.
# The run-cache is not published: it holds every experiment run here.
publish:
	@test -z "$$(git status --porcelain --untracked-files=all)" || { echo "make publish: refused: not committed \
	(git status): $$(git status --porcelain --untracked-files=all | cut -c4- | head -5 | paste -sd ' '); the outputs \
	pushed must be the commit's (an uncommitted .dvc file's would be pushed too). Commit them, or remove them \
	(\`git stash -u && dvc checkout\`), first." >&2; exit 1; }
	@dvc status -q || { echo "make publish: refused: \`dvc status\` lists stages whose outputs or dependencies \
	differ from the committed dvc.lock; run \`make reproduce\` (it must leave \`git status\` clean) first." >&2; exit 1; }
	dvc push -r published

reproduce: check-params pull
	dvc repro
	@$(BIN)/python stages/show.py

# Two pytest workers (pytest-xdist), a test file per worker at a time: module fixtures (a Ray cluster, an S3
# server, a pulled clone) are set up once per file, as without xdist. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: setup
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

benchmark: pull
	$(BIN)/python benchmarks/bench_benchmark_stage.py

# Every valid score x adjust_pred_probs pair as a queued DVC experiment of the evaluate stage, run by
# 2 queue workers -> comparison table + reports/sweep.md. `dvc repro evaluate` first, so that digits is
# trained once (the experiments then find it in the run-cache), not inside every experiment.
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

# `storage` checked first (server down, keys refused, no bucket: one error naming the remote and the fix);
# then the outputs, then the run-cache as well (what another clone's `dvc repro --pull` restores stages from).
push: setup
	@$(BIN)/python -m labelbench.ops.remote_check storage
	dvc push -r storage
	dvc push -r storage --run-cache

pull-storage: pull
	@$(BIN)/python -m labelbench.ops.remote_check storage
	dvc pull -r storage

# The crossval folds as Ray tasks on a cluster (docs/cluster.md), meeting in `storage`; then dvc repro --pull.
# Ray address: RAY_ADDRESS=<head>:6379, else the cluster this machine is part of (`ray start`).
distribute: pull
	$(BIN)/python -m labelbench.ops.distribute

clean-venv:
	rm -rf $(VENV)
