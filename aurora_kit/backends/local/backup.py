"""Snapshots and restores for the local backend (automated backups and the WAL archive: :mod:`.automated`,
:mod:`.archive`).

* **Manual snapshot** = ``pg_basebackup -X stream`` (plain format, with ``backup_manifest``) from a streaming reader
  that replayed everything the writer had flushed, else from the writer; checked with ``pg_verifybackup``. Kept
  under ``<root>/snapshots/<id>`` with the master password, so it outlives its cluster. ``describe_snapshots``
  lists them with the automated backups (``snapshot_type`` ``manual`` / ``automated``, as RDS does); an automated
  one cannot be deleted by hand (it expires with the retention period) but restores like a manual one.
* **Restores** create a cluster with no instance; its data waits in ``seed/`` until ``create_instance`` makes the
  writer from it. The copy into ``seed/`` is the fastest safe one the filesystem offers (:mod:`.datacopy`:
  reflink, else a parallel ``copy_file_range`` copy; never hard links into a data directory).
* **Point-in-time restore** checks the WAL chain before it creates anything: the target must lie in the
  restorable window computed from the archive (:func:`.archive.restorable_window`, which never spans a missing
  segment); a target after the archived WAL, with the source's writer running, first forces an archive (marker
  commit + WAL switch) and is checked again. It starts from the **newest** automated backup that ended before the
  target and replays only the WAL after it: under the source's lock, that backup's files are hard-linked into the
  new cluster's ``backups/`` (backups are never written once taken) and the WAL chain from its start into the new
  cluster's own archive, so the source may keep writing, expire that backup or be deleted meanwhile; then the
  backup is copied into ``seed/`` outside the lock. ``recovery_target_time`` is always the resolved target
  ("latest" included), ``recovery_target_action=promote``, ``recovery.signal``; recovery reads the new cluster's
  archive (and, with ``archive_mode=on`` while it recovers, does not copy what it restores back into it). Once
  promoted, that base + its archive are the new cluster's first automated backup (no second base backup), and WAL of
  the source's timelines past the branch point is dropped from it. A snapshot restore's first automated backup is a
  ``pg_basebackup`` of its new writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from aurora_kit.backends.base import Snapshot
from aurora_kit.backends.local import archive, automated, clock, datacopy, parameters, views
from aurora_kit.backends.local.automated import BackupSet
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
)
from aurora_kit.errors import (
    ClusterAlreadyExistsError,
    InvalidParameterError,
    InvalidStateError,
    RestoreWindowError,
    SnapshotAlreadyExistsError,
    SnapshotNotFoundError,
)
from aurora_kit.polling import wait_for
from aurora_kit.rules import check_identifier, check_restore_window
from aurora_kit.specs import InstanceSpec

#: WAL segments (1 MB each) a point-in-time restore copies into the new writer's pg_wal before recovery starts
PRELOAD_SEGMENTS = 2048


def _size_gib(path: Path) -> int:
    return max(1, -(-automated.tree_bytes(path) // 2**30))


# -- snapshots ---------------------------------------------------------------------------------------------
def check_new_snapshot_id(nodes: Nodes, snapshot_id: str) -> None:
    check_identifier("snapshot_id", snapshot_id)
    if snapshot_id in nodes.store.load().snapshots or nodes.snapshot_dir(snapshot_id).exists():
        raise SnapshotAlreadyExistsError(snapshot_id)


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
        source = automated.backup_source(nodes, cl)
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
        created=clock.wall(),
        spec=cl.spec,
        source_instance=source or "cluster storage",
        tags=dict(tags or cl.tags),
        # the parameter group in force, so a restore replays with it (see _create_restored)
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


SNAPSHOT_TYPES = ("manual", "automated")


def describe_snapshots(nodes: Nodes, cluster_id: str | None = None, snapshot_type: str | None = None) -> list[Snapshot]:
    """Manual and automated snapshots (RDS lists both unless ``SnapshotType`` picks one), oldest first; a deleted
    cluster's retained automated backups are listed under its id."""
    if snapshot_type is not None and snapshot_type not in SNAPSHOT_TYPES:
        raise InvalidParameterError("snapshot_type", snapshot_type, f"must be one of {', '.join(SNAPSHOT_TYPES)}")
    out: list[Snapshot] = []
    if snapshot_type in (None, "manual"):
        snaps = nodes.store.load().snapshots.values()
        out += [views.snapshot(s) for s in snaps if cluster_id is None or s.cluster_id == cluster_id]
    if snapshot_type in (None, "automated"):
        out += automated.automated_snapshots(nodes, cluster_id)
    return sorted(out, key=lambda s: (s.snapshot_create_time is None, s.snapshot_create_time))


def delete_snapshot(nodes: Nodes, snapshot_id: str) -> None:
    nodes.discard(nodes.snapshot_dir(snapshot_id))
    with nodes.store.edit() as doc:
        doc.snapshots.pop(snapshot_id, None)


def check_snapshot_deletable(nodes: Nodes, snapshot_id: str) -> None:
    """A manual snapshot; an automated one is refused (it expires with the retention period, as on RDS)."""
    if snapshot_id in nodes.store.load().snapshots:
        return
    with contextlib.suppress(SnapshotNotFoundError):
        automated.find_automated(nodes, snapshot_id)
        raise InvalidStateError(
            f"{snapshot_id!r} is an automated snapshot: it expires with the cluster's backup retention period",
            hint="copy what you need to keep by restoring it, or shorten backup_retention_period",
        )
    raise SnapshotNotFoundError(snapshot_id)


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


@dataclass(frozen=True)
class SnapshotSource:
    """What a restore from a snapshot (manual, or automated: live or retained) copies and takes its settings from."""

    snapshot_id: str
    template: ClusterRecord | SnapshotRecord
    data: Path
    password_file: Path


def check_snapshot_restore(
    nodes: Nodes, snapshot_id: str, new_cluster_id: str, instances: list[InstanceSpec] | None
) -> SnapshotSource:
    manual = nodes.store.load().snapshots.get(snapshot_id)
    source: SnapshotSource
    if manual is not None:
        if manual.status != "available":
            raise InvalidStateError(f"DB cluster snapshot {snapshot_id!r} is {manual.status}")
        sdir = nodes.snapshot_dir(snapshot_id)
        source = SnapshotSource(snapshot_id, manual, sdir / "data", sdir / "master-password")
    else:
        bs, b = automated.find_automated(nodes, snapshot_id)  # SnapshotNotFoundError
        source = SnapshotSource(snapshot_id, bs.cluster, b.path, bs.secret)
    check_new_cluster(nodes, new_cluster_id, instances)
    return source


def _create_restored(
    nodes: Nodes,
    new_cluster_id: str,
    *,
    template: ClusterRecord | SnapshotRecord,
    password_file: Path,
    restore: RestoreRecord,
) -> None:
    """The new cluster's record (``creating``, no instance) and its dir, with the source's parameter group."""
    record = ClusterRecord(
        cluster_id=new_cluster_id,
        status="creating",
        engine_major=template.engine_major,
        engine_version=template.engine_version,
        master_username=template.master_username,
        database_name=template.database_name,
        created=clock.wall(),
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
    except BaseException as exc:
        nodes.destroy_after_failure(new_cluster_id, exc)
        raise


def _fill_seed(nodes: Nodes, new_cluster_id: str, data: Path, wal: list[str] | None = None) -> None:
    """Copy ``data`` into the new cluster's storage (``seed/``), and the archived WAL files ``wal`` (names in its
    archive) into its ``pg_wal`` marked as archived; it is available then. Gone again on failure."""
    p = nodes.paths(new_cluster_id)
    try:
        nodes.copy_data(data, p.seed)
        if wal:
            pg_wal = p.seed / "pg_wal"
            datacopy.copy_files([(p.archive / name, pg_wal / name) for name in wal])
            for name in wal:  # copies of archived files: never archived again, recycled like any old segment
                write_file(pg_wal / "archive_status" / f"{name}.done", "", mode=0o600)
        nodes.store.set_status(new_cluster_id, "available")
    except BaseException as exc:
        nodes.destroy_after_failure(new_cluster_id, exc)
        raise


def restore_from_snapshot(nodes: Nodes, snap: SnapshotSource, new_cluster_id: str) -> None:
    """A new cluster with no instance whose storage is the snapshot's data."""
    _create_restored(
        nodes,
        new_cluster_id,
        template=snap.template,
        password_file=snap.password_file,
        restore=RestoreRecord(kind="snapshot", snapshot_id=snap.snapshot_id),
    )
    _fill_seed(nodes, new_cluster_id, snap.data)


@dataclass(frozen=True)
class PitrRequest:
    """A point-in-time restore checked against the archive (nothing written yet)."""

    source: BackupSet
    new_cluster_id: str
    restore_time: datetime | None  # None: the latest restorable time
    can_archive: bool  # the source's writer runs and the chain is unbroken: "now" can be made restorable


def check_pitr(
    nodes: Nodes,
    source_cluster_id: str,
    new_cluster_id: str,
    *,
    restore_time: datetime | None,
    use_latest_restorable_time: bool,
    instances: list[InstanceSpec] | None,
) -> PitrRequest:
    """Validate a PITR request: the window is the archive's (:func:`automated.window`), extended to now when the
    source's writer runs and its chain is unbroken (the restore forces an archive then). Writes nothing. The
    source may be a deleted cluster whose automated backups were retained."""
    src = automated.backup_set(nodes, source_cluster_id)
    if (restore_time is None) == (not use_latest_restorable_time):
        raise InvalidParameterError(
            "restore_time", restore_time, "give exactly one of restore_time or use_latest_restorable_time=True"
        )
    check_new_cluster(nodes, new_cluster_id, instances)
    win = automated.window(nodes, src)
    live = src.retained is None and src.cluster.status == "available"
    can_archive = live and win.at_end and automated.writer_running(nodes, src.cluster)
    latest = clock.wall() if can_archive else win.latest
    check_restore_window(restore_time or latest or clock.wall(), win.earliest, latest, cluster_id=source_cluster_id)
    return PitrRequest(src, new_cluster_id, restore_time, can_archive)


@contextlib.contextmanager
def _source_lock(nodes: Nodes, src: BackupSet) -> Iterator[None]:
    if src.retained is not None:
        yield
        return
    with nodes.store.cluster_lock(src.cluster.cluster_id):
        yield


def restore_to_point_in_time(nodes: Nodes, req: PitrRequest) -> None:
    """Resolve and check the target against the archive, then a new cluster with no instance whose storage is the
    newest automated backup before the target and whose archive holds the WAL after it (module docstring)."""
    sid = req.source.cluster.cluster_id
    with _source_lock(nodes, req.source):
        src = req.source if req.source.retained is not None else automated.of_cluster(nodes, nodes.store.cluster(sid))
        win = automated.window(nodes, src)
        if req.can_archive and (req.restore_time is None or win.latest is None or req.restore_time > win.latest):
            automated.force_archive(nodes, sid)
            win = automated.window(nodes, src)
        target = req.restore_time or win.latest
        if target is None or win.latest is None or target > win.latest:
            missing = f" (segment {win.missing} is missing from the archive)" if win.missing else ""
            raise RestoreWindowError(
                f"the archive of {sid!r} cannot reach {target}{missing}; nothing was created",
                restore_time=target,
                earliest=win.earliest,
                latest=win.latest,
            )
        check_restore_window(target, win.earliest, win.latest, cluster_id=sid)
        base = max((b for b in win.bases if b.end_time <= target), key=lambda b: b.end_time)
        start = archive.backup_start(base)
        assert start is not None
        assert win.reach is not None
        new_id = req.new_cluster_id
        linked = nodes.paths(new_id).backups / base.path.name
        # the WAL to replay goes into pg_wal up front (one parallel copy, not a restore_command process per
        # segment while recovery waits); restore_command fetches only what is not there (past PRELOAD_SEGMENTS)
        last = min(win.reach, start[1] + PRELOAD_SEGMENTS - 1)
        view = archive.ArchiveView.read(src.archive)
        wal = [view.name(n) for n in range(start[1], last + 1)] + archive.history_files(src.archive)
        clone_archive = shlex.quote(str(nodes.paths(req.new_cluster_id).archive))
        recovery = {
            "restore_command": f"test ! -f pg_wal/%f && cp {clone_archive}/%f %p",
            # what recovery replays is in this cluster's archive already: not archived again while recovering
            # (a primary archives the same with on as with always)
            "archive_mode": "on",
            "recovery_target_action": "promote",
            "recovery_target_timeline": "latest",
            "recovery_target_time": target.isoformat(),
            "recovery_target_inclusive": "on",
        }
        restore = RestoreRecord(
            kind="pitr", source=sid, restore_time=target, recovery=recovery, base=base.replace(path=linked)
        )
        _create_restored(nodes, new_id, template=src.cluster, password_file=src.secret, restore=restore)
        try:
            automated.copy_backup_files(base.path, linked)
            archive.link_chain(view, start[1], win.reach, nodes.paths(new_id).archive)
        except BaseException as exc:
            nodes.destroy_after_failure(new_id, exc)
            raise
    _fill_seed(nodes, new_id, linked, wal)


def start_writer_from_seed(nodes: Nodes, cluster_id: str, instance_id: str) -> None:
    """Make ``instance_id`` the writer from the cluster's storage (``seed/``), replaying PITR recovery if any; then
    the cluster's first automated backup."""
    cl = nodes.store.cluster(cluster_id)
    p = nodes.paths(cluster_id)
    if not p.seed.exists():
        raise InvalidStateError(f"DB cluster {cluster_id!r} has no writer and no storage to start one from")
    data = p.data_dir(instance_id)
    os.rename(p.seed, data)
    restore = cl.restore
    recovery = dict(restore.recovery) if restore is not None and restore.recovery else None
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
        promoted_at = clock.wall()
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
    if restore is not None and restore.base is not None:
        _adopt_restored_base(nodes, cluster_id, restore, restore.base, promoted_at)
    else:
        automated.take(nodes, cluster_id, source=instance_id)


def _adopt_restored_base(
    nodes: Nodes, cluster_id: str, restore: RestoreRecord, base: BackupRecord, promoted_at: datetime
) -> None:
    """The base a point-in-time restore started from (linked into ``backups/``) + this cluster's archive become
    its first automated backup, restorable from the promotion on; its new timeline's first segment is archived
    now and the source's WAL past the branch point is dropped."""
    now = clock.now()
    bs = automated.of_cluster(nodes, nodes.store.cluster(cluster_id))
    backup_id, _ = automated.new_backup_id(bs, now, new_dir=False)
    record = base.replace(
        id=backup_id,
        end_time=promoted_at,
        taken_at=now,
        source=f"{restore.source} at {restore.restore_time.isoformat() if restore.restore_time else 'latest'}",
    )
    automated.add_backup(nodes, cluster_id, record)
    automated.force_archive(nodes, cluster_id)
    view = archive.ArchiveView.read(bs.archive)
    archive.remove(bs.archive, view.dead_branches())


def park_writer_as_seed(nodes: Nodes, cluster_id: str, instance_id: str) -> None:
    """Delete the last instance but keep the cluster's storage (``seed/``), as Aurora keeps the volume."""
    cl = nodes.store.cluster(cluster_id)
    p = nodes.paths(cluster_id)
    nodes.controller(cluster_id, instance_id, cl).stop(mode="fast")
    os.rename(p.data_dir(instance_id), p.seed)
    nodes.discard(p.instance_dir(instance_id))
    nodes.store.update_cluster(cluster_id, lambda rec: rec.with_instance(instance_id, None).replace(restore=None))
