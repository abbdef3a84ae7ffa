"""Snapshots and point-in-time restores on real processes."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.errors import (
    ClusterAlreadyExistsError,
    InvalidParameterError,
    InvalidStateError,
    RestoreWindowError,
    SnapshotAlreadyExistsError,
    SnapshotNotFoundError,
)
from aurora_kit.specs import InstanceSpec

pytestmark = pytest.mark.integration


def _conn(backend: Any, cluster_id: str, endpoint: str = "cluster") -> psycopg.Connection[Any]:
    info = backend.connection_info(cluster_id, endpoint)
    return psycopg.connect(info.conninfo, autocommit=True, **info.kwargs())


def _ids(backend: Any, cluster_id: str, table: str) -> list[int]:
    with _conn(backend, cluster_id) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


def _delete(backend: Any, *cluster_ids: str) -> None:
    for cid in cluster_ids:
        backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True)


def test_snapshot_restore_round_trips_data(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    with _conn(local_backend, cid) as conn:
        conn.execute("CREATE TABLE snap_rows (id int PRIMARY KEY, payload text)")
        conn.execute("INSERT INTO snap_rows SELECT g, md5(g::text) FROM generate_series(1, 500) g")
        expected = conn.execute("SELECT md5(string_agg(payload, ',' ORDER BY id)) FROM snap_rows").fetchone()
    snap = local_backend.create_snapshot(cid, f"{cid}-snap")
    assert snap.status == "available"
    assert snap.snapshot_type == "manual"
    manual = local_backend.describe_snapshots(cid, snapshot_type="manual")
    assert [s.db_cluster_snapshot_identifier for s in manual] == [f"{cid}-snap"]
    # as RDS lists them: manual and automated together unless a type is asked for
    listed = {s.db_cluster_snapshot_identifier: s.snapshot_type for s in local_backend.describe_snapshots(cid)}
    assert listed[f"{cid}-snap"] == "manual"
    assert "automated" in listed.values()
    with pytest.raises(SnapshotAlreadyExistsError):
        local_backend.create_snapshot(cid, f"{cid}-snap")
    with _conn(local_backend, cid) as conn:
        conn.execute("INSERT INTO snap_rows VALUES (501, 'after the snapshot')")

    restored = local_backend.restore_from_snapshot(f"{cid}-snap", f"{cid}-rs")
    try:
        # as on Aurora, a restore creates no instance
        assert restored.status == "available"
        assert restored.db_cluster_members == []
        with pytest.raises(InvalidStateError):
            local_backend.connection_info(f"{cid}-rs")
        instance = local_backend.create_instance(f"{cid}-rs", InstanceSpec(instance_id=f"{cid}-rs-1"))
        assert instance.is_cluster_writer
        assert instance.status == "available"
        with _conn(local_backend, f"{cid}-rs") as conn:
            got = conn.execute("SELECT md5(string_agg(payload, ',' ORDER BY id)) FROM snap_rows").fetchone()
            assert conn.execute("SELECT count(*) FROM snap_rows").fetchone() == (500,)
            assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (f"{cid}-rs-1",)
        assert got == expected
        # the restored cluster is a full cluster: it takes a reader
        reader = local_backend.create_instance(f"{cid}-rs", InstanceSpec(instance_id=f"{cid}-rs-2"))
        assert not reader.is_cluster_writer
        with _conn(local_backend, f"{cid}-rs", "reader") as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    finally:
        _delete(local_backend, f"{cid}-rs")
    local_backend.delete_snapshot(f"{cid}-snap")
    assert local_backend.describe_snapshots(cid, snapshot_type="manual") == []
    with pytest.raises(SnapshotNotFoundError):
        local_backend.delete_snapshot(f"{cid}-snap")


def test_pitr_returns_exactly_the_rows_committed_up_to_the_target(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    with _conn(local_backend, cid) as conn:
        conn.execute("CREATE TABLE pitr_rows (id int PRIMARY KEY)")
        for i in range(1, 21):
            conn.execute("INSERT INTO pitr_rows VALUES (%s)", (i,))
        time.sleep(0.05)
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        target = row[0]
        time.sleep(0.05)
        for i in range(21, 31):
            conn.execute("INSERT INTO pitr_rows VALUES (%s)", (i,))

    clone = local_backend.restore_to_point_in_time(
        cid, f"{cid}-pitr", restore_time=target, instances=[InstanceSpec(instance_id=f"{cid}-pitr-1")]
    )
    latest = local_backend.restore_to_point_in_time(
        cid,
        f"{cid}-latest",
        use_latest_restorable_time=True,
        instances=[InstanceSpec(instance_id=f"{cid}-latest-1")],
    )
    try:
        assert clone.writer_id == f"{cid}-pitr-1"
        assert _ids(local_backend, f"{cid}-pitr", "pitr_rows") == list(range(1, 21))
        assert _ids(local_backend, f"{cid}-latest", "pitr_rows") == list(range(1, 31))
        assert latest.status == "available"
        # the clone archives into its own archive (its new timeline), never into the source's
        with _conn(local_backend, f"{cid}-pitr") as conn:
            conn.execute("INSERT INTO pitr_rows VALUES (1000)")
            conn.execute("CHECKPOINT")
            tli = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
            assert tli is not None
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert segment is not None
        history = f"{tli[0]:08X}.history"
        clone_archive = local_backend.nodes.paths(f"{cid}-pitr").archive
        src_archive = local_backend.nodes.paths(cid).archive
        assert (clone_archive / history).exists()
        assert not (src_archive / history).exists()
        assert not (src_archive / segment[0]).exists()
        assert _ids(local_backend, cid, "pitr_rows") == list(range(1, 31))
    finally:
        _delete(local_backend, f"{cid}-pitr", f"{cid}-latest")


def test_restore_requests_outside_the_window_change_nothing(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    cluster = local_backend.describe_cluster(cid)
    assert cluster.earliest_restorable_time is not None
    before = local_backend.store.read()
    with pytest.raises(RestoreWindowError):
        local_backend.restore_to_point_in_time(
            cid, f"{cid}-early", restore_time=cluster.earliest_restorable_time - timedelta(hours=1)
        )
    with pytest.raises(RestoreWindowError):
        local_backend.restore_to_point_in_time(
            cid, f"{cid}-future", restore_time=cluster.earliest_restorable_time + timedelta(days=1)
        )
    with pytest.raises(InvalidParameterError):
        local_backend.restore_to_point_in_time(cid, f"{cid}-both")  # neither time nor latest
    with pytest.raises(InvalidParameterError):
        local_backend.restore_to_point_in_time(
            cid, f"{cid}-naive", restore_time=cluster.earliest_restorable_time.replace(tzinfo=None)
        )
    with pytest.raises(ClusterAlreadyExistsError):
        local_backend.restore_to_point_in_time(cid, cid, use_latest_restorable_time=True)
    with pytest.raises(SnapshotNotFoundError):
        local_backend.restore_from_snapshot("no-such-snapshot", f"{cid}-x")
    after = local_backend.store.read()
    # the whole source record, not just the cluster ids: a rejected request forces no archive on the source
    # (no marker commit, no WAL switch, no latest_restorable_time / lrt_checked write)
    assert after["clusters"] == before["clusters"]
    assert after["snapshots"] == before["snapshots"]
    assert not local_backend.nodes.paths(f"{cid}-early").dir.exists()
    assert not local_backend.nodes.paths(f"{cid}-future").dir.exists()


def test_restores_replay_with_the_source_parameter_group(local_backend: Any, local_cluster_factory: Any) -> None:
    """Restores start from the source's parameter group (as our aws backend passes DBClusterParameterGroupName
    explicitly), and replay whatever max_connections the WAL records: here the group lowers it (150) below the
    class default the base backup began with (db.r6g.large: 1722), which PostgreSQL refuses to replay in hot
    standby ("insufficient parameter settings"); Aurora's restores have no such condition."""
    cid = local_cluster_factory(0, prefix="pg").db_cluster_identifier
    local_backend.apply_parameters(cid, {"max_connections": "150"})
    local_backend.reboot_pending(cid)
    with _conn(local_backend, cid) as conn:
        assert conn.execute("SHOW max_connections").fetchone() == ("150",)
        conn.execute("CREATE TABLE param_rows AS SELECT g AS id FROM generate_series(1, 10) g")
    local_backend.create_snapshot(cid, f"{cid}-snap")
    restored = [f"{cid}-rs", f"{cid}-pitr"]
    try:
        local_backend.restore_from_snapshot(f"{cid}-snap", restored[0], instances=[InstanceSpec(instance_id="rs-1")])
        local_backend.restore_to_point_in_time(
            cid, restored[1], use_latest_restorable_time=True, instances=[InstanceSpec(instance_id="pitr-1")]
        )
        for new_id in restored:
            assert local_backend.get_parameters(new_id, ["max_connections"]) == {"max_connections": "150"}
            assert _ids(local_backend, new_id, "param_rows") == list(range(1, 11))
            with _conn(local_backend, new_id) as conn:
                assert conn.execute("SHOW max_connections").fetchone() == ("150",)
    finally:
        _delete(local_backend, *[r for r in restored if r in local_backend.store.read()["clusters"]])
        local_backend.delete_snapshot(f"{cid}-snap")


def _archive_now(backend: Any, cluster_id: str) -> None:
    """Switch the source's WAL and wait until that segment is in its archive (what archive_timeout would do)."""
    with _conn(backend, cluster_id) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    archived = backend.nodes.paths(cluster_id).archive / row[0]
    deadline = time.monotonic() + 30
    while not archived.exists():
        assert time.monotonic() < deadline, f"{archived} not archived"
        time.sleep(0.05)


def test_pitr_latest_is_pinned_and_self_contained(local_backend: Any, local_cluster_factory: Any) -> None:
    """A restore to the latest restorable time returns the source as of the call, whatever the source does
    before the restored cluster gets its writer: more writes (archived), or being deleted altogether."""
    cid = local_cluster_factory(1, prefix="pl").db_cluster_identifier
    with _conn(local_backend, cid) as conn:
        conn.execute("CREATE TABLE pinned_rows (id int PRIMARY KEY)")
        conn.execute("INSERT INTO pinned_rows SELECT generate_series(1, 10)")
    restored = [f"{cid}-later", f"{cid}-orphan"]
    try:
        for new_id in restored:
            local_backend.restore_to_point_in_time(cid, new_id, use_latest_restorable_time=True)
        with _conn(local_backend, cid) as conn:
            conn.execute("INSERT INTO pinned_rows SELECT generate_series(11, 20)")
        _archive_now(local_backend, cid)
        # 1. the source wrote (and archived) more rows after the restore: not in the restored cluster
        local_backend.create_instance(restored[0], InstanceSpec(instance_id=f"{cid}-later-1"))
        assert _ids(local_backend, restored[0], "pinned_rows") == list(range(1, 11))
        # 2. the source is gone before the restored cluster gets its writer: the restore is still exact
        _delete(local_backend, cid)
        local_backend.create_instance(restored[1], InstanceSpec(instance_id=f"{cid}-orphan-1"))
        assert _ids(local_backend, restored[1], "pinned_rows") == list(range(1, 11))
    finally:
        _delete(local_backend, *[r for r in restored if r in local_backend.store.read()["clusters"]])


def test_describe_cluster_derives_the_latest_restorable_time_without_writing(
    local_backend: Any, local_cluster: Cluster
) -> None:
    cid = local_cluster.db_cluster_identifier
    writer = local_backend.store.cluster(cid).writer_id
    archived_before = local_backend.nodes.query(cid, writer, "SELECT archived_count FROM pg_stat_archiver")[0][0]
    before = local_backend.store.read()
    first = local_backend.describe_cluster(cid)
    # a read: no state write, no marker commit / forced WAL switch
    assert local_backend.store.read() == before
    archived_after = local_backend.nodes.query(cid, writer, "SELECT archived_count FROM pg_stat_archiver")[0][0]
    assert archived_after - archived_before <= 1  # at most an archive_timeout switch, never a forced one per call
    assert first.latest_restorable_time is not None
    # it follows what is archived: a segment switched and archived now moves it forward
    with _conn(local_backend, cid) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lrt_rows (id int)")
        conn.execute("INSERT INTO lrt_rows VALUES (1)")
    _archive_now(local_backend, cid)
    second = local_backend.describe_cluster(cid)
    assert second.latest_restorable_time is not None
    assert second.latest_restorable_time > first.latest_restorable_time


def test_a_fresh_idle_cluster_is_restorable_at_once(local_backend: Any, local_cluster_factory: Any) -> None:
    """Issue 10: right after creation, with nothing written, the window is a window (earliest <= latest, as Aurora
    reports both from creation) and a restore to the latest restorable time succeeds without waiting."""
    cid = local_cluster_factory(0, prefix="fi").db_cluster_identifier
    cluster = local_backend.describe_cluster(cid)
    assert cluster.earliest_restorable_time is not None
    assert cluster.latest_restorable_time is not None
    assert cluster.earliest_restorable_time <= cluster.latest_restorable_time
    restored = f"{cid}-r"
    try:
        local_backend.restore_to_point_in_time(
            cid, restored, use_latest_restorable_time=True, instances=[InstanceSpec(instance_id=f"{restored}-1")]
        )
        assert local_backend.describe_cluster(restored).status == "available"
    finally:
        _delete(local_backend, *[r for r in [restored] if r in local_backend.store.read()["clusters"]])
