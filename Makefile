# crowdbayes: `make demo` and `make test` build .venv from nothing when it is missing.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP_FLAGS ?= --disable-pip-version-check --progress-bar off -q
PYTEST_ARGS ?= -n 2

.PHONY: demo test test-slow lint typecheck check clean venv bench bench-quick paper

# Each stamp depends on pyproject.toml, so editing dependencies reinstalls.
$(VENV)/.base-stamp: pyproject.toml
	@test -x $(PY) || { PYBIN=$$(scripts/find-python.sh) && echo "creating $(VENV) with $$PYBIN" && $$PYBIN -m venv $(VENV); }
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e .
	@touch $@

$(VENV)/.test-stamp: $(VENV)/.base-stamp pyproject.toml
	$(PY) -m pip install $(PIP_FLAGS) -e ".[test]"
	@touch $@

$(VENV)/.dev-stamp: $(VENV)/.test-stamp pyproject.toml
	$(PY) -m pip install $(PIP_FLAGS) -e ".[dev]"
	@touch $@

$(VENV)/.bench-stamp: $(VENV)/.base-stamp pyproject.toml
	$(PY) -m pip install $(PIP_FLAGS) -e ".[bench,jax]"
	@touch $@

venv: $(VENV)/.base-stamp

demo: $(VENV)/.base-stamp
	$(BIN)/crowdbayes demo --out demo-output

test: $(VENV)/.test-stamp
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(VENV)/.test-stamp
	$(PY) -m pytest --run-slow $(PYTEST_ARGS)

# Accuracy against crowd-kit on the real datasets and speed against hand-written NumPyro:
# writes benchmarks/RESULTS.md (hours on 2 cores; bench-quick: minutes).
bench: $(VENV)/.bench-stamp
	$(PY) benchmarks/run.py

bench-quick: $(VENV)/.bench-stamp
	$(PY) benchmarks/run.py --quick --out benchmarks/RESULTS.quick.md

# The paper: every table and figure of paper/paper.md (paper/tables, paper/figures), then the
# tables filled into paper.md and, with pandoc on PATH, paper/paper.pdf. PAPER_ARGS defaults to
# the settings of the committed tables and figures (about 35 minutes on 2 cores); the full
# settings, PAPER_ARGS="--draws 1000 --tune 1000 --chains 4", take about 95 minutes.
PAPER_ARGS ?= --draws 300 --tune 300 --chains 2
PAPER_SCRIPTS := overview accuracy anesthesia case_study scale figures_gallery
paper: $(VENV)/.bench-stamp
	@set -e; for script in $(PAPER_SCRIPTS); do \
		echo "== paper/scripts/$$script.py $(PAPER_ARGS)"; \
		$(PY) paper/scripts/$$script.py $(PAPER_ARGS); \
	done
	$(PY) paper/scripts/build_paper.py

lint: $(VENV)/.dev-stamp
	$(BIN)/ruff check crowdbayes tests
	$(BIN)/ruff format --check crowdbayes tests

typecheck: $(VENV)/.dev-stamp
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
