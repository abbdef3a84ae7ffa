"""Snapshots, automated backups (base backups + continuous WAL archive) and restores for the local backend.

* Manual snapshot = ``pg_basebackup -X stream`` (plain format, with ``backup_manifest``) from a reader when one
  is available (after it replayed everything the writer had flushed), else from the writer; checked with
  ``pg_verifybackup``. Kept under ``<root>/snapshots/<id>`` with the master password, so it outlives its cluster.
* Automated backups: one base backup at cluster creation (the same one seeds the readers) and one whenever a
  restored cluster gets its writer, plus the WAL archive (``archive_command`` refuses to overwrite a different
  file, ``archive_timeout`` 60 s). Retention, loosely: when a new automated backup is taken, older ones past
  ``backup_retention_period`` days are removed (the newest is always kept) and archived WAL older than the oldest
  kept backup is pruned with ``pg_archivecleanup``. No daily backup is scheduled: nothing runs in the background.
  **The archive is unbounded**: retention and pruning run only when a new automated backup is taken (cluster
  creation, a restored cluster's first writer), so a long-running cluster keeps every WAL segment since its
  oldest kept backup (1 MB segments; at least one per ``archive_timeout`` minute with writes) and its
  EarliestRestorableTime never moves. Pruning at a forced archive would free nothing (nothing older than the
  oldest kept backup remains); bounding it needs periodic base backups, which this backend does not schedule.
  Delete and restore (or recreate) a long-lived local cluster to reclaim the space.
* ``EarliestRestorableTime`` = end of the oldest automated backup. ``LatestRestorableTime`` (read-only in
  ``describe_cluster``) = the later of the moment before the last forced-archive marker commit and the writer's
  ``pg_stat_archiver.last_archived_time``. Only PITR (and ``stop_cluster``) force an archive: marker commit,
  ``pg_switch_wal()``, wait until archived, so "now" is restorable and recovery always finds a record after the
  target; a time after the recorded one forces one, a time before the window or in the future is refused first.
* Restores create a cluster with no instance; its data waits in ``seed/`` until ``create_instance`` makes the
  writer from it. PITR: base backup older than the target + ``restore_command`` reading the WAL hard-linked
  (copied across filesystems) from the source's archive into the new cluster's ``pitr-wal/`` at restore time +
  ``recovery_target_time`` (always the resolved target, "latest" included) + ``recovery_target_action=promote`` +
  ``recovery.signal``; the source may keep writing, be pruned or be deleted before the writer is created. The
  clone archives into its own archive only. A request outside the window is rejected before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from aurora_kit.backends.base import Snapshot
from aurora_kit.backends.local import parameters, views
from aurora_kit.backends.local.binaries import chown, run_tool
from aurora_kit.backends.local.config import write_file
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import (
    WRITER,
    BackupRecord,
    ClusterRecord,
    RestoreRecord,
    SnapshotRecord,
    spec_settings,
    wal_file,
)
from aurora_kit.errors import (
    ClusterAlreadyExistsError,
    InvalidParameterError,
    InvalidStateError,
    SnapshotAlreadyExistsError,
    WaitTimeoutError,
)
from aurora_kit.polling import wait_for
from aurora_kit.rules import check_identifier, check_restore_window
from aurora_kit.specs import InstanceSpec


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _size_gib(path: Path) -> int:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return max(1, -(-total // 2**30))


# -- archive / restorable window ---------------------------------------------------------------------------
def writer_running(nodes: Nodes, cl: ClusterRecord) -> bool:
    writer = cl.writer_id
    return writer is not None and nodes.controller(cl.cluster_id, writer, cl).is_running()


def force_archive(nodes: Nodes, cluster_id: str, *, timeout: float = 60.0) -> datetime:
    """Make "now" restorable: marker commit, ``pg_switch_wal()``, wait until that segment is archived.

    Returns the time just before the marker commit: every commit up to it is in the archive, and the archive
    holds a commit after it (PITR needs a record after the target). Recorded as the latest restorable time.
    """
    cl = nodes.store.cluster(cluster_id)
    writer = cl.writer_id
    if writer is None or not writer_running(nodes, cl):
        raise InvalidStateError(f"DB cluster {cluster_id!r} has no running writer to archive from")
    with nodes.connect(cluster_id, writer, cl=cl) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        before: datetime = row[0]
        with conn.transaction():
            # the marker needs no synchronous durability; never block on a missing standby
            conn.execute("SET LOCAL synchronous_commit = local")
            conn.execute("SELECT pg_current_xact_id()")
        seg_row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert seg_row is not None
        segment = str(seg_row[0])
    archived = nodes.paths(cluster_id).archive / segment
    wait_for(
        f"WAL segment {segment} archived",
        archived.exists,
        bool,
        timeout=timeout,
        initial_delay=0.01,
        max_delay=0.2,
    )
    nodes.store.set_fields(cluster_id, latest_restorable_time=before)
    return before


def latest_restorable_time(nodes: Nodes, cl: ClusterRecord) -> datetime | None:
    """LatestRestorableTime from what is archived, writing nothing (a read path: no marker commit, no WAL switch,
    no state write): the later of the time recorded by the last forced archive (PITR, stop) and the writer's
    ``pg_stat_archiver.last_archived_time`` (``archive_timeout`` switches a segment with new WAL every 60 s, so
    on a writing cluster it trails by about a minute). Approximate, as Aurora's is: a restore to a time after
    the recorded one forces an archive first, so the restore itself is exact."""
    recorded = cl.latest_restorable_time
    writer = cl.writer_id
    if cl.status != "available" or writer is None:
        return recorded
    try:
        if not nodes.controller(cl.cluster_id, writer, cl).is_running():
            return recorded
        rows = nodes.query(cl.cluster_id, writer, "SELECT last_archived_time FROM pg_stat_archiver")
    except (psycopg.Error, OSError):
        return recorded
    archived: datetime | None = rows[0][0] if rows else None
    if archived is None:
        return recorded
    return archived if recorded is None else max(recorded, archived)


# -- automated backups -------------------------------------------------------------------------------------
def take_automated_backup(nodes: Nodes, cluster_id: str, *, source_id: str) -> Path:
    """Base backup of ``source_id`` into ``backups/<id>``; recorded as an automated backup. Returns its path."""
    backup_id = "auto-" + _now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    dest = nodes.paths(cluster_id).backups / backup_id
    started = _now()
    nodes.basebackup(cluster_id, source_id, dest)
    record = BackupRecord(backup_id, dest, started, _now(), _backup_label(dest).get("START WAL LOCATION", ""))
    nodes.store.update_cluster(cluster_id, lambda cl: cl.replace(backups=(*cl.backups, record)))
    _enforce_retention(nodes, cluster_id)
    return dest


def _backup_label(data_dir: Path) -> dict[str, str]:
    try:
        text = (data_dir / "backup_label").read_text()
    except FileNotFoundError:
        return {}
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _enforce_retention(nodes: Nodes, cluster_id: str) -> None:
    cl = nodes.store.cluster(cluster_id)
    backups = sorted(cl.backups, key=lambda b: b.end_time)
    if len(backups) <= 1:
        return
    horizon = _now() - timedelta(days=cl.backup_retention_period)
    keep = [b for b in backups[:-1] if b.end_time >= horizon] + [backups[-1]]
    drop = [b for b in backups if b not in keep]
    if not drop:
        return
    for b in drop:
        nodes.discard(b.path)
    nodes.store.set_fields(cluster_id, backups=tuple(keep))
    # prune archived WAL the oldest kept backup no longer needs
    oldest_segment = keep[0].start_segment
    if oldest_segment:
        run_tool(
            [nodes.bins(cl).tool("pg_archivecleanup"), str(nodes.paths(cluster_id).archive), oldest_segment],
            what="pg_archivecleanup",
        )


# -- snapshots ---------------------------------------------------------------------------------------------
def check_new_snapshot_id(nodes: Nodes, snapshot_id: str) -> None:
    check_identifier("snapshot_id", snapshot_id)
    if snapshot_id in nodes.store.load().snapshots or nodes.snapshot_dir(snapshot_id).exists():
        raise SnapshotAlreadyExistsError(snapshot_id)


def _snapshot_source(nodes: Nodes, cl: ClusterRecord) -> str:
    """A running reader that has replayed everything the writer flushed; else the writer."""
    cid, writer = cl.cluster_id, cl.writer_id
    if writer is None or not writer_running(nodes, cl):
        raise InvalidStateError(f"DB cluster {cid!r} has no running writer to snapshot", hint="start the cluster first")
    readers = [r for r in cl.readers_with_status("available") if nodes.controller(cid, r, cl).is_running()]
    if not readers:
        return writer
    (flushed,) = nodes.query(cid, writer, "SELECT pg_current_wal_flush_lsn()::text")[0]
    reader = readers[0]
    try:
        wait_for(
            f"reader {reader} replayed up to {flushed}",
            lambda: nodes.query(cid, reader, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", flushed)[0][0],
            bool,
            timeout=10.0,
            initial_delay=0.01,
            max_delay=0.2,
            retry_on=(psycopg.OperationalError,),
        )
    except WaitTimeoutError:
        return writer
    return reader


def create_snapshot(
    nodes: Nodes, cluster_id: str, snapshot_id: str, *, tags: Mapping[str, str] | None = None
) -> Snapshot:
    cl = nodes.store.cluster(cluster_id)
    check_new_snapshot_id(nodes, snapshot_id)
    seed = nodes.paths(cluster_id).seed
    source: str | None
    if cl.writer_id is None and seed.exists():
        # no instance: snapshot the cluster's storage itself (restored from a snapshot, or last instance deleted)
        if cl.restore is not None and cl.restore.kind == "pitr":
            raise InvalidStateError(
                f"DB cluster {cluster_id!r} is a point-in-time restore whose recovery runs when its writer starts",
                hint="create an instance first, then snapshot",
            )
        source = None
    else:
        source = _snapshot_source(nodes, cl)
    sdir = nodes.snapshot_dir(snapshot_id)
    sdir.mkdir(mode=0o700)
    chown(sdir)
    record = SnapshotRecord(
        snapshot_id=snapshot_id,
        cluster_id=cluster_id,
        status="creating",
        engine_major=cl.engine_major,
        engine_version=cl.engine_version,
        master_username=cl.master_username,
        database_name=cl.database_name,
        created=_now(),
        spec=cl.spec,
        source_instance=source or "cluster storage",
        tags=dict(tags or cl.tags),
        # the parameter group in force, so a restore replays with it (see _new_restored_cluster)
        parameters=dict(cl.parameters),
    )
    with nodes.store.edit() as doc:
        doc.snapshots[snapshot_id] = record
    try:
        if source is None:
            nodes.copy_data(seed, sdir / "data")
        else:
            nodes.basebackup(cluster_id, source, sdir / "data")
        if (sdir / "data" / "backup_manifest").exists():  # a cleanly shut-down copy has no manifest to check
            run_tool(
                [nodes.bins(cl).tool("pg_verifybackup"), str(sdir / "data")],
                what=f"pg_verifybackup of snapshot {snapshot_id}",
            )
        shutil.copy2(nodes.paths(cluster_id).secret, sdir / "master-password")
        (sdir / "snapshot.json").write_text(json.dumps({"id": snapshot_id, **record.to_json()}, indent=1))
    except BaseException:
        shutil.rmtree(sdir, ignore_errors=True)
        with nodes.store.edit() as doc:
            doc.snapshots.pop(snapshot_id, None)
        raise
    done = record.replace(status="available", allocated_storage=_size_gib(sdir / "data"))
    with nodes.store.edit() as doc:
        doc.snapshots[snapshot_id] = done
    return views.snapshot(done)


def describe_snapshots(nodes: Nodes, cluster_id: str | None = None) -> list[Snapshot]:
    snaps = sorted(nodes.store.load().snapshots.values(), key=lambda s: s.created)
    return [views.snapshot(s) for s in snaps if cluster_id is None or s.cluster_id == cluster_id]


def delete_snapshot(nodes: Nodes, snapshot_id: str) -> None:
    nodes.discard(nodes.snapshot_dir(snapshot_id))
    with nodes.store.edit() as doc:
        doc.snapshots.pop(snapshot_id, None)


# -- restores ----------------------------------------------------------------------------------------------
def check_new_cluster(nodes: Nodes, new_cluster_id: str, instances: list[InstanceSpec] | None) -> None:
    check_identifier("new_cluster_id", new_cluster_id)
    doc = nodes.store.load()
    if new_cluster_id in doc.clusters or nodes.paths(new_cluster_id).dir.exists():
        raise ClusterAlreadyExistsError(new_cluster_id)
    ids = [i.instance_id for i in instances or []]
    if len(set(ids)) != len(ids):
        raise InvalidParameterError("instances", ids, "duplicate instance_id")
    taken = doc.instance_ids()
    for iid in ids:
        if iid in taken:
            raise InvalidParameterError("instance_id", iid, "already used by another cluster")


def check_snapshot_restore(
    nodes: Nodes, snapshot_id: str, new_cluster_id: str, instances: list[InstanceSpec] | None
) -> SnapshotRecord:
    snap = nodes.store.snapshot(snapshot_id)
    if snap.status != "available":
        raise InvalidStateError(f"DB cluster snapshot {snapshot_id!r} is {snap.status}")
    check_new_cluster(nodes, new_cluster_id, instances)
    return snap


def _new_restored_cluster(
    nodes: Nodes,
    new_cluster_id: str,
    *,
    template: ClusterRecord | SnapshotRecord,
    password_file: Path,
    data: Path,
    restore: RestoreRecord,
    prepare: Callable[[], None] | None = None,
) -> None:
    """Cluster record with no instance + its dir, with ``data`` copied into ``seed/``; ``prepare`` runs after."""
    record = ClusterRecord(
        cluster_id=new_cluster_id,
        status="creating",
        engine_major=template.engine_major,
        engine_version=template.engine_version,
        master_username=template.master_username,
        database_name=template.database_name,
        created=_now(),
        **spec_settings(template.spec),
        tags=dict(template.tags),
        # the source's parameter group (our aws backend passes DBClusterParameterGroupName explicitly too):
        # replay stops for good if max_connections etc. are lower than the source's recorded in the WAL
        parameters=dict(template.parameters),
        restore=restore,
    )
    with nodes.store.edit() as doc:
        if new_cluster_id in doc.clusters:
            raise ClusterAlreadyExistsError(new_cluster_id)
        doc.clusters[new_cluster_id] = record
    try:
        nodes.prepare_cluster_dir(new_cluster_id, password_file.read_text().strip(), template.master_username)
        if template.parameters:
            write_file(nodes.paths(new_cluster_id).parameters, parameters.render(template.parameters), mode=0o644)
        nodes.copy_data(data, nodes.paths(new_cluster_id).seed)
        if prepare is not None:
            prepare()
        nodes.store.set_status(new_cluster_id, "available")
    except BaseException as exc:
        nodes.destroy_after_failure(new_cluster_id, exc)
        raise


def restore_from_snapshot(nodes: Nodes, snap: SnapshotRecord, new_cluster_id: str) -> None:
    """A new cluster with no instance whose storage is the snapshot's data."""
    sdir = nodes.snapshot_dir(snap.snapshot_id)
    _new_restored_cluster(
        nodes,
        new_cluster_id,
        template=snap,
        password_file=sdir / "master-password",
        data=sdir / "data",
        restore=RestoreRecord(kind="snapshot", snapshot_id=snap.snapshot_id),
    )


@dataclass(frozen=True)
class PitrRequest:
    """A point-in-time restore checked against state (nothing written yet)."""

    source: ClusterRecord
    new_cluster_id: str
    restore_time: datetime | None  # None: the latest restorable time
    earliest: datetime
    can_archive: bool  # the source's writer runs: "now" can be made restorable


def check_pitr(
    nodes: Nodes,
    source_cluster_id: str,
    new_cluster_id: str,
    *,
    restore_time: datetime | None,
    use_latest_restorable_time: bool,
    instances: list[InstanceSpec] | None,
) -> PitrRequest:
    """Validate a PITR request from state alone: the restore window is [earliest, recorded latest], or up to
    now when the source's writer runs (the restore forces an archive then). Writes nothing."""
    src = nodes.store.cluster(source_cluster_id)
    if (restore_time is None) == (not use_latest_restorable_time):
        raise InvalidParameterError(
            "restore_time", restore_time, "give exactly one of restore_time or use_latest_restorable_time=True"
        )
    check_new_cluster(nodes, new_cluster_id, instances)
    earliest = src.earliest_restorable_time
    can_archive = src.status == "available" and writer_running(nodes, src)
    latest = _now() if can_archive else src.latest_restorable_time
    check_restore_window(restore_time or latest or _now(), earliest, latest, cluster_id=source_cluster_id)
    assert earliest is not None  # the window check refuses a source without automated backup
    return PitrRequest(src, new_cluster_id, restore_time, earliest, can_archive)


def restore_to_point_in_time(nodes: Nodes, req: PitrRequest) -> None:
    """Pin the target, then a new cluster with no instance whose storage is the base backup before it.

    Only a valid request may force an archive on the source (marker commit + WAL switch): for "latest", or for a
    time after the recorded LatestRestorableTime. ``recovery_target_time`` is always the resolved target, and the
    WAL recovery needs is linked into the new cluster's own dir now, so neither later writes to the source nor its
    deletion or pruning change what the restore returns.
    """
    src, source_id = req.source, req.source.cluster_id
    latest = src.latest_restorable_time
    if req.can_archive and (req.restore_time is None or latest is None or req.restore_time > latest):
        latest = force_archive(nodes, source_id)
    target = check_restore_window(req.restore_time or latest or _now(), req.earliest, latest, cluster_id=source_id)
    base = max((b for b in src.backups if b.end_time <= target), key=lambda b: b.end_time)
    wal_dir = pitr_wal_dir(nodes, req.new_cluster_id)
    recovery = {
        "restore_command": f"cp {shlex.quote(str(wal_dir))}/%f %p",
        "recovery_target_action": "promote",
        "recovery_target_timeline": "latest",
        "recovery_target_time": target.isoformat(),
        "recovery_target_inclusive": "on",
    }
    _new_restored_cluster(
        nodes,
        req.new_cluster_id,
        template=src,
        password_file=nodes.paths(source_id).secret,
        data=base.path,
        restore=RestoreRecord(kind="pitr", source=source_id, restore_time=target, recovery=recovery),
        prepare=lambda: _link_wal(nodes.paths(source_id).archive, base.start_wal, wal_dir),
    )


def pitr_wal_dir(nodes: Nodes, cluster_id: str) -> Path:
    """The WAL a point-in-time restore replays, linked from the source's archive at restore time."""
    return nodes.paths(cluster_id).dir / "pitr-wal"


_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")


def _link_wal(archive: Path, start_wal: str, dest: Path) -> None:
    """Hard-link (same filesystem; copy otherwise) every archived segment from the base backup's start segment
    on, on any timeline, plus every ``.history`` file, into ``dest``. Segments after the target are harmless:
    recovery stops at ``recovery_target_time``."""
    start = wal_file(start_wal)
    dest.mkdir(mode=0o700)
    chown(dest)
    for f in sorted(archive.iterdir()):
        name = f.name
        if _SEGMENT.match(name):
            if start and name[8:] < start[8:]:
                continue
        elif not _HISTORY.match(name):
            continue
        try:
            os.link(f, dest / name)
        except OSError:
            shutil.copy2(f, dest / name)
            chown(dest / name)


def start_writer_from_seed(nodes: Nodes, cluster_id: str, instance_id: str) -> None:
    """Make ``instance_id`` the writer from the cluster's storage (``seed/``), replaying PITR recovery if any."""
    cl = nodes.store.cluster(cluster_id)
    p = nodes.paths(cluster_id)
    if not p.seed.exists():
        raise InvalidStateError(f"DB cluster {cluster_id!r} has no writer and no storage to start one from")
    data = p.data_dir(instance_id)
    os.rename(p.seed, data)
    recovery = dict(cl.restore.recovery) if cl.restore is not None and cl.restore.recovery else None
    if recovery:
        # replay without hot standby: PostgreSQL then does not require max_connections (and the other sizes) at least
        # the source's values recorded in the WAL, which the instance class (08-scale) or the group may set lower
        # than the source ran with when the base backup began; Aurora's restore has no such condition
        recovery["hot_standby"] = "off"
    ctl = nodes.controller(cluster_id, instance_id, cl)
    try:
        nodes.write_node_config(cluster_id, instance_id, cl, recovery=recovery, standby_signal=False)
        if recovery:
            write_file(data / "recovery.signal", "", mode=0o600)
        ctl.start(wait=False)

        def promoted() -> bool:
            ctl.check_not_dead()
            if ctl.pm_status() != "ready":
                return False
            return not nodes.query(cluster_id, instance_id, "SELECT pg_is_in_recovery()")[0][0]

        wait_for(
            f"instance {instance_id} recovered and writable",
            promoted,
            bool,
            timeout=max(nodes.ready_timeout, 120.0),
            initial_delay=0.05,
            max_delay=0.25,
            retry_on=(psycopg.OperationalError,),
            progress=nodes.progress,
        )
        if recovery:
            nodes.write_node_config(cluster_id, instance_id, cl, standby_signal=False)
            ctl.reload()
    except BaseException:
        ctl.stop(mode="immediate", timeout=10)
        if data.exists() and not p.seed.exists():
            (data / "recovery.signal").unlink(missing_ok=True)
            os.rename(data, p.seed)
        raise

    def became_writer(rec: ClusterRecord) -> ClusterRecord:
        inst = rec.instance(instance_id)
        return rec.replace(restore=None).with_instance(instance_id, inst.replace(role=WRITER, status="available"))

    nodes.store.update_cluster(cluster_id, became_writer)
    shutil.rmtree(pitr_wal_dir(nodes, cluster_id), ignore_errors=True)  # recovered: no longer needed
    take_automated_backup(nodes, cluster_id, source_id=instance_id)


def park_writer_as_seed(nodes: Nodes, cluster_id: str, instance_id: str) -> None:
    """Delete the last instance but keep the cluster's storage (``seed/``), as Aurora keeps the volume."""
    cl = nodes.store.cluster(cluster_id)
    p = nodes.paths(cluster_id)
    nodes.controller(cluster_id, instance_id, cl).stop(mode="fast")
    os.rename(p.data_dir(instance_id), p.seed)
    nodes.discard(p.instance_dir(instance_id))
    nodes.store.update_cluster(cluster_id, lambda rec: rec.with_instance(instance_id, None).replace(restore=None))
