"""Snapshots and restores on Aurora: manual cluster snapshots, restore from a snapshot and to a point in time (full
copy), with the settings a restore would otherwise lose passed explicitly, then the instances."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aurora_kit.backends.aws import decisions as d
from aurora_kit.backends.aws.api import RDS, AwsApi, _lower
from aurora_kit.backends.aws.translate import (
    to_cluster,
    to_snapshot,
)
from aurora_kit.backends.base import (
    Cluster,
    Snapshot,
)
from aurora_kit.errors import (
    ClusterAlreadyExistsError,
    InvalidParameterError,
    SnapshotAlreadyExistsError,
    SnapshotNotFoundError,
)
from aurora_kit.rules import check_restore_window
from aurora_kit.specs import InstanceSpec


class SnapshotOps(AwsApi):
    """The snapshot and restore operations of :class:`~aurora_kit.backends.aws.AwsBackend`."""

    def create_snapshot(
        self, cluster_id: str, snapshot_id: str, *, tags: Mapping[str, str] | None = None, wait: bool = True
    ) -> Snapshot:
        """Manual cluster snapshot, tagged with the caller's tags plus ``aurora-kit:cluster``."""
        cluster_id = _lower(cluster_id)
        snapshot_id = _lower(snapshot_id)
        cluster = self._cluster(cluster_id)
        if self._find_snapshot(snapshot_id) is not None:
            raise SnapshotAlreadyExistsError(snapshot_id)
        all_tags = {"aurora-kit:cluster": cluster_id, **dict(tags or {})}
        response = self._call(
            RDS,
            "CreateDBClusterSnapshot",
            DBClusterIdentifier=cluster_id,
            DBClusterSnapshotIdentifier=snapshot_id,
            Tags=d.tag_list(all_tags),
        )
        if self.dry_run:
            return Snapshot(
                snapshot_id,
                cluster_id,
                "dry-run",
                "manual",
                str(cluster.get("EngineVersion", "")),
                storage_encrypted=bool(cluster.get("StorageEncrypted")),
                tags=all_tags,
            )
        if wait:
            return to_snapshot(self._wait_snapshot_available(snapshot_id))
        return to_snapshot(response["DBClusterSnapshot"])

    def describe_snapshots(self, cluster_id: str | None = None) -> list[Snapshot]:
        cluster_id = _lower(cluster_id)
        params: dict[str, Any] = {"DBClusterIdentifier": cluster_id} if cluster_id else {}
        rows = self._pages(RDS, "DescribeDBClusterSnapshots", "DBClusterSnapshots", **params)
        return [to_snapshot(r) for r in rows if r.get("Engine", d.ENGINE) == d.ENGINE]

    def delete_snapshot(self, snapshot_id: str) -> None:
        snapshot_id = _lower(snapshot_id)
        self._call(RDS, "DescribeDBClusterSnapshots", DBClusterSnapshotIdentifier=snapshot_id)  # NotFound → typed
        self._call(RDS, "DeleteDBClusterSnapshot", DBClusterSnapshotIdentifier=snapshot_id)
        if not self.dry_run:
            self._wait(
                f"snapshot {snapshot_id} deleted",
                lambda: self._find_snapshot(snapshot_id),
                lambda s: s is None,
                operation="delete",
                describe=lambda s: "deleted" if s is None else str(s.get("Status")),
            )

    def restore_from_snapshot(
        self,
        snapshot_id: str,
        new_cluster_id: str,
        *,
        instances: list[InstanceSpec] | None = None,
        wait: bool = True,
        db_cluster_parameter_group_name: str | None = None,
        db_subnet_group_name: str | None = None,
        vpc_security_group_ids: Sequence[str] | None = None,
    ) -> Cluster:
        """RestoreDBClusterFromSnapshot with parameter group, subnet group, security groups, IAM auth, log
        exports, deletion protection... passed EXPLICITLY (from the arguments, else the source cluster if it
        still exists); then a managed master secret if the restore has none, then the instances."""
        snapshot_id = _lower(snapshot_id)
        new_cluster_id = _lower(new_cluster_id)
        snapshot = self._find_snapshot(snapshot_id)
        if snapshot is None:
            raise SnapshotNotFoundError(snapshot_id)
        if self._find_cluster(new_cluster_id) is not None:
            raise ClusterAlreadyExistsError(new_cluster_id)
        source = self._find_cluster(str(snapshot.get("DBClusterIdentifier", "")))
        settings = d.restore_settings(
            source,
            parameter_group=db_cluster_parameter_group_name,
            subnet_group=db_subnet_group_name,
            security_group_ids=vpc_security_group_ids,
        )
        if source is None:
            _warn_defaults(settings, new_cluster_id)
        origin = d.tag_dict((source or snapshot).get("TagList"))
        origin.pop("aurora-kit:cluster", None)  # the snapshot's own marker, not the cluster's
        tags = {**origin, "aurora-kit:restored-from-snapshot": snapshot_id}
        params = {
            "DBClusterIdentifier": new_cluster_id,
            "SnapshotIdentifier": snapshot_id,
            "Engine": snapshot.get("Engine", d.ENGINE),
            "EngineVersion": snapshot.get("EngineVersion"),
            **settings,
            "Tags": d.tag_list(tags),
        }
        params = {k: v for k, v in params.items() if v is not None}
        response = self._call(RDS, "RestoreDBClusterFromSnapshot", **params)
        return self._finish_restore(
            new_cluster_id, response, instances or [], wait, settings, str(params["EngineVersion"] or ""), tags, source
        )

    def restore_to_point_in_time(
        self,
        source_cluster_id: str,
        new_cluster_id: str,
        *,
        restore_time: datetime | None = None,
        use_latest_restorable_time: bool = False,
        instances: list[InstanceSpec] | None = None,
        wait: bool = True,
        db_cluster_parameter_group_name: str | None = None,
        db_subnet_group_name: str | None = None,
        vpc_security_group_ids: Sequence[str] | None = None,
    ) -> Cluster:
        """RestoreDBClusterToPointInTime (full copy) with settings passed explicitly, as for snapshots.
        RestoreWindowError before any call when ``restore_time`` is outside the source's restorable window."""
        source_cluster_id = _lower(source_cluster_id)
        new_cluster_id = _lower(new_cluster_id)
        if (restore_time is None) == (not use_latest_restorable_time):
            raise InvalidParameterError(
                "restore_time", restore_time, "give exactly one of restore_time or use_latest_restorable_time=True"
            )
        source = self._cluster(source_cluster_id)
        params: dict[str, Any] = {
            "DBClusterIdentifier": new_cluster_id,
            "SourceDBClusterIdentifier": source_cluster_id,
            "RestoreType": "full-copy",
        }
        if restore_time is not None:
            params["RestoreToTime"] = check_restore_window(
                restore_time,
                source.get("EarliestRestorableTime"),
                source.get("LatestRestorableTime"),
                cluster_id=source_cluster_id,
            )
        else:
            params["UseLatestRestorableTime"] = True
        if self._find_cluster(new_cluster_id) is not None:
            raise ClusterAlreadyExistsError(new_cluster_id)
        settings = d.restore_settings(
            source,
            parameter_group=db_cluster_parameter_group_name,
            subnet_group=db_subnet_group_name,
            security_group_ids=vpc_security_group_ids,
        )
        params.update(settings)
        tags = {**d.tag_dict(source.get("TagList")), "aurora-kit:restored-from-cluster": source_cluster_id}
        params["Tags"] = d.tag_list(tags)
        response = self._call(RDS, "RestoreDBClusterToPointInTime", **params)
        return self._finish_restore(
            new_cluster_id,
            response,
            instances or [],
            wait,
            settings,
            str(source.get("EngineVersion", "")),
            tags,
            source,
        )

    def _finish_restore(
        self,
        cluster_id: str,
        response: Mapping[str, Any],
        instances: list[InstanceSpec],
        wait: bool,
        settings: Mapping[str, Any],
        engine_version: str,
        tags: Mapping[str, str],
        source: Mapping[str, Any] | None,
    ) -> Cluster:
        """After RestoreDBCluster*: one ModifyDBCluster for what the restore cannot take (a managed secret when the
        restore has none — whatever ``wait`` says: the restored cluster must not keep an unknown plain password —
        and the source's backup retention/window where they differ), then the instances (once the cluster is
        available again), then (``wait``) wait for all of it. ModifyDBCluster needs the cluster ``available``, so
        the decision is made on what it reports then. A dry run cannot know what the restore will report: it
        records the secret's ModifyDBCluster as planned."""
        modify: dict[str, Any] = {"DBClusterIdentifier": cluster_id}
        if self.dry_run:
            self._call(RDS, "ModifyDBCluster", **modify, ManageMasterUserPassword=True, ApplyImmediately=True)
            for inst in instances:
                self._call(RDS, "CreateDBInstance", **d.create_instance_params(cluster_id, inst, tags))
            return Cluster(
                db_cluster_identifier=cluster_id,
                status="dry-run",
                engine=d.ENGINE,
                engine_version=engine_version,
                endpoint="",
                reader_endpoint="",
                port=5432,
                master_username="",
                database_name="",
                db_cluster_members=[],
                backup_retention_period=int((source or {}).get("BackupRetentionPeriod", 0)),
                preferred_backup_window=str((source or {}).get("PreferredBackupWindow", "")),
                storage_encrypted=True,
                deletion_protection=bool(settings.get("DeletionProtection")),
                iam_database_authentication_enabled=bool(settings.get("EnableIAMDatabaseAuthentication")),
                db_cluster_parameter_group=settings.get("DBClusterParameterGroupName"),
                tags=dict(tags),
            )
        restored: Mapping[str, Any] = response.get("DBCluster") or {}
        if not restored.get("MasterUserSecret") or instances or d.restore_backup_changes(source, restored):
            # ModifyDBCluster needs "available"; CreateDBInstance after a restore too (RDS documents the order)
            restored = self._wait_cluster_status(cluster_id, "available", operation="restore")
        if not restored.get("MasterUserSecret"):
            modify["ManageMasterUserPassword"] = True
        modify.update(d.restore_backup_changes(source, restored))
        if len(modify) > 1:
            self._call(RDS, "ModifyDBCluster", **modify, ApplyImmediately=True)
            if instances:  # the cluster is "modifying" now: instances wait until it is available again
                self._wait_modified(cluster_id, {})
        self._create_instances(cluster_id, instances, tags, has_writer=False)
        if not wait:
            return to_cluster(self._cluster(cluster_id))
        self._wait_cluster_ready(cluster_id, [i.instance_id for i in instances], operation="restore")
        return to_cluster(self._wait_secret_active(cluster_id))


def _warn_defaults(settings: Mapping[str, Any], cluster_id: str) -> None:
    missing = [
        name
        for key, name in (
            ("DBClusterParameterGroupName", "parameter group"),
            ("DBSubnetGroupName", "subnet group"),
            ("VpcSecurityGroupIds", "security groups"),
        )
        if key not in settings
    ]
    if missing:
        warnings.warn(
            f"restore {cluster_id}: source cluster is gone and no {', '.join(missing)} given: AWS uses the defaults",
            UserWarning,
            stacklevel=3,
        )
