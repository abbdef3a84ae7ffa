"""On-disk state of the local backend: one JSON file + a lock, read into typed records (CLI, kernels, tests share it).

Layout under the root dir::

    state.json                 clusters, instances, snapshots, retained backups, alarms (atomic: temp + rename)
    state.lock                 flock(2) taken around every read-modify-write of state.json
    locks/<cluster>.lock       one operation at a time per cluster (re-entrant within a thread)
    clusters/<cluster>/        data dirs, WAL archive, base backups, parameter group, master password
    snapshots/<snapshot>/      manual/final snapshots (kept after the cluster is deleted, as on Aurora)
    retained/<resource id>/    automated backups + archive of a cluster deleted with delete_automated_backups=False

``state.json`` is ``{"version": 1, "clusters": {id: …}, "snapshots": {id: …}, "retained": {resource id: …}}``; the
records below read and write that shape (a key missing in an older file reads as its default and is written back).
Only this module looks inside it: everything else reads :class:`ClusterRecord` & co. through :class:`StateStore`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aurora_kit.backends.local.addressing import LEGACY_ADDRESS
from aurora_kit.backends.local.locks import Locks
from aurora_kit.errors import ClusterNotFoundError, InstanceNotFoundError, SnapshotNotFoundError
from aurora_kit.specs import ProxySpec

State = dict[str, Any]

_EMPTY: State = {"version": 1, "clusters": {}, "snapshots": {}, "retained": {}}

WRITER, READER = "writer", "reader"


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def wal_file(start_wal: str) -> str:
    """The segment name in a ``backup_label`` ``START WAL LOCATION`` ("0/2000028 (file 0000...02)"), or ''."""
    return start_wal.split("(file ", 1)[1].rstrip(")") if "(file " in start_wal else ""


def spec_settings(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The :class:`ClusterRecord` settings a restored cluster takes from its source's ``ClusterSpec`` (its JSON),
    with the defaults of a cluster that has none."""
    spec = spec or {}
    return {
        "deletion_protection": bool(spec.get("deletion_protection", False)),
        "backup_retention_period": int(spec.get("backup_retention_period", 1)),
        "preferred_backup_window": str(spec.get("preferred_backup_window", "03:00-04:00")),
        "iam_database_authentication": bool(spec.get("iam_database_authentication", False)),
        "storage_encrypted": bool(spec.get("storage_encrypted", False)),
    }


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as recorded: its loopback address and port, role (writer | reader) and status (RDS status
    strings). Instances of one cluster share the port, each at its own address (see :mod:`.addressing`)."""

    port: int
    role: str
    status: str
    instance_class: str
    availability_zone: str
    promotion_tier: int
    created: datetime
    #: a former writer fenced after a failover whose rewind has not succeeded yet: never started as a primary
    needs_rewind: bool = False
    address: str = LEGACY_ADDRESS

    @property
    def is_writer(self) -> bool:
        return self.role == WRITER

    def replace(self, **changes: Any) -> InstanceRecord:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstanceRecord:
        return cls(
            port=int(data["port"]),
            role=str(data["role"]),
            status=str(data["status"]),
            instance_class=str(data["instance_class"]),
            availability_zone=str(data["availability_zone"]),
            promotion_tier=int(data["promotion_tier"]),
            created=datetime.fromisoformat(data["created"]),
            needs_rewind=bool(data.get("needs_rewind", False)),
            address=str(data.get("address") or LEGACY_ADDRESS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "role": self.role,
            "status": self.status,
            "instance_class": self.instance_class,
            "availability_zone": self.availability_zone,
            "promotion_tier": self.promotion_tier,
            "created": self.created.isoformat(),
            "needs_rewind": self.needs_rewind,
        }


@dataclass(frozen=True)
class BackupRecord:
    """One automated backup (a verified base backup under ``backups/``). ``start_time``/``end_time``: wall clock (a
    restore to a time after ``end_time`` may start from it); ``taken_at``: the backup clock's time (:mod:`.clock`),
    what schedule and retention count with; ``start_wal`` as in its ``backup_label``; ``source``: where from."""

    id: str
    path: Path
    start_time: datetime
    end_time: datetime
    start_wal: str = ""
    taken_at: datetime | None = None
    source: str = ""
    size_bytes: int = 0

    @property
    def start_segment(self) -> str:
        return wal_file(self.start_wal)

    @property
    def scheduled_at(self) -> datetime:
        """The time the schedule and the retention period count with (records from before the clock: the end)."""
        return self.taken_at or self.end_time

    def replace(self, **changes: Any) -> BackupRecord:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackupRecord:
        return cls(
            id=str(data["id"]),
            path=Path(data["path"]),
            start_time=datetime.fromisoformat(data["start_time"]),
            end_time=datetime.fromisoformat(data["end_time"]),
            start_wal=str(data.get("start_wal", "")),
            taken_at=_dt(data.get("taken_at")),
            source=str(data.get("source", "")),
            size_bytes=int(data.get("size_bytes") or 0),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "start_time": self.start_time.isoformat(),
            "end_time": self.end_time.isoformat(),
            "start_wal": self.start_wal,
            "taken_at": _iso(self.taken_at),
            "source": self.source,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class RestoreRecord:
    """How a restored cluster's storage (``seed/``) becomes its writer: from a snapshot, or PITR recovery (``base``:
    the backup it started from, linked into ``backups/``: its first automated backup once recovered)."""

    kind: str  # snapshot | pitr
    snapshot_id: str | None = None
    source: str | None = None
    restore_time: datetime | None = None
    recovery: Mapping[str, str] | None = None
    base: BackupRecord | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RestoreRecord:
        recovery = data.get("recovery")
        base = data.get("base")
        return cls(
            kind=str(data["kind"]),
            snapshot_id=data.get("snapshot_id"),
            source=data.get("source"),
            restore_time=_dt(data.get("restore_time")),
            recovery=dict(recovery) if recovery is not None else None,
            base=BackupRecord.from_json(base) if base else None,
        )

    def to_json(self) -> dict[str, Any]:
        if self.kind == "snapshot":
            return {"kind": self.kind, "snapshot_id": self.snapshot_id}
        out = {"kind": self.kind, "source": self.source, "restore_time": _iso(self.restore_time)}
        base = {"base": self.base.to_json()} if self.base is not None else {}
        return {**out, "recovery": dict(self.recovery or {}), **base}


@dataclass(frozen=True)
class ProxyRecord:
    """A proxy (:mod:`.proxy`): its spec, an address per endpoint role (rw, ro) on the cluster's port, its pool."""

    spec: ProxySpec
    addresses: Mapping[str, str]
    port: int
    pool_size: int
    status: str
    created: datetime

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProxyRecord:
        return cls(ProxySpec(**d["spec"]), dict(d["addresses"]), int(d["port"]), int(d["pool_size"]), str(d["status"]),
                   datetime.fromisoformat(d["created"]))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "spec": self.spec.model_dump(mode="json"),
            "created": self.created.isoformat(),
        }


@dataclass(frozen=True)
class ClusterRecord:
    """One cluster as recorded. ``instances`` maps instance id → record; the writer is the one whose role is
    ``writer`` (at most one)."""

    cluster_id: str
    status: str
    engine_major: int
    engine_version: str
    master_username: str
    database_name: str
    created: datetime
    deletion_protection: bool = False
    backup_retention_period: int = 1
    preferred_backup_window: str = "03:00-04:00"
    iam_database_authentication: bool = False
    storage_encrypted: bool = False
    spec: Mapping[str, Any] | None = None  # the ClusterSpec it was created from (JSON); None when restored
    tags: Mapping[str, str] = field(default_factory=dict)
    instances: Mapping[str, InstanceRecord] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)  # the cluster parameter group
    alarms: tuple[Mapping[str, Any], ...] = ()  # AlarmSpec dumps, one per metric
    sns_topic_arn: str | None = None
    backups: tuple[BackupRecord, ...] = ()
    restore: RestoreRecord | None = None
    #: the last automated backup that was due but failed (shown by ``local status``), cleared by the next success
    backup_error: str | None = None
    #: slots of removed readers that could not be dropped yet (writer down): dropped at the next start/failover
    pending_slot_drops: tuple[str, ...] = ()
    #: 08/09: {"serverless": capacity range, "policies"/"activities": Aurora Auto Scaling (:mod:`.scaling`)}; proxies
    capacity: Mapping[str, Any] = field(default_factory=dict)
    proxies: Mapping[str, ProxyRecord] = field(default_factory=dict)

    # -- roles -------------------------------------------------------------------------------------------
    @property
    def writer_id(self) -> str | None:
        return next((iid for iid, i in self.instances.items() if i.is_writer), None)

    @property
    def reader_ids(self) -> list[str]:
        return sorted(iid for iid, i in self.instances.items() if not i.is_writer)

    @property
    def ordered(self) -> list[str]:
        """Writer first, then the readers by name."""
        writer = self.writer_id
        return ([writer] if writer else []) + self.reader_ids

    def instance(self, instance_id: str) -> InstanceRecord:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise InstanceNotFoundError(instance_id, self.cluster_id)
        return inst

    def readers_with_status(self, *statuses: str) -> list[str]:
        return [r for r in self.reader_ids if self.instances[r].status in statuses]

    @property
    def last_backup(self) -> BackupRecord | None:
        """The newest automated backup (by the backup clock)."""
        return max(self.backups, key=lambda b: b.scheduled_at, default=None)

    # -- changes (new records) ---------------------------------------------------------------------------
    def replace(self, **changes: Any) -> ClusterRecord:
        return dataclasses.replace(self, **changes)

    def with_instance(self, instance_id: str, record: InstanceRecord | None) -> ClusterRecord:
        """This record with ``instance_id`` set to ``record`` (removed when None)."""
        instances = {k: v for k, v in self.instances.items() if k != instance_id}
        if record is not None:
            instances[instance_id] = record
        return self.replace(instances=instances)

    def with_statuses(self, status: str | None = None, **instances: str) -> ClusterRecord:
        """Cluster status (when given) and instance statuses; ids not in the cluster are ignored."""
        merged = {
            iid: inst.replace(status=instances[iid]) if iid in instances else inst
            for iid, inst in self.instances.items()
        }
        return self.replace(status=status or self.status, instances=merged)

    # -- JSON ----------------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, cluster_id: str, data: Mapping[str, Any]) -> ClusterRecord:
        restore = data.get("restore")
        return cls(
            cluster_id=cluster_id,
            status=str(data["status"]),
            engine_major=int(data["engine_major"]),
            engine_version=str(data["engine_version"]),
            master_username=str(data["master_username"]),
            database_name=str(data["database_name"]),
            created=datetime.fromisoformat(data["created"]),
            deletion_protection=bool(data.get("deletion_protection", False)),
            backup_retention_period=int(data.get("backup_retention_period", 1)),
            preferred_backup_window=str(data.get("preferred_backup_window", "03:00-04:00")),
            iam_database_authentication=bool(data.get("iam_database_authentication", False)),
            storage_encrypted=bool(data.get("storage_encrypted", False)),
            spec=data.get("spec"),
            tags=dict(data.get("tags") or {}),
            instances={iid: InstanceRecord.from_json(i) for iid, i in (data.get("instances") or {}).items()},
            parameters=dict(data.get("parameters") or {}),
            alarms=tuple(dict(a) for a in data.get("alarms") or []),
            sns_topic_arn=data.get("sns_topic_arn"),
            backups=tuple(BackupRecord.from_json(b) for b in data.get("backups") or []),
            restore=RestoreRecord.from_json(restore) if restore else None,
            backup_error=data.get("backup_error"),
            pending_slot_drops=tuple(data.get("pending_slot_drops") or ()),
            capacity=copy.deepcopy(dict(data.get("capacity") or {})),
            proxies={name: ProxyRecord.from_json(x) for name, x in (data.get("proxies") or {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "spec": copy.deepcopy(dict(self.spec)) if self.spec is not None else None,
            "engine_major": self.engine_major,
            "engine_version": self.engine_version,
            "master_username": self.master_username,
            "database_name": self.database_name,
            "deletion_protection": self.deletion_protection,
            "backup_retention_period": self.backup_retention_period,
            "preferred_backup_window": self.preferred_backup_window,
            "iam_database_authentication": self.iam_database_authentication,
            "storage_encrypted": self.storage_encrypted,
            "tags": dict(self.tags),
            "created": self.created.isoformat(),
            "instances": {iid: i.to_json() for iid, i in self.instances.items()},
            "parameters": dict(self.parameters),
            "alarms": [dict(a) for a in self.alarms],
            "backups": [b.to_json() for b in self.backups],
            "restore": self.restore.to_json() if self.restore else None,
            "backup_error": self.backup_error,
            "sns_topic_arn": self.sns_topic_arn,
            "pending_slot_drops": list(self.pending_slot_drops),
        } | {k: v for k, v in (("capacity", copy.deepcopy(dict(self.capacity))),  # 08/09 keys: only when set
                               ("proxies", {n: x.to_json() for n, x in self.proxies.items()})) if v}  # fmt: skip


@dataclass(frozen=True)
class SnapshotRecord:
    """A manual (or final) snapshot: kept under ``snapshots/<id>`` with what a restore needs of its cluster."""

    snapshot_id: str
    cluster_id: str
    status: str
    engine_major: int
    engine_version: str
    master_username: str
    database_name: str
    created: datetime
    snapshot_type: str = "manual"
    spec: Mapping[str, Any] | None = None
    source_instance: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    allocated_storage: int = 0
    parameters: Mapping[str, str] = field(default_factory=dict)  # the parameter group a restore replays with

    def replace(self, **changes: Any) -> SnapshotRecord:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_json(cls, snapshot_id: str, data: Mapping[str, Any]) -> SnapshotRecord:
        return cls(
            snapshot_id=snapshot_id,
            cluster_id=str(data["cluster_id"]),
            status=str(data["status"]),
            engine_major=int(data["engine_major"]),
            engine_version=str(data["engine_version"]),
            master_username=str(data["master_username"]),
            database_name=str(data["database_name"]),
            created=datetime.fromisoformat(data["created"]),
            snapshot_type=str(data.get("snapshot_type", "manual")),
            spec=data.get("spec"),
            source_instance=str(data.get("source_instance", "")),
            tags=dict(data.get("tags") or {}),
            allocated_storage=int(data.get("allocated_storage") or 0),
            parameters=dict(data.get("parameters") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "status": self.status,
            "snapshot_type": self.snapshot_type,
            "engine_version": self.engine_version,
            "engine_major": self.engine_major,
            "master_username": self.master_username,
            "database_name": self.database_name,
            "spec": copy.deepcopy(dict(self.spec)) if self.spec is not None else None,
            "created": self.created.isoformat(),
            "source_instance": self.source_instance,
            "tags": dict(self.tags),
            "allocated_storage": self.allocated_storage,
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True)
class RetainedRecord:
    """Automated backups retained after their cluster's deletion (``delete_automated_backups=False``): the cluster
    as it was, its archive and master password under ``dir``; they expire with its retention period."""

    resource_id: str
    cluster: ClusterRecord
    deleted: datetime
    dir: Path

    def replace(self, **changes: Any) -> RetainedRecord:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_json(cls, resource_id: str, data: Mapping[str, Any]) -> RetainedRecord:
        return cls(
            resource_id=resource_id,
            cluster=ClusterRecord.from_json(str(data["cluster_id"]), data["cluster"]),
            deleted=datetime.fromisoformat(data["deleted"]),
            dir=Path(data["dir"]),
        )

    def to_json(self) -> dict[str, Any]:
        cluster, deleted = self.cluster.to_json(), self.deleted.isoformat()
        return {"cluster_id": self.cluster.cluster_id, "cluster": cluster, "deleted": deleted, "dir": str(self.dir)}


@dataclass
class StateDoc:
    """The whole state, typed: what :meth:`StateStore.edit` yields (change the dicts; records are frozen)."""

    clusters: dict[str, ClusterRecord]
    snapshots: dict[str, SnapshotRecord]
    retained: dict[str, RetainedRecord] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StateDoc:
        return cls(
            clusters={cid: ClusterRecord.from_json(cid, c) for cid, c in (data.get("clusters") or {}).items()},
            snapshots={sid: SnapshotRecord.from_json(sid, s) for sid, s in (data.get("snapshots") or {}).items()},
            retained={rid: RetainedRecord.from_json(rid, r) for rid, r in (data.get("retained") or {}).items()},
        )

    def cluster(self, cluster_id: str) -> ClusterRecord:
        cl = self.clusters.get(cluster_id)
        if cl is None:
            raise ClusterNotFoundError(cluster_id)
        return cl

    def used_ports(self) -> set[int]:
        return {i.port for cl in self.clusters.values() for i in cl.instances.values()}

    def used_addresses(self) -> set[str]:
        proxies = [a for cl in self.clusters.values() for px in cl.proxies.values() for a in px.addresses.values()]
        return {i.address for cl in self.clusters.values() for i in cl.instances.values()} | set(proxies)

    def instance_ids(self) -> set[str]:
        return {iid for cl in self.clusters.values() for iid in cl.instances}


class StateStore(Locks):
    """JSON state with a file lock. Typed: :meth:`load`, :meth:`cluster`, :meth:`snapshot` (snapshots of the state),
    :meth:`edit` and the ``update_*`` helpers (locked read-modify-write). Raw: :meth:`read` / :meth:`update`. The
    per-cluster operation lock and named locks: :class:`.locks.Locks`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "state.json"
        self.lock_path = root / "state.lock"
        (root / "locks").mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def _load(self) -> State:
        try:
            with self.path.open() as fh:
                data: State = json.load(fh)
        except FileNotFoundError:
            return copy.deepcopy(_EMPTY)
        return data

    # -- raw JSON --------------------------------------------------------------------------------------------
    def read(self) -> State:
        """The JSON document as it is now (a copy)."""
        pending = getattr(self._local, "pending", None)
        if pending is not None:  # inside update() in this thread: flock would deadlock on our own lock
            return copy.deepcopy(pending)
        with self._flock(self.lock_path, fcntl.LOCK_SH):
            return self._load()

    @contextlib.contextmanager
    def update(self) -> Iterator[State]:
        """``with store.update() as state: ...`` — changes are written atomically when the block exits cleanly."""
        if getattr(self._local, "pending", None) is not None:
            raise RuntimeError("StateStore.update() is not re-entrant")
        with self._flock(self.lock_path, fcntl.LOCK_EX):
            state = self._load()
            self._local.pending = state
            try:
                yield state
            finally:
                self._local.pending = None
            self._write(state)

    def _write(self, state: State) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".state.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(state, fh, indent=1, sort_keys=True, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # -- typed -----------------------------------------------------------------------------------------------
    def load(self) -> StateDoc:
        return StateDoc.from_json(self.read())

    def find_cluster(self, cluster_id: str) -> ClusterRecord | None:
        data = self.read()["clusters"].get(cluster_id)
        return ClusterRecord.from_json(cluster_id, data) if data is not None else None

    def cluster(self, cluster_id: str) -> ClusterRecord:
        cl = self.find_cluster(cluster_id)
        if cl is None:
            raise ClusterNotFoundError(cluster_id)
        return cl

    def snapshot(self, snapshot_id: str) -> SnapshotRecord:
        data = self.read()["snapshots"].get(snapshot_id)
        if data is None:
            raise SnapshotNotFoundError(snapshot_id)
        return SnapshotRecord.from_json(snapshot_id, data)

    @contextlib.contextmanager
    def edit(self) -> Iterator[StateDoc]:
        """``with store.edit() as doc: doc.clusters[cid] = ...`` — written atomically when the block exits cleanly."""
        with self.update() as raw:
            doc = StateDoc.from_json(raw)
            yield doc
            raw["clusters"] = {cid: cl.to_json() for cid, cl in doc.clusters.items()}
            raw["snapshots"] = {sid: s.to_json() for sid, s in doc.snapshots.items()}
            raw["retained"] = {rid: r.to_json() for rid, r in doc.retained.items()}

    def update_cluster(self, cluster_id: str, change: Callable[[ClusterRecord], ClusterRecord]) -> ClusterRecord:
        """Replace the cluster's record by ``change(record)`` under the lock; returns the new record."""
        with self.edit() as doc:
            new = doc.clusters[cluster_id] = change(doc.cluster(cluster_id))
        return new

    def set_fields(self, cluster_id: str, **changes: Any) -> ClusterRecord:
        return self.update_cluster(cluster_id, lambda cl: cl.replace(**changes))

    def update_instance(self, cluster_id: str, instance_id: str, **changes: Any) -> ClusterRecord:
        def change(cl: ClusterRecord) -> ClusterRecord:
            return cl.with_instance(instance_id, cl.instance(instance_id).replace(**changes))

        return self.update_cluster(cluster_id, change)

    def set_status(self, cluster_id: str, status: str | None = None, **instances: str) -> ClusterRecord:
        """Cluster status (when given) and instance statuses (``**{instance_id: status}``)."""
        return self.update_cluster(cluster_id, lambda cl: cl.with_statuses(status, **instances))
