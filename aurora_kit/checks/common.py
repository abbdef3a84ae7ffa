"""Connection and statistics helpers shared by the checks (data plane only: psycopg 3 through endpoints)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from aurora_kit.backends.base import ConnectionInfo

#: session settings that make ``row::text`` (and so content checksums) independent of client/server defaults
CANONICAL_SESSION = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


def with_options(info: ConnectionInfo, **options: Any) -> ConnectionInfo:
    """Copy of ``info`` with libpq options added/replaced (``connect_timeout=2``, ``dbname="x"``...)."""
    options = {k: v for k, v in options.items() if v is not None}
    conninfo = make_conninfo(info.conninfo, **options)
    dbname = str(options.get("dbname", info.dbname))
    return dataclasses.replace(info, conninfo=conninfo, dbname=dbname)


def connect(
    info: ConnectionInfo,
    *,
    autocommit: bool = True,
    connect_timeout: float | None = None,
    application_name: str | None = None,
    **options: Any,
) -> psycopg.Connection[Any]:
    """Open a psycopg connection to an endpoint described by ``info`` (password never in the conninfo)."""
    timeout = None if connect_timeout is None else max(1, math.ceil(connect_timeout))
    conninfo = make_conninfo(
        info.conninfo,
        **{
            k: v
            for k, v in {"connect_timeout": timeout, "application_name": application_name, **options}.items()
            if v is not None
        },
    )
    return psycopg.connect(conninfo, autocommit=autocommit, **info.kwargs())


def instance_identity(conn: psycopg.Connection[Any]) -> tuple[str, bool]:
    """``(aurora_db_instance_identifier(), pg_is_in_recovery())`` of the server behind ``conn``."""
    row = conn.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()").fetchone()
    assert row is not None
    return str(row[0]), bool(row[1])


def sqlstate_of(exc: BaseException) -> str:
    """A short, stable kind for an error: the SQLSTATE when the server sent one, else the exception class."""
    state = getattr(exc, "sqlstate", None)
    if state:
        return f"{state} {type(exc).__name__}"
    return type(exc).__name__


#: SQLSTATEs after which a connection is of no more use to a writer: read-only (25006: it reached a reader, or its
#: writer was demoted), admin and crash shutdown (57P01, 57P02)
RECONNECT_SQLSTATES = ("25006", "57P01", "57P02")


def must_reconnect(exc: BaseException, conn: Any) -> bool:
    """Whether a failed write leaves a writer needing a new connection. An OperationalError without a SQLSTATE is a
    failed connection even when psycopg has not marked it broken (seen once in 20 crash failovers: a probe then
    wrote into the dead connection for 60 s)."""
    sqlstate = getattr(exc, "sqlstate", None)
    lost = isinstance(exc, psycopg.OperationalError) and not sqlstate
    return bool(lost or conn.broken or conn.closed or sqlstate in RECONNECT_SQLSTATES)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default) of ``values``; None when empty."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def latency_stats(values_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in milliseconds of durations given in seconds."""
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": float(len(ms)),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
        "mean_ms": (sum(ms) / len(ms)) if ms else None,
    }
