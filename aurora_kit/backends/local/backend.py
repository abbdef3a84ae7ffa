"""``LocalBackend``: an Aurora-shaped cluster (1 writer + N readers) of real PostgreSQL processes on loopback.

See DESIGN.md §3. One directory per cluster under the root dir (see :mod:`.state` for the layout); state shared
across processes through :class:`.state.StateStore`. Mutations take the cluster's operation lock; every input
is validated before anything changes.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aurora_kit.backends.base import (
    AlarmState,
    BackendSettings,
    BackendTraits,
    Cluster,
    ClusterBackend,
    ClusterMember,
    ConnectionInfo,
    FailoverMode,
    FailoverResult,
    Instance,
    ParameterChangeResult,
    Snapshot,
)
from aurora_kit.backends.local import backup, failover, monitoring, parameters
from aurora_kit.backends.local.binaries import PgBinaries, check_traversable, chown, find_binaries, run_as, run_tool
from aurora_kit.backends.local.config import (
    HBA,
    UNSAFE_PATH_CHARS,
    ClusterPaths,
    archive_script,
    render_postgresql_conf,
    slot_name,
    sync_standby_names,
    write_file,
)
from aurora_kit.backends.local.controller import PgController
from aurora_kit.backends.local.sql import SHIMS_SQL
from aurora_kit.backends.local.state import StateStore
from aurora_kit.errors import (
    BackendOperationError,
    ClusterAlreadyExistsError,
    ClusterNotFoundError,
    DeletionProtectionError,
    InstanceNotFoundError,
    InvalidParameterError,
    InvalidStateError,
    UnsupportedOperationError,
    WaitTimeoutError,
)
from aurora_kit.polling import wait_for
from aurora_kit.rules import check_backup_window, check_final_snapshot_choice, check_retention
from aurora_kit.specs import AlarmSpec, ClusterSpec, InstanceSpec

LOCAL_AZ = "local-1a"
ENGINE = "aurora-postgresql"
CONNECT_TIMEOUT = 2


def default_root() -> Path:
    """``$AURORA_KIT_HOME``, else ``/var/lib/aurora_kit`` as root, else ``~/.local/share/aurora_kit``."""
    env = os.environ.get("AURORA_KIT_HOME")
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/aurora_kit")
    return Path.home() / ".local" / "share" / "aurora_kit"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class LocalBackend(ClusterBackend):
    """Clusters of real PostgreSQL 16 + pgvector processes, shaped like Aurora (see module docstring)."""

    name = "local"
    traits = BackendTraits(
        restorable_on_demand=True,
        alarms_sampled_on_demand=True,
        crash_failover=True,
        rejoin_timeout_s=120.0,
        poll_max_delay_s=2.0,
        restorable_wait_s=0.0,
        regional=False,
    )

    @classmethod
    def options_from(cls, params: BackendSettings) -> dict[str, Any]:
        options: dict[str, Any] = {"dry_run": params.dry_run}
        if params.local_root:
            options["root_dir"] = params.local_root
        return options

    def __init__(
        self,
        *,
        root_dir: str | os.PathLike[str] | None = None,
        dry_run: bool = False,
        progress: bool = False,
        ready_timeout: float = 60.0,
    ) -> None:
        super().__init__(dry_run=dry_run, progress=progress)
        self.root = Path(root_dir).expanduser().resolve() if root_dir else default_root().resolve()
        unsafe = sorted(set(str(self.root)) & UNSAFE_PATH_CHARS)
        if unsafe:
            # paths end up in archive/restore commands (shell) and primary_conninfo (libpq): keep them plain
            raise InvalidParameterError(
                "root_dir", str(self.root), f"must not contain {' '.join(repr(c) for c in unsafe)}"
            )
        self.ready_timeout = ready_timeout
        run_as()  # create the system user first, so the traversal check knows its uid
        check_traversable(self.root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        check_traversable(self.root)
        for sub in ("clusters", "snapshots"):
            (self.root / sub).mkdir(exist_ok=True, mode=0o755)
        self.store = StateStore(self.root)
        #: step timings of the last failover run by this object (``failover.Phases``), for measurements
        self.last_failover_phases: Any = None
        self._port_lock = threading.Lock()

    # == helpers ===========================================================================================
    def paths(self, cluster_id: str) -> ClusterPaths:
        return ClusterPaths(self.root, cluster_id)

    def bins(self, cl: Mapping[str, Any] | None = None) -> PgBinaries:
        major = int(str((cl or {}).get("engine_major", 16)))
        return find_binaries(major)

    def controller(self, cluster_id: str, instance_id: str, cl: Mapping[str, Any] | None = None) -> PgController:
        p = self.paths(cluster_id)
        return PgController(instance_id, p.data_dir(instance_id), p.log_file(instance_id), self.bins(cl))

    def cluster_state(self, cluster_id: str) -> dict[str, Any]:
        cl = self.store.read()["clusters"].get(cluster_id)
        if cl is None:
            raise ClusterNotFoundError(cluster_id)
        return dict(cl)

    def password(self, cluster_id: str) -> str:
        return self.paths(cluster_id).secret.read_text().strip()

    def connect(
        self, cluster_id: str, instance_id: str, *, dbname: str | None = None, cl: Mapping[str, Any] | None = None
    ) -> psycopg.Connection[Any]:
        """Autocommit superuser connection to one instance (control-plane use)."""
        cl = cl or self.cluster_state(cluster_id)
        inst = cl["instances"].get(instance_id)
        if inst is None:
            raise InstanceNotFoundError(instance_id, cluster_id)
        return psycopg.connect(
            host="127.0.0.1",
            port=inst["port"],
            user=cl["master_username"],
            dbname=dbname or "postgres",
            password=self.password(cluster_id),
            connect_timeout=CONNECT_TIMEOUT,
            autocommit=True,
        )

    def query(self, cluster_id: str, instance_id: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.connect(cluster_id, instance_id) as conn:
            cur = conn.execute(statement, args or None)
            return cur.fetchall() if cur.description is not None else []

    def _used_ports(self, state: Mapping[str, Any] | None = None) -> set[int]:
        used: set[int] = set()
        for cl in (state or self.store.read())["clusters"].values():
            used.update(int(i["port"]) for i in cl["instances"].values())
        return used

    def allocate_ports(
        self, count: int, *, reserved: set[int] | None = None, state: Mapping[str, Any] | None = None
    ) -> list[int]:
        """Free loopback ports not recorded for any cluster in state (pass ``state`` when holding its lock)."""
        taken = self._used_ports(state) | (reserved or set())
        ports: list[int] = []
        with self._port_lock:
            while len(ports) < count:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
                    sk.bind(("127.0.0.1", 0))
                    port = int(sk.getsockname()[1])
                if port not in taken and port not in ports:
                    ports.append(port)
        return ports

    @staticmethod
    def port_free(port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
            try:
                sk.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    @contextmanager
    def update_cluster(self, cluster_id: str) -> Iterator[dict[str, Any]]:
        with self.store.update() as st:
            cl = st["clusters"].get(cluster_id)
            if cl is None:
                raise ClusterNotFoundError(cluster_id)
            yield cl

    def set_status(self, cluster_id: str, status: str | None = None, **instances: str) -> None:
        with self.update_cluster(cluster_id) as cl:
            if status:
                cl["status"] = status
            for iid, istatus in instances.items():
                if iid in cl["instances"]:
                    cl["instances"][iid]["status"] = istatus

    def writer_id(self, cl: Mapping[str, Any]) -> str | None:
        return next((iid for iid, i in cl["instances"].items() if i["role"] == "writer"), None)

    def reader_ids(self, cl: Mapping[str, Any]) -> list[str]:
        return sorted(iid for iid, i in cl["instances"].items() if i["role"] == "reader")

    # -- node configuration --------------------------------------------------------------------------------
    def write_node_config(
        self,
        cluster_id: str,
        instance_id: str,
        cl: Mapping[str, Any],
        *,
        upstream_id: str | None = None,
        standby_readers: list[str] | None = None,
        recovery: dict[str, str] | None = None,
        standby_signal: bool | None = None,
    ) -> None:
        """(Re)generate one node's postgresql.conf, empty postgresql.auto.conf, set or clear standby.signal."""
        p = self.paths(cluster_id)
        data = p.data_dir(instance_id)
        inst = cl["instances"][instance_id]
        upstream = None
        if upstream_id is not None:
            upstream = {
                "port": cl["instances"][upstream_id]["port"],
                "user": cl["master_username"],
                "writer_id": upstream_id,
                "slot": slot_name(instance_id),
            }
        text = render_postgresql_conf(
            paths=p,
            cluster_id=cluster_id,
            instance_id=instance_id,
            port=int(inst["port"]),
            standby_names=sync_standby_names(standby_readers or []),
            upstream=upstream,
            recovery=recovery,
        )
        write_file(data / "postgresql.conf", text, mode=0o600)
        write_file(data / "postgresql.auto.conf", "# managed by aurora_kit: ALTER SYSTEM is not used\n", mode=0o600)
        for leftover in ("backup_manifest", "recovery.done"):
            (data / leftover).unlink(missing_ok=True)
        want_standby = upstream is not None if standby_signal is None else standby_signal
        signal_file = data / "standby.signal"
        if want_standby:
            write_file(signal_file, "", mode=0o600)
        else:
            signal_file.unlink(missing_ok=True)

    def _prepare_cluster_dir(self, cluster_id: str, password: str, username: str) -> None:
        p = self.paths(cluster_id)
        for d in (p.dir, p.archive, p.backups, p.dir / "instances"):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            chown(d)
        write_file(p.secret, password + "\n", mode=0o600, owner_pg=False)
        esc = password.replace("\\", "\\\\").replace(":", "\\:")
        write_file(p.pgpass, f"127.0.0.1:*:*:{username}:{esc}\n", mode=0o600)
        write_file(p.hba, HBA, mode=0o600)
        if not p.parameters.exists():
            write_file(p.parameters, "# cluster parameter group (aurora_kit)\n", mode=0o644)
        write_file(p.archive_script, archive_script(p.archive), mode=0o700)

    def _new_instance_dir(self, cluster_id: str, instance_id: str) -> None:
        d = self.paths(cluster_id).instance_dir(instance_id)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        chown(d)

    def copy_data(self, source: Path, dest: Path) -> None:
        """Copy a data directory / base backup (``cp -a`` keeps the PostgreSQL account's ownership)."""
        if dest.exists():
            raise BackendOperationError(f"refusing to overwrite {dest}")
        proc = subprocess.run(["cp", "-a", str(source), str(dest)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BackendOperationError(f"copying {source} to {dest} failed: {proc.stderr.strip()}")
        os.chmod(dest, 0o700)

    def basebackup(self, cluster_id: str, source_id: str, dest: Path, *, slot: str | None = None) -> None:
        """``pg_basebackup -X stream -c fast`` (plain format, with manifest) from ``source_id`` into ``dest``."""
        cl = self.cluster_state(cluster_id)
        p = self.paths(cluster_id)
        args = [
            self.bins(cl).tool("pg_basebackup"),
            "-D",
            str(dest),
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
            "-h",
            "127.0.0.1",
            "-p",
            str(cl["instances"][source_id]["port"]),
            "-U",
            cl["master_username"],
            "-w",
        ]
        if slot:
            args += ["-S", slot]
        run_tool(args, env={"PGPASSFILE": str(p.pgpass)}, cwd=dest.parent, what=f"pg_basebackup from {source_id}")

    def wait_streaming(self, cluster_id: str, writer: str, readers: list[str], *, timeout: float = 60.0) -> None:
        """Wait until every reader streams from the writer (pg_stat_replication)."""
        if not readers:
            return

        def probe() -> set[str]:
            rows = self.query(
                cluster_id, writer, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
            )
            return {r[0] for r in rows}

        wait_for(
            f"readers {readers} streaming from {writer}",
            probe,
            lambda names: set(readers) <= names,
            timeout=timeout,
            initial_delay=0.02,
            max_delay=0.25,
            retry_on=(psycopg.OperationalError,),
            progress=self.progress,
        )

    def reconfigure_writer(self, cluster_id: str, *, reload: bool = True) -> None:
        """Regenerate the writer's config (synchronous_standby_names from the current readers) and reload."""
        cl = self.cluster_state(cluster_id)
        writer = self.writer_id(cl)
        if writer is None:
            return
        readers = [r for r in self.reader_ids(cl) if cl["instances"][r]["status"] not in ("deleting",)]
        self.write_node_config(cluster_id, writer, cl, standby_readers=readers, standby_signal=False)
        if reload:
            self.controller(cluster_id, writer, cl).reload()

    def install_shims(self, cluster_id: str, instance_id: str, databases: list[str]) -> None:
        for db in databases:
            with self.connect(cluster_id, instance_id, dbname=db) as conn:
                conn.execute(SHIMS_SQL)

    def create_slot(self, cluster_id: str, writer: str, reader: str) -> None:
        name = slot_name(reader)
        with self.connect(cluster_id, writer) as conn:
            exists = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone()
            if not exists:
                conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
        self._forget_pending_slot(cluster_id, name)  # a new instance with that name owns the slot now

    def drop_slot(self, cluster_id: str, writer: str, reader: str) -> None:
        """Drop the reader's slot on the writer (a leaked slot retains WAL forever): its walsender is terminated
        first (the reader is gone; a walsender may linger until wal_sender_timeout, or another client hold it)."""
        self._drop_slot_named(cluster_id, writer, slot_name(reader))

    def _drop_slot_named(self, cluster_id: str, writer: str, name: str) -> None:
        with self.connect(cluster_id, writer) as conn:

            def release() -> tuple[Any, ...] | None:
                row = conn.execute(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,)
                ).fetchone()
                if row is not None and row[0] is not None:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                return row

            state = wait_for(
                f"slot {name} released",
                release,
                lambda row: row is None or row[0] is None,
                timeout=15,
                initial_delay=0.01,
                max_delay=0.2,
            )
            if state is not None:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))

    def _forget_pending_slot(self, cluster_id: str, name: str) -> None:
        if name in self.cluster_state(cluster_id).get("pending_slot_drops", []):
            with self.update_cluster(cluster_id) as rec:
                rec["pending_slot_drops"] = [n for n in rec.get("pending_slot_drops", []) if n != name]

    def drop_pending_slots(self, cluster_id: str) -> None:
        """Retry the slot drops a removal could not finish (recorded in state), on the current writer."""
        cl = self.cluster_state(cluster_id)
        pending = list(cl.get("pending_slot_drops", []))
        writer = self.writer_id(cl)
        if not pending or writer is None or not self.controller(cluster_id, writer, cl).is_running():
            return
        for name in pending:
            with suppress(psycopg.Error, WaitTimeoutError):
                self._drop_slot_named(cluster_id, writer, name)
                self._forget_pending_slot(cluster_id, name)

    # == clusters ==========================================================================================
    def create_cluster(self, spec: ClusterSpec, *, wait: bool = True) -> Cluster:
        """Create writer + readers. Synchronous: the cluster and every instance are available on return (a few
        seconds), whatever ``wait`` says."""
        if not isinstance(spec, ClusterSpec):
            raise InvalidParameterError("spec", type(spec).__name__, "must be a ClusterSpec")
        bins = find_binaries(spec.engine_major)
        existing = self.store.read()["clusters"].get(spec.cluster_id)
        if existing is not None:
            if existing.get("spec") == spec.model_dump(mode="json"):
                return self.describe_cluster(spec.cluster_id)
            raise ClusterAlreadyExistsError(spec.cluster_id)
        taken = {iid for c in self.store.read()["clusters"].values() for iid in c["instances"]}
        for inst in spec.instances:
            if inst.instance_id in taken:
                raise InvalidParameterError("instance_id", inst.instance_id, "already used by another cluster")
        if spec.port is not None and (spec.port in self._used_ports() or not self.port_free(spec.port)):
            raise InvalidParameterError("port", spec.port, "that loopback port is already in use")
        if self.dry_run:
            self._record("local", "CreateDBCluster", **spec.model_dump(mode="json", exclude={"instances"}))
            for inst in spec.instances:
                self._record("local", "CreateDBInstance", DBClusterIdentifier=spec.cluster_id, **inst.model_dump())
            return self._projected_cluster(spec, bins)

        now = utcnow()
        with self.store.update() as st:
            if spec.cluster_id in st["clusters"]:
                raise ClusterAlreadyExistsError(spec.cluster_id)
            reserved: set[int] = {spec.port} if spec.port else set()
            ports = self.allocate_ports(len(spec.instances), reserved=reserved, state=st)
            if spec.port:
                ports[0] = spec.port
            st["clusters"][spec.cluster_id] = {
                **self._cluster_record(spec, bins, now),
                "status": "creating",
                "instances": {
                    inst.instance_id: self._instance_record(inst, port, "writer" if n == 0 else "reader", now)
                    for n, (inst, port) in enumerate(zip(spec.instances, ports, strict=False))
                },
            }
        try:
            with self.store.cluster_lock(spec.cluster_id):
                self._build(spec)
        except BaseException as exc:
            self._destroy_after_failure(spec.cluster_id, exc)
            raise
        return self.describe_cluster(spec.cluster_id)

    def _cluster_record(self, spec: ClusterSpec, bins: PgBinaries, now: datetime) -> dict[str, Any]:
        return {
            "spec": spec.model_dump(mode="json"),
            "engine_major": bins.major,
            "engine_version": bins.version,
            "master_username": spec.master_username,
            "database_name": spec.database_name,
            "deletion_protection": spec.deletion_protection,
            "backup_retention_period": spec.backup_retention_period,
            "preferred_backup_window": spec.preferred_backup_window,
            "iam_database_authentication": spec.iam_database_authentication,
            "storage_encrypted": spec.storage_encrypted,
            "tags": dict(spec.tags),
            "created": _iso(now),
            "parameters": {},
            "alarms": [],
            "backups": [],
            "restore": None,
            "latest_restorable_time": None,
        }

    @staticmethod
    def _instance_record(inst: InstanceSpec, port: int, role: str, now: datetime) -> dict[str, Any]:
        return {
            "port": port,
            "role": role,
            "status": "creating",
            "instance_class": inst.instance_class,
            "availability_zone": inst.availability_zone or LOCAL_AZ,
            "promotion_tier": inst.promotion_tier,
            "created": _iso(now),
        }

    def _build(self, spec: ClusterSpec) -> None:
        cid = spec.cluster_id
        password = secrets.token_urlsafe(24)
        self._prepare_cluster_dir(cid, password, spec.master_username)
        cl = self.cluster_state(cid)
        writer = spec.instances[0].instance_id
        readers = [i.instance_id for i in spec.instances[1:]]
        p = self.paths(cid)
        for iid in [writer, *readers]:
            self._new_instance_dir(cid, iid)
        pwfile = p.instance_dir(writer) / ".pwfile"
        write_file(pwfile, password + "\n", mode=0o600)
        wctl = self.controller(cid, writer, cl)
        try:
            wctl.initdb(superuser=spec.master_username, pwfile=pwfile)
        finally:
            pwfile.unlink(missing_ok=True)
        self.write_node_config(cid, writer, cl, standby_signal=False)
        wctl.start(timeout=self.ready_timeout)
        self.install_shims(cid, writer, ["template1", "postgres"])
        if spec.database_name != "postgres":
            with self.connect(cid, writer) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(spec.database_name)))
        for r in readers:
            self.create_slot(cid, writer, r)
        # one pg_basebackup: it is the first automated backup (PITR window start) and the seed of every reader
        base = backup.take_automated_backup(self, cid, source_id=writer)

        def seed_reader(reader: str) -> None:
            self.copy_data(base, p.data_dir(reader))
            self.write_node_config(cid, reader, cl, upstream_id=writer)
            self.controller(cid, reader, cl).start(wait=False)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(seed_reader, readers))  # list(): re-raise the first failure
        for r in readers:
            self.controller(cid, r, cl).wait_ready(timeout=self.ready_timeout)
        self.write_node_config(cid, writer, cl, standby_readers=readers, standby_signal=False)
        wctl.reload()
        self.wait_streaming(cid, writer, readers)
        self.set_status(cid, "available", **dict.fromkeys([writer, *readers], "available"))

    def _destroy(self, cluster_id: str) -> None:
        """Stop every process of the cluster (by pid), remove its files and its state entry.

        Every instance is stopped even when stopping one fails; the failures are raised once at the end (chained
        to the first), and the files and state entry are then kept: no server keeps running on deleted files,
        and deleting the cluster again retries."""
        cl = self.store.read()["clusters"].get(cluster_id)
        failures: list[tuple[str, Exception]] = []
        for iid in (cl or {}).get("instances") or {}:
            try:
                self.controller(cluster_id, iid, cl).stop(mode="immediate", timeout=10)
            except Exception as exc:  # keep stopping the others
                failures.append((iid, exc))
        if failures:
            detail = "; ".join(f"{iid}: {type(exc).__name__}: {exc}" for iid, exc in failures)
            raise BackendOperationError(
                f"could not stop every instance of DB cluster {cluster_id!r} ({detail}); its files are kept, "
                "delete it again once they are stopped"
            ) from failures[0][1]
        self.discard(self.paths(cluster_id).dir)
        with self.store.update() as st:
            st["clusters"].pop(cluster_id, None)

    def _destroy_after_failure(self, cluster_id: str, original: BaseException) -> None:
        """Clean up after ``original`` failed an operation; a cleanup failure is noted on ``original`` (which the
        caller re-raises), never raised in its place."""
        try:
            self._destroy(cluster_id)
        except Exception as exc:
            note = f"cleanup of DB cluster {cluster_id!r} also failed: {exc}"
            add_note = getattr(original, "add_note", None)  # Python >= 3.11
            if add_note is not None:
                add_note(note)
            else:
                print(f"warning: {note}", file=sys.stderr)

    def discard(self, path: Path) -> None:
        """Remove a directory tree: renamed away at once, unlinked by a detached ``rm -rf`` (thousands of files
        per data dir make an inline delete take seconds)."""
        if not path.exists():
            return
        trash = self.root / "trash"
        trash.mkdir(exist_ok=True)
        target = trash / f"{path.name}-{secrets.token_hex(4)}"
        os.rename(path, target)
        subprocess.Popen(
            ["rm", "-rf", str(target)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _projected_cluster(self, spec: ClusterSpec, bins: PgBinaries) -> Cluster:
        members = [
            ClusterMember(i.instance_id, n == 0, "in-sync", i.promotion_tier) for n, i in enumerate(spec.instances)
        ]
        return Cluster(
            db_cluster_identifier=spec.cluster_id,
            status="dry-run",
            engine=ENGINE,
            engine_version=bins.version,
            endpoint="",
            reader_endpoint="",
            port=spec.port or 0,
            master_username=spec.master_username,
            database_name=spec.database_name,
            db_cluster_members=members,
            backup_retention_period=spec.backup_retention_period,
            preferred_backup_window=spec.preferred_backup_window,
            storage_encrypted=spec.storage_encrypted,
            deletion_protection=spec.deletion_protection,
            iam_database_authentication_enabled=spec.iam_database_authentication,
            availability_zones=[LOCAL_AZ],
            tags=dict(spec.tags),
        )

    # -- describe ------------------------------------------------------------------------------------------
    def _probe_instance(self, cluster_id: str, iid: str, cl: Mapping[str, Any]) -> tuple[bool, bool, bool]:
        """(running, is_writer, pending_restart) from the live instance; falls back to state when unreachable."""
        inst = cl["instances"][iid]
        stored_writer = inst["role"] == "writer"
        if not self.controller(cluster_id, iid, cl).is_running():
            return False, stored_writer, False
        try:
            with self.connect(cluster_id, iid, cl=cl) as conn:
                row = conn.execute(
                    "SELECT NOT pg_is_in_recovery(), EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart)"
                ).fetchone()
        except psycopg.Error:
            return True, stored_writer, False
        assert row is not None
        return True, bool(row[0]), bool(row[1])

    def _instance_view(self, cluster_id: str, iid: str, cl: Mapping[str, Any]) -> Instance:
        inst = cl["instances"][iid]
        running, is_writer, pending = self._probe_instance(cluster_id, iid, cl)
        status = inst["status"]
        if status == "available" and not running:
            status = "failed"
        elif status == "available" and running and self.controller(cluster_id, iid, cl).pm_status() != "ready":
            status = "starting"
        return Instance(
            db_instance_identifier=iid,
            db_cluster_identifier=cluster_id,
            status=status,
            db_instance_class=inst["instance_class"],
            is_cluster_writer=is_writer,
            endpoint_address="127.0.0.1",
            endpoint_port=int(inst["port"]),
            availability_zone=inst["availability_zone"],
            promotion_tier=int(inst["promotion_tier"]),
            engine_version=cl["engine_version"],
            db_cluster_parameter_group_status="pending-reboot" if pending else "in-sync",
        )

    def _ordered(self, cl: Mapping[str, Any]) -> list[str]:
        writer = self.writer_id(cl)
        return ([writer] if writer else []) + self.reader_ids(cl)

    def describe_instances(self, cluster_id: str) -> list[Instance]:
        cl = self.cluster_state(cluster_id)
        return [self._instance_view(cluster_id, iid, cl) for iid in self._ordered(cl)]

    def describe_cluster(self, cluster_id: str) -> Cluster:
        cl = self.cluster_state(cluster_id)
        instances = [self._instance_view(cluster_id, iid, cl) for iid in self._ordered(cl)]
        return self._cluster_view(cluster_id, cl, instances)

    def _cluster_view(self, cluster_id: str, cl: Mapping[str, Any], instances: list[Instance]) -> Cluster:
        ports = {i.db_instance_identifier: i.endpoint_port for i in instances}
        writer = self.writer_id(cl)
        readers = self.reader_ids(cl)
        endpoint = ",".join(f"127.0.0.1:{ports[i]}" for i in self._ordered(cl))
        reader_endpoint = ",".join(f"127.0.0.1:{ports[i]}" for i in (readers or ([writer] if writer else [])))
        backups = cl.get("backups") or []
        earliest = min((_dt(b["end_time"]) for b in backups), default=None, key=lambda d: d or utcnow())
        return Cluster(
            db_cluster_identifier=cluster_id,
            status=cl["status"],
            engine=ENGINE,
            engine_version=cl["engine_version"],
            endpoint=endpoint,
            reader_endpoint=reader_endpoint,
            port=int(cl["instances"][writer]["port"]) if writer else 0,
            master_username=cl["master_username"],
            database_name=cl["database_name"],
            db_cluster_members=[
                ClusterMember(
                    i.db_instance_identifier,
                    i.is_cluster_writer,
                    i.db_cluster_parameter_group_status,
                    i.promotion_tier,
                )
                for i in instances
            ],
            backup_retention_period=int(cl["backup_retention_period"]),
            preferred_backup_window=cl["preferred_backup_window"],
            storage_encrypted=bool(cl["storage_encrypted"]),
            deletion_protection=bool(cl["deletion_protection"]),
            iam_database_authentication_enabled=bool(cl["iam_database_authentication"]),
            db_cluster_parameter_group=f"{cluster_id}-params",
            availability_zones=[LOCAL_AZ],
            earliest_restorable_time=earliest,
            latest_restorable_time=backup.latest_restorable_time(self, cluster_id, cl),
            cluster_create_time=_dt(cl["created"]),
            master_user_secret_arn=f"file://{self.paths(cluster_id).secret}",
            tags=dict(cl.get("tags") or {}),
        )

    def list_clusters(self) -> list[Cluster]:
        ids = sorted(self.store.read()["clusters"])
        out: list[Cluster] = []
        for cid in ids:
            try:
                out.append(self.describe_cluster(cid))
            except ClusterNotFoundError:  # deleted concurrently
                continue
        return out

    def modify_cluster(
        self,
        cluster_id: str,
        *,
        deletion_protection: bool | None = None,
        backup_retention_period: int | None = None,
        preferred_backup_window: str | None = None,
    ) -> Cluster:
        self.cluster_state(cluster_id)  # ClusterNotFoundError first
        changes: dict[str, Any] = {}
        if deletion_protection is not None:
            changes["deletion_protection"] = bool(deletion_protection)
        if backup_retention_period is not None:  # 0 or any out-of-range value is refused, never kept silently
            changes["backup_retention_period"] = check_retention(backup_retention_period)
        if preferred_backup_window is not None:
            changes["preferred_backup_window"] = check_backup_window(preferred_backup_window)
        if self.dry_run:
            self._record("local", "ModifyDBCluster", DBClusterIdentifier=cluster_id, **changes)
            view = self.describe_cluster(cluster_id)
            return Cluster(**{**view.__dict__, **changes, "status": "dry-run"})
        with self.store.cluster_lock(cluster_id), self.update_cluster(cluster_id) as rec:
            rec.update(changes)
        return self.describe_cluster(cluster_id)

    def delete_cluster(
        self,
        cluster_id: str,
        *,
        final_snapshot_id: str | None,
        skip_final_snapshot: bool = False,
        lift_deletion_protection: bool = False,
        wait: bool = True,
        delete_automated_backups: bool = True,
    ) -> Snapshot | None:
        cl = self.cluster_state(cluster_id)
        check_final_snapshot_choice(final_snapshot_id, skip_final_snapshot)
        if not delete_automated_backups:  # traits.retains_automated_backups is False
            raise UnsupportedOperationError(
                "the local backend keeps automated backups in the cluster's directory: they go with the cluster",
                hint="take a final snapshot instead (final_snapshot_id)",
                cluster_id=cluster_id,
            )
        if final_snapshot_id is not None:
            backup.check_new_snapshot_id(self, final_snapshot_id)
        if cl["deletion_protection"] and not lift_deletion_protection:
            raise DeletionProtectionError(cluster_id)
        if self.dry_run:
            if cl["deletion_protection"]:
                self._record("local", "ModifyDBCluster", DBClusterIdentifier=cluster_id, DeletionProtection=False)
            for iid in self._ordered(cl):
                self._record("local", "DeleteDBInstance", DBInstanceIdentifier=iid)
            self._record(
                "local",
                "DeleteDBCluster",
                DBClusterIdentifier=cluster_id,
                FinalDBSnapshotIdentifier=final_snapshot_id,
                SkipFinalSnapshot=skip_final_snapshot,
            )
            return backup.projected_snapshot(self, cluster_id, final_snapshot_id) if final_snapshot_id else None
        final: Snapshot | None = None
        with self.store.cluster_lock(cluster_id):
            if final_snapshot_id is not None:
                if cl["status"] == "stopped":  # the final snapshot needs a running writer
                    self.start_cluster(cluster_id)
                final = backup.create_snapshot(self, cluster_id, final_snapshot_id, tags=cl.get("tags"))
            self.set_status(cluster_id, "deleting", **dict.fromkeys(cl["instances"], "deleting"))
            self._destroy(cluster_id)
        return final

    def stop_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster:
        cl = self.cluster_state(cluster_id)
        if cl["status"] == "stopped":
            return self.describe_cluster(cluster_id)
        if cl["status"] != "available":
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl['status']}; only an available cluster stops")
        if self.dry_run:
            self._record("local", "StopDBCluster", DBClusterIdentifier=cluster_id)
            return Cluster(**{**self.describe_cluster(cluster_id).__dict__, "status": "dry-run"})
        with self.store.cluster_lock(cluster_id):
            # re-read under the lock: another process may have stopped, failed over or changed the cluster
            cl = self.cluster_state(cluster_id)
            if cl["status"] == "stopped":
                return self.describe_cluster(cluster_id)
            if cl["status"] != "available":
                raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl['status']}; only an available cluster stops")
            writer = self.writer_id(cl)
            if writer and self.controller(cluster_id, writer, cl).is_running():
                # archive everything first: the restorable window of a stopped cluster ends where it stopped
                backup.force_archive(self, cluster_id)
            before = {iid: inst["status"] for iid, inst in cl["instances"].items()}
            self.set_status(cluster_id, "stopping", **dict.fromkeys(cl["instances"], "stopping"))
            try:
                # writer first: its walsenders ship every WAL record to the readers before it exits
                for iid in self._ordered(cl):
                    self.controller(cluster_id, iid, cl).stop(mode="fast")
            except BaseException:
                # never leave it "stopping": available again (start_cluster restarts what was stopped)
                self.set_status(cluster_id, "available", **self._statuses_now(cluster_id, cl, before))
                raise
            self.set_status(cluster_id, "stopped", **dict.fromkeys(cl["instances"], "stopped"))
        return self.describe_cluster(cluster_id)

    def _statuses_now(self, cluster_id: str, cl: Mapping[str, Any], before: Mapping[str, str]) -> dict[str, str]:
        """Instance statuses after a failed stop/start: ``stopped`` when not running, else the status before."""
        out: dict[str, str] = {}
        for iid in cl["instances"]:
            try:
                running = self.controller(cluster_id, iid, cl).is_running()
            except Exception:  # cannot tell: keep what it was
                running = True
            out[iid] = before.get(iid, "available") if running else "stopped"
        return out

    def start_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster:
        """Start a stopped cluster; on an ``available`` one, restart any instance whose process is gone (e.g.
        after a host reboot)."""
        cl = self.cluster_state(cluster_id)
        if cl["status"] not in ("stopped", "available"):
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl['status']}; only a stopped cluster starts")
        down = [iid for iid in self._ordered(cl) if not self.controller(cluster_id, iid, cl).is_running()]
        if not down:
            return self.describe_cluster(cluster_id)
        if self.dry_run:
            self._record("local", "StartDBCluster", DBClusterIdentifier=cluster_id)
            return Cluster(**{**self.describe_cluster(cluster_id).__dict__, "status": "dry-run"})
        with self.store.cluster_lock(cluster_id):
            # re-read under the lock: another process may have started, stopped or changed the cluster meanwhile
            cl = self.cluster_state(cluster_id)
            if cl["status"] not in ("stopped", "available"):
                raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl['status']}; only a stopped cluster starts")
            down = [iid for iid in self._ordered(cl) if not self.controller(cluster_id, iid, cl).is_running()]
            if not down:
                return self.describe_cluster(cluster_id)
            before_status = cl["status"]
            before = {iid: inst["status"] for iid, inst in cl["instances"].items()}
            self.set_status(cluster_id, "starting", **dict.fromkeys(down, "starting"))
            try:
                # a former writer that was never rewound must not start on its old timeline: rewound once the
                # writer runs (below); every other reader starts with standby.signal, whatever its data dir says
                fenced = [iid for iid in down if cl["instances"][iid].get("needs_rewind")]
                plain = [iid for iid in down if iid not in fenced]
                # the same controller objects start and wait: they know when they started the postmaster (a
                # fresh object judges "exited while starting" by the log file's age, which may predate the start)
                ctls = {iid: self.controller(cluster_id, iid, cl) for iid in plain}
                for iid in plain:
                    self._ensure_standby_signal(cluster_id, iid, cl)
                    ctls[iid].start(wait=False)
                for iid in plain:
                    ctls[iid].wait_ready(timeout=self.ready_timeout)
                failed = self._rejoin_fenced(cluster_id, fenced)
                cl = self.cluster_state(cluster_id)
                writer = self.writer_id(cl)
                if writer:
                    self.wait_streaming(cluster_id, writer, [r for r in self.reader_ids(cl) if r not in failed])
                self.drop_pending_slots(cluster_id)
                statuses = {iid: ("failed" if iid in failed else "available") for iid in cl["instances"]}
                self.set_status(cluster_id, "available", **statuses)
            except BaseException:
                # never leave it "starting": what runs is available, the rest keeps its status from before
                self._restore_after_failed_start(cluster_id, before_status, before, down)
                raise
        return self.describe_cluster(cluster_id)

    def _restore_after_failed_start(
        self, cluster_id: str, before_status: str, before: Mapping[str, str], attempted: list[str]
    ) -> None:
        cl = self.cluster_state(cluster_id)
        for iid in attempted:  # a postmaster launched just before the failure may still be coming up
            if iid in cl["instances"]:
                with suppress(Exception):
                    self.controller(cluster_id, iid, cl).wait_ready(timeout=10)
        statuses: dict[str, str] = {}
        for iid in cl["instances"]:
            try:
                running = self.controller(cluster_id, iid, cl).is_running()
            except Exception:
                running = False
            was = before.get(iid, "stopped")
            statuses[iid] = "available" if running and was != "failed" else ("stopped" if was == "starting" else was)
        writer = self.writer_id(cl)
        status = "available" if writer is not None and statuses.get(writer) == "available" else before_status
        self.set_status(cluster_id, status, **statuses)

    def _ensure_standby_signal(self, cluster_id: str, instance_id: str, cl: Mapping[str, Any]) -> None:
        """An instance recorded as a reader only ever starts in recovery: re-add a missing standby.signal."""
        if cl["instances"][instance_id]["role"] != "reader":
            return
        signal_file = self.paths(cluster_id).data_dir(instance_id) / "standby.signal"
        if not signal_file.exists():
            write_file(signal_file, "", mode=0o600)

    def _rejoin_fenced(self, cluster_id: str, fenced: list[str]) -> set[str]:
        """Rewind + start each former writer still marked ``needs_rewind``; returns those that failed (they stay
        stopped, fenced with standby.signal, marked failed)."""
        failed: set[str] = set()
        for iid in fenced:
            try:
                failover.rejoin(self, cluster_id, iid)
            except Exception:
                failed.add(iid)
                self.set_status(cluster_id, None, **{iid: "failed"})
        return failed

    # == instances =========================================================================================
    def create_instance(self, cluster_id: str, spec: InstanceSpec, *, wait: bool = True) -> Instance:
        cl = self.cluster_state(cluster_id)
        if not isinstance(spec, InstanceSpec):
            raise InvalidParameterError("spec", type(spec).__name__, "must be an InstanceSpec")
        if spec.instance_id in cl["instances"]:
            raise InvalidParameterError("instance_id", spec.instance_id, f"already a member of {cluster_id!r}")
        taken = {iid for c in self.store.read()["clusters"].values() for iid in c["instances"]}
        if spec.instance_id in taken:
            raise InvalidParameterError("instance_id", spec.instance_id, "already used by another cluster")
        if cl["status"] != "available":
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl['status']}; instances are added when available")
        writer = self.writer_id(cl)
        if self.dry_run:
            self._record("local", "CreateDBInstance", DBClusterIdentifier=cluster_id, **spec.model_dump())
            return Instance(
                db_instance_identifier=spec.instance_id,
                db_cluster_identifier=cluster_id,
                status="dry-run",
                db_instance_class=spec.instance_class,
                is_cluster_writer=writer is None,
                endpoint_address="127.0.0.1",
                endpoint_port=0,
                availability_zone=spec.availability_zone or LOCAL_AZ,
                promotion_tier=spec.promotion_tier,
                engine_version=cl["engine_version"],
            )
        with self.store.cluster_lock(cluster_id):
            writer = self.writer_id(self.cluster_state(cluster_id))  # a failover may have run meanwhile
            role = "reader" if writer else "writer"
            with self.store.update() as st:
                (port,) = self.allocate_ports(1, state=st)
                st["clusters"][cluster_id]["instances"][spec.instance_id] = self._instance_record(
                    spec, port, role, utcnow()
                )
            try:
                self._new_instance_dir(cluster_id, spec.instance_id)
                if writer is None:
                    backup.start_writer_from_seed(self, cluster_id, spec.instance_id)
                else:
                    self._add_reader(cluster_id, writer, spec.instance_id)
            except BaseException:
                self._remove_instance_files(cluster_id, spec.instance_id)
                raise
        return self._instance_view(cluster_id, spec.instance_id, self.cluster_state(cluster_id))

    def _add_reader(self, cluster_id: str, writer: str, reader: str) -> None:
        cl = self.cluster_state(cluster_id)
        self.create_slot(cluster_id, writer, reader)
        self.basebackup(cluster_id, writer, self.paths(cluster_id).data_dir(reader), slot=slot_name(reader))
        self.write_node_config(cluster_id, reader, cl, upstream_id=writer)
        self.controller(cluster_id, reader, cl).start(timeout=self.ready_timeout)
        self.set_status(cluster_id, None, **{reader: "available"})
        self.reconfigure_writer(cluster_id)
        self.wait_streaming(cluster_id, writer, [reader])

    def _remove_instance_files(self, cluster_id: str, instance_id: str) -> None:
        """Stop an instance, drop its slot on the writer, forget it, delete its files. A slot that cannot be
        dropped now (writer down, drop failed) is recorded in state and dropped at the next start or failover."""
        try:
            cl = self.store.read()["clusters"].get(cluster_id)
            if cl is not None and instance_id in cl["instances"]:
                writer = self.writer_id(cl)
                live_writer = writer is not None and writer != instance_id
                live_writer = live_writer and self.controller(cluster_id, str(writer), cl).is_running()
                if live_writer:  # out of synchronous_standby_names first, so no commit waits for a leaving reader
                    self.set_status(cluster_id, None, **{instance_id: "deleting"})
                    self.reconfigure_writer(cluster_id)
                self.controller(cluster_id, instance_id, cl).stop(mode="immediate", timeout=10)
                dropped = False
                if live_writer:
                    assert writer is not None
                    with suppress(psycopg.Error, WaitTimeoutError):
                        self.drop_slot(cluster_id, writer, instance_id)
                        dropped = True
                with self.update_cluster(cluster_id) as rec:
                    rec["instances"].pop(instance_id, None)
                    if not dropped and writer is not None and writer != instance_id:
                        pending = rec.setdefault("pending_slot_drops", [])
                        if slot_name(instance_id) not in pending:
                            pending.append(slot_name(instance_id))
        finally:
            self.discard(self.paths(cluster_id).instance_dir(instance_id))

    def delete_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> None:
        """Delete a reader; deleting the writer fails over to a reader first (as Aurora). Deleting the last
        instance keeps the cluster's storage (a later create_instance brings it back)."""
        cl = self.cluster_state(cluster_id)
        if instance_id not in cl["instances"]:
            raise InstanceNotFoundError(instance_id, cluster_id)
        if cl["status"] != "available":
            raise InvalidStateError(
                f"DB cluster {cluster_id!r} is {cl['status']}; instances are deleted when available"
            )
        if self.dry_run:
            self._record("local", "DeleteDBInstance", DBInstanceIdentifier=instance_id)
            return
        with self.store.cluster_lock(cluster_id):
            cl = self.cluster_state(cluster_id)
            if cl["instances"][instance_id]["role"] == "writer":
                if self.reader_ids(cl):
                    self.failover(cluster_id, mode="planned")
                else:
                    backup.park_writer_as_seed(self, cluster_id, instance_id)
                    return
            self.set_status(cluster_id, None, **{instance_id: "deleting"})
            self._remove_instance_files(cluster_id, instance_id)

    def reboot_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> Instance:
        cl = self.cluster_state(cluster_id)
        if instance_id not in cl["instances"]:
            raise InstanceNotFoundError(instance_id, cluster_id)
        if cl["status"] != "available":
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl['status']}; reboot needs it available")
        if self.dry_run:
            self._record("local", "RebootDBInstance", DBInstanceIdentifier=instance_id)
            return Instance(**{**self._instance_view(cluster_id, instance_id, cl).__dict__, "status": "dry-run"})
        with self.store.cluster_lock(cluster_id):
            cl = self.cluster_state(cluster_id)
            ctl = self.controller(cluster_id, instance_id, cl)
            self.set_status(cluster_id, None, **{instance_id: "rebooting"})
            ctl.stop(mode="fast")
            if cl["instances"][instance_id].get("needs_rewind"):
                try:  # a former writer never rewound (failed rejoin): rewind before it may start
                    failover.rejoin(self, cluster_id, instance_id)
                except Exception:
                    self.set_status(cluster_id, None, **{instance_id: "failed"})
                    raise
                return self._instance_view(cluster_id, instance_id, self.cluster_state(cluster_id))
            self._ensure_standby_signal(cluster_id, instance_id, cl)
            ctl.start(timeout=self.ready_timeout)
            writer = self.writer_id(cl)
            if writer and writer != instance_id:
                self.wait_streaming(cluster_id, writer, [instance_id])
            elif writer:
                self.wait_streaming(
                    cluster_id,
                    writer,
                    [r for r in self.reader_ids(cl) if r != instance_id and cl["instances"][r]["status"] != "failed"],
                )
            self.set_status(cluster_id, None, **{instance_id: "available"})
        return self._instance_view(cluster_id, instance_id, self.cluster_state(cluster_id))

    # == parameters ========================================================================================
    def get_parameters(self, cluster_id: str, names: list[str]) -> dict[str, str | None]:
        return parameters.get_parameters(self, cluster_id, names)

    def apply_parameters(self, cluster_id: str, parameters_: Mapping[str, str]) -> ParameterChangeResult:
        return parameters.apply_parameters(self, cluster_id, parameters_)

    def reboot_pending(self, cluster_id: str) -> list[Instance]:
        return parameters.reboot_pending(self, cluster_id)

    # == snapshots =========================================================================================
    def create_snapshot(
        self, cluster_id: str, snapshot_id: str, *, tags: Mapping[str, str] | None = None, wait: bool = True
    ) -> Snapshot:
        self.cluster_state(cluster_id)
        backup.check_new_snapshot_id(self, snapshot_id)
        if self.dry_run:
            self._record(
                "local",
                "CreateDBClusterSnapshot",
                DBClusterIdentifier=cluster_id,
                DBClusterSnapshotIdentifier=snapshot_id,
            )
            return backup.projected_snapshot(self, cluster_id, snapshot_id)
        with self.store.cluster_lock(cluster_id):
            return backup.create_snapshot(self, cluster_id, snapshot_id, tags=tags)

    def describe_snapshots(self, cluster_id: str | None = None) -> list[Snapshot]:
        return backup.describe_snapshots(self, cluster_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        backup.delete_snapshot(self, snapshot_id)

    def restore_from_snapshot(
        self, snapshot_id: str, new_cluster_id: str, *, instances: list[InstanceSpec] | None = None, wait: bool = True
    ) -> Cluster:
        return backup.restore_from_snapshot(self, snapshot_id, new_cluster_id, instances=instances)

    def restore_to_point_in_time(
        self,
        source_cluster_id: str,
        new_cluster_id: str,
        *,
        restore_time: datetime | None = None,
        use_latest_restorable_time: bool = False,
        instances: list[InstanceSpec] | None = None,
        wait: bool = True,
    ) -> Cluster:
        return backup.restore_to_point_in_time(
            self,
            source_cluster_id,
            new_cluster_id,
            restore_time=restore_time,
            use_latest_restorable_time=use_latest_restorable_time,
            instances=instances,
        )

    # == failover ==========================================================================================
    def failover(
        self, cluster_id: str, *, target_instance_id: str | None = None, mode: FailoverMode = "planned"
    ) -> FailoverResult:
        return failover.failover(self, cluster_id, target_instance_id=target_instance_id, mode=mode)

    # == data plane ========================================================================================
    def _endpoint_info(self, cluster_id: str, endpoint: str = "cluster") -> ConnectionInfo:
        cl = self.cluster_state(cluster_id)
        ordered = self._ordered(cl)
        if not ordered:
            raise InvalidStateError(
                f"DB cluster {cluster_id!r} has no instances", hint="create an instance (the writer) first"
            )
        extra: dict[str, Any] = {}
        if endpoint == "cluster":
            members = ordered
            extra["target_session_attrs"] = "read-write"
        elif endpoint == "reader":
            readers = self.reader_ids(cl)
            members = readers or ordered
            if readers:
                extra["target_session_attrs"] = "standby"
                extra["load_balance_hosts"] = "random"
        elif endpoint in cl["instances"]:
            members = [endpoint]
        else:
            raise InstanceNotFoundError(endpoint, cluster_id)
        conninfo = make_conninfo(
            host=",".join("127.0.0.1" for _ in members),
            port=",".join(str(cl["instances"][m]["port"]) for m in members),
            dbname=cl["database_name"],
            user=cl["master_username"],
            connect_timeout=CONNECT_TIMEOUT,
            **extra,
        )
        return ConnectionInfo(
            conninfo=conninfo,
            user=cl["master_username"],
            dbname=cl["database_name"],
            password=self.password(cluster_id),
            endpoint=endpoint,
        )

    # == monitoring ========================================================================================
    def put_alarms(
        self, cluster_id: str, alarms: list[AlarmSpec], *, sns_topic_arn: str | None = None
    ) -> list[AlarmState]:
        return monitoring.put_alarms(self, cluster_id, alarms, sns_topic_arn=sns_topic_arn)

    def describe_alarms(self, cluster_id: str) -> list[AlarmState]:
        return monitoring.describe_alarms(self, cluster_id)
