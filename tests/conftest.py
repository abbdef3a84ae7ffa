"""Fixtures live in plugin modules under tests/plugins (psycopg's layout); this file only lists them."""

import importlib.util

pytest_plugins: list[str] = ["plugins.moto_server", "plugins.local_cluster", "plugins.aws_emulator"]

# the Airflow tests need Airflow, installed in its own environment (make test-airflow: .venv-airflow)
collect_ignore: list[str] = [] if importlib.util.find_spec("airflow") else ["with_airflow"]
