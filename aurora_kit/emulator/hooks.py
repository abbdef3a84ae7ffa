"""The emulator's patches on moto's RDS (on top of :mod:`.gaps`): each RDS call of the emulated account and Region
also asks the :class:`~aurora_kit.emulator.bridge.Bridge` to do the real work, and what describes a resource (status,
writer, endpoints, restorable window, secret status, events) comes from the bridge. Every AWS call of any service is
recorded (service, operation, which optional parameters were given) for the least-privilege policies; RDS calls run
one at a time, since the bridge's workers change the same moto objects.

A restored cluster comes without a managed secret (Aurora's restores take no ManageMasterUserPassword), so the aws
backend's ModifyDBCluster path runs as on Aurora. The validations of the calls the emulator takes over are RDS's: a
reboot needs an ``available`` instance, a failover an ``available`` cluster with two members and an available target,
a delete no deletion protection and no members left, a point-in-time restore a time inside the restorable window.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from aurora_kit.emulator.bridge import ENGINE, Bridge
from aurora_kit.emulator.gaps import fill_moto_rds_gaps
from aurora_kit.errors import FailoverNotPossibleError

#: optional request parameters that need more IAM permission than the action itself (see aurora_kit.iam)
RECORDED_FLAGS = (
    "Tags",
    "ManageMasterUserPassword",
    "KmsKeyId",
    "MasterUserSecretKmsKeyId",
    "AlarmActions",
    "FinalDBSnapshotIdentifier",
)


def _given(params: Any, name: str) -> bool:
    if params is None:
        return False
    try:
        value = params.get(name)
    except (AttributeError, TypeError):
        return False
    return bool(value)


def install(bridge: Bridge, patch: Any) -> None:
    """Patch moto (with ``patch``: a Patcher or pytest's MonkeyPatch) so RDS drives ``bridge``."""
    from moto.core.responses import BaseResponse
    from moto.rds import exceptions as exc
    from moto.rds import models

    fill_moto_rds_gaps(patch, member_status=bridge.member_status)
    backend_cls, cluster_cls = models.RDSBackend, models.DBCluster

    # -- every call: recorded; RDS calls one at a time -------------------------------------------------------
    call_action = BaseResponse.call_action

    def recorded_call_action(self: Any) -> Any:
        service = str(getattr(self, "service_name", "") or "")
        try:
            action = self._get_action()
        except Exception:  # not an AWS API request (moto's own routes)
            return call_action(self)
        params = getattr(self, "params", None)
        flags = [name for name in RECORDED_FLAGS if _given(params, name)]
        bridge.record_call(service, action, flags=flags)
        if service == "rds":
            with bridge.moto_lock:
                return call_action(self)
        return call_action(self)

    patch.setattr(BaseResponse, "call_action", recorded_call_action)

    def tracked(backend: Any, cluster_id: str | None) -> bool:
        return bridge.tracks(backend) and bridge.view(cluster_id) is not None

    # -- clusters and instances ------------------------------------------------------------------------------
    create_cluster = backend_cls.create_db_cluster

    def create_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        cluster = create_cluster(self, kwargs)
        if bridge.tracks(self) and cluster.engine == ENGINE:
            bridge.cluster_created(cluster)
        return cluster

    create_instance = backend_cls.create_db_instance

    def create_db_instance(self: Any, db_kwargs: dict[str, Any]) -> Any:
        instance = create_instance(self, db_kwargs)
        if tracked(self, getattr(instance, "db_cluster_identifier", None)):
            bridge.instance_created(instance)
        return instance

    delete_instance = backend_cls.delete_db_instance

    def delete_db_instance(self: Any, db_instance_identifier: str, **kwargs: Any) -> Any:
        instance = self.databases.get(db_instance_identifier)
        if instance is None or not tracked(self, getattr(instance, "db_cluster_identifier", None)):
            return delete_instance(self, db_instance_identifier, **kwargs)
        if instance.status == "deleting":
            raise exc.InvalidDBInstanceStateFault(f"Instance {db_instance_identifier} is already being deleted.")
        if instance.deletion_protection:
            raise exc.InvalidParameterCombination(
                "Cannot delete protected DB Instance, please disable deletion protection and try again."
            )
        bridge.delete_instance(instance, lambda: delete_instance(self, db_instance_identifier, **kwargs))
        return instance

    delete_cluster = backend_cls.delete_db_cluster

    def delete_db_cluster(self: Any, cluster_identifier: str, snapshot_name: str | None = None) -> Any:
        cluster = self.clusters.get(cluster_identifier)
        view = bridge.view(cluster_identifier) if bridge.tracks(self) else None
        if cluster is None or view is None or bridge.in_internal:
            return delete_cluster(self, cluster_identifier, snapshot_name)
        if cluster.deletion_protection:
            raise exc.InvalidParameterCombination(
                "Cannot delete protected Cluster, please disable deletion protection and try again."
            )
        if cluster.members:
            raise exc.DBClusterToBeDeletedHasActiveMembers()
        if view.status == "deleting":
            raise exc.InvalidDBClusterStateFault(f"DB cluster {cluster_identifier} is already being deleted.")
        if snapshot_name and (snapshot_name in self.cluster_snapshots or bridge.local_snapshot_exists(snapshot_name)):
            raise exc.DBClusterSnapshotAlreadyExistsError(snapshot_name)  # at once, as RDS answers
        bridge.delete_cluster(cluster, snapshot_name, lambda: delete_cluster(self, cluster_identifier, snapshot_name))
        return cluster

    modify_cluster = backend_cls.modify_db_cluster

    def modify_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        cid = str(kwargs.get("db_cluster_identifier", ""))
        managed = kwargs.get("manage_master_user_password")
        backups = {k: kwargs.get(k) for k in ("backup_retention_period", "preferred_backup_window") if kwargs.get(k)}
        answer = modify_cluster(self, kwargs)
        view = bridge.view(cid) if bridge.tracks(self) else None
        if view is not None:
            if managed:
                view.secret_synced = False
                bridge.sync_secret(cid)
            if backups and view.local:
                bridge.local.modify_cluster(cid, **backups)
            scaling = kwargs.get("serverless_v2_scaling_configuration")
            if scaling and view.local:
                bridge.serverless_scaling_changed(cid, scaling)
        return answer

    modify_instance = backend_cls.modify_db_instance

    def modify_db_instance(self: Any, db_instance_identifier: str, db_kwargs: dict[str, Any]) -> Any:
        instance = self.databases.get(db_instance_identifier)
        if instance is None or not tracked(self, getattr(instance, "db_cluster_identifier", None)):
            return modify_instance(self, db_instance_identifier, db_kwargs)
        old_class, new_class = str(instance.db_instance_class), db_kwargs.get("db_instance_class")
        if new_class and new_class != old_class and instance.status != "available":
            raise exc.InvalidDBInstanceStateFault(
                f"DB instance {db_instance_identifier} is {instance.status}; modifying its class needs it available."
            )
        answer = modify_instance(self, db_instance_identifier, db_kwargs)
        if new_class and new_class != old_class:
            bridge.modify_instance_class(instance, old_class, str(new_class))
        return answer

    # -- reboot, failover, parameter groups ------------------------------------------------------------------
    reboot = backend_cls.reboot_db_instance  # the gaps' version (answers "rebooting")

    def reboot_db_instance(self: Any, db_instance_identifier: str) -> Any:
        instance = self.databases.get(db_instance_identifier)
        if instance is None or not tracked(self, getattr(instance, "db_cluster_identifier", None)):
            return reboot(self, db_instance_identifier)
        if instance.status != "available":
            raise exc.InvalidDBInstanceStateFault(
                f"DB instance {db_instance_identifier} is {instance.status}; a reboot needs it available."
            )
        bridge.reboot(instance)
        return instance

    failover_cluster = backend_cls.failover_db_cluster

    def failover_db_cluster(
        self: Any, db_cluster_identifier: str, target_db_instance_identifier: str | None = None
    ) -> Any:
        cluster = self.clusters.get(db_cluster_identifier)
        view = bridge.view(db_cluster_identifier) if bridge.tracks(self) else None
        if cluster is None or view is None:
            return failover_cluster(self, db_cluster_identifier, target_db_instance_identifier)
        if view.status != "available":
            raise exc.InvalidDBClusterStateFault(
                f"DB cluster {db_cluster_identifier} is {view.status}; a failover needs it available."
            )
        if len(cluster.members) < 2:
            raise exc.InvalidDBClusterStateFault(
                f"Database cluster:{db_cluster_identifier} should have at least two database instances for failover"
            )
        if target_db_instance_identifier and target_db_instance_identifier not in self.databases:
            raise exc.InvalidParameterValue(f"Cannot find target instance: {target_db_instance_identifier}")
        try:
            old, target = bridge.choose_target(cluster, target_db_instance_identifier)
        except FailoverNotPossibleError as error:
            raise exc.InvalidDBInstanceStateFault(error.message) from error
        bridge.failover(cluster, old, target)
        return cluster

    modify_group = backend_cls.modify_db_cluster_parameter_group  # the gaps' version

    def modify_db_cluster_parameter_group(self: Any, name: str, parameters: Any) -> Any:
        parameters = list(parameters)
        group = modify_group(self, name, parameters)
        if bridge.tracks(self):
            bridge.parameters_changed(name, parameters)
        return group

    # -- snapshots and restores ------------------------------------------------------------------------------
    create_snapshot = backend_cls.create_db_cluster_snapshot

    def create_db_cluster_snapshot(
        self: Any,
        db_cluster_identifier: str,
        db_cluster_snapshot_identifier: str,
        snapshot_type: str = "manual",
        tags: list[dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> Any:
        snapshot = create_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type, tags)
        if tracked(self, db_cluster_identifier) and snapshot_type == "manual" and not bridge.in_internal:
            bridge.snapshot_created(snapshot, {t["Key"]: t.get("Value", "") for t in tags or []})
        return snapshot

    delete_snapshot = backend_cls.delete_db_cluster_snapshot

    def delete_db_cluster_snapshot(self: Any, db_snapshot_identifier: str) -> Any:
        snapshot = delete_snapshot(self, db_snapshot_identifier)
        if bridge.tracks(self):
            bridge.snapshot_deleted(db_snapshot_identifier)
        return snapshot

    restore_snapshot = backend_cls.restore_db_cluster_from_snapshot

    def restore_db_cluster_from_snapshot(self: Any, from_snapshot_id: str, overrides: dict[str, Any]) -> Any:
        if not bridge.tracks(self):
            return restore_snapshot(self, from_snapshot_id, overrides)
        snapshot = self.cluster_snapshots.get(from_snapshot_id)
        if snapshot is not None and snapshot.status != "available":
            raise exc.InvalidDBClusterSnapshotStateFault(
                f"DB cluster snapshot {from_snapshot_id} is {snapshot.status}, not available."
            )
        with bridge.internal():
            cluster = restore_snapshot(self, from_snapshot_id, overrides)
        _unmanaged(cluster)
        new_id = cluster.db_cluster_identifier
        bridge.restored(cluster, lambda: bridge.local.restore_from_snapshot(from_snapshot_id, new_id))
        return cluster

    restore_pitr = backend_cls.restore_db_cluster_to_point_in_time

    def restore_db_cluster_to_point_in_time(
        self: Any,
        db_cluster_identifier: str,
        source_db_cluster_identifier: str,
        restore_type: str = "full-copy",
        restore_to_time: datetime | None = None,
        use_latest_restorable_time: bool = False,
        **overrides: Any,
    ) -> Any:
        source = self.clusters.get(source_db_cluster_identifier)
        if source is None or not tracked(self, source_db_cluster_identifier):
            return restore_pitr(
                self, db_cluster_identifier, source_db_cluster_identifier, restore_type, restore_to_time,
                use_latest_restorable_time, **overrides,
            )  # fmt: skip
        target = restore_to_time
        if target is not None and target.tzinfo is None:
            target = target.replace(tzinfo=timezone.utc)
        earliest = bridge.earliest_restorable_time(source)
        latest = bridge.latest_restorable_time(source)
        if target is not None and (earliest is None or latest is None or not earliest <= target <= latest):
            raise exc.RDSClientError(
                "InvalidRestoreFault",
                f"The restore time {target.isoformat()} is outside the restorable window "
                f"[{earliest.isoformat() if earliest else None}, {latest.isoformat() if latest else None}].",
            )
        with bridge.internal():
            cluster = restore_pitr(
                self, db_cluster_identifier, source_db_cluster_identifier, restore_type, restore_to_time,
                use_latest_restorable_time, **overrides,
            )  # fmt: skip
        _unmanaged(cluster)
        new_id = cluster.db_cluster_identifier
        bridge.restored(
            cluster,
            lambda: bridge.local.restore_to_point_in_time(
                source_db_cluster_identifier, new_id, restore_time=target, use_latest_restorable_time=target is None
            ),
        )
        return cluster

    # -- events ------------------------------------------------------------------------------------------------
    describe_events = backend_cls.describe_events
    add_event = backend_cls.add_event

    def describe_events_in_window(
        self: Any, source_identifier: str | None = None, source_type: str | None = None, **kwargs: Any
    ) -> list[Any]:
        events = describe_events(self, source_identifier, source_type)
        now = datetime.now(timezone.utc)
        start, end = kwargs.get("start_time"), kwargs.get("end_time") or now
        if start is None:  # RDS: the past hour unless StartTime or Duration (minutes) says otherwise
            start = now - timedelta(minutes=int(kwargs.get("duration") or 60))
        start, end = (t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (start, end))
        categories = set(kwargs.get("event_categories") or [])
        return [
            e
            for e in events
            if start <= _aware(e.date) <= end and (not categories or categories & set(e.event_categories))
        ]

    def add_aurora_event(self: Any, event_type: str, resource: Any) -> None:
        if not bridge.tracks(self):  # the bridge emits Aurora's own events for what it emulates
            add_event(self, event_type, resource)

    # -- what describes a resource -----------------------------------------------------------------------------
    status = cluster_cls.status

    def cluster_status(self: Any) -> str:
        view = bridge.view(self.db_cluster_identifier) if bridge.tracks(self.backend) else None
        return view.status if view is not None else str(status.fget(self))  # type: ignore[attr-defined]

    latest = cluster_cls.latest_restorable_time

    def latest_restorable_time(self: Any) -> datetime | None:
        if bridge.tracks(self.backend) and bridge.view(self.db_cluster_identifier) is not None:
            return bridge.latest_restorable_time(self)
        return latest.fget(self)  # type: ignore[attr-defined]

    def earliest_restorable_time(self: Any) -> datetime | None:
        found = bridge.earliest_restorable_time(self) if bridge.tracks(self.backend) else None
        return found or self.__dict__.get("_earliest_restorable_time")

    def set_earliest(self: Any, value: datetime) -> None:
        self.__dict__["_earliest_restorable_time"] = value

    save_backup = cluster_cls.save_automated_backup

    def save_automated_backup(self: Any) -> None:
        if not (bridge.tracks(self.backend) and self.engine == ENGINE):  # the local cluster's backups serve PITR
            save_backup(self)

    address = models.DBInstance.address

    def instance_address(self: Any) -> str:
        if getattr(self, "db_cluster_identifier", None) and bridge.tracks(self.backend):
            return f"{self.db_instance_identifier}.{bridge.host_id}.{bridge.region}.rds.amazonaws.com"
        return str(address.fget(self))  # type: ignore[attr-defined]

    secret_status = models.MasterUserSecret.secret_status

    def managed_secret_status(self: Any) -> str:
        found = bridge.secret_status(self.resource) if bridge.tracks(self.resource.backend) else None
        return found or str(secret_status.fget(self))  # type: ignore[attr-defined]

    for target, name, value in (
        (backend_cls, "create_db_cluster", create_db_cluster),
        (backend_cls, "create_db_instance", create_db_instance),
        (backend_cls, "delete_db_instance", delete_db_instance),
        (backend_cls, "delete_db_cluster", delete_db_cluster),
        (backend_cls, "modify_db_cluster", modify_db_cluster),
        (backend_cls, "modify_db_instance", modify_db_instance),
        (backend_cls, "reboot_db_instance", reboot_db_instance),
        (backend_cls, "failover_db_cluster", failover_db_cluster),
        (backend_cls, "modify_db_cluster_parameter_group", modify_db_cluster_parameter_group),
        (backend_cls, "create_db_cluster_snapshot", create_db_cluster_snapshot),
        (backend_cls, "delete_db_cluster_snapshot", delete_db_cluster_snapshot),
        (backend_cls, "restore_db_cluster_from_snapshot", restore_db_cluster_from_snapshot),
        (backend_cls, "restore_db_cluster_to_point_in_time", restore_db_cluster_to_point_in_time),
        (backend_cls, "describe_events", describe_events_in_window),
        (backend_cls, "add_event", add_aurora_event),
        (cluster_cls, "status", property(cluster_status, status.fset)),  # type: ignore[attr-defined]
        (cluster_cls, "latest_restorable_time", property(latest_restorable_time)),
        (cluster_cls, "earliest_restorable_time", property(earliest_restorable_time, set_earliest)),
        (cluster_cls, "save_automated_backup", save_automated_backup),
        (models.DBInstance, "address", property(instance_address)),
        (models.MasterUserSecret, "secret_status", property(managed_secret_status)),
    ):
        patch.setattr(target, name, value, raising=False)


def _unmanaged(cluster: Any) -> None:
    """A restored cluster has no managed master secret (RestoreDBCluster* take no ManageMasterUserPassword; the
    password is the snapshot's) until ModifyDBCluster asks for one; moto copies the source's secret setting."""
    secret = getattr(cluster, "master_user_secret", None)
    if secret is not None:
        secret.delete_secret()
        del cluster.master_user_secret
    cluster.manage_master_user_password = False


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
