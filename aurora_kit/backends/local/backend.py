"""``LocalBackend``: an Aurora-shaped cluster (1 writer + N readers) of real PostgreSQL processes on loopback.

See DESIGN.md §3. This class implements :class:`~aurora_kit.backends.base.ClusterBackend` by composing the
modules beside it: it reads the typed records of :mod:`.state`, validates each request (the rules come from
:mod:`aurora_kit.rules`), and hands the work to :mod:`.lifecycle`, :mod:`.backup`, :mod:`.failover`,
:mod:`.parameters` and :mod:`.monitoring`, which act through :class:`.nodes.Nodes`; the automated-backup calls
(``maintain``, ``backup_status``, the catch-up after each mutation) come from :mod:`.backups_api`.

Every mutating method validates first, then goes through :meth:`LocalBackend._mutate`, the one place that knows
about dry runs: it records the planned calls and returns the projected result instead of running the work.
Mutations take the cluster's operation lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from psycopg.conninfo import make_conninfo

from aurora_kit.backends.base import (
    AlarmState,
    BackendSettings,
    BackendTraits,
    Cluster,
    ConnectionInfo,
    FailoverMode,
    FailoverResult,
    Instance,
    ParameterChangeResult,
    Snapshot,
    projected_cluster,
)
from aurora_kit.backends.local import automated, backup, failover, lifecycle, monitoring, parameters, topology, views
from aurora_kit.backends.local.backups_api import AutomatedBackupsMixin, Call
from aurora_kit.backends.local.binaries import check_traversable, find_binaries, run_as
from aurora_kit.backends.local.config import UNSAFE_PATH_CHARS
from aurora_kit.backends.local.nodes import CONNECT_TIMEOUT, Nodes
from aurora_kit.backends.local.scale_ops import ScaleOps
from aurora_kit.backends.local.state import ClusterRecord, StateStore
from aurora_kit.errors import (
    ClusterAlreadyExistsError,
    ClusterNotFoundError,
    DeletionProtectionError,
    InvalidParameterError,
    InvalidStateError,
)
from aurora_kit.rules import check_backup_window, check_final_snapshot_choice, check_retention, reboot_order
from aurora_kit.specs import AlarmSpec, ClusterSpec, InstanceSpec

T = TypeVar("T")


def default_root() -> Path:
    """``$AURORA_KIT_HOME``, else ``/var/lib/aurora_kit`` as root, else ``~/.local/share/aurora_kit``."""
    env = os.environ.get("AURORA_KIT_HOME")
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/aurora_kit")
    return Path.home() / ".local" / "share" / "aurora_kit"


def _create_instance_call(cluster_id: str, spec: InstanceSpec) -> Call:
    return "CreateDBInstance", {"DBClusterIdentifier": cluster_id, **spec.model_dump()}


class LocalBackend(AutomatedBackupsMixin, ScaleOps):
    """Clusters of real PostgreSQL 16 + pgvector processes, shaped like Aurora (see the package docstring)."""

    name = "local"
    traits = BackendTraits(
        restorable_on_demand=True,
        alarms_sampled_on_demand=True,
        crash_failover=True,
        rejoin_timeout_s=120.0,
        poll_max_delay_s=2.0,
        restorable_wait_s=0.0,
        regional=False,
        retains_automated_backups=True,
        scaling_evaluated_on_demand=True,
        proxy_pins_sessions=False,
        reader_endpoint_dns_ttl_s=0.0,
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
        self.nodes = Nodes(self.root, self.store, ready_timeout=ready_timeout, progress=progress)
        #: step timings of the last failover run by this object, for measurements
        self.last_failover_phases: failover.Phases | None = None

    # == the one dry-run switch ============================================================================
    def _mutate(self, calls: Sequence[Call], run: Callable[[], T], projected: Callable[[], T]) -> T:
        """Run a validated mutation, or — in a dry run — record ``calls`` and return ``projected()`` instead."""
        if self.dry_run:
            for operation, params in calls:
                self._record("local", operation, **params)
            return projected()
        return run()

    # == describe ==========================================================================================
    def _instance(self, cl: ClusterRecord, instance_id: str) -> Instance:
        return views.instance(cl, instance_id, self.nodes.probe(cl.cluster_id, instance_id, cl))

    def describe_instances(self, cluster_id: str) -> list[Instance]:
        cl = self.store.cluster(cluster_id)
        return [self._instance(cl, iid) for iid in cl.ordered]

    def describe_cluster(self, cluster_id: str) -> Cluster:
        """The cluster now; its restorable window is what the WAL archive and the automated backups support
        (never spanning a missing segment), read without writing anything but a cache of commit times."""
        cl = self.store.cluster(cluster_id)
        window = automated.window(self.nodes, automated.of_cluster(self.nodes, cl))
        return views.cluster(
            cl,
            [self._instance(cl, iid) for iid in cl.ordered],
            earliest_restorable_time=window.earliest,
            latest_restorable_time=window.latest,
            secret=self.nodes.paths(cluster_id).secret,
        )

    def list_clusters(self) -> list[Cluster]:
        out: list[Cluster] = []
        for cid in sorted(self.store.load().clusters):
            try:
                out.append(self.describe_cluster(cid))
            except ClusterNotFoundError:  # deleted concurrently
                continue
        return out

    # == clusters ==========================================================================================
    def create_cluster(self, spec: ClusterSpec, *, wait: bool = True) -> Cluster:
        """Create writer + readers. Synchronous: the cluster and every instance are available on return (a few
        seconds), whatever ``wait`` says."""
        if not isinstance(spec, ClusterSpec):
            raise InvalidParameterError("spec", type(spec).__name__, "must be a ClusterSpec")
        bins = find_binaries(spec.engine_major)
        doc = self.store.load()
        existing = doc.clusters.get(spec.cluster_id)
        if existing is not None:
            if existing.spec == spec.model_dump(mode="json"):
                return self.describe_cluster(spec.cluster_id)
            raise ClusterAlreadyExistsError(spec.cluster_id)
        for inst in spec.instances:
            if inst.instance_id in doc.instance_ids():
                raise InvalidParameterError("instance_id", inst.instance_id, "already used by another cluster")
        if spec.port is not None:  # InvalidParameterError when nothing can listen on it
            self.nodes.allocate_endpoints(len(spec.instances), port=spec.port, doc=doc)

        def run() -> Cluster:
            lifecycle.create_cluster(self.nodes, spec, bins)
            return self.describe_cluster(spec.cluster_id)

        calls = [("CreateDBCluster", spec.model_dump(mode="json", exclude={"instances"}))]
        calls += [_create_instance_call(spec.cluster_id, inst) for inst in spec.instances]
        return self._mutate(
            calls,
            run,
            lambda: projected_cluster(spec, engine_version=bins.version, port=spec.port or 0, zones=[views.LOCAL_AZ]),
        )

    def modify_cluster(
        self,
        cluster_id: str,
        *,
        deletion_protection: bool | None = None,
        backup_retention_period: int | None = None,
        preferred_backup_window: str | None = None,
    ) -> Cluster:
        self.store.cluster(cluster_id)  # ClusterNotFoundError first
        changes: dict[str, Any] = {}
        if deletion_protection is not None:
            changes["deletion_protection"] = bool(deletion_protection)
        if backup_retention_period is not None:  # 0 or any out-of-range value is refused, never kept silently
            changes["backup_retention_period"] = check_retention(backup_retention_period)
        if preferred_backup_window is not None:
            changes["preferred_backup_window"] = check_backup_window(preferred_backup_window)

        def run() -> Cluster:
            with self.store.cluster_lock(cluster_id, "modify cluster"):
                self.store.set_fields(cluster_id, **changes)
            self._catch_up(cluster_id)  # a shorter retention period expires backups now, as on Aurora
            return self.describe_cluster(cluster_id)

        calls = [("ModifyDBCluster", {"DBClusterIdentifier": cluster_id, **changes})]
        return self._mutate(calls, run, lambda: views.dry(self.describe_cluster(cluster_id), **changes))

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
        """Delete the instances and the cluster; the final snapshot as chosen. The automated backups go with it,
        or — ``delete_automated_backups=False`` — are retained (:func:`.automated.retain`: everything up to the
        deletion is archived first), listed under the cluster's id and expiring with its retention period."""
        cl = self.store.cluster(cluster_id)
        check_final_snapshot_choice(final_snapshot_id, skip_final_snapshot)
        if final_snapshot_id is not None:
            backup.check_new_snapshot_id(self.nodes, final_snapshot_id)
        if cl.deletion_protection and not lift_deletion_protection:
            raise DeletionProtectionError(cluster_id)

        def run() -> Snapshot | None:
            final: Snapshot | None = None
            with self.store.cluster_lock(cluster_id, "delete cluster"):
                if final_snapshot_id is not None:
                    if cl.status == "stopped":  # the final snapshot needs a running writer
                        self.start_cluster(cluster_id)
                    final = backup.create_snapshot(self.nodes, cluster_id, final_snapshot_id, tags=cl.tags)
                self.store.set_status(cluster_id, "deleting", **dict.fromkeys(cl.instances, "deleting"))
                if not delete_automated_backups:
                    automated.retain_on_delete(self.nodes, cluster_id)
                self.nodes.destroy(cluster_id)
            return final

        calls: list[Call] = []
        if cl.deletion_protection:
            calls.append(("ModifyDBCluster", {"DBClusterIdentifier": cluster_id, "DeletionProtection": False}))
        calls += [("DeleteDBInstance", {"DBInstanceIdentifier": iid}) for iid in cl.ordered]
        calls.append(
            (
                "DeleteDBCluster",
                {
                    "DBClusterIdentifier": cluster_id,
                    "FinalDBSnapshotIdentifier": final_snapshot_id,
                    "SkipFinalSnapshot": skip_final_snapshot,
                    "DeleteAutomatedBackups": delete_automated_backups,
                },
            )
        )
        return self._mutate(
            calls, run, lambda: views.projected_snapshot(cl, final_snapshot_id) if final_snapshot_id else None
        )

    def stop_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster:
        cl = self.store.cluster(cluster_id)
        if cl.status == "stopped":
            return self.describe_cluster(cluster_id)
        if cl.status != "available":
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl.status}; only an available cluster stops")

        def run() -> Cluster:
            with self.store.cluster_lock(cluster_id, "stop cluster"):
                lifecycle.stop_cluster(self.nodes, cluster_id)
            return self.describe_cluster(cluster_id)

        calls = [("StopDBCluster", {"DBClusterIdentifier": cluster_id})]
        return self._mutate(calls, run, lambda: views.dry(self.describe_cluster(cluster_id)))

    def start_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster:
        """Start a stopped cluster; on an ``available`` one, restart any instance whose process is gone (e.g.
        after a host reboot)."""
        cl = self.store.cluster(cluster_id)
        if cl.status not in ("stopped", "available"):
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl.status}; only a stopped cluster starts")
        if not lifecycle.down_instances(self.nodes, cl):
            return self.describe_cluster(cluster_id)

        def run() -> Cluster:
            with self.store.cluster_lock(cluster_id, "start cluster"):
                lifecycle.start_cluster(self.nodes, cluster_id)
                self.nodes.publish(cluster_id)  # the hosts file may have been reset since (a new container)
            self._catch_up(cluster_id)  # a window missed while stopped is caught up now
            return self.describe_cluster(cluster_id)

        calls = [("StartDBCluster", {"DBClusterIdentifier": cluster_id})]
        return self._mutate(calls, run, lambda: views.dry(self.describe_cluster(cluster_id)))

    # == instances =========================================================================================
    def create_instance(self, cluster_id: str, spec: InstanceSpec, *, wait: bool = True) -> Instance:
        cl = self.store.cluster(cluster_id)
        if not isinstance(spec, InstanceSpec):
            raise InvalidParameterError("spec", type(spec).__name__, "must be an InstanceSpec")
        if spec.instance_id in cl.instances:
            raise InvalidParameterError("instance_id", spec.instance_id, f"already a member of {cluster_id!r}")
        if spec.instance_id in self.store.load().instance_ids():
            raise InvalidParameterError("instance_id", spec.instance_id, "already used by another cluster")
        if cl.status != "available":
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl.status}; instances are added when available")

        def run() -> Instance:
            lifecycle.create_instance(self.nodes, cluster_id, spec)
            self._catch_up(cluster_id)
            return self._instance(self.store.cluster(cluster_id), spec.instance_id)

        calls = [_create_instance_call(cluster_id, spec)]
        return self._mutate(calls, run, lambda: views.projected_instance(cl, spec))

    def delete_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> None:
        """Delete a reader; deleting the writer fails over to a reader first (as Aurora). Deleting the last
        instance keeps the cluster's storage (a later create_instance brings it back)."""
        cl = self.store.cluster(cluster_id)
        cl.instance(instance_id)  # InstanceNotFoundError
        if cl.status != "available":
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl.status}; instances are deleted when available")

        def run() -> None:
            with self.store.cluster_lock(cluster_id, "delete instance"):
                current = self.store.cluster(cluster_id)
                if current.instance(instance_id).is_writer:
                    if not current.reader_ids:
                        backup.park_writer_as_seed(self.nodes, cluster_id, instance_id)
                        self.nodes.publish(cluster_id)
                        return
                    self.failover(cluster_id, mode="planned")
                self.store.set_status(cluster_id, None, **{instance_id: "deleting"})
                self.nodes.remove_instance(cluster_id, instance_id)
            self._catch_up(cluster_id)

        self._mutate([("DeleteDBInstance", {"DBInstanceIdentifier": instance_id})], run, lambda: None)

    def reboot_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> Instance:
        cl = self.store.cluster(cluster_id)
        cl.instance(instance_id)  # InstanceNotFoundError
        if cl.status != "available":
            raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl.status}; reboot needs it available")

        def run() -> Instance:
            with self.store.cluster_lock(cluster_id, "reboot instance"):
                lifecycle.reboot_instance(self.nodes, cluster_id, instance_id)
            self._catch_up(cluster_id)
            return self._instance(self.store.cluster(cluster_id), instance_id)

        calls = [("RebootDBInstance", {"DBInstanceIdentifier": instance_id})]
        return self._mutate(calls, run, lambda: views.dry(self._instance(cl, instance_id)))

    # == parameters ========================================================================================
    def get_parameters(self, cluster_id: str, names: list[str]) -> dict[str, str | None]:
        return parameters.get_parameters(self.nodes, cluster_id, names)

    def apply_parameters(self, cluster_id: str, parameters_: Mapping[str, str]) -> ParameterChangeResult:
        changes = parameters.changes(self.nodes, cluster_id, parameters_)

        def run() -> ParameterChangeResult:
            if not changes:
                pending = parameters.pending_instances(self.nodes, cluster_id)
                return ParameterChangeResult(cluster_id, [], pending, status="no-change")
            with self.store.cluster_lock(cluster_id, "apply parameters"):
                pending = parameters.apply(self.nodes, cluster_id, changes)
            self._catch_up(cluster_id)
            return ParameterChangeResult(cluster_id, changes, pending, status="applied")

        group = [
            {"ParameterName": c.parameter_name, "ParameterValue": c.new_value, "ApplyMethod": c.apply_method}
            for c in changes
        ]
        calls = [
            (
                "ModifyDBClusterParameterGroup",
                {"DBClusterParameterGroupName": f"{cluster_id}-params", "Parameters": group},
            )
        ]
        return self._mutate(calls, run, lambda: ParameterChangeResult(cluster_id, changes, [], status="dry-run"))

    def reboot_pending(self, cluster_id: str) -> list[Instance]:
        """Reboot every pending-reboot instance in :func:`aurora_kit.rules.reboot_order`, each waited for."""
        return [self.reboot_instance(cluster_id, iid) for iid in reboot_order(self.describe_instances(cluster_id))]

    # == snapshots and restores ============================================================================
    def create_snapshot(
        self, cluster_id: str, snapshot_id: str, *, tags: Mapping[str, str] | None = None, wait: bool = True
    ) -> Snapshot:
        cl = self.store.cluster(cluster_id)
        backup.check_new_snapshot_id(self.nodes, snapshot_id)

        def run() -> Snapshot:
            with self.store.cluster_lock(cluster_id, "create snapshot"):
                snap = backup.create_snapshot(self.nodes, cluster_id, snapshot_id, tags=tags)
            self._catch_up(cluster_id)
            return snap

        calls = [
            ("CreateDBClusterSnapshot", {"DBClusterIdentifier": cluster_id, "DBClusterSnapshotIdentifier": snapshot_id})
        ]
        return self._mutate(calls, run, lambda: views.projected_snapshot(cl, snapshot_id))

    def describe_snapshots(self, cluster_id: str | None = None, snapshot_type: str | None = None) -> list[Snapshot]:
        """Manual and automated snapshots (``snapshot_type`` ``manual`` | ``automated`` picks one kind, as RDS's
        ``SnapshotType``); a deleted cluster's retained automated backups are listed under its id."""
        return backup.describe_snapshots(self.nodes, cluster_id, snapshot_type)

    def delete_snapshot(self, snapshot_id: str) -> None:
        backup.check_snapshot_deletable(self.nodes, snapshot_id)  # not found, or automated: refused
        calls = [("DeleteDBClusterSnapshot", {"DBClusterSnapshotIdentifier": snapshot_id})]
        self._mutate(calls, lambda: backup.delete_snapshot(self.nodes, snapshot_id), lambda: None)

    def _create_instances(self, cluster_id: str, instances: list[InstanceSpec] | None) -> Cluster:
        """Create a restored cluster's instances (first = writer); the cluster goes if one fails."""
        try:
            for spec in instances or []:
                self.create_instance(cluster_id, spec)
        except BaseException as exc:
            self.nodes.destroy_after_failure(cluster_id, exc)
            raise
        return self.describe_cluster(cluster_id)

    def restore_from_snapshot(
        self, snapshot_id: str, new_cluster_id: str, *, instances: list[InstanceSpec] | None = None, wait: bool = True
    ) -> Cluster:
        snap = backup.check_snapshot_restore(self.nodes, snapshot_id, new_cluster_id, instances)

        def run() -> Cluster:
            backup.restore_from_snapshot(self.nodes, snap, new_cluster_id)
            return self._create_instances(new_cluster_id, instances)

        calls = [
            ("RestoreDBClusterFromSnapshot", {"DBClusterIdentifier": new_cluster_id, "SnapshotIdentifier": snapshot_id})
        ]
        calls += [_create_instance_call(new_cluster_id, spec) for spec in instances or []]
        return self._mutate(calls, run, lambda: views.projected_restore(new_cluster_id, snap.template))

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
        request = backup.check_pitr(
            self.nodes,
            source_cluster_id,
            new_cluster_id,
            restore_time=restore_time,
            use_latest_restorable_time=use_latest_restorable_time,
            instances=instances,
        )

        def run() -> Cluster:
            backup.restore_to_point_in_time(self.nodes, request)
            return self._create_instances(new_cluster_id, instances)

        calls: list[Call] = [
            (
                "RestoreDBClusterToPointInTime",
                {
                    "SourceDBClusterIdentifier": source_cluster_id,
                    "DBClusterIdentifier": new_cluster_id,
                    "RestoreToTime": None if restore_time is None else restore_time.isoformat(),
                    "UseLatestRestorableTime": use_latest_restorable_time,
                },
            )
        ]
        calls += [_create_instance_call(new_cluster_id, spec) for spec in instances or []]
        return self._mutate(calls, run, lambda: views.projected_restore(new_cluster_id, request.source.cluster))

    # == failover ==========================================================================================
    def failover(
        self, cluster_id: str, *, target_instance_id: str | None = None, mode: FailoverMode = "planned"
    ) -> FailoverResult:
        """Promote ``target_instance_id``, else the reader :func:`aurora_kit.rules.failover_target` names (see
        :mod:`.failover`); the old writer comes back as a reader."""
        _, writer, target, _ = failover.check_failover(self.nodes, cluster_id, target_instance_id, mode)

        def run() -> FailoverResult:
            with self.store.cluster_lock(cluster_id, "failover"):
                phases = self.last_failover_phases = failover.Phases()
                result = failover.failover(self.nodes, cluster_id, target_instance_id, mode, phases)
            self._catch_up(cluster_id)
            return result

        def projected() -> FailoverResult:
            now = datetime.now(timezone.utc)
            return FailoverResult(cluster_id, mode, writer, target, now, now, status=views.DRY_RUN)

        calls = [
            (
                "FailoverDBCluster",
                {"DBClusterIdentifier": cluster_id, "TargetDBInstanceIdentifier": target_instance_id, "Mode": mode},
            )
        ]
        return self._mutate(calls, run, projected)

    # == data plane ========================================================================================
    def _endpoint_info(self, cluster_id: str, endpoint: str = "cluster") -> ConnectionInfo:
        cl = self.store.cluster(cluster_id)
        if not cl.ordered:
            raise InvalidStateError(
                f"DB cluster {cluster_id!r} has no instances", hint="create an instance (the writer) first"
            )
        extra: dict[str, Any] = {}
        if endpoint == "cluster":
            members = cl.ordered
            extra["target_session_attrs"] = "read-write"
        elif endpoint == "reader":
            members = cl.reader_ids or cl.ordered
            if cl.reader_ids:
                extra["target_session_attrs"] = "standby"
                extra["load_balance_hosts"] = "random"
        else:
            cl.instance(endpoint)  # InstanceNotFoundError
            members = [endpoint]
        conninfo = make_conninfo(
            host=",".join(cl.instances[m].address for m in members),
            port=",".join(str(cl.instances[m].port) for m in members),
            dbname=cl.database_name,
            user=cl.master_username,
            connect_timeout=CONNECT_TIMEOUT,
            **extra,
        )
        return ConnectionInfo(
            conninfo=conninfo,
            user=cl.master_username,
            dbname=cl.database_name,
            password=self.nodes.password(cluster_id),
            endpoint=endpoint,
        )

    def aws_wrapper_recipe(self, cluster_id: str) -> topology.WrapperRecipe:
        """How the AWS Advanced Python Wrapper connects to this cluster as to Aurora: the cluster endpoint's name
        without ``target_session_attrs``, the instance host pattern and cluster id (see
        :class:`.topology.WrapperRecipe`). The password is declared secret like :meth:`connection_info`'s."""
        info = self.connection_info(cluster_id, "cluster")
        return topology.wrapper_recipe(
            self.root,
            self.store.cluster(cluster_id),
            dbname=info.dbname,
            user=info.user,
            connect_timeout=CONNECT_TIMEOUT,
            password=info.password,
        )

    # == monitoring ========================================================================================
    def put_alarms(
        self, cluster_id: str, alarms: list[AlarmSpec], *, sns_topic_arn: str | None = None
    ) -> list[AlarmState]:
        self.store.cluster(cluster_id)
        monitoring.check_alarms(alarms)

        def run() -> list[AlarmState]:
            with self.store.cluster_lock(cluster_id, "put alarms"):
                monitoring.store_alarms(self.nodes, cluster_id, alarms, sns_topic_arn)
            return monitoring.describe_alarms(self.nodes, cluster_id)

        params = {"DBClusterIdentifier": cluster_id, "Alarms": [a.model_dump() for a in alarms]}
        calls = [("PutMetricAlarm", {**params, "SnsTopicArn": sns_topic_arn})]
        return self._mutate(calls, run, lambda: [])

    def describe_alarms(self, cluster_id: str) -> list[AlarmState]:
        return monitoring.describe_alarms(self.nodes, cluster_id)
