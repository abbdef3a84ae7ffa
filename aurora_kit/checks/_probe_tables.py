"""The probe tables the measurements write to, in their own schema ``aurora_kit`` on the writer."""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMA = "aurora_kit"

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.lag_marker (
        id bigserial PRIMARY KEY,
        run_id text NOT NULL,
        written_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.write_probe (
        run_id text NOT NULL,
        id bigint NOT NULL,
        instance_id text NOT NULL,
        timeline int,
        written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (run_id, id))""",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.rw_check (tag text, id int, payload text, PRIMARY KEY (tag, id))",
]


def ensure_probe_tables(conn: psycopg.Connection[Any]) -> None:
    """Create the probe schema and tables if missing (serialised by an advisory lock; needs the writer)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('aurora_kit.probe_tables'))")
        for stmt in _DDL:
            conn.execute(stmt)
