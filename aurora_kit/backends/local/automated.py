"""Automated backups of a local cluster with Aurora's semantics, and the restorable window they give.

* **Schedule** (:func:`aurora_kit.rules.backup_due`): one at creation (it also seeds the readers), then one a day
  once ``preferred_backup_window`` opens; a window missed (host off, cluster stopped) is caught up at the next
  chance. Nothing runs in the background: ``aurora-kit local maintain`` (from cron or a systemd timer, see the
  README) takes what is due, and so does the next mutating call on the cluster (``LocalBackend`` catches up after
  it). The schedule and the expiry count with the backup clock (:mod:`.clock`, ``$AURORA_KIT_CLOCK``).
* **A backup**: ``pg_basebackup -X stream`` from a streaming reader that has replayed the writer's latest
  checkpoint (the writer when there is none), checked with ``pg_verifybackup``, then a WAL switch after a marker
  commit on the writer, not waited for: once the archiver has copied up to it (at once, or after the backlog of a
  bulk load) the window reaches past the backup's end; until then the window does not count the backup. Listed
  by ``describe_snapshots`` as ``automated`` snapshots named as RDS names them, ``rds:<cluster>-YYYY-MM-DD-HH-MM``.
  A backup does not hold the cluster lock while copying (as on Aurora, it does not hold up a failover; one cut
  short by a failover is retried at the next chance); a second ``maintain`` skips a cluster whose backup is
  running. A backup that was due and failed is recorded (``local status``).
* **Retention** (:func:`aurora_kit.rules.retention_keeps`): backups taken within ``backup_retention_period``
  days are kept, plus the newest older one; the others are deleted, and so is the archived WAL before the oldest
  kept backup's start (and WAL of dead timeline branches), so EarliestRestorableTime moves forward.
* **Window** (:func:`window`): :func:`.archive.restorable_window` over the archive and the backups — it never
  spans a missing segment.
* **Deleting a cluster** removes its automated backups, or — ``delete_automated_backups=False`` — keeps them as
  retained automated backups (:func:`retain`: the backups, the archive and the master password move to
  ``retained/<resource id>``), still listed as its automated snapshots, restorable (from a snapshot or to a point
  in time, by the deleted cluster's id) and expiring with its retention period.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

from aurora_kit.backends.base import Snapshot
from aurora_kit.backends.local import archive, clock
from aurora_kit.backends.local.binaries import chown, run_tool
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import BackupRecord, ClusterRecord, RetainedRecord
from aurora_kit.errors import (
    BackendOperationError,
    ClusterNotFoundError,
    InvalidStateError,
    SnapshotNotFoundError,
    WaitTimeoutError,
)
from aurora_kit.polling import wait_for
from aurora_kit.rules import backup_due, next_backup_due, retention_keeps

PREFIX = "rds:"


# -- where a cluster's backups live ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupSet:
    """A cluster's automated backups + WAL archive: a live cluster's, or one retained after its deletion."""

    cluster: ClusterRecord
    dir: Path
    retained: RetainedRecord | None = None

    @property
    def archive(self) -> Path:
        return self.dir / "archive"

    @property
    def backups_dir(self) -> Path:
        return self.dir / "backups"

    @property
    def secret(self) -> Path:
        return self.dir / "master-password"

    @property
    def index_file(self) -> Path:
        return self.dir / "wal-index.json"


def of_cluster(nodes: Nodes, cl: ClusterRecord) -> BackupSet:
    return BackupSet(cl, nodes.paths(cl.cluster_id).dir)


def of_retained(rec: RetainedRecord) -> BackupSet:
    return BackupSet(rec.cluster, rec.dir, rec)


def retained_sets(nodes: Nodes, cluster_id: str | None = None) -> list[BackupSet]:
    """Retained automated backups (of deleted clusters), newest deletion first."""
    recs = sorted(nodes.store.load().retained.values(), key=lambda r: r.deleted, reverse=True)
    return [of_retained(r) for r in recs if cluster_id is None or r.cluster.cluster_id == cluster_id]


def backup_set(nodes: Nodes, cluster_id: str) -> BackupSet:
    """The live cluster's backups, else the newest retained ones of a deleted cluster with that id."""
    cl = nodes.store.find_cluster(cluster_id)
    if cl is not None:
        return of_cluster(nodes, cl)
    retained = retained_sets(nodes, cluster_id)
    if retained:
        return retained[0]
    return of_cluster(nodes, nodes.store.cluster(cluster_id))  # ClusterNotFoundError


def window(nodes: Nodes, bs: BackupSet) -> archive.Window:
    """The restorable window of ``bs`` (reads the archive; writes only the commit-time cache)."""
    view = archive.ArchiveView.read(bs.archive)
    index = archive.CommitIndex(bs.index_file, nodes.bins(bs.cluster).tool("pg_waldump"))
    return archive.restorable_window(view, bs.cluster.backups, index)


# -- the writer and the sources --------------------------------------------------------------------------------
def writer_running(nodes: Nodes, cl: ClusterRecord) -> bool:
    writer = cl.writer_id
    return writer is not None and nodes.controller(cl.cluster_id, writer, cl).is_running()


#: how long a forced archive waits for the archiver (after a bulk load it has a backlog of many segments to copy)
ARCHIVE_WAIT_S = 900.0


def force_archive(nodes: Nodes, cluster_id: str, *, timeout: float = ARCHIVE_WAIT_S) -> datetime:
    """Make "now" restorable: marker commit, ``pg_switch_wal()``, then wait until that segment is archived
    (``timeout`` 0: do not wait — it is archived once the archiver gets to it). Returns the time just before the
    marker commit: every commit up to it is archived, and a commit after it too (recovery to a time needs a
    commit after that time)."""
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
    if timeout > 0:
        wait_for(
            f"WAL segment {segment} archived",
            archived.exists,
            bool,
            timeout=timeout,
            initial_delay=0.01,
            max_delay=0.5,
            progress=nodes.progress,
        )
    return before


def backup_source(nodes: Nodes, cl: ClusterRecord, *, checkpoint: bool = False) -> str:
    """A running reader that has replayed everything the writer flushed (after a ``CHECKPOINT`` on the writer
    when ``checkpoint``: a standby's backup starts at its last restartpoint, which needs a recent checkpoint
    to restart from); else the writer."""
    cid, writer = cl.cluster_id, cl.writer_id
    if writer is None or not writer_running(nodes, cl):
        raise InvalidStateError(f"DB cluster {cid!r} has no running writer to back up", hint="start the cluster first")
    streaming = nodes.streaming(cid, writer)
    readers = [
        r for r in cl.readers_with_status("available") if r in streaming and nodes.controller(cid, r, cl).is_running()
    ]
    if not readers:
        return writer
    if checkpoint:
        nodes.query(cid, writer, "CHECKPOINT")
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


# -- taking one ------------------------------------------------------------------------------------------------
def _label(data_dir: Path) -> dict[str, str]:
    try:
        text = (data_dir / "backup_label").read_text()
    except FileNotFoundError:
        return {}
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def new_backup_id(bs: BackupSet, taken_at: datetime, *, new_dir: bool = True) -> tuple[str, Path]:
    """``rds:<cluster>-YYYY-MM-DD-HH-MM`` (RDS's automated snapshot name, by the backup clock) and a free dir for
    it (``new_dir``; else the id alone counts)."""
    stamp = taken_at.strftime("%Y-%m-%d-%H-%M")
    taken = {b.id for b in bs.cluster.backups}
    n = 1
    while True:
        suffix = "" if n == 1 else f"-{n}"
        bid = f"{PREFIX}{bs.cluster.cluster_id}-{stamp}{suffix}"
        path = bs.backups_dir / f"{stamp}{suffix}"
        if bid not in taken and not (new_dir and path.exists()):
            return bid, path
        n += 1


def take(nodes: Nodes, cluster_id: str, *, now: datetime | None = None, source: str | None = None) -> BackupRecord:
    """Take, verify and record one automated backup (from ``source``, else :func:`backup_source`)."""
    cl = nodes.store.cluster(cluster_id)
    taken_at = now or clock.now()
    source = source or backup_source(nodes, cl, checkpoint=True)
    bs = of_cluster(nodes, cl)
    backup_id, dest = new_backup_id(bs, taken_at)
    started = clock.wall()
    try:
        nodes.basebackup(cluster_id, source, dest)
        ended = clock.wall()
        run_tool([nodes.bins(cl).tool("pg_verifybackup"), str(dest)], what=f"pg_verifybackup of {backup_id}")
        if writer_running(nodes, cl):
            force_archive(nodes, cluster_id, timeout=0)  # its WAL reaches the archive without waiting for it
    except BaseException:
        nodes.discard(dest)
        raise
    record = BackupRecord(
        backup_id,
        dest,
        started,
        ended,
        _label(dest).get("START WAL LOCATION", ""),
        taken_at=taken_at,
        source=source,
        size_bytes=tree_bytes(dest),
    )
    add_backup(nodes, cluster_id, record)
    return record


def add_backup(nodes: Nodes, cluster_id: str, record: BackupRecord) -> None:
    """Record a backup on the cluster (its files are in place); the cluster gone meanwhile: the files go too."""
    try:
        nodes.store.update_cluster(cluster_id, lambda c: c.replace(backups=(*c.backups, record), backup_error=None))
    except LookupError:
        nodes.discard(record.path)
        raise


# -- retention -------------------------------------------------------------------------------------------------
def expire(nodes: Nodes, bs: BackupSet, now: datetime) -> tuple[list[str], list[str]]:
    """Delete the backups the retention period no longer needs and the archived WAL only they needed (and WAL of
    dead timeline branches). Returns (backup ids deleted, WAL files deleted)."""
    cl = bs.cluster
    backups = sorted(cl.backups, key=lambda b: b.scheduled_at)
    logs_end = bs.retained.deleted if bs.retained is not None else None
    keeps = retention_keeps([b.scheduled_at for b in backups], cl.backup_retention_period, now, logs_end=logs_end)
    kept = [b for b, k in zip(backups, keeps, strict=True) if k]
    gone = [b for b, k in zip(backups, keeps, strict=True) if not k]
    for b in gone:
        nodes.discard(b.path)
    if gone:
        _set_backups(nodes, bs, tuple(kept))
    wal: list[str] = []
    if kept:
        starts = [s for s in (archive.backup_start(b) for b in kept) if s is not None]
        if starts:
            wal = archive.prune(bs.archive, min(seg for _, seg in starts))
        wal += archive.remove(bs.archive, archive.ArchiveView.read(bs.archive).dead_branches())
    if wal:
        index = archive.CommitIndex(bs.index_file, nodes.bins(cl).tool("pg_waldump"))
        index.forget(wal)
        index.save()
    return [b.id for b in gone], wal


def _set_backups(nodes: Nodes, bs: BackupSet, kept: tuple[BackupRecord, ...]) -> None:
    with nodes.store.edit() as doc:
        if bs.retained is not None:
            rec = doc.retained.get(bs.retained.resource_id)
            if rec is not None:
                doc.retained[rec.resource_id] = rec.replace(cluster=rec.cluster.replace(backups=kept))
        elif bs.cluster.cluster_id in doc.clusters:
            doc.clusters[bs.cluster.cluster_id] = doc.clusters[bs.cluster.cluster_id].replace(backups=kept)


# -- maintenance -----------------------------------------------------------------------------------------------
@dataclass
class MaintainReport:
    """What one maintenance pass did for one cluster (or retained backup set)."""

    cluster_id: str
    taken: str | None = None
    expired: list[str] = field(default_factory=list)
    wal_removed: int = 0
    temp_files_removed: int = 0
    skipped: str | None = None  # why nothing was done, or why a due backup was not taken
    error: str | None = None  # the due backup failed

    def line(self) -> str:
        parts = []
        if self.taken:
            parts.append(f"took {self.taken}")
        if self.expired:
            parts.append(f"expired {', '.join(self.expired)}")
        if self.wal_removed:
            parts.append(f"pruned {self.wal_removed} WAL files")
        if self.temp_files_removed:
            parts.append(f"removed {self.temp_files_removed} leftover archive temp files")
        if self.skipped:
            parts.append(f"skipped: {self.skipped}")
        if self.error:
            parts.append(f"BACKUP FAILED: {self.error}")
        return f"{self.cluster_id}: " + ("; ".join(parts) or "nothing due")


def is_due(cl: ClusterRecord, now: datetime) -> bool:
    last = cl.last_backup
    return backup_due(cl.preferred_backup_window, last.scheduled_at if last else None, now)


def maintain_cluster(nodes: Nodes, cluster_id: str, now: datetime) -> MaintainReport:
    """One pass over a live cluster: sweep leftover archive temp files, take the automated backup if one is due,
    expire what the retention period no longer needs."""
    report = MaintainReport(cluster_id)
    with nodes.store.try_lock(f"{cluster_id}.backup") as mine:
        if not mine:
            report.skipped = "another maintenance pass of this cluster (a backup) is running"
            return report
        cl = nodes.store.cluster(cluster_id)
        report.temp_files_removed = len(archive.sweep_temp_files(nodes.paths(cluster_id).archive))
        if is_due(cl, now):
            if cl.status != "available" or not writer_running(nodes, cl):
                state = f"the cluster is {cl.status}" if cl.status != "available" else "its writer is not running"
                report.skipped = f"a backup is due but {state}"
            else:
                try:
                    report.taken = take(nodes, cluster_id, now=now).id
                except Exception as exc:
                    report.error = f"{type(exc).__name__}: {exc}"
                    message = f"{now.isoformat(timespec='seconds')} {report.error}"
                    nodes.store.set_fields(cluster_id, backup_error=message[:2000])
        with nodes.store.cluster_lock(cluster_id):
            bs = of_cluster(nodes, nodes.store.cluster(cluster_id))
            report.expired, wal = expire(nodes, bs, now)
            report.wal_removed = len(wal)
    return report


def maintain_retained(nodes: Nodes, bs: BackupSet, now: datetime) -> MaintainReport:
    """Expire retained automated backups; the set goes once none is left."""
    assert bs.retained is not None
    report = MaintainReport(f"{bs.cluster.cluster_id} (retained {bs.retained.resource_id})")
    report.expired, wal = expire(nodes, bs, now)
    report.wal_removed = len(wal)
    current = nodes.store.load().retained.get(bs.retained.resource_id)
    if current is not None and not current.cluster.backups:
        with nodes.store.edit() as doc:
            doc.retained.pop(bs.retained.resource_id, None)
        nodes.discard(bs.dir)
    return report


def maintain(nodes: Nodes, cluster_ids: list[str], now: datetime, *, retained: bool) -> list[MaintainReport]:
    """:func:`maintain_cluster` for each of ``cluster_ids``, then (``retained``) :func:`maintain_retained` for
    every retained backup set. One cluster's failure is reported (``error``) and the others still run; a cluster
    deleted meanwhile is left out."""
    reports: list[MaintainReport] = []
    for cid in cluster_ids:
        try:
            reports.append(maintain_cluster(nodes, cid, now))
        except ClusterNotFoundError:
            continue
        except Exception as exc:  # the next cluster's backup must not wait for this one's problem
            reports.append(MaintainReport(cid, error=f"{type(exc).__name__}: {exc}"))
    if retained:
        for bs in retained_sets(nodes):
            try:
                reports.append(maintain_retained(nodes, bs, now))
            except Exception as exc:
                reports.append(MaintainReport(bs.cluster.cluster_id, error=f"{type(exc).__name__}: {exc}"))
    return reports


def catch_up(nodes: Nodes, cluster_id: str) -> str | None:
    """The "next command that touches the cluster" half of the schedule (``local maintain`` is the other): after a
    mutating call on an available cluster, :func:`maintain_cluster` by the backup clock. Returns a warning when
    the due backup (or the housekeeping) failed, None otherwise; never raises."""
    cl = nodes.store.find_cluster(cluster_id)
    if cl is None or cl.status != "available":
        return None
    try:
        report = maintain_cluster(nodes, cluster_id, clock.now())
    except Exception as exc:  # the call that triggered it succeeded; only the housekeeping did not
        return f"automated backup housekeeping of {cluster_id!r} failed: {type(exc).__name__}: {exc}"
    if report.error:
        return f"automated backup of {cluster_id!r} was due and failed: {report.error}"
    return None


# -- deleting a cluster ----------------------------------------------------------------------------------------
def retain(nodes: Nodes, cluster_id: str) -> RetainedRecord | None:
    """Keep the cluster's automated backups past its deletion: move the backups, the archive, its commit-time
    cache and the master password to ``retained/<resource id>`` and record them. None when it has none."""
    cl = nodes.store.cluster(cluster_id)
    if not cl.backups:
        return None
    resource_id = "cluster-" + uuid.uuid4().hex[:20].upper()
    src = of_cluster(nodes, cl)
    dest = nodes.root / "retained" / resource_id
    dest.mkdir(parents=True, mode=0o700)
    chown(dest)  # pg_waldump (as the PostgreSQL account) reads the archive there
    for name in ("archive", "backups", "master-password", "wal-index.json", "parameters.conf"):
        if (src.dir / name).exists():
            os.rename(src.dir / name, dest / name)
    moved = tuple(b.replace(path=dest / "backups" / b.path.name) for b in cl.backups)
    frozen = cl.replace(status="retained", instances={}, backups=moved, restore=None, backup_error=None)
    rec = RetainedRecord(resource_id, frozen, clock.wall(), dest)
    with nodes.store.edit() as doc:
        doc.retained[resource_id] = rec
    return rec


def retain_on_delete(nodes: Nodes, cluster_id: str) -> RetainedRecord | None:
    """A cluster deleted with its automated backups kept: everything up to the deletion archived (when the writer
    runs), every node stopped (no archiver may write while the archive moves), then :func:`retain`."""
    cl = nodes.store.cluster(cluster_id)
    if writer_running(nodes, cl):
        force_archive(nodes, cluster_id)
    for iid in cl.ordered:
        nodes.controller(cluster_id, iid, cl).stop(mode="fast")
    return retain(nodes, cluster_id)


def delete_retained(nodes: Nodes, resource_id: str) -> None:
    with nodes.store.edit() as doc:
        rec = doc.retained.pop(resource_id, None)
    if rec is not None:
        nodes.discard(rec.dir)


# -- listing ---------------------------------------------------------------------------------------------------
def snapshot_view(cl: ClusterRecord, b: BackupRecord) -> Snapshot:
    return Snapshot(
        db_cluster_snapshot_identifier=b.id,
        db_cluster_identifier=cl.cluster_id,
        status="available",
        snapshot_type="automated",
        engine_version=cl.engine_version,
        snapshot_create_time=b.start_time,
        allocated_storage=max(1, -(-b.size_bytes // 2**30)),
        storage_encrypted=cl.storage_encrypted,
        tags=dict(cl.tags),
    )


def automated_snapshots(nodes: Nodes, cluster_id: str | None = None) -> list[Snapshot]:
    doc = nodes.store.load()
    sets = [(cl, cl.backups) for cl in doc.clusters.values() if cluster_id in (None, cl.cluster_id)]
    sets += [
        (r.cluster, r.cluster.backups) for r in doc.retained.values() if cluster_id in (None, r.cluster.cluster_id)
    ]
    return [snapshot_view(cl, b) for cl, backups in sets for b in sorted(backups, key=lambda b: b.start_time)]


def find_automated(nodes: Nodes, snapshot_id: str) -> tuple[BackupSet, BackupRecord]:
    """The automated backup named ``snapshot_id`` (live or retained). SnapshotNotFoundError otherwise."""
    doc = nodes.store.load()
    sets = [of_cluster(nodes, cl) for cl in doc.clusters.values()] + [of_retained(r) for r in doc.retained.values()]
    for bs in sets:
        for b in bs.cluster.backups:
            if b.id == snapshot_id:
                return bs, b
    raise SnapshotNotFoundError(snapshot_id)


# -- status ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupStatus:
    """What ``aurora-kit local status`` shows of a cluster's automated backups."""

    window: str
    retention_days: int
    backups: int
    last_backup: BackupRecord | None
    next_due: datetime
    due_now: bool
    earliest_restorable: datetime | None
    latest_restorable: datetime | None
    missing_segment: str | None
    archive_files: int
    archive_bytes: int
    error: str | None


def status(nodes: Nodes, cluster_id: str, now: datetime) -> BackupStatus:
    cl = nodes.store.cluster(cluster_id)
    bs = of_cluster(nodes, cl)
    win = window(nodes, bs)
    last = cl.last_backup
    files = [f for f in bs.archive.iterdir() if not f.name.startswith(".")] if bs.archive.exists() else []
    return BackupStatus(
        window=cl.preferred_backup_window,
        retention_days=cl.backup_retention_period,
        backups=len(cl.backups),
        last_backup=last,
        next_due=next_backup_due(cl.preferred_backup_window, last.scheduled_at if last else None, now),
        due_now=is_due(cl, now),
        earliest_restorable=win.earliest,
        latest_restorable=win.latest,
        missing_segment=win.missing,
        archive_files=len(files),
        archive_bytes=sum(f.stat().st_size for f in files),
        error=cl.backup_error,
    )


def copy_backup_files(source: Path, dest: Path) -> None:
    """Hard-link the files of a base backup into another backup store (copy across filesystems). Backups are
    never written once taken and are only ever copied from, so they can share files; never used for a data
    directory (PostgreSQL writes those in place)."""
    for dirpath, _dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        target_dir = dest if rel == "." else dest / rel
        st = os.stat(dirpath)
        target_dir.mkdir(mode=0o700)
        os.chown(target_dir, st.st_uid, st.st_gid)
        for name in filenames:
            try:
                os.link(os.path.join(dirpath, name), target_dir / name)
            except OSError:
                shutil.copy2(os.path.join(dirpath, name), target_dir / name)
                fst = os.stat(os.path.join(dirpath, name))
                os.chown(target_dir / name, fst.st_uid, fst.st_gid)
    if not dest.exists():
        raise BackendOperationError(f"{source} is not a backup directory")
