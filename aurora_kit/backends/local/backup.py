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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from aurora_kit.backends.base import Cluster, Snapshot
from aurora_kit.backends.local import parameters
from aurora_kit.backends.local.binaries import chown, run_tool
from aurora_kit.backends.local.config import write_file
from aurora_kit.errors import (
    ClusterAlreadyExistsError,
    InvalidParameterError,
    InvalidStateError,
    RestoreWindowError,
    SnapshotAlreadyExistsError,
    SnapshotNotFoundError,
    WaitTimeoutError,
)
from aurora_kit.polling import wait_for
from aurora_kit.rules import check_identifier
from aurora_kit.specs import InstanceSpec

if TYPE_CHECKING:
    from aurora_kit.backends.local.backend import LocalBackend


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _size_gib(path: Path) -> int:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return max(1, -(-total // 2**30))


def snapshot_dir(backend: LocalBackend, snapshot_id: str) -> Path:
    return backend.root / "snapshots" / snapshot_id


# -- archive / restorable window ---------------------------------------------------------------------------
def force_archive(backend: LocalBackend, cluster_id: str, *, timeout: float = 60.0) -> datetime:
    """Make "now" restorable: marker commit, ``pg_switch_wal()``, wait until that segment is archived.

    Returns the time just before the marker commit: every commit up to it is in the archive, and the archive
    holds a commit after it (PITR needs a record after the target). Recorded as the latest restorable time.
    """
    cl = backend.cluster_state(cluster_id)
    writer = backend.writer_id(cl)
    if writer is None or not backend.controller(cluster_id, writer, cl).is_running():
        raise InvalidStateError(f"DB cluster {cluster_id!r} has no running writer to archive from")
    with backend.connect(cluster_id, writer, cl=cl) as conn:
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
    archived = backend.paths(cluster_id).archive / segment
    wait_for(
        f"WAL segment {segment} archived",
        archived.exists,
        bool,
        timeout=timeout,
        initial_delay=0.01,
        max_delay=0.2,
    )
    with backend.update_cluster(cluster_id) as rec:
        rec["latest_restorable_time"] = before.isoformat()
    return before


def latest_restorable_time(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any]) -> datetime | None:
    """LatestRestorableTime from what is archived, writing nothing (a read path: no marker commit, no WAL switch,
    no state write): the later of the time recorded by the last forced archive (PITR, stop) and the writer's
    ``pg_stat_archiver.last_archived_time`` (``archive_timeout`` switches a segment with new WAL every 60 s, so
    on a writing cluster it trails by about a minute). Approximate, as Aurora's is: a restore to a time after
    the recorded one forces an archive first, so the restore itself is exact."""
    recorded = _dt(cl.get("latest_restorable_time"))
    writer = backend.writer_id(cl)
    if backend.dry_run or cl["status"] != "available" or writer is None:
        return recorded
    try:
        if not backend.controller(cluster_id, writer, cl).is_running():
            return recorded
        rows = backend.query(cluster_id, writer, "SELECT last_archived_time FROM pg_stat_archiver")
    except (psycopg.Error, OSError):
        return recorded
    archived: datetime | None = rows[0][0] if rows else None
    if archived is None:
        return recorded
    return archived if recorded is None else max(recorded, archived)


def earliest_restorable_time(cl: Mapping[str, Any]) -> datetime | None:
    ends = [_dt(b["end_time"]) for b in cl.get("backups") or []]
    return min((e for e in ends if e is not None), default=None)


# -- automated backups -------------------------------------------------------------------------------------
def take_automated_backup(backend: LocalBackend, cluster_id: str, *, source_id: str) -> Path:
    """Base backup of ``source_id`` into ``backups/<id>``; recorded as an automated backup. Returns its path."""
    p = backend.paths(cluster_id)
    backup_id = "auto-" + _now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    dest = p.backups / backup_id
    started = _now()
    backend.basebackup(cluster_id, source_id, dest)
    ended = _now()
    with backend.update_cluster(cluster_id) as rec:
        rec.setdefault("backups", []).append(
            {
                "id": backup_id,
                "path": str(dest),
                "start_time": started.isoformat(),
                "end_time": ended.isoformat(),
                "start_wal": _backup_label(dest).get("START WAL LOCATION", ""),
            }
        )
    _enforce_retention(backend, cluster_id)
    return dest


def _backup_label(data_dir: Path) -> dict[str, str]:
    try:
        text = (data_dir / "backup_label").read_text()
    except FileNotFoundError:
        return {}
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _enforce_retention(backend: LocalBackend, cluster_id: str) -> None:
    cl = backend.cluster_state(cluster_id)
    backups = sorted(cl.get("backups") or [], key=lambda b: b["end_time"])
    if len(backups) <= 1:
        return
    horizon = _now() - timedelta(days=int(cl["backup_retention_period"]))
    keep = [b for b in backups[:-1] if (_dt(b["end_time"]) or _now()) >= horizon] + [backups[-1]]
    drop = [b for b in backups if b not in keep]
    if not drop:
        return
    for b in drop:
        backend.discard(Path(b["path"]))
    with backend.update_cluster(cluster_id) as rec:
        rec["backups"] = keep
    # prune archived WAL the oldest kept backup no longer needs: "(file XXXXXXXX...)" in START WAL LOCATION
    start = keep[0].get("start_wal", "")
    if "(file " in start:
        oldest_segment = start.split("(file ", 1)[1].rstrip(")")
        run_tool(
            [backend.bins(cl).tool("pg_archivecleanup"), str(backend.paths(cluster_id).archive), oldest_segment],
            what="pg_archivecleanup",
        )


# -- snapshots ---------------------------------------------------------------------------------------------
def check_new_snapshot_id(backend: LocalBackend, snapshot_id: str) -> None:
    check_identifier("snapshot_id", snapshot_id)
    if snapshot_id in backend.store.read()["snapshots"] or snapshot_dir(backend, snapshot_id).exists():
        raise SnapshotAlreadyExistsError(snapshot_id)


def projected_snapshot(backend: LocalBackend, cluster_id: str, snapshot_id: str) -> Snapshot:
    cl = backend.cluster_state(cluster_id)
    return Snapshot(
        db_cluster_snapshot_identifier=snapshot_id,
        db_cluster_identifier=cluster_id,
        status="dry-run",
        snapshot_type="manual",
        engine_version=cl["engine_version"],
    )


def _snapshot_source(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any]) -> str:
    """A running reader that has replayed everything the writer flushed; else the writer."""
    writer = backend.writer_id(cl)
    if writer is None or not backend.controller(cluster_id, writer, cl).is_running():
        raise InvalidStateError(
            f"DB cluster {cluster_id!r} has no running writer to snapshot", hint="start the cluster first"
        )
    readers = [
        r
        for r in backend.reader_ids(cl)
        if cl["instances"][r]["status"] == "available" and backend.controller(cluster_id, r, cl).is_running()
    ]
    if not readers:
        return writer
    (flushed,) = backend.query(cluster_id, writer, "SELECT pg_current_wal_flush_lsn()::text")[0]
    reader = readers[0]
    try:
        wait_for(
            f"reader {reader} replayed up to {flushed}",
            lambda: backend.query(cluster_id, reader, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", flushed)[0][0],
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
    backend: LocalBackend, cluster_id: str, snapshot_id: str, *, tags: Mapping[str, str] | None = None
) -> Snapshot:
    cl = backend.cluster_state(cluster_id)
    check_new_snapshot_id(backend, snapshot_id)
    seed = backend.paths(cluster_id).seed
    source: str | None
    if backend.writer_id(cl) is None and seed.exists():
        # no instance: snapshot the cluster's storage itself (restored from a snapshot, or last instance deleted)
        if (cl.get("restore") or {}).get("kind") == "pitr":
            raise InvalidStateError(
                f"DB cluster {cluster_id!r} is a point-in-time restore whose recovery runs when its writer starts",
                hint="create an instance first, then snapshot",
            )
        source = None
    else:
        source = _snapshot_source(backend, cluster_id, cl)
    sdir = snapshot_dir(backend, snapshot_id)
    sdir.mkdir(mode=0o700)
    chown(sdir)
    record = {
        "cluster_id": cluster_id,
        "status": "creating",
        "snapshot_type": "manual",
        "engine_version": cl["engine_version"],
        "engine_major": cl["engine_major"],
        "master_username": cl["master_username"],
        "database_name": cl["database_name"],
        "spec": cl.get("spec"),
        "created": _now().isoformat(),
        "source_instance": source or "cluster storage",
        "tags": dict(tags or cl.get("tags") or {}),
        "allocated_storage": 0,
        # the parameter group in force, so a restore replays with it (see _new_restored_cluster)
        "parameters": dict(cl.get("parameters") or {}),
    }
    with backend.store.update() as st:
        st["snapshots"][snapshot_id] = record
    try:
        if source is None:
            backend.copy_data(seed, sdir / "data")
        else:
            backend.basebackup(cluster_id, source, sdir / "data")
        if (sdir / "data" / "backup_manifest").exists():  # a cleanly shut-down copy has no manifest to check
            run_tool(
                [backend.bins(cl).tool("pg_verifybackup"), str(sdir / "data")],
                what=f"pg_verifybackup of snapshot {snapshot_id}",
            )
        shutil.copy2(backend.paths(cluster_id).secret, sdir / "master-password")
        (sdir / "snapshot.json").write_text(json.dumps({"id": snapshot_id, **record}, indent=1, default=str))
    except BaseException:
        shutil.rmtree(sdir, ignore_errors=True)
        with backend.store.update() as st:
            st["snapshots"].pop(snapshot_id, None)
        raise
    with backend.store.update() as st:
        st["snapshots"][snapshot_id].update(status="available", allocated_storage=_size_gib(sdir / "data"))
    return _snapshot_view(snapshot_id, backend.store.read()["snapshots"][snapshot_id])


def _snapshot_view(snapshot_id: str, rec: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        db_cluster_snapshot_identifier=snapshot_id,
        db_cluster_identifier=rec["cluster_id"],
        status=rec["status"],
        snapshot_type=rec["snapshot_type"],
        engine_version=rec["engine_version"],
        snapshot_create_time=_dt(rec["created"]),
        allocated_storage=int(rec.get("allocated_storage") or 0),
        storage_encrypted=False,
        tags=dict(rec.get("tags") or {}),
    )


def describe_snapshots(backend: LocalBackend, cluster_id: str | None = None) -> list[Snapshot]:
    snaps = backend.store.read()["snapshots"]
    return [
        _snapshot_view(sid, rec)
        for sid, rec in sorted(snaps.items(), key=lambda kv: kv[1]["created"])
        if cluster_id is None or rec["cluster_id"] == cluster_id
    ]


def delete_snapshot(backend: LocalBackend, snapshot_id: str) -> None:
    if snapshot_id not in backend.store.read()["snapshots"]:
        raise SnapshotNotFoundError(snapshot_id)
    if backend.dry_run:
        backend._record("local", "DeleteDBClusterSnapshot", DBClusterSnapshotIdentifier=snapshot_id)
        return
    backend.discard(snapshot_dir(backend, snapshot_id))
    with backend.store.update() as st:
        st["snapshots"].pop(snapshot_id, None)


# -- restores ----------------------------------------------------------------------------------------------
def _check_new_cluster(backend: LocalBackend, new_cluster_id: str, instances: list[InstanceSpec] | None) -> None:
    check_identifier("new_cluster_id", new_cluster_id)
    st = backend.store.read()
    if new_cluster_id in st["clusters"] or backend.paths(new_cluster_id).dir.exists():
        raise ClusterAlreadyExistsError(new_cluster_id)
    ids = [i.instance_id for i in instances or []]
    if len(set(ids)) != len(ids):
        raise InvalidParameterError("instances", ids, "duplicate instance_id")
    taken = {iid for c in st["clusters"].values() for iid in c["instances"]}
    for iid in ids:
        if iid in taken:
            raise InvalidParameterError("instance_id", iid, "already used by another cluster")


def _new_restored_cluster(
    backend: LocalBackend,
    new_cluster_id: str,
    *,
    template: Mapping[str, Any],
    password_file: Path,
    data: Path,
    restore: dict[str, Any],
    prepare: Callable[[], None] | None = None,
) -> None:
    """Cluster record with no instance + its dir, with ``data`` copied into ``seed/``; ``prepare`` runs after."""
    now = _now()
    with backend.store.update() as st:
        if new_cluster_id in st["clusters"]:
            raise ClusterAlreadyExistsError(new_cluster_id)
        spec = dict(template.get("spec") or {})
        st["clusters"][new_cluster_id] = {
            "spec": None,
            "engine_major": template["engine_major"],
            "engine_version": template["engine_version"],
            "master_username": template["master_username"],
            "database_name": template["database_name"],
            "deletion_protection": bool(spec.get("deletion_protection", False)),
            "backup_retention_period": int(spec.get("backup_retention_period", 1)),
            "preferred_backup_window": spec.get("preferred_backup_window", "03:00-04:00"),
            "iam_database_authentication": bool(spec.get("iam_database_authentication", False)),
            "storage_encrypted": bool(spec.get("storage_encrypted", False)),
            "tags": dict(template.get("tags") or {}),
            "created": now.isoformat(),
            "status": "creating",
            "instances": {},
            # the source's parameter group (our aws backend passes DBClusterParameterGroupName explicitly too):
            # replay stops for good if max_connections etc. are lower than the source's recorded in the WAL
            "parameters": dict(template.get("parameters") or {}),
            "alarms": [],
            "backups": [],
            "restore": restore,
            "latest_restorable_time": None,
        }
    try:
        password = password_file.read_text().strip()
        backend._prepare_cluster_dir(new_cluster_id, password, template["master_username"])
        group = template.get("parameters") or {}
        if group:
            write_file(backend.paths(new_cluster_id).parameters, parameters.render(group), mode=0o644)
        backend.copy_data(data, backend.paths(new_cluster_id).seed)
        if prepare is not None:
            prepare()
        backend.set_status(new_cluster_id, "available")
    except BaseException as exc:
        backend._destroy_after_failure(new_cluster_id, exc)
        raise


def _create_instances(backend: LocalBackend, cluster_id: str, instances: list[InstanceSpec] | None) -> None:
    try:
        for spec in instances or []:
            backend.create_instance(cluster_id, spec)
    except BaseException as exc:
        backend._destroy_after_failure(cluster_id, exc)
        raise


def _projected_restore(backend: LocalBackend, new_cluster_id: str, template: Mapping[str, Any]) -> Cluster:
    return Cluster(
        db_cluster_identifier=new_cluster_id,
        status="dry-run",
        engine="aurora-postgresql",
        engine_version=template["engine_version"],
        endpoint="",
        reader_endpoint="",
        port=0,
        master_username=template["master_username"],
        database_name=template["database_name"],
        db_cluster_members=[],
        backup_retention_period=1,
        preferred_backup_window="03:00-04:00",
        storage_encrypted=False,
        deletion_protection=False,
    )


def restore_from_snapshot(
    backend: LocalBackend, snapshot_id: str, new_cluster_id: str, *, instances: list[InstanceSpec] | None
) -> Cluster:
    snap = backend.store.read()["snapshots"].get(snapshot_id)
    if snap is None:
        raise SnapshotNotFoundError(snapshot_id)
    if snap["status"] != "available":
        raise InvalidStateError(f"DB cluster snapshot {snapshot_id!r} is {snap['status']}")
    _check_new_cluster(backend, new_cluster_id, instances)
    if backend.dry_run:
        backend._record(
            "local",
            "RestoreDBClusterFromSnapshot",
            DBClusterIdentifier=new_cluster_id,
            SnapshotIdentifier=snapshot_id,
        )
        for spec in instances or []:
            backend._record("local", "CreateDBInstance", DBClusterIdentifier=new_cluster_id, **spec.model_dump())
        return _projected_restore(backend, new_cluster_id, snap)
    sdir = snapshot_dir(backend, snapshot_id)
    _new_restored_cluster(
        backend,
        new_cluster_id,
        template=snap,
        password_file=sdir / "master-password",
        data=sdir / "data",
        restore={"kind": "snapshot", "snapshot_id": snapshot_id},
    )
    _create_instances(backend, new_cluster_id, instances)
    return backend.describe_cluster(new_cluster_id)


def restore_to_point_in_time(
    backend: LocalBackend,
    source_cluster_id: str,
    new_cluster_id: str,
    *,
    restore_time: datetime | None,
    use_latest_restorable_time: bool,
    instances: list[InstanceSpec] | None,
) -> Cluster:
    """Validate everything from state first (nothing is written for a rejected request), then pin the target.

    Only a valid request may force an archive on the source (marker commit + WAL switch): for "latest", or for a
    time after the recorded LatestRestorableTime but not in the future. ``recovery_target_time`` is always the
    resolved target, and the WAL recovery needs is linked into the new cluster's own dir now, so neither later
    writes to the source nor its deletion or pruning change what the restore returns.
    """
    src = backend.cluster_state(source_cluster_id)
    if (restore_time is None) == (not use_latest_restorable_time):
        raise InvalidParameterError(
            "restore_time", restore_time, "give exactly one of restore_time or use_latest_restorable_time=True"
        )
    if restore_time is not None and restore_time.tzinfo is None:
        raise InvalidParameterError("restore_time", restore_time, "must be timezone-aware (UTC)")
    _check_new_cluster(backend, new_cluster_id, instances)
    earliest = earliest_restorable_time(src)
    if earliest is None:
        raise RestoreWindowError(f"DB cluster {source_cluster_id!r} has no automated backup to restore from")
    writer = backend.writer_id(src)
    can_archive = (
        src["status"] == "available"
        and writer is not None
        and backend.controller(source_cluster_id, writer, src).is_running()
    )
    recorded = _dt(src.get("latest_restorable_time"))

    def outside(target: datetime, latest: datetime | None) -> RestoreWindowError:
        upper = latest.isoformat() if latest else "nothing archived yet"
        return RestoreWindowError(
            f"restore time {target.isoformat()} is outside the restorable window of {source_cluster_id!r}: "
            f"[{earliest.isoformat()}, {upper}]"
        )

    # cheap bounds from state, before anything is written
    if restore_time is not None:
        if restore_time < earliest:
            raise outside(restore_time, recorded)
        if restore_time > _now():
            raise outside(restore_time, recorded if not can_archive else _now())
        if (recorded is None or restore_time > recorded) and not can_archive:
            raise outside(restore_time, recorded)
    elif recorded is None and not can_archive:
        raise RestoreWindowError(f"DB cluster {source_cluster_id!r} has no archived WAL to restore from yet")
    if backend.dry_run:
        backend._record(
            "local",
            "RestoreDBClusterToPointInTime",
            SourceDBClusterIdentifier=source_cluster_id,
            DBClusterIdentifier=new_cluster_id,
            RestoreToTime=None if restore_time is None else restore_time.isoformat(),
            UseLatestRestorableTime=use_latest_restorable_time,
        )
        for spec in instances or []:
            backend._record("local", "CreateDBInstance", DBClusterIdentifier=new_cluster_id, **spec.model_dump())
        return _projected_restore(backend, new_cluster_id, src)
    # a valid request: force an archive only when the target needs WAL newer than the recorded latest
    latest = recorded
    if can_archive and (restore_time is None or latest is None or restore_time > latest):
        latest = force_archive(backend, source_cluster_id)
    if latest is None:
        raise RestoreWindowError(f"DB cluster {source_cluster_id!r} has no archived WAL to restore from yet")
    target = restore_time or latest
    if not earliest <= target <= latest:
        raise outside(target, latest)
    candidates = [b for b in src["backups"] if (_dt(b["end_time"]) or target) <= target]
    base = max(candidates, key=lambda b: b["end_time"])
    wal_dir = pitr_wal_dir(backend, new_cluster_id)
    recovery = {
        "restore_command": f"cp {shlex.quote(str(wal_dir))}/%f %p",
        "recovery_target_action": "promote",
        "recovery_target_timeline": "latest",
        "recovery_target_time": target.isoformat(),
        "recovery_target_inclusive": "on",
    }
    _new_restored_cluster(
        backend,
        new_cluster_id,
        template=src,
        password_file=backend.paths(source_cluster_id).secret,
        data=Path(base["path"]),
        restore={
            "kind": "pitr",
            "source": source_cluster_id,
            "restore_time": target.isoformat(),
            "recovery": recovery,
        },
        prepare=lambda: _link_wal(backend.paths(source_cluster_id).archive, base.get("start_wal", ""), wal_dir),
    )
    _create_instances(backend, new_cluster_id, instances)
    return backend.describe_cluster(new_cluster_id)


def pitr_wal_dir(backend: LocalBackend, cluster_id: str) -> Path:
    """The WAL a point-in-time restore replays, linked from the source's archive at restore time."""
    return backend.paths(cluster_id).dir / "pitr-wal"


_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")


def _link_wal(archive: Path, start_wal: str, dest: Path) -> None:
    """Hard-link (same filesystem; copy otherwise) every archived segment from the base backup's start segment
    on, on any timeline, plus every ``.history`` file, into ``dest``. Segments after the target are harmless:
    recovery stops at ``recovery_target_time``."""
    start = start_wal.split("(file ", 1)[1].rstrip(")") if "(file " in start_wal else ""
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


def start_writer_from_seed(backend: LocalBackend, cluster_id: str, instance_id: str) -> None:
    """Make ``instance_id`` the writer from the cluster's storage (``seed/``), replaying PITR recovery if any."""
    cl = backend.cluster_state(cluster_id)
    p = backend.paths(cluster_id)
    if not p.seed.exists():
        raise InvalidStateError(f"DB cluster {cluster_id!r} has no writer and no storage to start one from")
    data = p.data_dir(instance_id)
    os.rename(p.seed, data)
    restore = cl.get("restore") or {}
    recovery: dict[str, str] | None = restore.get("recovery")
    ctl = backend.controller(cluster_id, instance_id, cl)
    try:
        backend.write_node_config(cluster_id, instance_id, cl, recovery=recovery, standby_signal=False)
        if recovery:
            write_file(data / "recovery.signal", "", mode=0o600)
        ctl.start(wait=False)

        def promoted() -> bool:
            ctl.check_not_dead()
            if ctl.pm_status() != "ready":
                return False
            return not backend.query(cluster_id, instance_id, "SELECT pg_is_in_recovery()")[0][0]

        wait_for(
            f"instance {instance_id} recovered and writable",
            promoted,
            bool,
            timeout=max(backend.ready_timeout, 120.0),
            initial_delay=0.05,
            max_delay=0.25,
            retry_on=(psycopg.OperationalError,),
            progress=backend.progress,
        )
        if recovery:
            backend.write_node_config(cluster_id, instance_id, cl, standby_signal=False)
            ctl.reload()
    except BaseException:
        ctl.stop(mode="immediate", timeout=10)
        if data.exists() and not p.seed.exists():
            (data / "recovery.signal").unlink(missing_ok=True)
            os.rename(data, p.seed)
        raise
    with backend.update_cluster(cluster_id) as rec:
        rec["restore"] = None
        rec["instances"][instance_id].update(role="writer", status="available")
    shutil.rmtree(pitr_wal_dir(backend, cluster_id), ignore_errors=True)  # recovered: no longer needed
    take_automated_backup(backend, cluster_id, source_id=instance_id)


def park_writer_as_seed(backend: LocalBackend, cluster_id: str, instance_id: str) -> None:
    """Delete the last instance but keep the cluster's storage (``seed/``), as Aurora keeps the volume."""
    cl = backend.cluster_state(cluster_id)
    p = backend.paths(cluster_id)
    backend.controller(cluster_id, instance_id, cl).stop(mode="fast")
    os.rename(p.data_dir(instance_id), p.seed)
    backend.discard(p.instance_dir(instance_id))
    with backend.update_cluster(cluster_id) as rec:
        rec["instances"].pop(instance_id, None)
        rec["restore"] = None
