"""Failover write probe on real local clusters: RTO, lost acknowledged commits — found when deliberately caused."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from _checks_display import assert_displays

from aurora_kit.backends.base import Cluster
from aurora_kit.checks import WriteProbe, probe_failover
from aurora_kit.errors import VerificationError, WaitTimeoutError
from aurora_kit.polling import wait_for

pytestmark = pytest.mark.integration


def _sql(info: Any, query: str, params: Any = None) -> list[Any]:
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


@pytest.mark.timing  # the largest gap between writes stays under 0.5 s with no outage
def test_steady_writes_no_loss(local_backend: Any, local_cluster: Cluster) -> None:
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    with WriteProbe(info, rate=100, settle_writes=5) as probe:
        time.sleep(0.3)
    report = probe.report
    assert report is not None
    assert report.problems() == []
    assert report.lost == 0
    assert len(report.acks) >= 40
    assert report.failures == []
    assert report.writers == [local_cluster.writer_id]
    assert report.verified_on == local_cluster.writer_id
    assert report.rto_s is not None
    assert report.rto_s < 0.5  # no outage: the largest gap is a few write periods
    assert report.timelines  # pg_walfile_name gave the timeline
    report.assert_ok(max_rto_s=1.0, expected_writer=local_cluster.writer_id)


def test_acknowledged_rows_deleted_behind_the_probe_are_lost(local_backend: Any, local_cluster: Cluster) -> None:
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    with WriteProbe(info, rate=100, settle_writes=5) as probe:
        _sql(info, "DELETE FROM aurora_kit.write_probe WHERE run_id = %s AND id IN (2, 3, 11)", [probe.run_id])
    report = probe.report
    assert report is not None
    assert report.lost_ids == [2, 3, 11]
    assert_displays(report)
    with pytest.raises(VerificationError, match=r"3 acknowledged writes missing") as excinfo:
        report.assert_ok()
    assert excinfo.value.context["evidence"]["lost_ids"] == [2, 3, 11]
    with pytest.raises(VerificationError):
        report.raise_for_lost_commits()


def test_rto_threshold_and_wrong_writer_fail(local_backend: Any, local_cluster: Cluster) -> None:
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    with WriteProbe(info, rate=50, settle_writes=3) as probe:
        time.sleep(0.1)
    report = probe.report
    assert report is not None
    with pytest.raises(VerificationError, match="RTO"):
        report.assert_ok(max_rto_s=0.0001)
    with pytest.raises(VerificationError, match="expected new writer"):
        report.assert_ok(expected_writer="no-such-instance")


def test_failover_to_a_reader_that_missed_commits_reports_them_lost(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    """Induce real data loss: cut a reader off replication, keep writing (the other reader acknowledges as sync
    standby), then make the old writer read-only and promote the cut-off reader. The cluster endpoint now lands
    on a writer that never received the probe's later commits — the probe must count them."""
    cluster = local_cluster_factory(readers=2, prefix="lost")
    cid = cluster.db_cluster_identifier
    stale = cluster.reader_ids[0]
    stale_info = local_backend.connection_info(cid, stale)
    writer_info = local_backend.connection_info(cid, cluster.writer_id)
    info = local_backend.connection_info(cid, "cluster")
    # the probe table must exist on the stale reader before it is cut off
    WriteProbe(info, warmup_writes=1, settle_writes=0).start().stop()
    wait_for(
        "probe table on the stale reader",
        lambda: _sql(stale_info, "SELECT to_regclass('aurora_kit.write_probe') IS NOT NULL")[0][0],
        bool,
        timeout=10,
    )
    _sql(stale_info, "ALTER SYSTEM SET primary_conninfo = ''")
    _sql(stale_info, "SELECT pg_reload_conf()")
    wait_for(
        "walreceiver stopped",
        lambda: _sql(stale_info, "SELECT count(*) FROM pg_stat_wal_receiver")[0][0],
        lambda n: n == 0,
        timeout=10,
    )
    with WriteProbe(info, rate=100, settle_writes=10, settle_timeout_s=20) as probe:
        time.sleep(0.5)  # acknowledged writes the stale reader never receives
        _sql(stale_info, "ALTER SYSTEM SET synchronous_standby_names = ''")
        _sql(stale_info, "SELECT pg_reload_conf()")
        _sql(writer_info, "ALTER SYSTEM SET default_transaction_read_only = on")
        _sql(writer_info, "SELECT pg_reload_conf()")
        _sql(stale_info, "SELECT pg_promote()")
        probe.mark("stale reader promoted")
    report = probe.report
    assert report is not None
    assert report.writers == [cluster.writer_id, stale]
    assert report.verified_on == stale
    assert report.lost >= 30, report.summary()
    assert any("25006" in kind for kind in report.errors_by_kind), report.errors_by_kind
    with pytest.raises(VerificationError, match="acknowledged writes missing"):
        report.assert_ok()
    # undo the writer's read-only switch so the factory can tear the cluster down normally
    _sql(writer_info, "ALTER SYSTEM RESET default_transaction_read_only")
    _sql(writer_info, "SELECT pg_reload_conf()")


@pytest.mark.timing  # the outage is bounded (0.05-60 s)
@pytest.mark.parametrize("mode", ["planned", "crash"])
def test_probe_around_a_real_failover(
    mode: str, local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=2, prefix=f"fo{mode[0]}")
    cid = cluster.db_cluster_identifier
    result, report = probe_failover(local_backend, cid, mode=mode, rate=100)  # type: ignore[arg-type]
    assert result.old_writer == cluster.writer_id
    assert result.new_writer in cluster.reader_ids
    assert report.lost == 0, report.summary()
    assert report.writers == [result.old_writer, result.new_writer]
    assert report.new_writer == result.new_writer
    assert report.verified_on == result.new_writer
    assert report.recovered
    assert report.failures, "a failover without a single failed attempt means the probe saw no outage"
    assert report.rto_s is not None
    assert 0.05 < report.rto_s < 60
    assert len(report.timelines) == 2  # the promotion switched timeline
    report.assert_ok(max_rto_s=60)  # expected_writer was set from the failover result
    assert_displays(report)
    labels = [label for _, label in report.marks]
    assert labels[:2] == ["enter", f"{mode} failover requested"]


def test_a_failed_warm_up_stops_the_writer_thread(
    local_backend: Any, local_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aurora_kit.checks import write_probe

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise WaitTimeoutError("acknowledged probe writes", 0.0, None)

    monkeypatch.setattr(write_probe, "wait_for", interrupted)
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    probe = WriteProbe(info, rate=50)
    with pytest.raises(WaitTimeoutError), probe:
        pytest.fail("the body must not run when the warm-up failed")
    assert probe._thread is not None
    assert not probe._thread.is_alive(), "the writer thread kept running after start() failed"


def test_a_commit_stuck_on_sync_replication_is_reported(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    info = local_backend.connection_info(cid, "cluster")
    writer_info = local_backend.connection_info(cid, local_cluster.writer_id)
    probe = WriteProbe(info, rate=50, warmup_writes=3, settle_writes=0, stop_timeout_s=1.0).start()
    try:
        # no standby of that name will ever confirm: the probe's next commit waits forever
        _sql(writer_info, "ALTER SYSTEM SET synchronous_standby_names = 'no_such_standby'")
        _sql(writer_info, "SELECT pg_reload_conf()")
        acked = len(probe._acks)
        time.sleep(0.5)
        report = probe.stop()
    finally:
        _sql(writer_info, "ALTER SYSTEM RESET synchronous_standby_names")
        _sql(writer_info, "SELECT pg_reload_conf()")
    assert len(report.acks) <= acked + 1  # at most a commit that had already been confirmed
    assert report.writer_stuck
    assert report.summary()["writer_stuck"] is True
    with pytest.raises(VerificationError, match="writer thread was still blocked"):
        report.assert_ok()
    thread = probe._thread
    assert thread is not None
    wait_for("writer thread released", thread.is_alive, lambda alive: not alive, timeout=20)


def test_a_read_back_on_a_lagging_read_only_node_claims_no_loss(local_backend: Any, local_cluster: Cluster) -> None:
    """The endpoint resolves to a reader whose replay is paused (stale DNS after a failover, say): ids it has not
    replayed are unverified, not lost."""
    cid = local_cluster.db_cluster_identifier
    reader = local_cluster.reader_ids[0]
    reader_info = local_backend.connection_info(cid, reader)
    probe = WriteProbe(local_backend.connection_info(cid, "cluster"), rate=100, settle_writes=0, verify_timeout_s=0.5)
    probe.start()
    try:
        wait_for(
            "probe rows replayed on the reader",
            lambda: _sql(reader_info, "SELECT count(*) FROM aurora_kit.write_probe WHERE run_id = %s", [probe.run_id]),
            lambda rows: rows[0][0] > 0,
            timeout=10,
        )
        _sql(reader_info, "SELECT pg_wal_replay_pause()")
        acked = len(probe._acks)
        wait_for("more acknowledged writes", lambda: len(probe._acks), lambda n: n >= acked + 20, timeout=10)
        probe.info = reader_info  # what the endpoint now reaches
        report = probe.stop()
    finally:
        _sql(reader_info, "SELECT pg_wal_replay_resume()")
    assert report.verified_on == reader
    assert report.verified_on_read_only
    assert report.lost == 0
    assert report.lost_ids == []
    assert len(report.unverified_ids) >= 20, report.summary()
    assert report.summary()["unverified"] == len(report.unverified_ids)
    problems = report.problems()
    assert any(p.startswith("could not verify on the writer") for p in problems), problems
    assert not any("missing" in p for p in problems), problems
    report.raise_for_lost_commits()  # nothing proven lost
