# One task runner. `make rehearse` = the main job, `make test` = the tests (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: setup tools rehearse test lint unit bench clean setup-airflow emulate test-airflow

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# PgBouncer stands in for RDS Proxy on the local backend (09-proxy, its tests): a system package, not a Python one
PGBOUNCER := $(or $(AURORA_KIT_PGBOUNCER),$(shell command -v pgbouncer 2>/dev/null),$(wildcard /usr/sbin/pgbouncer))
tools:
	@test -n "$(PGBOUNCER)" || { echo "pgbouncer is missing: the local backend runs it as RDS Proxy (09-proxy)." \
	  "Install it: sudo apt-get install pgbouncer (Debian/Ubuntu), brew install pgbouncer (macOS)," \
	  "conda install -c conda-forge pgbouncer (environment.yml); or set AURORA_KIT_PGBOUNCER to its path" >&2; exit 1; }

# Apache Airflow's tests get an environment of their own (pins: constraints/airflow.txt), so the core's tests prove
# the core needs no Airflow and Airflow's import-time configuration never reaches them. uv (from PyPI, pinned) installs
# its ~200 packages in ~25 s where pip takes ~2 min.
$(AIRFLOW_STAMP): pyproject.toml constraints/airflow.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet -c constraints/airflow.txt uv
	$(AIRFLOW_VENV)/bin/uv pip install --quiet --python $(AIRFLOW_VENV)/bin/python -c constraints/airflow.txt \
		-e '.[airflow]' pytest pytest-timeout mypy types-PyYAML
	$(AIRFLOW_VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(AIRFLOW_STAMP)

setup-airflow: $(AIRFLOW_STAMP)

# Rehearse every runbook on the local backend; executed notebooks + records land in audit/.
# The parameters files default to confirm: false; the rehearsal confirms its destructive steps explicitly.
rehearse: $(STAMP) tools
	$(BIN)/aurora-kit run --all -f parameters/local.yaml -p confirm=true -p teardown.confirm_cluster_id=ak-local

# An emulated AWS whose clusters are real local ones, to try the aws runbooks without an account (README):
# then `aurora-kit run --all -f parameters/aws-emulated.yaml ...` with the environment it prints.
emulate: $(STAMP)
	$(BIN)/aurora-kit emulate

lint: $(STAMP)
	$(BIN)/ruff check aurora_kit tests benchmarks
	$(BIN)/ruff format --check aurora_kit tests benchmarks
	$(BIN)/mypy

# the fast tier first (pure + moto, no server, no kernel), then real PostgreSQL and the notebooks, then JupyterLab
# in a real browser (tests/test_jupyterlab_browser.py; needs Debian's chromium, which .ci/run installs)
FAST := not integration and not notebooks and not browser

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "$(FAST)" $(PYTEST_ARGS)

test: lint tools
	$(BIN)/python -m pytest -ra -m "$(FAST)" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -ra -m "not ($(FAST)) and not browser" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -ra -m browser $(PYTEST_ARGS)
	$(MAKE) test-airflow

# the operator type-checked against Airflow itself, then the DAGs parsed and run with dag.test()
test-airflow: $(AIRFLOW_STAMP)
	$(AIRFLOW_VENV)/bin/mypy aurora_kit/integrations/airflow.py
	$(AIRFLOW_VENV)/bin/python -m pytest -ra tests/with_airflow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .pytest_cache .mypy_cache .ruff_cache
