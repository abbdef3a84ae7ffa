"""The seed's pool on a real local cluster: throughput, checkout wait, leaks — and pre-ping recovery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy
from _checks_display import assert_displays

from aurora_kit.backends.base import Cluster
from aurora_kit.checks import check_pool, check_pre_ping_recovery, run_pool_check
from aurora_kit.checks.pooling import instance_infos
from aurora_kit.errors import VerificationError

pytestmark = pytest.mark.integration


def test_pool_on_cluster_endpoint(local_backend: Any, local_cluster: Cluster) -> None:
    report = check_pool(local_backend, local_cluster.db_cluster_identifier, "cluster", workers=12, duration_s=1.5)
    assert report.problems() == []
    assert report.queries > 100
    assert report.errors == {}
    assert report.answered_by.keys() == {local_cluster.writer_id}
    assert report.checked_out_at_end == 0
    assert not any(report.server_sessions_after.values())
    assert 0 < report.server_sessions_peak <= 30
    summary = assert_displays(report)
    assert summary["checkout_wait_p50_ms"] is not None
    assert summary["checkout_wait_p99_ms"] >= summary["checkout_wait_p50_ms"]
    assert summary["throughput_qps"] > 0


def test_pool_on_reader_endpoint_spreads_over_readers(local_backend: Any, local_cluster: Cluster) -> None:
    report = check_pool(local_backend, local_cluster.db_cluster_identifier, "reader", workers=12, duration_s=1.0)
    report.assert_ok()
    assert set(report.answered_by) == set(local_cluster.reader_ids)


def test_leaked_connections_are_reported(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    leaked: list[sqlalchemy.Connection] = []

    def leaky(conn: sqlalchemy.Connection) -> Any:
        if len(leaked) < 2:
            leaked.append(conn.engine.connect())  # checked out and never returned
        return conn.exec_driver_sql("SELECT aurora_db_instance_identifier()").scalar()

    report = run_pool_check(
        local_backend.connection_info(cid, "cluster"),
        instance_infos(local_backend, cid),
        workers=1,
        duration_s=0.3,
        work=leaky,
        dispose_timeout_s=1.0,
    )
    try:
        assert report.checked_out_at_end == 2
        assert sum(report.server_sessions_after.values()) == 2
        assert report.leaked == 2
        with pytest.raises(VerificationError, match="leak"):
            report.raise_for_leaks()
    finally:
        for conn in leaked:
            conn.close()


def _terminate_pool_sessions(info: Any) -> int:
    """Kill the pool's sessions on the writer — what a failover does to pooled connections."""
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND application_name = 'aurora_kit_preping'"
        ).fetchall()
    return len(rows)


def test_pre_ping_replaces_killed_sessions(local_backend: Any, local_cluster: Cluster) -> None:
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    report = check_pre_ping_recovery(info, lambda: _terminate_pool_sessions(info), pool_size=4)
    assert report.action_result >= 4
    assert report.errors_after == {}
    assert report.stale_recovered == 4
    assert report.reused == 0
    report.assert_ok()
    assert_displays(report)


def test_without_pre_ping_the_application_sees_the_errors(local_backend: Any, local_cluster: Cluster) -> None:
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    report = check_pre_ping_recovery(info, lambda: _terminate_pool_sessions(info), pool_size=3, pool_pre_ping=False)
    assert sum(report.errors_after.values()) >= 1
    with pytest.raises(VerificationError, match="saw errors"):
        report.assert_ok()


def test_pre_ping_recovers_the_pool_across_a_real_failover(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=1, prefix="ping")
    cid = cluster.db_cluster_identifier
    info = local_backend.connection_info(cid, "cluster")
    report = check_pre_ping_recovery(info, lambda: local_backend.failover(cid), pool_size=5)
    new_writer = report.action_result.new_writer
    assert new_writer == cluster.reader_ids[0]
    assert report.writer_before == [cluster.writer_id]
    assert report.writer_after == [new_writer]
    assert report.stale_recovered == 5
    assert report.errors_after == {}
    report.assert_ok()
