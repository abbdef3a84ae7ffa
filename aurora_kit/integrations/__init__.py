"""Integrations with schedulers, each an optional extra: :mod:`.airflow` (``pip install 'aurora_kit[airflow]'``).
Nothing in the core imports them."""
