"""The processes, ports and files of one root dir: the public layer every other local module acts through.

:class:`Nodes` hands out controllers and superuser connections, allocates loopback addresses and ports, writes each
node's configuration, takes base backups and data copies, manages replication slots, waits for streaming,
reconfigures the writer's synchronous standbys, installs Aurora's SQL surface, publishes the topology and names
clients read (:mod:`.topology`), and removes instances and clusters. It decides nothing about Aurora:
:mod:`.lifecycle`, :mod:`.backup`, :mod:`.failover`, :mod:`.parameters` and :mod:`.monitoring` do, through its
public methods and the records of :mod:`.state`.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import psycopg

from aurora_kit.backends.local import addressing, pgbouncer, topology
from aurora_kit.backends.local.binaries import PgBinaries, chown, find_binaries, run_tool
from aurora_kit.backends.local.config import (
    HBA,
    TOPOLOGY_FROM_DATA_DIR,
    ClassSettings,
    ClusterPaths,
    Upstream,
    archive_script,
    class_settings,
    render_postgresql_conf,
    slot_name,
    sync_standby_names,
    write_file,
)
from aurora_kit.backends.local.controller import PgController
from aurora_kit.backends.local.datacopy import copy_tree
from aurora_kit.backends.local.sql import rds_extensions, surface_sql
from aurora_kit.backends.local.state import ClusterRecord, StateDoc, StateStore
from aurora_kit.backends.local.views import HOST, Probe
from aurora_kit.errors import BackendOperationError, WaitTimeoutError
from aurora_kit.polling import wait_for

CONNECT_TIMEOUT = 2


class Nodes:
    """Processes, ports and paths of the clusters under ``root`` (state in ``store``)."""

    def __init__(self, root: Path, store: StateStore, *, ready_timeout: float = 60.0, progress: bool = False) -> None:
        self.root = root
        self.store = store
        self.ready_timeout = ready_timeout
        self.progress = progress
        self._port_lock = threading.Lock()
        #: where the clusters' names go (see :mod:`.addressing`)
        self.hosts = addressing.HostsFile()

    # -- paths, binaries, processes --------------------------------------------------------------------------
    def paths(self, cluster_id: str) -> ClusterPaths:
        return ClusterPaths(self.root, cluster_id)

    def snapshot_dir(self, snapshot_id: str) -> Path:
        return self.root / "snapshots" / snapshot_id

    def bins(self, cl: ClusterRecord | None = None) -> PgBinaries:
        return find_binaries(cl.engine_major if cl is not None else 16)

    def controller(self, cluster_id: str, instance_id: str, cl: ClusterRecord | None = None) -> PgController:
        """The instance's process controller (``cl`` read from state when not given; PostgreSQL 16 once the
        cluster is gone from state)."""
        if cl is None:
            cl = self.store.find_cluster(cluster_id)
        p = self.paths(cluster_id)
        return PgController(instance_id, p.data_dir(instance_id), p.log_file(instance_id), self.bins(cl))

    def running(self, cluster_id: str, cl: ClusterRecord) -> list[str]:
        """Instances whose postmaster is ready, writer first."""
        return [iid for iid in cl.ordered if self.controller(cluster_id, iid, cl).pm_status() == "ready"]

    def probe(self, cluster_id: str, instance_id: str, cl: ClusterRecord) -> Probe:
        """Running, ready, writer (``NOT pg_is_in_recovery()``), pending restart; the record's role when the
        instance cannot be asked."""
        recorded = cl.instance(instance_id).is_writer
        ctl = self.controller(cluster_id, instance_id, cl)
        if not ctl.is_running():
            return Probe(running=False, ready=False, is_writer=recorded, pending_restart=False)
        try:
            with self.connect(cluster_id, instance_id, cl=cl) as conn:
                row = conn.execute(
                    "SELECT NOT pg_is_in_recovery(), EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart)"
                ).fetchone()
        except psycopg.Error:
            return Probe(running=True, ready=ctl.pm_status() == "ready", is_writer=recorded, pending_restart=False)
        assert row is not None
        return Probe(
            running=True, ready=ctl.pm_status() == "ready", is_writer=bool(row[0]), pending_restart=bool(row[1])
        )

    # -- connections -------------------------------------------------------------------------------------------
    def password(self, cluster_id: str) -> str:
        return self.paths(cluster_id).secret.read_text().strip()

    def connect(
        self, cluster_id: str, instance_id: str, *, dbname: str | None = None, cl: ClusterRecord | None = None
    ) -> psycopg.Connection[Any]:
        """Autocommit superuser connection to one instance (control-plane use)."""
        cl = cl or self.store.cluster(cluster_id)
        inst = cl.instance(instance_id)
        return psycopg.connect(
            host=inst.address,
            port=inst.port,
            user=cl.master_username,
            dbname=dbname or "postgres",
            password=self.password(cluster_id),
            connect_timeout=CONNECT_TIMEOUT,
            autocommit=True,
        )

    def query(self, cluster_id: str, instance_id: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.connect(cluster_id, instance_id) as conn:
            cur = conn.execute(statement, args or None)
            return cur.fetchall() if cur.description is not None else []

    # -- ports -----------------------------------------------------------------------------------------------
    def allocate_ports(self, count: int, *, reserved: set[int] | None = None, doc: StateDoc | None = None) -> list[int]:
        """Free loopback ports not recorded for any cluster (pass ``doc`` when inside :meth:`StateStore.edit`)."""
        taken = (doc or self.store.load()).used_ports() | (reserved or set())
        ports: list[int] = []
        with self._port_lock:
            while len(ports) < count:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
                    sk.bind((HOST, 0))
                    port = int(sk.getsockname()[1])
                if port not in taken and port not in ports:
                    ports.append(port)
        return ports

    def allocate_endpoints(
        self, count: int, *, cl: ClusterRecord | None = None, port: int | None = None, doc: StateDoc | None = None
    ) -> list[tuple[str, int]]:
        """(address, port) for ``count`` new instances: of cluster ``cl`` (its port, fresh addresses; a legacy
        cluster on 127.0.0.1 gets fresh ports there), else of a new cluster (``port`` or Aurora's 5432, see
        :func:`.addressing.allocate`). Pass ``doc`` when inside :meth:`StateStore.edit`. Changes nothing."""
        doc = doc or self.store.load()
        existing = list(cl.instances.values()) if cl is not None else []
        if existing and any(i.address == addressing.LEGACY_ADDRESS for i in existing):
            return [(addressing.LEGACY_ADDRESS, p) for p in self.allocate_ports(count, doc=doc)]
        if existing:
            port = existing[0].port
        taken = doc.used_addresses() | self.hosts.addresses()
        with self._port_lock:
            chosen, addresses = addressing.allocate(count, port=port, taken=taken, root=self.root)
        return [(a, chosen) for a in addresses]

    @staticmethod
    def port_free(port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
            try:
                sk.bind((HOST, port))
            except OSError:
                return False
        return True

    # -- files -------------------------------------------------------------------------------------------------
    def prepare_cluster_dir(self, cluster_id: str, password: str, username: str) -> None:
        """Cluster dir, archive, backups, master password (0600), pgpass, pg_hba.conf, parameter group, archive
        script."""
        p = self.paths(cluster_id)
        for d in (p.dir, p.archive, p.backups, p.dir / "instances"):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            chown(d)
        write_file(p.secret, password + "\n", mode=0o600, owner_pg=False)
        esc = password.replace("\\", "\\\\").replace(":", "\\:")
        write_file(p.pgpass, f"*:*:*:{username}:{esc}\n", mode=0o600)  # every instance address
        write_file(p.hba, HBA, mode=0o600)
        if not p.parameters.exists():
            write_file(p.parameters, "# cluster parameter group (aurora_kit)\n", mode=0o644)
        write_file(p.archive_script, archive_script(p.archive), mode=0o700)

    def new_instance_dir(self, cluster_id: str, instance_id: str) -> None:
        d = self.paths(cluster_id).instance_dir(instance_id)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        chown(d)

    def write_node_config(
        self,
        cluster_id: str,
        instance_id: str,
        cl: ClusterRecord,
        *,
        upstream_id: str | None = None,
        standby_readers: list[str] | None = None,
        recovery: dict[str, str] | None = None,
        standby_signal: bool | None = None,
        connections_floor: int | None = None,
    ) -> None:
        """(Re)generate one node's postgresql.conf, empty postgresql.auto.conf, set or clear standby.signal.
        ``connections_floor``: see :meth:`standby_floor`."""
        p = self.paths(cluster_id)
        data = p.data_dir(instance_id)
        upstream = None
        if upstream_id is not None:
            up = cl.instance(upstream_id)
            upstream = Upstream(up.port, cl.master_username, upstream_id, slot_name(instance_id), up.address)
        text = render_postgresql_conf(
            paths=p,
            cluster_id=cluster_id,
            instance_id=instance_id,
            port=cl.instance(instance_id).port,
            standby_names=sync_standby_names(standby_readers or []),
            upstream=upstream,
            recovery=recovery,
            address=cl.instance(instance_id).address,
            rds_extensions=rds_extensions(self.bins(cl).extensions()),
            class_defaults=self.class_settings(cl, instance_id).settings,
            connections_floor=self._floor_needed(cl, instance_id, connections_floor),
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

    @staticmethod
    def class_settings(cl: ClusterRecord, instance_id: str) -> ClassSettings:
        """The memory settings of ``instance_id``'s class in ``cl`` (see :func:`.config.class_settings`)."""
        scaling = cl.capacity.get("serverless") or {}
        max_acu = float(scaling["max_capacity"]) if "max_capacity" in scaling else None
        classes = [i.instance_class for i in cl.instances.values() if i.status != "deleting"]
        return class_settings(cl.instance(instance_id).instance_class, classes, max_acu)

    def configured_connections(self, cl: ClusterRecord, instance_id: str) -> int | None:
        """The ``max_connections`` the node's configuration gives it without a floor: the parameter group's value,
        else its class's (None: PostgreSQL's default)."""
        group = str(cl.parameters.get("max_connections") or "").strip("'")
        if group.isdigit():
            return int(group)
        found = self.class_settings(cl, instance_id).settings.get("max_connections")
        return int(found) if found else None

    def _floor_needed(self, cl: ClusterRecord, instance_id: str, floor: int | None) -> int | None:
        if floor is None:
            return None
        configured = self.configured_connections(cl, instance_id) or 100
        return floor if floor > configured else None

    def standby_floor(self, cluster_id: str, writer: str) -> int | None:
        """The writer's running ``max_connections``: a standby configured below it would stop replaying (PostgreSQL:
        "hot standby is not possible because of insufficient parameter settings"; Aurora's storage-level replication
        has no such rule). None when it cannot be asked."""
        try:
            return int(self.query(cluster_id, writer, "SELECT current_setting('max_connections')::int")[0][0])
        except (psycopg.Error, IndexError):
            return None

    def settle_standbys(self, cluster_id: str) -> list[str]:
        """Restart (one at a time) every running reader whose ``max_connections`` differs from what it should run:
        its configured value, raised to the writer's when lower. After a failover to an instance of a larger class
        or with another value, or after the writer restarted with a new value (a parameter change that lowered
        it restarts the readers first at the writer's old value, then here at the new one). Returns the readers
        restarted (none in a cluster where every node runs one value)."""
        cl = self.store.cluster(cluster_id)
        writer = cl.writer_id
        floor = self.standby_floor(cluster_id, writer) if writer else None
        if writer is None or floor is None:
            return []
        restarted = []
        for reader in cl.readers_with_status("available"):
            want = max(self.configured_connections(cl, reader) or 100, floor)
            try:
                have = int(self.query(cluster_id, reader, "SELECT current_setting('max_connections')::int")[0][0])
            except (psycopg.Error, IndexError):
                continue
            if have == want:
                continue
            ctl = self.controller(cluster_id, reader, cl)
            self.write_node_config(cluster_id, reader, cl, upstream_id=writer, connections_floor=floor)
            ctl.stop(mode="fast")
            ctl.start(timeout=self.ready_timeout)
            self.wait_streaming(cluster_id, writer, [reader])
            restarted.append(reader)
        return restarted

    def ensure_standby_signal(self, cluster_id: str, instance_id: str, cl: ClusterRecord) -> None:
        """An instance recorded as a reader only ever starts in recovery: re-add a missing standby.signal."""
        if cl.instance(instance_id).is_writer:
            return
        signal_file = self.paths(cluster_id).data_dir(instance_id) / "standby.signal"
        if not signal_file.exists():
            write_file(signal_file, "", mode=0o600)

    def copy_data(self, source: Path, dest: Path) -> str:
        """Copy a data directory / base backup, owners and modes kept, the fastest safe way the filesystem offers
        (:func:`.datacopy.copy_tree`: reflink, else a parallel copy; never hard links). Returns the method."""
        try:
            method = copy_tree(source, dest)
        except OSError as exc:
            raise BackendOperationError(f"copying {source} to {dest} failed: {exc}") from exc
        os.chmod(dest, 0o700)
        return method

    def basebackup(self, cluster_id: str, source_id: str, dest: Path, *, slot: str | None = None) -> None:
        """``pg_basebackup -X stream -c fast`` (plain format, with manifest) from ``source_id`` into ``dest``."""
        cl = self.store.cluster(cluster_id)
        args = [
            self.bins(cl).tool("pg_basebackup"),
            *("-D", str(dest), "-X", "stream", "-c", "fast", "--no-sync"),
            *("-h", cl.instance(source_id).address, "-p", str(cl.instance(source_id).port)),
            *("-U", cl.master_username, "-w"),
        ]
        if slot:
            args += ["-S", slot]
        env = {"PGPASSFILE": str(self.paths(cluster_id).pgpass)}
        run_tool(args, env=env, cwd=dest.parent, what=f"pg_basebackup from {source_id}")

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

    # -- replication -------------------------------------------------------------------------------------------
    def streaming(self, cluster_id: str, writer: str) -> set[str]:
        """Application names streaming from ``writer`` now (``pg_stat_replication``)."""
        rows = self.query(
            cluster_id, writer, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
        )
        return {r[0] for r in rows}

    def wait_streaming(self, cluster_id: str, writer: str, readers: list[str], *, timeout: float = 60.0) -> None:
        """Wait until every reader streams from the writer."""
        if not readers:
            return
        wait_for(
            f"readers {readers} streaming from {writer}",
            lambda: self.streaming(cluster_id, writer),
            lambda names: set(readers) <= names,
            timeout=timeout,
            initial_delay=0.02,
            max_delay=0.25,
            retry_on=(psycopg.OperationalError,),
            progress=self.progress,
        )

    def reconfigure_writer(self, cluster_id: str, *, reload: bool = True) -> None:
        """Regenerate the writer's config (synchronous_standby_names from the current readers) and reload."""
        cl = self.store.cluster(cluster_id)
        writer = cl.writer_id
        if writer is None:
            return
        readers = [r for r in cl.reader_ids if cl.instances[r].status != "deleting"]
        self.write_node_config(cluster_id, writer, cl, standby_readers=readers, standby_signal=False)
        if reload:
            self.controller(cluster_id, writer, cl).reload()

    def install_sql_surface(self, cluster_id: str, instance_id: str, databases: list[str] | None = None) -> None:
        """Aurora's functions and ``rds.extensions`` row in ``pg_catalog`` (:mod:`.sql`) of ``databases`` (default:
        every database that accepts connections) on the writer ``instance_id``; idempotent."""
        if databases is None:
            rows = self.query(cluster_id, instance_id, "SELECT datname FROM pg_database WHERE datallowconn")
            databases = [r[0] for r in rows]
        statements = surface_sql(TOPOLOGY_FROM_DATA_DIR)
        for db in databases:
            with self.connect(cluster_id, instance_id, dbname=db) as conn:
                conn.execute(statements)

    # -- what clients are told -----------------------------------------------------------------------------
    def publish(self, cluster_id: str) -> None:
        """Publish the cluster's members and roles: the topology file every node reads, and its names
        (:mod:`.topology`). Call after members or roles changed."""
        cl = self.store.cluster(cluster_id)
        topology.publish(self.root, self.paths(cluster_id), cl, self.hosts)
        pgbouncer.follow(self.paths(cluster_id), cl)  # the proxies route to the new writer and readers

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
        if name in self.store.cluster(cluster_id).pending_slot_drops:
            self.store.update_cluster(
                cluster_id,
                lambda cl: cl.replace(pending_slot_drops=tuple(n for n in cl.pending_slot_drops if n != name)),
            )

    def drop_pending_slots(self, cluster_id: str) -> None:
        """Retry the slot drops a removal could not finish (recorded in state), on the current writer."""
        cl = self.store.cluster(cluster_id)
        writer = cl.writer_id
        if not cl.pending_slot_drops or writer is None or not self.controller(cluster_id, writer, cl).is_running():
            return
        for name in cl.pending_slot_drops:
            with suppress(psycopg.Error, WaitTimeoutError):
                self._drop_slot_named(cluster_id, writer, name)
                self._forget_pending_slot(cluster_id, name)

    # -- removal -----------------------------------------------------------------------------------------------
    def remove_instance(self, cluster_id: str, instance_id: str) -> None:
        """Stop an instance, drop its slot on the writer, forget it, delete its files. A slot that cannot be
        dropped now (writer down, drop failed) is recorded in state and dropped at the next start or failover."""
        try:
            cl = self.store.find_cluster(cluster_id)
            if cl is not None and instance_id in cl.instances:
                writer = cl.writer_id
                live_writer = writer is not None and writer != instance_id
                live_writer = live_writer and self.controller(cluster_id, str(writer), cl).is_running()
                if live_writer:  # out of synchronous_standby_names first, so no commit waits for a leaving reader
                    self.store.set_status(cluster_id, None, **{instance_id: "deleting"})
                    self.reconfigure_writer(cluster_id)
                self.controller(cluster_id, instance_id, cl).stop(mode="immediate", timeout=10)
                dropped = False
                if live_writer:
                    assert writer is not None
                    with suppress(psycopg.Error, WaitTimeoutError):
                        self.drop_slot(cluster_id, writer, instance_id)
                        dropped = True
                slot = slot_name(instance_id)

                def forget(rec: ClusterRecord) -> ClusterRecord:
                    rec = rec.with_instance(instance_id, None)
                    keep = dropped or writer is None or writer == instance_id or slot in rec.pending_slot_drops
                    return rec if keep else rec.replace(pending_slot_drops=(*rec.pending_slot_drops, slot))

                self.store.update_cluster(cluster_id, forget)
                self.publish(cluster_id)
        finally:
            self.discard(self.paths(cluster_id).instance_dir(instance_id))

    def destroy(self, cluster_id: str) -> None:
        """Stop every process of the cluster (by pid), remove its files and its state entry.

        Every instance is stopped even when stopping one fails; the failures are raised once at the end (chained
        to the first), and the files and state entry are then kept: no server keeps running on deleted files,
        and deleting the cluster again retries."""
        cl = self.store.find_cluster(cluster_id)
        failures: list[tuple[str, Exception]] = []
        if cl is not None:
            try:
                pgbouncer.stop_all(self.paths(cluster_id), cl)
            except Exception as exc:  # keep stopping the instances
                failures.append(("proxy", exc))
        for iid in cl.instances if cl is not None else ():
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
        with self.store.edit() as doc:
            doc.clusters.pop(cluster_id, None)
        topology.withdraw(self.root, cluster_id, self.hosts)

    def destroy_after_failure(self, cluster_id: str, original: BaseException) -> None:
        """Clean up after ``original`` failed an operation; a cleanup failure is noted on ``original`` (which the
        caller re-raises), never raised in its place."""
        try:
            self.destroy(cluster_id)
        except Exception as exc:
            note = f"cleanup of DB cluster {cluster_id!r} also failed: {exc}"
            add_note = getattr(original, "add_note", None)  # Python >= 3.11
            if add_note is not None:
                add_note(note)
            else:
                print(f"warning: {note}", file=sys.stderr)
