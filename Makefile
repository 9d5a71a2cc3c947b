# Gantry: `make run` starts the whole stack on this machine, `make test` runs every test.
# The virtualenv is created on first use; dependencies are reinstalled only when
# pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_ARGS ?=
# pipefail: a failed pip install fails the target even though its output is filtered.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: run test test-fast lint bench clean

run: $(STAMP)
	$(PY) devstack.py

# Two processes (pytest-xdist), each module on one of them: TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

# The fast tier: no Temporal dev server, no processes (the time-skipping test server is in).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not temporal and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-logo --no-cache

bench: $(STAMP)
	$(PY) -m bench.catalog $(BENCH_ARGS)
	$(PY) -m bench.actions
	$(PY) -m bench.approvals
	$(PY) -m bench.timers
	$(PY) -m bench.scorecards
	$(PY) -m bench.ingest
	$(PY) -m bench.web

clean:
	rm -rf .gantry

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@echo "Installing Gantry and its dependencies into $(VENV) (Temporal server, FastAPI, boto3, test tools)."
	@echo "The first time takes about 1-2 minutes; later runs skip this until pyproject.toml changes."
	$(PY) -m pip install --disable-pip-version-check --progress-bar off -e '.[dev]' \
	  | awk '/^(Collecting|Successfully)/ { print; fflush() }'
	touch $(STAMP)
