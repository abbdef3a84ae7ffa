# One task runner. `make rehearse` = the main job, `make test` = the tests (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup tools rehearse emulate test lint unit bench clean

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

# the fast tier first (pure + moto, no server, no kernel), then real PostgreSQL and the notebooks
FAST := not integration and not notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "$(FAST)" $(PYTEST_ARGS)

test: lint tools
	$(BIN)/python -m pytest -ra -m "$(FAST)" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -ra -m "not ($(FAST))" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
