# One task runner. `make rehearse` = the main job, `make test` = the tests (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup rehearse test lint unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# Rehearse every runbook on the local backend; executed notebooks + records land in audit/.
# The parameters files default to confirm: false; the rehearsal confirms its destructive steps explicitly.
rehearse: $(STAMP)
	$(BIN)/aurora-kit run --all -f parameters/local.yaml -p confirm=true -p teardown.confirm_cluster_id=ak-local

lint: $(STAMP)
	$(BIN)/ruff check aurora_kit tests benchmarks
	$(BIN)/ruff format --check aurora_kit tests benchmarks
	$(BIN)/mypy

# the fast tier first (pure + moto, no server, no kernel), then real PostgreSQL and the notebooks, then JupyterLab
# in a real browser (tests/test_jupyterlab_browser.py; needs Debian's chromium, which .ci/run installs)
FAST := not integration and not notebooks and not browser

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "$(FAST)" $(PYTEST_ARGS)

test: lint
	$(BIN)/python -m pytest -ra -m "$(FAST)" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -ra -m "not ($(FAST)) and not browser" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -ra -m browser $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
