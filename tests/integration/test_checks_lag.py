"""Replica-lag probe on a real local cluster, including a reader whose replay is deliberately paused."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from _checks_display import assert_displays

from aurora_kit.backends.base import Cluster
from aurora_kit.checks import measure_replica_lag
from aurora_kit.errors import VerificationError

pytestmark = pytest.mark.integration


def test_lag_of_healthy_readers(local_backend: Any, local_cluster: Cluster) -> None:
    report = measure_replica_lag(local_backend, local_cluster.db_cluster_identifier, samples=40, interval_s=0.005)
    assert set(report.readers) == set(local_cluster.reader_ids)
    assert report.writer_id == local_cluster.writer_id
    for name, reader in report.readers.items():
        assert reader.instance_id == name
        assert reader.in_recovery
        assert len(reader.visible) == 40
        stats = reader.stats()
        assert stats["p50_ms"] is not None
        assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]  # type: ignore[operator]
    report.assert_ok(max_p99_ms=2000)
    assert_displays(report)
    # the Aurora shim reports every reader from the writer
    readers = {r["server_id"] for r in report.replica_status if r["session_id"] != "MASTER_SESSION_ID"}
    assert readers == set(local_cluster.reader_ids)
    # an impossible threshold must fail: the probe can say "too slow"
    with pytest.raises(VerificationError, match="lag p99"):
        report.raise_for_lag(max_p99_ms=0.000001)


def test_paused_replay_is_reported_as_invisible_markers(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    paused, healthy = local_cluster.reader_ids
    info = local_backend.connection_info(cid, paused)
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            report = measure_replica_lag(local_backend, cid, samples=6, interval_s=0.01, timeout_s=0.5)
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
    assert report.readers[paused].not_visible == 6
    assert report.readers[paused].visible == []
    assert report.readers[healthy].not_visible == 0
    assert len(report.readers[healthy].visible) == 6
    assert assert_displays(report)["markers_not_visible"] == 6
    with pytest.raises(VerificationError, match=f"{paused}: 6 of 6 markers not visible"):
        report.assert_ok()


def test_a_reader_that_cannot_be_reached_leaks_no_connection(
    local_backend: Any, local_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aurora_kit.checks import lag
    from aurora_kit.checks.common import with_options

    opened: list[psycopg.Connection[Any]] = []
    real_connect = lag.connect

    def recording_connect(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        conn = real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(lag, "connect", recording_connect)
    cid = local_cluster.db_cluster_identifier
    good = local_backend.connection_info(cid, local_cluster.reader_ids[0])
    unreachable = with_options(good, port=1)  # nothing listens there
    with pytest.raises(psycopg.OperationalError):
        lag.measure_replica_lag_at(
            local_backend.connection_info(cid, "cluster"), {"good": good, "unreachable": unreachable}, samples=1
        )
    assert len(opened) == 2  # the writer and the good reader
    assert all(conn.closed for conn in opened), "a reader connection was left open"
