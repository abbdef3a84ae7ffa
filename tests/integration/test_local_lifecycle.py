"""Cluster and instance lifecycle on real processes, and the typed errors of bad requests (nothing changes)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.backends.local import LocalBackend
from aurora_kit.errors import (
    BackendOperationError,
    ClusterAlreadyExistsError,
    ClusterNotFoundError,
    DeletionProtectionError,
    FailoverNotPossibleError,
    InstanceNotFoundError,
    InvalidParameterError,
)
from aurora_kit.specs import AlarmSpec, ClusterSpec, InstanceSpec

pytestmark = pytest.mark.integration


def test_unknown_cluster_everywhere(local_backend: Any) -> None:
    for call in (
        lambda: local_backend.describe_cluster("nope"),
        lambda: local_backend.describe_instances("nope"),
        lambda: local_backend.connection_info("nope"),
        lambda: local_backend.failover("nope"),
        lambda: local_backend.apply_parameters("nope", {"work_mem": "8MB"}),
        lambda: local_backend.create_snapshot("nope", "nope-snap"),
        lambda: local_backend.delete_cluster("nope", final_snapshot_id=None, skip_final_snapshot=True),
        lambda: local_backend.restore_to_point_in_time("nope", "nope2", use_latest_restorable_time=True),
    ):
        with pytest.raises(ClusterNotFoundError):
            call()


def test_duplicate_id_and_delete_rules(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    before = local_backend.store.read()
    with pytest.raises(ClusterAlreadyExistsError):
        local_backend.create_cluster(ClusterSpec.with_readers(cid, 1, deletion_protection=False))
    # the identical request is idempotent: the existing cluster comes back unchanged
    same = local_backend.create_cluster(ClusterSpec.with_readers(cid, 2, deletion_protection=False))
    assert same.db_cluster_identifier == cid
    assert same.writer_id == local_cluster.writer_id
    with pytest.raises(InvalidParameterError):
        local_backend.delete_cluster(cid, final_snapshot_id=None)  # no final-snapshot choice
    with pytest.raises(InvalidParameterError):
        local_backend.delete_cluster(cid, final_snapshot_id="x-final", skip_final_snapshot=True)  # both
    with pytest.raises(InstanceNotFoundError):
        local_backend.connection_info(cid, "no-such-instance")
    local_backend.modify_cluster(cid, deletion_protection=True)
    try:
        with pytest.raises(DeletionProtectionError):
            local_backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True)
    finally:
        local_backend.modify_cluster(cid, deletion_protection=False)
    after = local_backend.store.read()
    assert after["clusters"][cid]["instances"] == before["clusters"][cid]["instances"]
    assert sorted(after["clusters"]) == sorted(before["clusters"])
    assert local_backend.describe_cluster(cid).status == "available"


def test_dry_run_plans_and_changes_nothing(local_backend: Any, local_cluster: Cluster) -> None:
    dry = LocalBackend(root_dir=local_backend.root, dry_run=True)
    before = local_backend.store.read()
    projected = dry.create_cluster(ClusterSpec.with_readers("dry-one", 1))
    assert projected.status == "dry-run"
    cid = local_cluster.db_cluster_identifier
    assert dry.failover(cid).status == "dry-run"
    assert dry.apply_parameters(cid, {"work_mem": "20MB"}).status == "dry-run"
    assert dry.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True) is None
    ops = [c.operation for c in dry.plan]
    assert ops[:3] == ["CreateDBCluster", "CreateDBInstance", "CreateDBInstance"]
    assert {"FailoverDBCluster", "ModifyDBClusterParameterGroup", "DeleteDBCluster"} <= set(ops)
    assert local_backend.store.read() == before
    assert not local_backend.nodes.paths("dry-one").dir.exists()


def test_add_remove_reader_stop_start_and_alarms(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=0, prefix="lc")
    cid = cluster.db_cluster_identifier
    assert cluster.writer_id is not None
    # no reader: failover is refused and changes nothing; the reader endpoint reaches the writer (as Aurora)
    before = local_backend.store.cluster(cid)
    with pytest.raises(FailoverNotPossibleError):
        local_backend.failover(cid)
    assert local_backend.store.cluster(cid) == before
    info = local_backend.connection_info(cid, "reader")
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (cluster.writer_id,)
    reader = local_backend.create_instance(cid, InstanceSpec(instance_id=f"{cid}-r"))
    assert (reader.status, reader.is_cluster_writer) == ("available", False)
    (sync,) = local_backend.nodes.query(cid, cluster.writer_id, "SHOW synchronous_standby_names")[0]
    assert sync == f'ANY 1 ("{cid}-r")'
    info = local_backend.connection_info(cid, "reader")
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (f"{cid}-r",)

    states = local_backend.put_alarms(
        cid,
        [
            AlarmSpec(metric="AuroraReplicaLag", threshold=60_000),
            AlarmSpec(metric="DatabaseConnections", threshold=-1, statistic="Sum"),
        ],
    )
    by_metric = {s.metric_name: s for s in states}
    assert by_metric["AuroraReplicaLag"].state_value == "OK"
    assert by_metric["AuroraReplicaLag"].dimension == f"DBInstanceIdentifier={cid}-r"
    assert by_metric["DatabaseConnections"].state_value == "ALARM"  # more than -1 connections: always true
    assert [s.alarm_name for s in local_backend.describe_alarms(cid)] == [s.alarm_name for s in states]

    stopped = local_backend.stop_cluster(cid)
    assert stopped.status == "stopped"
    assert {i.status for i in local_backend.describe_instances(cid)} == {"stopped"}
    assert {s.state_value for s in local_backend.describe_alarms(cid)} == {"INSUFFICIENT_DATA"}
    started = local_backend.start_cluster(cid)
    assert started.status == "available"
    assert started.writer_id == cluster.writer_id

    local_backend.delete_instance(cid, f"{cid}-r")
    assert local_backend.describe_cluster(cid).reader_ids == []
    (sync,) = local_backend.nodes.query(cid, cluster.writer_id, "SHOW synchronous_standby_names")[0]
    assert sync == ""
    slots = local_backend.nodes.query(cid, cluster.writer_id, "SELECT slot_name FROM pg_replication_slots")
    assert slots == []
    with pytest.raises(InstanceNotFoundError):
        local_backend.delete_instance(cid, f"{cid}-r")


def test_last_instance_keeps_storage_and_final_snapshot_outlives_cluster(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=1, prefix="ls")
    cid = cluster.db_cluster_identifier
    info = local_backend.connection_info(cid)
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    # deleting the writer fails over first (as Aurora); the former reader is the writer now
    local_backend.delete_instance(cid, cluster.writer_id)
    after = local_backend.describe_cluster(cid)
    assert after.writer_id == cluster.reader_ids[0]
    assert after.reader_ids == []
    # deleting the last instance keeps the cluster's storage; a new instance becomes the writer on it
    local_backend.delete_instance(cid, cluster.reader_ids[0])
    assert local_backend.describe_cluster(cid).db_cluster_members == []
    # a cluster without instances can still be snapshotted (its storage) and restored
    parked = local_backend.create_snapshot(cid, f"{cid}-parked")
    assert parked.status == "available"
    local_backend.restore_from_snapshot(f"{cid}-parked", f"{cid}-p", instances=[InstanceSpec(instance_id=f"{cid}-p1")])
    try:
        info = local_backend.connection_info(f"{cid}-p")
        with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
    finally:
        local_backend.delete_cluster(f"{cid}-p", final_snapshot_id=None, skip_final_snapshot=True)
        local_backend.delete_snapshot(f"{cid}-parked")
    local_backend.create_instance(cid, InstanceSpec(instance_id=f"{cid}-back"))
    info = local_backend.connection_info(cid)
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (f"{cid}-back",)

    final = local_backend.delete_cluster(cid, final_snapshot_id=f"{cid}-final")
    assert final is not None
    assert final.status == "available"
    with pytest.raises(ClusterNotFoundError):
        local_backend.describe_cluster(cid)
    assert [s.db_cluster_snapshot_identifier for s in local_backend.describe_snapshots(cid)] == [f"{cid}-final"]
    local_backend.delete_snapshot(f"{cid}-final")


def test_root_dir_must_be_traversable_by_the_postgres_user(tmp_path: Any) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("only root hands servers to a separate system user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(InvalidParameterError, match="cannot traverse"):
        LocalBackend(root_dir=private / "root")
    assert not (private / "root").exists()


def test_cli_lists_and_shows_clusters(local_backend: Any, local_cluster: Cluster, capsys: Any) -> None:
    from aurora_kit.cli import main

    assert main(["local", "--root", str(local_backend.root), "list"]) == 0
    listing = capsys.readouterr().out
    assert local_cluster.db_cluster_identifier in listing
    assert main(["local", "--root", str(local_backend.root), "status", local_cluster.db_cluster_identifier]) == 0
    status = capsys.readouterr().out
    assert "writer" in status
    assert "available" in status
    assert main(["local", "--root", str(local_backend.root), "status", "no-such-cluster"]) == 2


def test_cli_up_failover_down(local_backend: Any, capsys: Any) -> None:
    """The operator's path through `aurora-kit local`: up, a refused failover (no reader), protected down."""
    from aurora_kit.cli import main

    root = ["local", "--root", str(local_backend.root)]
    assert main([*root, "up", "--cluster-id", "cli-one", "--readers", "0", "--protect"]) == 0
    assert "cli-one" in capsys.readouterr().out
    try:
        assert main([*root, "failover", "cli-one"]) == 2  # no reader to promote
        assert "reader" in capsys.readouterr().err
        assert main([*root, "down", "cli-one", "--skip-final-snapshot"]) == 2  # deletion protection
        assert "deletion protection" in capsys.readouterr().err
        assert local_backend.describe_cluster("cli-one").status == "available"
        assert main([*root, "down", "cli-one", "--skip-final-snapshot", "--force"]) == 0
        assert "cli-one" not in {c.db_cluster_identifier for c in local_backend.list_clusters()}
    finally:
        if "cli-one" in {c.db_cluster_identifier for c in local_backend.list_clusters()}:
            local_backend.delete_cluster(
                "cli-one", final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True
            )


@pytest.mark.parametrize("days", [0, 36, -1])
def test_modify_cluster_refuses_a_bad_retention_instead_of_keeping_the_old_one(
    local_backend: Any, local_cluster: Cluster, days: int
) -> None:
    cid = local_cluster.db_cluster_identifier
    before = local_backend.store.cluster(cid)
    with pytest.raises(InvalidParameterError) as excinfo:
        local_backend.modify_cluster(cid, backup_retention_period=days)
    assert excinfo.value.field == "backup_retention_period"
    with pytest.raises(InvalidParameterError) as excinfo:
        local_backend.modify_cluster(cid, preferred_backup_window="")
    assert excinfo.value.field == "preferred_backup_window"
    assert local_backend.store.cluster(cid) == before


@contextlib.contextmanager
def _pid_file_unreadable(backend: Any, cluster_id: str, instance_id: str) -> Iterator[None]:
    """A real fault in the stop path of one instance: its postmaster.pid cannot be read (a directory in its
    place), so the controller cannot tell its pid; the server itself keeps running."""
    pid_file = backend.nodes.paths(cluster_id).data_dir(instance_id) / "postmaster.pid"
    aside = pid_file.with_name("postmaster.pid.aside")
    pid_file.rename(aside)
    pid_file.mkdir()
    try:
        yield
    finally:
        pid_file.rmdir()
        aside.rename(pid_file)


def test_delete_stops_every_instance_even_when_one_cannot_be_stopped(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cid = local_cluster_factory(readers=2, prefix="ds").db_cluster_identifier
    instances = list(local_backend.store.cluster(cid).instances)
    stuck, others = instances[0], instances[1:]
    with _pid_file_unreadable(local_backend, cid, stuck):
        with pytest.raises(BackendOperationError) as excinfo:
            local_backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True)
        assert isinstance(excinfo.value.__cause__, IsADirectoryError)
        assert stuck in str(excinfo.value)
        # every other server was stopped anyway; the stuck one keeps its files and state (no server on
        # deleted files), so deleting again retries
        assert [i for i in others if local_backend.nodes.controller(cid, i).is_running()] == []
    assert local_backend.nodes.controller(cid, stuck).is_running()
    assert cid in local_backend.store.read()["clusters"]
    local_backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True)
    assert cid not in local_backend.store.read()["clusters"]
    assert not local_backend.nodes.controller(cid, stuck).is_running()


def test_a_failed_stop_is_not_left_stopping_and_the_cluster_starts_again(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=1, prefix="sf")
    cid, writer, reader = cluster.db_cluster_identifier, cluster.writer_id, cluster.reader_ids[0]
    with _pid_file_unreadable(local_backend, cid, reader):
        with pytest.raises(IsADirectoryError):
            local_backend.stop_cluster(cid)
        rec = local_backend.store.cluster(cid)
        assert rec.status == "available"  # not stuck in "stopping"
        assert rec.instances[writer].status == "stopped"  # stopped first, before the failure
        assert rec.instances[reader].status == "available"
    started = local_backend.start_cluster(cid)
    assert started.status == "available"
    assert {i.status for i in local_backend.describe_instances(cid)} == {"available"}
    # and a failed start is not left "starting": the writer that started is available, the rest stopped
    assert local_backend.stop_cluster(cid).status == "stopped"
    inst = local_backend.store.cluster(cid).instances[reader]
    with socket.create_server((inst.address, inst.port)):  # the reader's address is taken (e.g. after a reboot)
        with pytest.raises(BackendOperationError):
            local_backend.start_cluster(cid)
        rec = local_backend.store.cluster(cid)
        assert rec.status == "available"
        assert rec.instances[writer].status == "available"
        assert rec.instances[reader].status == "stopped"
    assert local_backend.start_cluster(cid).status == "available"
    assert {i.status for i in local_backend.describe_instances(cid)} == {"available"}
    info = local_backend.connection_info(cid)
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
