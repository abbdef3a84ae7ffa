"""The bridge between moto's RDS resources and real clusters of the ``local`` backend.

moto keeps what the RDS API describes (identifiers, settings, tags, the managed secret); the bridge makes it real:
every emulated DB cluster of the emulator's account and Region is a local cluster with the same identifiers, and the
RDS calls act on it through :class:`~aurora_kit.backends.local.LocalBackend`'s public methods only. Calls answer at
once, as RDS does, and the work runs on one worker thread per cluster (in call order); describe calls show the
status of the work (``creating``, ``rebooting``, ``failing-over``, ``deleting``...) until it is done, and the
events Aurora emits for it (:mod:`.events`).

What is read from the real clusters, not from moto: the writer (a failover shows the new writer once it accepts
writes), each member's parameter-group status (``pending-reboot`` from the servers' ``pending_restart``), the
restorable window, the master password (written into the managed secret), and where each endpoint leads
(:mod:`.routing`, for the front door).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from aurora_kit.emulator.events import AuroraEvent, make_event
from aurora_kit.errors import AuroraKitError, SnapshotNotFoundError
from aurora_kit.rules import FailoverCandidate, failover_target
from aurora_kit.specs import ClusterSpec, InstanceSpec

if TYPE_CHECKING:
    from aurora_kit.backends.local import LocalBackend

log = logging.getLogger("aurora_kit.emulator")
ENGINE = "aurora-postgresql"
#: parameter names only Aurora has: kept in the group (moto), not applied to PostgreSQL
AURORA_ONLY_PREFIXES = ("rds.", "aurora.", "aurora_", "apg_")


@dataclass
class ClusterView:
    """What the emulator knows of one cluster beyond moto's record."""

    cluster_id: str
    status: str = "creating"
    local: bool = False  # a local cluster exists (first instance created, or restored)
    prepared: bool = False  # rds_iam role, parameter group applied, secret written
    writer: str | None = None
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    param_status: dict[str, str] = field(default_factory=dict)
    secret_synced: bool = False
    earliest_restorable: datetime | None = None
    skipped_parameters: dict[str, str] = field(default_factory=dict)
    iam_passwords: set[str] = field(default_factory=set)


class _Worker:
    """One thread running a cluster's jobs in call order."""

    def __init__(self, name: str, on_error: Callable[[str, str, BaseException], None]) -> None:
        self.name = name
        self._queue: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue()
        self._on_error = on_error
        self.busy = False
        self._thread = threading.Thread(target=self._run, name=f"emulator-{name}", daemon=True)
        self._thread.start()

    def submit(self, what: str, job: Callable[[], None]) -> None:
        self._queue.put((what, job))

    @property
    def idle(self) -> bool:
        return not self.busy and self._queue.empty()

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            what, job = item
            self.busy = True
            try:
                job()
            except BaseException as exc:
                self._on_error(self.name, what, exc)
            finally:
                self.busy = False


class Bridge:
    """moto's RDS resources of one account and Region, backed by local clusters (module docstring)."""

    def __init__(
        self,
        local: LocalBackend,
        *,
        region: str,
        account_id: str,
        host_id: str,
        credentials: Mapping[str, str],
        restorable_lag_s: float = 2.0,
    ) -> None:
        self.local = local
        self.region = region
        self.account_id = account_id
        self.host_id = host_id
        self._credentials = dict(credentials)
        self.restorable_lag_s = restorable_lag_s
        self.moto_lock = threading.RLock()
        self.views: dict[str, ClusterView] = {}
        self._workers: dict[str, _Worker] = {}
        self.errors: list[dict[str, str]] = []
        self.calls: list[dict[str, Any]] = []
        self.faults: dict[tuple[str, str], str] = {}
        self._internal = threading.local()

    # -- moto objects ----------------------------------------------------------------------------------------
    def rds(self) -> Any:
        from moto.rds.models import rds_backends

        return rds_backends[self.account_id][self.region]

    def tracks(self, backend: Any) -> bool:
        return bool(backend.region_name == self.region and backend.account_id == self.account_id)

    def view(self, cluster_id: str | None) -> ClusterView | None:
        return self.views.get(str(cluster_id).lower()) if cluster_id else None

    def _cluster(self, cluster_id: str) -> Any:
        return self.rds().clusters.get(cluster_id)

    def _instance(self, instance_id: str) -> Any:
        return self.rds().databases.get(instance_id)

    @contextmanager
    def internal(self) -> Iterator[None]:
        """moto calls the bridge makes itself (a final snapshot, a restore's cluster): hooks leave them alone."""
        self._internal.active = True
        try:
            yield
        finally:
            self._internal.active = False

    @property
    def in_internal(self) -> bool:
        return bool(getattr(self._internal, "active", False))

    def event(self, event_id: str, source_id: str, source_arn: str, **names: str) -> None:
        evt: AuroraEvent = make_event(event_id, source_id, source_arn, **names)
        with self.moto_lock:
            self.rds().events.append(evt)
        log.info("%s %s %s: %s", event_id, evt.source_type, source_id, evt.message)

    def _submit(self, cluster_id: str, what: str, job: Callable[[], None]) -> None:
        worker = self._workers.get(cluster_id)
        if worker is None:
            worker = self._workers[cluster_id] = _Worker(cluster_id, self._job_failed)
        worker.submit(what, job)

    def idle(self, cluster_id: str) -> bool:
        worker = self._workers.get(cluster_id)
        return worker is None or worker.idle

    def _job_failed(self, cluster_id: str, what: str, exc: BaseException) -> None:
        log.error("%s on %s failed: %s: %s", what, cluster_id, type(exc).__name__, exc, exc_info=exc)
        self.errors.append({"cluster_id": cluster_id, "job": what, "error": f"{type(exc).__name__}: {exc}"})

    # -- the local clusters ----------------------------------------------------------------------------------
    def _address(self, cluster_id: str, instance_id: str) -> tuple[str, int]:
        params = conninfo_to_dict(self.local.connection_info(cluster_id, instance_id).conninfo)
        return str(params.get("hostaddr") or params.get("host")), int(str(params.get("port")))

    def master(self, cluster_id: str, instance_id: str) -> psycopg.Connection[Any]:
        """A master-user connection to one local instance (the emulator's own checks)."""
        info = self.local.connection_info(cluster_id, instance_id)
        return psycopg.connect(info.conninfo, autocommit=True, connect_timeout=3, **info.kwargs())

    def refresh(self, cluster_id: str) -> None:
        """Read the writer, the members' parameter status and their addresses from the local cluster."""
        view = self.views[cluster_id]
        described = self.local.describe_cluster(cluster_id)
        addresses = {m.db_instance_identifier: self._address(cluster_id, m.db_instance_identifier)
                     for m in described.db_cluster_members}  # fmt: skip
        view.addresses = addresses
        view.param_status = {m.db_instance_identifier: m.db_cluster_parameter_group_status
                             for m in described.db_cluster_members}  # fmt: skip
        view.earliest_restorable = described.earliest_restorable_time or view.earliest_restorable
        self._set_writer(cluster_id, described.writer_id)

    def _set_writer(self, cluster_id: str, writer: str | None) -> None:
        view = self.views[cluster_id]
        view.writer = writer
        with self.moto_lock:
            for inst in self.rds().databases.values():
                if getattr(inst, "db_cluster_identifier", None) == cluster_id and writer is not None:
                    inst.is_cluster_writer = inst.db_instance_identifier == writer

    def _set_status(self, instance_id: str, status: str) -> None:
        inst = self._instance(instance_id)
        if inst is not None:
            inst.status = status

    # -- creation --------------------------------------------------------------------------------------------
    def cluster_created(self, cluster: Any) -> None:
        """CreateDBCluster: storage only on Aurora; the local cluster starts with the first instance."""
        cid = cluster.db_cluster_identifier
        cluster.url_identifier = self.host_id
        self.views[cid] = ClusterView(cid)
        view = self.views[cid]
        if self.in_internal:  # a restore: its job makes the cluster
            return

        def ready() -> None:
            view.status = "available"
            self.event("RDS-EVENT-0170", cid, cluster.arn)

        self._submit(cid, "CreateDBCluster", ready)

    def instance_created(self, instance: Any) -> None:
        cid, iid = instance.db_cluster_identifier, instance.db_instance_identifier
        instance.status = "creating"
        spec = InstanceSpec(
            instance_id=iid,
            instance_class=instance.db_instance_class,
            availability_zone=instance.availability_zone,
            promotion_tier=int(instance.promotion_tier),
        )
        self._submit(cid, f"CreateDBInstance {iid}", lambda: self._create_instance(cid, spec))

    def _create_instance(self, cid: str, spec: InstanceSpec) -> None:
        view = self.views[cid]
        cluster = self._cluster(cid)
        try:
            if not view.local:
                self.local.create_cluster(self._cluster_spec(cluster, spec))
                view.local = True
            else:
                self.local.create_instance(cid, spec)
            if not view.prepared:
                self._prepare(cid, spec.instance_id)
            self.refresh(cid)
        except BaseException:
            self._set_status(spec.instance_id, "failed")
            raise
        self._set_status(spec.instance_id, "available")
        self.event("RDS-EVENT-0005", spec.instance_id, self._instance(spec.instance_id).arn)

    def _cluster_spec(self, cluster: Any, first: InstanceSpec) -> ClusterSpec:
        return ClusterSpec(
            cluster_id=cluster.db_cluster_identifier,
            engine_version=cluster.engine_version,
            instances=[first],
            master_username=cluster.master_username,
            database_name=cluster.database_name or "postgres",
            backup_retention_period=max(1, min(35, int(cluster.backup_retention_period or 1))),
            preferred_backup_window=cluster.preferred_backup_window or "03:00-04:00",
            deletion_protection=False,  # moto keeps the cluster's protection; the local copy obeys the API
            iam_database_authentication=False,
            storage_encrypted=bool(cluster.storage_encrypted),
        )

    def _prepare(self, cid: str, writer: str) -> None:
        """What Aurora has from the start: the ``rds_iam`` role, the cluster parameter group's values in effect,
        the master password in the managed secret."""
        with self.master(cid, writer) as conn:
            conn.execute("DO $$ BEGIN CREATE ROLE rds_iam NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        group = self.rds().db_cluster_parameter_groups.get(self._cluster(cid).parameter_group)
        if group is not None and group.parameters:
            values = {n: str(p.get("ParameterValue")) for n, p in group.parameters.items() if "ParameterValue" in p}
            if self._apply(cid, values):
                self.local.reboot_pending(cid)  # an instance starts with its group's static values
        self.views[cid].prepared = True
        self.sync_secret(cid)

    def sync_secret(self, cid: str) -> None:
        """Write the local cluster's master password into the managed secret (``rds!cluster-...``)."""
        view = self.views.get(cid)
        cluster = self._cluster(cid)
        secret = getattr(cluster, "master_user_secret", None)
        if view is None or secret is None or not view.prepared:
            return
        password = self.local.connection_info(cid).password
        value = json.dumps({"username": cluster.master_username, "password": password})
        with self.moto_lock:
            secret.secretsmanager.put_secret_value(secret.secret_arn, value, None, None, ["AWSCURRENT"])
        view.secret_synced = True

    def local_snapshot_exists(self, snapshot_id: str) -> bool:
        return any(s.db_cluster_snapshot_identifier == snapshot_id for s in self.local.describe_snapshots())

    def secret_status(self, resource: Any) -> str | None:
        view = self.view(getattr(resource, "db_cluster_identifier", None))
        if view is None:
            return None
        return "active" if view.secret_synced else "creating"

    # -- deletion --------------------------------------------------------------------------------------------
    def delete_instance(self, instance: Any, finish: Callable[[], object]) -> None:
        cid, iid = instance.db_cluster_identifier, instance.db_instance_identifier
        instance.status = "deleting"
        view = self.views[cid]

        def job() -> None:
            if view.local and iid in view.addresses:
                self.local.delete_instance(cid, iid)
            with self.moto_lock:
                finish()
            view.addresses.pop(iid, None)
            if view.local and view.addresses:
                self.refresh(cid)
            self.event("RDS-EVENT-0003", iid, instance.arn)

        self._submit(cid, f"DeleteDBInstance {iid}", job)

    def delete_cluster(self, cluster: Any, final_snapshot_id: str | None, finish: Callable[[], object]) -> None:
        cid = cluster.db_cluster_identifier
        view = self.views[cid]
        view.status = "deleting"

        def job() -> None:
            if view.local:
                self.local.delete_cluster(
                    cid, final_snapshot_id=final_snapshot_id, skip_final_snapshot=final_snapshot_id is None
                )
            with self.moto_lock, self.internal():
                finish()
            self.event("RDS-EVENT-0171", cid, cluster.arn)
            self.views.pop(cid, None)
            worker = self._workers.pop(cid, None)
            if worker is not None:
                worker.stop()

        self._submit(cid, "DeleteDBCluster", job)

    # -- reboot, failover, parameters ------------------------------------------------------------------------
    def reboot(self, instance: Any) -> None:
        cid, iid = instance.db_cluster_identifier, instance.db_instance_identifier
        instance.status = "rebooting"

        def job() -> None:
            try:
                self.local.reboot_instance(cid, iid)
                self.refresh(cid)
            finally:
                self._set_status(iid, "available")
            self.event("RDS-EVENT-0006", iid, instance.arn)

        self._submit(cid, f"RebootDBInstance {iid}", job)

    def modify_instance_class(self, instance: Any, old_class: str, new_class: str) -> None:
        """ModifyDBInstance(DBInstanceClass, ApplyImmediately): ``modifying`` at once, the old class described (the
        new one pending) until the local instance has restarted with the new class's memory settings
        (:meth:`LocalBackend.modify_instance`); then the new class, ``available`` and RDS-EVENT-0014."""
        cid, iid = instance.db_cluster_identifier, instance.db_instance_identifier
        instance.db_instance_class = old_class
        instance.status = "modifying"

        def job() -> None:
            try:
                self.local.modify_instance(cid, iid, instance_class=new_class)
                with self.moto_lock:
                    instance.db_instance_class = new_class
                self.refresh(cid)
            finally:
                self._set_status(iid, "available")
            self.event("RDS-EVENT-0014", iid, instance.arn)

        self._submit(cid, f"ModifyDBInstance {iid} {new_class}", job)

    def serverless_scaling_changed(self, cid: str, scaling: Mapping[str, Any]) -> None:
        """ModifyDBCluster(ServerlessV2ScalingConfiguration): recorded on the local cluster (in call order, so that
        a ``db.serverless`` instance asked for next finds it)."""
        low = float(scaling.get("MinCapacity", scaling.get("min_capacity", 0)))
        high = float(scaling.get("MaxCapacity", scaling.get("max_capacity", 0)))

        def job() -> None:
            self.local.set_serverless_scaling(cid, low, high)

        self._submit(cid, "ModifyDBCluster ServerlessV2ScalingConfiguration", job)

    def choose_target(self, cluster: Any, requested: str | None) -> tuple[str, str]:
        """(writer, target) by the rule both backends use (promotion tier, size, name)."""
        view = self.views[cluster.db_cluster_identifier]
        candidates = [
            FailoverCandidate(
                inst.db_instance_identifier,
                inst.db_instance_identifier == view.writer,
                inst.status == "available",
                int(inst.promotion_tier),
                str(inst.db_instance_class),
            )
            for inst in cluster.members
        ]
        return failover_target(cluster.db_cluster_identifier, candidates, requested)

    def failover(self, cluster: Any, old: str, target: str) -> None:
        """FailoverDBCluster: ``failing-over`` at once; the writer flips when the target accepts writes (the DNS of
        the cluster endpoint follows it then); ``available`` once the old writer is back as a reader."""
        cid = cluster.db_cluster_identifier
        view = self.views[cid]
        view.status = "failing-over"
        zones = {i.db_instance_identifier: i.availability_zone for i in cluster.members}
        same_az = zones.get(old) == zones.get(target)
        self.event("RDS-EVENT-0072" if same_az else "RDS-EVENT-0073", cid, cluster.arn, name=target)
        fault = self.faults.pop(("FailoverDBCluster", cid), None)

        def job() -> None:
            done = threading.Event()
            watcher = threading.Thread(target=self._watch_promotion, args=(cid, old, target, done), daemon=True)
            watcher.start()
            try:
                if fault is not None:
                    raise AuroraKitError(f"injected fault: {fault}")
                self.local.failover(cid, target_instance_id=target, mode="planned")
            except BaseException:
                done.set()
                watcher.join()
                self._settle(cid)  # the cluster is available again (its writer as the local cluster has it)...
                self.event("RDS-EVENT-0069", cid, cluster.arn)  # ...when the failure is reported
                if view.writer == old:
                    self.event("RDS-EVENT-0070", cid, cluster.arn, name=old)
                raise
            done.set()
            watcher.join()
            self._settle(cid)
            self.event("RDS-EVENT-0071", cid, cluster.arn, name=target)
            self.event("RDS-EVENT-0006", old, self._instance(old).arn)

        self._submit(cid, f"FailoverDBCluster to {target}", job)

    def _settle(self, cid: str) -> None:
        view = self.views[cid]
        try:
            self.refresh(cid)
        finally:
            for iid in view.addresses:
                self._set_status(iid, "available")
            view.status = "available"

    def _watch_promotion(self, cid: str, old: str, target: str, done: threading.Event) -> None:
        while not done.is_set():
            try:
                with self.master(cid, target) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    self._set_writer(cid, target)
                    self._set_status(old, "rebooting")  # Aurora restarts the old writer as a reader
                    return
            except (psycopg.Error, AuroraKitError, OSError):
                pass
            done.wait(0.02)

    def parameters_changed(self, group_name: str, parameters: list[dict[str, Any]]) -> None:
        values = {str(p["ParameterName"]): str(p.get("ParameterValue")) for p in parameters}
        for cid, view in list(self.views.items()):
            cluster = self._cluster(cid)
            if cluster is None or str(cluster.parameter_group).lower() != group_name.lower() or not view.prepared:
                continue
            view.param_status = dict.fromkeys(view.param_status, "applying")

            def job(cid: str = cid, view: ClusterView = view, cluster: Any = cluster) -> None:
                try:
                    self._apply(cid, values)
                finally:
                    self.refresh(cid)
                    writer = self._instance(view.writer) if view.writer else None
                    if writer is not None:
                        self.event("RDS-EVENT-0092", writer.db_instance_identifier, writer.arn)

            self._submit(cid, f"ModifyDBClusterParameterGroup {group_name}", job)

    def _apply(self, cid: str, values: Mapping[str, str]) -> bool:
        """Apply the PostgreSQL parameters to the local cluster; Aurora-only ones are noted. True when an instance
        waits for a reboot."""
        view = self.views[cid]
        real = {n: v for n, v in values.items() if not n.startswith(AURORA_ONLY_PREFIXES)}
        view.skipped_parameters.update({n: v for n, v in values.items() if n not in real})
        if not real:
            return False
        return self.local.apply_parameters(cid, real).needs_reboot

    def member_status(self, cluster: Any, rows: list[dict[str, Any]]) -> bool:
        view = self.view(cluster.db_cluster_identifier)
        if view is None:
            return False
        for row in rows:
            row["DBClusterParameterGroupStatus"] = view.param_status.get(row["DBInstanceIdentifier"], "in-sync")
            if view.writer is not None:
                row["IsClusterWriter"] = row["DBInstanceIdentifier"] == view.writer
        return True

    # -- snapshots and restores ------------------------------------------------------------------------------
    def snapshot_created(self, snapshot: Any, tags: Mapping[str, str]) -> None:
        cid, sid = snapshot.cluster.db_cluster_identifier, snapshot.db_cluster_snapshot_identifier
        snapshot.status = "creating"
        self.event("RDS-EVENT-0074", sid, snapshot.arn)

        def job() -> None:
            try:
                self.local.create_snapshot(cid, sid, tags=dict(tags))
            except BaseException:
                snapshot.status = "failed"
                raise
            snapshot.status = "available"
            self.event("RDS-EVENT-0075", sid, snapshot.arn)

        self._submit(cid, f"CreateDBClusterSnapshot {sid}", job)

    def snapshot_deleted(self, snapshot_id: str) -> None:
        with suppress(SnapshotNotFoundError):
            self.local.delete_snapshot(snapshot_id)

    def restored(self, cluster: Any, restore: Callable[[], object]) -> None:
        """RestoreDBClusterFromSnapshot / ToPointInTime: the new cluster is ``creating`` until the local restore
        (``restore``) is done; like Aurora's, it has no instance until one is created."""
        cid = cluster.db_cluster_identifier
        view = self.views[cid]
        view.status = "creating"

        def job() -> None:
            try:
                restore()
            except BaseException:
                view.status = "incompatible-restore"
                raise
            view.local = True
            view.status = "available"
            self.event("RDS-EVENT-0170", cid, cluster.arn)

        self._submit(cid, "RestoreDBCluster", job)

    def latest_restorable_time(self, cluster: Any) -> datetime | None:
        """Aurora's LatestRestorableTime trails up to ~5 minutes; here ``restorable_lag_s``. A local restore
        archives the WAL up to its target itself, so any time up to now restores exactly."""
        view = self.view(cluster.db_cluster_identifier)
        if view is None or not view.local:
            return None
        return datetime.now(timezone.utc) - timedelta(seconds=self.restorable_lag_s)

    def earliest_restorable_time(self, cluster: Any) -> datetime | None:
        view = self.view(cluster.db_cluster_identifier)
        return None if view is None else view.earliest_restorable

    def credentials(self) -> Mapping[str, str]:
        return self._credentials

    def record_call(self, service: str, operation: str, **details: Any) -> None:
        self.calls.append({"seq": len(self.calls) + 1, "service": service, "operation": operation, **details})

    # -- shutdown --------------------------------------------------------------------------------------------
    def delete_all(self) -> None:
        """Delete every local cluster and snapshot the emulator made (its state lives only as long as the emulator:
        a final snapshot left on disk would make the next emulator refuse a teardown that names it)."""
        for cluster in self.local.list_clusters():
            try:
                self.local.delete_cluster(cluster.db_cluster_identifier, final_snapshot_id=None,
                                          skip_final_snapshot=True, lift_deletion_protection=True)  # fmt: skip
            except AuroraKitError as exc:
                log.warning("could not delete local cluster %s: %s", cluster.db_cluster_identifier, exc)
        for snapshot in self.local.describe_snapshots():
            try:
                self.local.delete_snapshot(snapshot.db_cluster_snapshot_identifier)
            except AuroraKitError as exc:
                log.warning("could not delete local snapshot %s: %s", snapshot.db_cluster_snapshot_identifier, exc)
        for worker in self._workers.values():
            worker.stop()
