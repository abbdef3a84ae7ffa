"""Local backend pieces that need no server: state store and records, generated config, archive script, the
dry-run switch, and the package's structure."""

from __future__ import annotations

import ast
import json
import multiprocessing
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from aurora_kit.backends.base import REDACTED
from aurora_kit.backends.local import LocalBackend
from aurora_kit.backends.local.config import (
    ClusterPaths,
    Upstream,
    archive_script,
    render_postgresql_conf,
    slot_name,
    sync_standby_names,
)
from aurora_kit.backends.local.state import ClusterRecord, SnapshotRecord, StateDoc, StateStore
from aurora_kit.errors import (
    ClusterNotFoundError,
    DeletionProtectionError,
    FailoverNotPossibleError,
    InstanceNotFoundError,
    InvalidParameterError,
    RestoreWindowError,
    SnapshotAlreadyExistsError,
    SnapshotNotFoundError,
)
from aurora_kit.specs import AlarmSpec, InstanceSpec


def _bump(root: str, times: int) -> None:
    store = StateStore(Path(root))
    for _ in range(times):
        with store.update() as st:
            st["counter"] = st.get("counter", 0) + 1


def test_state_updates_are_serialised_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(str(tmp_path), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert StateStore(tmp_path).read()["counter"] == 160
    assert not list(tmp_path.glob(".state.*.tmp"))  # atomic writes leave no temp file behind


def test_state_read_inside_update_sees_pending_changes_and_update_is_not_reentrant(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with store.update() as st:
        st["clusters"]["a"] = {"instances": {}}
        assert "a" in store.read()["clusters"]  # no self-deadlock on the file lock
        with pytest.raises(RuntimeError), store.update():
            pass
    assert "a" in StateStore(tmp_path).read()["clusters"]


class _BoomError(Exception):
    pass


def _failing_update(store: StateStore) -> None:
    with store.update() as st:
        st["x"] = 2
        raise _BoomError


def test_failed_update_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with store.update() as st:
        st["x"] = 1
    with pytest.raises(_BoomError):
        _failing_update(store)
    assert store.read()["x"] == 1


def _failing_edit(store: StateStore) -> None:
    with store.edit() as doc:
        doc.clusters.pop("c1")
        raise _BoomError


def test_cluster_lock_is_reentrant_in_a_thread(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with store.cluster_lock("c"), store.cluster_lock("c"):
        pass


def test_generated_config_keeps_node_settings_last_and_no_password(tmp_path: Path) -> None:
    paths = ClusterPaths(tmp_path, "c1")
    writer = render_postgresql_conf(
        paths=paths, cluster_id="c1", instance_id="c1-1", port=6001, standby_names=sync_standby_names(["c1-3", "c1-2"])
    )
    assert "primary_conninfo" not in writer
    assert 'synchronous_standby_names = \'ANY 1 ("c1-2", "c1-3")\'' in writer
    assert writer.rstrip().splitlines()[-1].startswith("synchronous_standby_names")
    reader = render_postgresql_conf(
        paths=paths,
        cluster_id="c1",
        instance_id="c1-2",
        port=6002,
        upstream=Upstream(port=6001, user="postgres", writer_id="c1-1", slot=slot_name("c1-2")),
    )
    assert "port=6001" in reader
    assert "application_name=c1-2" in reader
    assert f"passfile={paths.pgpass}" in reader
    assert "password=" not in reader
    assert "primary_slot_name = 'aurora_c1_2'" in reader
    assert reader.index("include_if_exists") < reader.index("aurora_kit.instance_id")
    assert sync_standby_names([]) == ""


def test_archive_script_refuses_to_overwrite_a_different_file(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    script = tmp_path / "archive_wal.sh"
    script.write_text(archive_script(archive))
    script.chmod(0o755)
    seg = tmp_path / "000000010000000000000001"
    seg.write_bytes(b"one")
    assert subprocess.run([str(script), str(seg), seg.name]).returncode == 0
    assert (archive / seg.name).read_bytes() == b"one"
    assert subprocess.run([str(script), str(seg), seg.name]).returncode == 0  # same content again: fine
    seg.write_bytes(b"two")
    assert subprocess.run([str(script), str(seg), seg.name]).returncode != 0  # different content: refused
    assert (archive / seg.name).read_bytes() == b"one"


# -- typed records over state.json ----------------------------------------------------------------------------
#: one cluster and one snapshot as state.json holds them (the format every earlier version wrote, all keys)
CLUSTER_JSON: dict[str, Any] = {
    "status": "available",
    "spec": {"cluster_id": "c1", "deletion_protection": True, "backup_retention_period": 7},
    "engine_major": 16,
    "engine_version": "16.14",
    "master_username": "postgres",
    "database_name": "app",
    "deletion_protection": True,
    "backup_retention_period": 7,
    "preferred_backup_window": "03:00-04:00",
    "iam_database_authentication": False,
    "storage_encrypted": True,
    "tags": {"team": "db"},
    "created": "2026-11-26T21:00:00.123456+00:00",
    "instances": {
        "c1-2": {
            "address": "127.0.0.1",
            "port": 6002,
            "role": "reader",
            "status": "available",
            "instance_class": "db.r6g.large",
            "availability_zone": "local-1a",
            "promotion_tier": 1,
            "created": "2026-11-26T21:00:00.123456+00:00",
            "needs_rewind": True,
        },
        "c1-1": {
            "address": "127.0.0.1",
            "port": 6001,
            "role": "writer",
            "status": "available",
            "instance_class": "db.r6g.xlarge",
            "availability_zone": "local-1b",
            "promotion_tier": 0,
            "created": "2026-11-26T21:00:00.123456+00:00",
            "needs_rewind": False,
        },
        "c1-0": {
            "address": "127.0.0.1",
            "port": 6003,
            "role": "reader",
            "status": "failed",
            "instance_class": "db.r6g.large",
            "availability_zone": "local-1a",
            "promotion_tier": 2,
            "created": "2026-11-26T21:00:01+00:00",
            "needs_rewind": False,
        },
    },
    "parameters": {"work_mem": "8MB"},
    "alarms": [{"metric": "CPUUtilization", "threshold": 80.0}],
    "backups": [
        {
            "id": "auto-1",
            "path": "/x/backups/auto-1",
            "start_time": "2026-11-26T21:00:02+00:00",
            "end_time": "2026-11-26T21:00:03+00:00",
            "start_wal": "0/2000028 (file 000000010000000000000002)",
            "taken_at": "2026-11-26T21:00:03+00:00",
            "source": "c1-2",
            "size_bytes": 31000000,
        }
    ],
    "restore": {
        "kind": "pitr",
        "source": "c0",
        "restore_time": "2026-11-25T10:00:00+00:00",
        "recovery": {"recovery_target_action": "promote"},
    },
    "backup_error": None,
    "sns_topic_arn": "arn:aws:sns:local:1:topic",
    "pending_slot_drops": ["aurora_c1_9"],
}
SNAPSHOT_JSON: dict[str, Any] = {
    "cluster_id": "c1",
    "status": "available",
    "snapshot_type": "manual",
    "engine_version": "16.14",
    "engine_major": 16,
    "master_username": "postgres",
    "database_name": "app",
    "spec": None,
    "created": "2026-11-26T22:00:00+00:00",
    "source_instance": "c1-2",
    "tags": {},
    "allocated_storage": 1,
    "parameters": {"work_mem": "8MB"},
}


def test_records_round_trip_the_state_json() -> None:
    doc = StateDoc.from_json({"version": 1, "clusters": {"c1": CLUSTER_JSON}, "snapshots": {"s1": SNAPSHOT_JSON}})
    cl, snap = doc.clusters["c1"], doc.snapshots["s1"]
    assert cl.to_json() == CLUSTER_JSON
    assert snap.to_json() == SNAPSHOT_JSON
    assert ClusterRecord.from_json("c1", cl.to_json()) == cl
    assert SnapshotRecord.from_json("s1", snap.to_json()) == snap
    # typed, not strings
    assert cl.created.tzinfo is not None
    assert cl.backups[0].start_segment == "000000010000000000000002"
    assert cl.restore is not None
    assert cl.restore.restore_time == datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
    assert cl.instances["c1-2"].needs_rewind
    assert json.loads(json.dumps(cl.to_json())) == CLUSTER_JSON  # plain JSON types only


def test_cluster_record_roles() -> None:
    cl = ClusterRecord.from_json("c1", CLUSTER_JSON)
    assert cl.writer_id == "c1-1"
    assert cl.instances["c1-1"].is_writer
    assert not cl.instances["c1-2"].is_writer
    assert cl.reader_ids == ["c1-0", "c1-2"]
    assert cl.ordered == ["c1-1", "c1-0", "c1-2"]  # writer first, then readers by name
    assert cl.readers_with_status("available") == ["c1-2"]
    assert cl.last_backup is not None
    assert cl.last_backup.scheduled_at == datetime(2026, 11, 26, 21, 0, 3, tzinfo=timezone.utc)
    with pytest.raises(InstanceNotFoundError):
        cl.instance("c1-9")
    changed = cl.with_statuses("stopping", **{"c1-1": "stopping", "not-a-member": "x"})
    assert changed.status == "stopping"
    assert changed.instances["c1-1"].status == "stopping"
    assert "not-a-member" not in changed.instances
    assert cl.instances["c1-1"].status == "available"  # records are immutable: a change is a new record
    assert cl.with_instance("c1-0", None).reader_ids == ["c1-2"]


def test_older_records_without_optional_keys_read_with_defaults() -> None:
    gone = ("sns_topic_arn", "pending_slot_drops", "backup_error")
    old: dict[str, Any] = {k: v for k, v in CLUSTER_JSON.items() if k not in gone}
    old["instances"] = {
        "c1-1": {k: v for k, v in CLUSTER_JSON["instances"]["c1-1"].items() if k not in ("needs_rewind", "address")}
    }
    new_backup_keys = ("taken_at", "source", "size_bytes")
    old["backups"] = [{k: v for k, v in b.items() if k not in new_backup_keys} for b in CLUSTER_JSON["backups"]]
    old["latest_restorable_time"] = "2026-11-26T21:05:00+00:00"  # written by earlier versions, derived now
    cl = ClusterRecord.from_json("c1", old)
    assert (cl.sns_topic_arn, cl.pending_slot_drops, cl.instances["c1-1"].needs_rewind) == (None, (), False)
    assert cl.instances["c1-1"].address == "127.0.0.1"  # before per-instance addresses: loopback, own port
    assert cl.backups[0].taken_at is None
    assert cl.backups[0].scheduled_at == cl.backups[0].end_time  # schedule and retention count from its end
    assert cl.to_json() == {
        **{k: v for k, v in old.items() if k != "latest_restorable_time"},
        "sns_topic_arn": None,
        "pending_slot_drops": [],
        "backup_error": None,
        "instances": {"c1-1": {**old["instances"]["c1-1"], "needs_rewind": False, "address": "127.0.0.1"}},
        "backups": [{**old["backups"][0], "taken_at": None, "source": "", "size_bytes": 0}],
    }


def test_store_reads_and_edits_typed_records(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with pytest.raises(ClusterNotFoundError):
        store.cluster("c1")
    with pytest.raises(SnapshotNotFoundError):
        store.snapshot("s1")
    with store.edit() as doc:
        doc.clusters["c1"] = ClusterRecord.from_json("c1", CLUSTER_JSON)
        doc.snapshots["s1"] = SnapshotRecord.from_json("s1", SNAPSHOT_JSON)
    assert store.read() == {
        "version": 1,
        "clusters": {"c1": CLUSTER_JSON},
        "snapshots": {"s1": SNAPSHOT_JSON},
        "retained": {},
    }
    store.set_status("c1", "stopped", **{"c1-1": "stopped"})
    store.update_instance("c1", "c1-2", needs_rewind=False)
    cl = StateStore(tmp_path).cluster("c1")
    assert (cl.status, cl.instances["c1-1"].status, cl.instances["c1-2"].needs_rewind) == ("stopped", "stopped", False)
    assert store.load().used_ports() == {6001, 6002, 6003}
    assert store.load().used_addresses() == {"127.0.0.1"}
    with pytest.raises(_BoomError):
        _failing_edit(store)
    assert "c1" in store.load().clusters  # a failed edit writes nothing


# -- the one dry-run switch ------------------------------------------------------------------------------------
@pytest.fixture
def seeded_root() -> Iterator[Path]:
    """A root the PostgreSQL account may traverse, holding one recorded cluster (no process runs) + a snapshot."""
    root = Path(tempfile.mkdtemp(prefix="aurora_kit_units_", dir="/tmp"))
    root.chmod(0o755)
    try:
        LocalBackend(root_dir=root)  # creates the layout
        cluster = ClusterRecord.from_json("c1", {**CLUSTER_JSON, "restore": None})
        with StateStore(root).edit() as doc:
            doc.clusters["c1"] = cluster.replace(
                instances={i: r.replace(status="available", needs_rewind=False) for i, r in cluster.instances.items()}
            )
            doc.snapshots["s1"] = SnapshotRecord.from_json("s1", SNAPSHOT_JSON)
        # the WAL archive from the backup's start segment, with its last commit time already in the commit-time
        # cache (no pg_waldump on these dummy bytes): the restorable window is [21:00:03, 21:04:59.999999]
        archive = root / "clusters" / "c1" / "archive"
        archive.mkdir(parents=True)
        (archive / "000000010000000000000002").write_bytes(b"\0" * 16)
        index = {"000000010000000000000002": "2026-11-26T21:05:00+00:00"}
        (root / "clusters" / "c1" / "wal-index.json").write_text(json.dumps(index))
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dry_run_records_every_mutation_and_changes_nothing(seeded_root: Path) -> None:
    dry = LocalBackend(root_dir=seeded_root, dry_run=True)
    before = _tree(seeded_root)
    lrt = datetime(2026, 11, 26, 21, 4, tzinfo=timezone.utc)
    results = [
        dry.modify_cluster("c1", backup_retention_period=14),
        dry.stop_cluster("c1"),
        dry.start_cluster("c1"),  # nothing runs here: every instance is "down"
        dry.create_instance("c1", InstanceSpec(instance_id="c1-new")),
        dry.reboot_instance("c1", "c1-2"),
        dry.create_snapshot("c1", "s2"),
        dry.restore_from_snapshot("s1", "c2", instances=[InstanceSpec(instance_id="c2-1")]),
        dry.restore_to_point_in_time("c1", "c3", restore_time=lrt),
    ]
    assert {r.status for r in results} == {"dry-run"}
    assert dry.put_alarms("c1", [AlarmSpec(metric="CPUUtilization", threshold=90)]) == []
    assert dry.delete_instance("c1", "c1-2") is None
    assert dry.delete_snapshot("s1") is None
    assert (
        dry.delete_cluster("c1", final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True)
        is None
    )
    assert results[0].backup_retention_period == 14  # the projection shows the change
    assert [(c.service, c.operation) for c in dry.plan] == [
        ("local", op)
        for op in [
            "ModifyDBCluster",
            "StopDBCluster",
            "StartDBCluster",
            "CreateDBInstance",
            "RebootDBInstance",
            "CreateDBClusterSnapshot",
            "RestoreDBClusterFromSnapshot",
            "CreateDBInstance",
            "RestoreDBClusterToPointInTime",
            "PutMetricAlarm",
            "DeleteDBInstance",
            "DeleteDBClusterSnapshot",
            "ModifyDBCluster",
            "DeleteDBInstance",
            "DeleteDBInstance",
            "DeleteDBInstance",
            "DeleteDBCluster",
        ]
    ]
    assert dry.plan[0].params == {"DBClusterIdentifier": "c1", "backup_retention_period": 14}
    assert [c.params["DBInstanceIdentifier"] for c in dry.plan[-4:-1]] == ["c1-1", "c1-0", "c1-2"]  # writer first
    assert _tree(seeded_root) == before  # state.json and every file untouched


def test_a_dry_run_refuses_bad_input_like_a_real_run_and_records_nothing(seeded_root: Path) -> None:
    dry = LocalBackend(root_dir=seeded_root, dry_run=True)
    before = _tree(seeded_root)
    with pytest.raises(InvalidParameterError):
        dry.modify_cluster("c1", backup_retention_period=0)
    with pytest.raises(DeletionProtectionError):
        dry.delete_cluster("c1", final_snapshot_id=None, skip_final_snapshot=True)
    with pytest.raises(FailoverNotPossibleError):  # no reader's process is ready
        dry.failover("c1")
    with pytest.raises(RestoreWindowError):
        dry.restore_to_point_in_time("c1", "c3", restore_time=datetime(2026, 11, 26, 22, tzinfo=timezone.utc))
    with pytest.raises(SnapshotAlreadyExistsError):
        dry.create_snapshot("c1", "s1")
    with pytest.raises(InstanceNotFoundError):
        dry.reboot_instance("c1", "c1-9")
    assert dry.plan == []
    assert _tree(seeded_root) == before


def test_mutate_runs_the_work_only_for_real_and_redacts_the_plan(seeded_root: Path) -> None:
    ran: list[str] = []

    def work() -> str:
        ran.append("work")
        return "done"

    calls = [("CreateDBCluster", {"DBClusterIdentifier": "c9", "MasterUserPassword": "hunter22"})]
    dry = LocalBackend(root_dir=seeded_root, dry_run=True)
    assert dry._mutate(calls, work, lambda: "projected") == "projected"
    assert ran == []
    assert dry.plan[0].params == {"DBClusterIdentifier": "c9", "MasterUserPassword": REDACTED}
    real = LocalBackend(root_dir=seeded_root)
    assert real._mutate(calls, work, lambda: "projected") == "done"
    assert (ran, real.plan) == (["work"], [])


# -- structure of the package ----------------------------------------------------------------------------------
LOCAL = Path(__file__).resolve().parent.parent / "aurora_kit" / "backends" / "local"


def test_local_modules_depend_on_the_public_layer_not_on_each_other() -> None:
    """No module imports backend.py (only the package does); none uses another module's private names; only
    state.py reads the JSON shape; only LocalBackend._mutate looks at dry_run; none is over 600 lines."""
    siblings = {p.stem for p in LOCAL.glob("*.py")}
    json_keys = {"instances", "clusters", "snapshots", "status", "role", "port", "spec", "backups"}
    offenders: list[str] = []
    dry_run_reads: list[str] = []
    for path in sorted(LOCAL.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 600:
            offenders.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and path.stem not in ("__init__", "backend"):
                imported = {f"{node.module}.{a.name}" for a in node.names} | {node.module or ""}
                if imported & {"aurora_kit.backends.local.backend", "aurora_kit.backends.local.LocalBackend"}:
                    offenders.append(f"{where} imports the backend")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in siblings and node.attr.startswith("_") and not node.attr.startswith("__"):
                    offenders.append(f"{where} uses {node.value.id}.{node.attr}")
                if node.attr == "dry_run" and isinstance(node.ctx, ast.Load) and node.value.id != "params":
                    dry_run_reads.append(where)
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.slice, ast.Constant)
                and node.slice.value in json_keys
                and path.stem != "state"
            ):
                offenders.append(f"{where} reads [{node.slice.value!r}] of the state JSON")
    assert not offenders, offenders
    mutate = next(
        n
        for n in ast.walk(ast.parse((LOCAL / "backend.py").read_text()))
        if isinstance(n, ast.FunctionDef) and n.name == "_mutate"
    )
    assert dry_run_reads == [f"backend.py:{mutate.body[1].lineno}"], dry_run_reads
