"""Fixtures live in plugin modules under tests/plugins (psycopg's layout); this file only lists them."""

pytest_plugins: list[str] = ["plugins.moto_server", "plugins.local_cluster", "plugins.aws_emulator"]
