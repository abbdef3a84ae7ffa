"""Clusters and instances coming and going: create (writer + seeded readers), add a reader, stop, start, reboot.

Each function does the work of one already-validated request (the caller holds the cluster's lock where noted)
through :class:`.nodes.Nodes`; a failure never leaves a cluster ``creating``/``stopping``/``starting``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime, timezone

from psycopg import sql

from aurora_kit.backends.local import automated, backup, failover
from aurora_kit.backends.local.binaries import PgBinaries
from aurora_kit.backends.local.config import slot_name, write_file
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import READER, WRITER, ClusterRecord, InstanceRecord
from aurora_kit.backends.local.views import LOCAL_AZ
from aurora_kit.errors import ClusterAlreadyExistsError, InvalidStateError
from aurora_kit.specs import ClusterSpec, InstanceSpec


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_instance(spec: InstanceSpec, endpoint: tuple[str, int], role: str, now: datetime) -> InstanceRecord:
    address, port = endpoint
    return InstanceRecord(
        address=address,
        port=port,
        role=role,
        status="creating",
        instance_class=spec.instance_class,
        availability_zone=spec.availability_zone or LOCAL_AZ,
        promotion_tier=spec.promotion_tier,
        created=now,
    )


# -- create ----------------------------------------------------------------------------------------------------
def create_cluster(nodes: Nodes, spec: ClusterSpec, bins: PgBinaries) -> None:
    """Record the cluster (ports allocated under the state lock), then build it; on failure nothing stays."""
    now = _now()
    with nodes.store.edit() as doc:
        if spec.cluster_id in doc.clusters:
            raise ClusterAlreadyExistsError(spec.cluster_id)
        endpoints = nodes.allocate_endpoints(len(spec.instances), port=spec.port, doc=doc)
        doc.clusters[spec.cluster_id] = ClusterRecord(
            cluster_id=spec.cluster_id,
            status="creating",
            engine_major=bins.major,
            engine_version=bins.version,
            master_username=spec.master_username,
            database_name=spec.database_name,
            created=now,
            deletion_protection=spec.deletion_protection,
            backup_retention_period=spec.backup_retention_period,
            preferred_backup_window=spec.preferred_backup_window,
            iam_database_authentication=spec.iam_database_authentication,
            storage_encrypted=spec.storage_encrypted,
            spec=spec.model_dump(mode="json"),
            tags=dict(spec.tags),
            instances={
                inst.instance_id: new_instance(inst, endpoint, WRITER if n == 0 else READER, now)
                for n, (inst, endpoint) in enumerate(zip(spec.instances, endpoints, strict=False))
            },
        )
    try:
        with nodes.store.cluster_lock(spec.cluster_id, "create cluster"):
            _build(nodes, spec)
    except BaseException as exc:
        nodes.destroy_after_failure(spec.cluster_id, exc)
        raise


def _build(nodes: Nodes, spec: ClusterSpec) -> None:
    cid = spec.cluster_id
    password = secrets.token_urlsafe(24)
    nodes.prepare_cluster_dir(cid, password, spec.master_username)
    cl = nodes.store.cluster(cid)
    writer = spec.instances[0].instance_id
    readers = [i.instance_id for i in spec.instances[1:]]
    p = nodes.paths(cid)
    for iid in [writer, *readers]:
        nodes.new_instance_dir(cid, iid)
    pwfile = p.instance_dir(writer) / ".pwfile"
    write_file(pwfile, password + "\n", mode=0o600)
    wctl = nodes.controller(cid, writer, cl)
    try:
        wctl.initdb(superuser=spec.master_username, pwfile=pwfile)
    finally:
        pwfile.unlink(missing_ok=True)
    nodes.write_node_config(cid, writer, cl, standby_signal=False)
    wctl.start(timeout=nodes.ready_timeout)
    nodes.install_sql_surface(cid, writer, ["template1", "postgres"])
    if spec.database_name != "postgres":
        with nodes.connect(cid, writer) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(spec.database_name)))
    for r in readers:
        nodes.create_slot(cid, writer, r)
    # one pg_basebackup: it is the first automated backup (PITR window start) and the seed of every reader
    base = automated.take(nodes, cid, source=writer).path

    def seed_reader(reader: str) -> None:
        nodes.copy_data(base, p.data_dir(reader))
        nodes.write_node_config(cid, reader, cl, upstream_id=writer)
        nodes.controller(cid, reader, cl).start(wait=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(seed_reader, readers))  # list(): re-raise the first failure
    for r in readers:
        nodes.controller(cid, r, cl).wait_ready(timeout=nodes.ready_timeout)
    nodes.write_node_config(cid, writer, cl, standby_readers=readers, standby_signal=False)
    wctl.reload()
    nodes.wait_streaming(cid, writer, readers)
    nodes.store.set_status(cid, "available", **dict.fromkeys([writer, *readers], "available"))
    nodes.publish(cid)


# -- instances -------------------------------------------------------------------------------------------------
def create_instance(nodes: Nodes, cluster_id: str, spec: InstanceSpec) -> None:
    """The writer (from the cluster's storage) when there is none, else a reader seeded from the writer."""
    with nodes.store.cluster_lock(cluster_id, "create instance"):
        writer = nodes.store.cluster(cluster_id).writer_id  # a failover may have run meanwhile
        with nodes.store.edit() as doc:
            (endpoint,) = nodes.allocate_endpoints(1, cl=doc.cluster(cluster_id), doc=doc)
            record = new_instance(spec, endpoint, READER if writer else WRITER, _now())
            doc.clusters[cluster_id] = doc.cluster(cluster_id).with_instance(spec.instance_id, record)
        try:
            nodes.new_instance_dir(cluster_id, spec.instance_id)
            if writer is None:
                backup.start_writer_from_seed(nodes, cluster_id, spec.instance_id)
                nodes.install_sql_surface(cluster_id, spec.instance_id)  # storage from before this version
            else:
                _add_reader(nodes, cluster_id, writer, spec.instance_id)
        except BaseException:
            nodes.remove_instance(cluster_id, spec.instance_id)
            raise
        nodes.publish(cluster_id)


def _add_reader(nodes: Nodes, cluster_id: str, writer: str, reader: str) -> None:
    cl = nodes.store.cluster(cluster_id)
    nodes.create_slot(cluster_id, writer, reader)
    nodes.basebackup(cluster_id, writer, nodes.paths(cluster_id).data_dir(reader), slot=slot_name(reader))
    floor = nodes.standby_floor(cluster_id, writer)  # a reader of a smaller class still replays the writer
    nodes.write_node_config(cluster_id, reader, cl, upstream_id=writer, connections_floor=floor)
    nodes.controller(cluster_id, reader, cl).start(timeout=nodes.ready_timeout)
    nodes.store.set_status(cluster_id, None, **{reader: "available"})
    nodes.reconfigure_writer(cluster_id)
    nodes.wait_streaming(cluster_id, writer, [reader])


def reboot_instance(nodes: Nodes, cluster_id: str, instance_id: str) -> None:
    """Restart one instance (caller holds the lock); a fenced former writer is rewound first."""
    cl = nodes.store.cluster(cluster_id)
    ctl = nodes.controller(cluster_id, instance_id, cl)
    nodes.store.set_status(cluster_id, None, **{instance_id: "rebooting"})
    ctl.stop(mode="fast")
    if cl.instance(instance_id).needs_rewind:
        try:  # a former writer never rewound (failed rejoin): rewind before it may start
            failover.rejoin(nodes, cluster_id, instance_id)
        except Exception:
            nodes.store.set_status(cluster_id, None, **{instance_id: "failed"})
            raise
        return
    writer = cl.writer_id
    if writer and writer != instance_id:
        # a reader restarts with the group's values, but never below what its writer runs: a parameter change that
        # lowers max_connections reaches it once the writer restarted (settle_standbys), as PostgreSQL requires
        floor = nodes.standby_floor(cluster_id, writer)
        nodes.write_node_config(cluster_id, instance_id, cl, upstream_id=writer, connections_floor=floor)
    nodes.ensure_standby_signal(cluster_id, instance_id, cl)
    ctl.start(timeout=nodes.ready_timeout)
    if writer and writer != instance_id:
        nodes.wait_streaming(cluster_id, writer, [instance_id])
    elif writer:
        others = [r for r in cl.reader_ids if r != instance_id and cl.instances[r].status != "failed"]
        nodes.wait_streaming(cluster_id, writer, others)
        nodes.settle_standbys(cluster_id)
    nodes.store.set_status(cluster_id, None, **{instance_id: "available"})


def modify_instance_class(nodes: Nodes, cluster_id: str, instance_id: str, instance_class: str) -> None:
    """ModifyDBInstance's new class, applied now (caller holds the lock): record it, regenerate the node's
    configuration (the class's memory settings, :func:`.config.class_settings`) and restart it in its role, as a
    reboot does; the instance is ``modifying`` meanwhile. A writer restarts in place (a write outage): the rolling
    change of the steps fails over to a changed reader first."""
    cl = nodes.store.update_instance(cluster_id, instance_id, instance_class=instance_class, status="modifying")
    ctl = nodes.controller(cluster_id, instance_id, cl)
    try:
        ctl.stop(mode="fast")
        writer = cl.writer_id
        if instance_id == writer:
            readers = [r for r in cl.reader_ids if cl.instances[r].status not in ("deleting", "failed")]
            nodes.write_node_config(cluster_id, instance_id, cl, standby_readers=readers, standby_signal=False)
        else:
            floor = nodes.standby_floor(cluster_id, writer) if writer else None
            nodes.write_node_config(cluster_id, instance_id, cl, upstream_id=writer, connections_floor=floor)
        ctl.start(timeout=nodes.ready_timeout)
        if writer and writer != instance_id:
            nodes.wait_streaming(cluster_id, writer, [instance_id])
        elif writer:
            others = [r for r in cl.reader_ids if cl.instances[r].status not in ("failed", "deleting")]
            nodes.wait_streaming(cluster_id, writer, others)
            nodes.settle_standbys(cluster_id)
    except BaseException:
        nodes.store.set_status(cluster_id, None, **{instance_id: "failed" if not ctl.is_running() else "available"})
        raise
    nodes.store.set_status(cluster_id, None, **{instance_id: "available"})
    nodes.publish(cluster_id)


# -- stop / start ----------------------------------------------------------------------------------------------
def stop_cluster(nodes: Nodes, cluster_id: str) -> None:
    """Archive what the writer has, then stop every instance, writer first (caller holds the lock)."""
    cl = nodes.store.cluster(cluster_id)  # re-read under the lock: it may have changed since validation
    if cl.status == "stopped":
        return
    if cl.status != "available":
        raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl.status}; only an available cluster stops")
    if automated.writer_running(nodes, cl):
        # archive everything first: the restorable window of a stopped cluster ends where it stopped
        automated.force_archive(nodes, cluster_id)
    before = {iid: inst.status for iid, inst in cl.instances.items()}
    nodes.store.set_status(cluster_id, "stopping", **dict.fromkeys(cl.instances, "stopping"))
    try:
        # writer first: its walsenders ship every WAL record to the readers before it exits
        for iid in cl.ordered:
            nodes.controller(cluster_id, iid, cl).stop(mode="fast")
    except BaseException:
        # never leave it "stopping": available again (start_cluster restarts what was stopped)
        nodes.store.set_status(cluster_id, "available", **_statuses_now(nodes, cl, before))
        raise
    nodes.store.set_status(cluster_id, "stopped", **dict.fromkeys(cl.instances, "stopped"))


def _statuses_now(nodes: Nodes, cl: ClusterRecord, before: Mapping[str, str]) -> dict[str, str]:
    """Instance statuses after a failed stop/start: ``stopped`` when not running, else the status before."""
    out: dict[str, str] = {}
    for iid in cl.instances:
        try:
            running = nodes.controller(cl.cluster_id, iid, cl).is_running()
        except Exception:  # cannot tell: keep what it was
            running = True
        out[iid] = before.get(iid, "available") if running else "stopped"
    return out


def down_instances(nodes: Nodes, cl: ClusterRecord) -> list[str]:
    return [iid for iid in cl.ordered if not nodes.controller(cl.cluster_id, iid, cl).is_running()]


def start_cluster(nodes: Nodes, cluster_id: str) -> None:
    """Start every instance whose process is gone (caller holds the lock); fenced former writers are rewound
    once the writer runs, and stay fenced (``failed``) if that fails."""
    cl = nodes.store.cluster(cluster_id)  # re-read under the lock: it may have changed since validation
    if cl.status not in ("stopped", "available"):
        raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl.status}; only a stopped cluster starts")
    down = down_instances(nodes, cl)
    if not down:
        return
    before_status = cl.status
    before = {iid: inst.status for iid, inst in cl.instances.items()}
    nodes.store.set_status(cluster_id, "starting", **dict.fromkeys(down, "starting"))
    try:
        # a former writer that was never rewound must not start on its old timeline: rewound once the
        # writer runs (below); every other reader starts with standby.signal, whatever its data dir says
        fenced = [iid for iid in down if cl.instances[iid].needs_rewind]
        plain = [iid for iid in down if iid not in fenced]
        # the same controller objects start and wait: they know when they started the postmaster (a
        # fresh object judges "exited while starting" by the log file's age, which may predate the start)
        ctls = {iid: nodes.controller(cluster_id, iid, cl) for iid in plain}
        for iid in plain:
            nodes.ensure_standby_signal(cluster_id, iid, cl)
            ctls[iid].start(wait=False)
        for iid in plain:
            ctls[iid].wait_ready(timeout=nodes.ready_timeout)
        failed = _rejoin_fenced(nodes, cluster_id, fenced)
        cl = nodes.store.cluster(cluster_id)
        writer = cl.writer_id
        if writer:
            nodes.wait_streaming(cluster_id, writer, [r for r in cl.reader_ids if r not in failed])
        nodes.drop_pending_slots(cluster_id)
        statuses = {iid: ("failed" if iid in failed else "available") for iid in cl.instances}
        nodes.store.set_status(cluster_id, "available", **statuses)
    except BaseException:
        # never leave it "starting": what runs is available, the rest keeps its status from before
        _restore_after_failed_start(nodes, cluster_id, before_status, before, down)
        raise


def _restore_after_failed_start(
    nodes: Nodes, cluster_id: str, before_status: str, before: Mapping[str, str], attempted: list[str]
) -> None:
    cl = nodes.store.cluster(cluster_id)
    for iid in attempted:  # a postmaster launched just before the failure may still be coming up
        if iid in cl.instances:
            with suppress(Exception):
                nodes.controller(cluster_id, iid, cl).wait_ready(timeout=10)
    statuses: dict[str, str] = {}
    for iid in cl.instances:
        try:
            running = nodes.controller(cluster_id, iid, cl).is_running()
        except Exception:
            running = False
        was = before.get(iid, "stopped")
        statuses[iid] = "available" if running and was != "failed" else ("stopped" if was == "starting" else was)
    writer = cl.writer_id
    status = "available" if writer is not None and statuses.get(writer) == "available" else before_status
    nodes.store.set_status(cluster_id, status, **statuses)


def _rejoin_fenced(nodes: Nodes, cluster_id: str, fenced: list[str]) -> set[str]:
    """Rewind + start each former writer still marked ``needs_rewind``; returns those that failed (they stay
    stopped, fenced with standby.signal, marked failed)."""
    failed: set[str] = set()
    for iid in fenced:
        try:
            failover.rejoin(nodes, cluster_id, iid)
        except Exception:
            failed.add(iid)
            nodes.store.set_status(cluster_id, None, **{iid: "failed"})
    return failed
