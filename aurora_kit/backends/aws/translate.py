"""Translation only: botocore ClientError → aurora_kit errors, RDS response dicts → base.py data classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from aurora_kit.backends.aws.decisions import tag_dict
from aurora_kit.backends.base import AlarmState, Cluster, ClusterMember, Instance, Snapshot
from aurora_kit.backends.capacity import ServerlessScalingConfiguration
from aurora_kit.errors import (
    AuroraKitError,
    BackendOperationError,
    ClusterAlreadyExistsError,
    ClusterNotFoundError,
    DeletionProtectionError,
    InstanceNotFoundError,
    InvalidParameterError,
    InvalidStateError,
    RestoreWindowError,
    SnapshotAlreadyExistsError,
    SnapshotNotFoundError,
)

_INVALID_STATE = {
    "InvalidDBClusterStateFault",
    "InvalidDBInstanceState",
    "InvalidDBInstanceStateFault",
    "InvalidDBClusterSnapshotStateFault",
    "InvalidDBParameterGroupState",
    "InvalidDBParameterGroupStateFault",
}
_INVALID_PARAMETER = {"InvalidParameterValue", "InvalidParameterCombination", "ValidationError", "MissingParameter"}


def translate_client_error(exc: ClientError, operation: str, params: Mapping[str, Any]) -> AuroraKitError:
    """Map an AWS error code to the typed error an operator acts on. The AWS code, message, operation and
    request id stay on ``error.context`` (``code``, ``aws_message``, ``operation``, ``request_id``)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", ""))
    cluster_id = str(params.get("DBClusterIdentifier", ""))
    source_id = str(params.get("SourceDBClusterIdentifier", cluster_id))
    instance_id = str(params.get("DBInstanceIdentifier", ""))
    snapshot_id = str(
        params.get("DBClusterSnapshotIdentifier")
        or params.get("SnapshotIdentifier")
        or params.get("FinalDBSnapshotIdentifier")
        or ""
    )
    err: AuroraKitError
    if code == "DBClusterNotFoundFault":
        err = ClusterNotFoundError(source_id if operation == "RestoreDBClusterToPointInTime" else cluster_id)
    elif code == "DBClusterAlreadyExistsFault":
        err = ClusterAlreadyExistsError(cluster_id)
    elif code in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
        err = InstanceNotFoundError(instance_id, cluster_id or None)
    elif code == "DBClusterSnapshotNotFoundFault":
        err = SnapshotNotFoundError(snapshot_id)
    elif code == "DBClusterSnapshotAlreadyExistsFault":
        err = SnapshotAlreadyExistsError(snapshot_id)
    elif code in (
        "DBParameterGroupNotFound",
        "DBClusterParameterGroupNotFound",
        "DBClusterParameterGroupNotFoundFault",
    ):
        name = params.get("DBClusterParameterGroupName")
        err = InvalidParameterError("db_cluster_parameter_group_name", name, f"not found ({message})")
    elif code == "InvalidRestoreFault":
        err = RestoreWindowError(f"{operation} refused the restore: {message}")
    elif operation == "DeleteDBCluster" and "protect" in message.lower():
        err = DeletionProtectionError(cluster_id)
    elif code in _INVALID_STATE:
        err = InvalidStateError(f"{operation} refused: {message}")
    elif code in _INVALID_PARAMETER:
        err = InvalidParameterError(operation, None, message or code)
    else:
        err = BackendOperationError(f"{operation} failed with {code}: {message}")
    err.context.update(
        code=code,
        aws_message=message,
        operation=operation,
        request_id=exc.response.get("ResponseMetadata", {}).get("RequestId"),
    )
    return err


# -- responses → data classes ---------------------------------------------------------------------------------
def to_members(cluster: Mapping[str, Any]) -> list[ClusterMember]:
    return [
        ClusterMember(
            db_instance_identifier=m["DBInstanceIdentifier"],
            is_cluster_writer=bool(m.get("IsClusterWriter")),
            db_cluster_parameter_group_status=m.get("DBClusterParameterGroupStatus", "in-sync"),
            promotion_tier=int(m.get("PromotionTier", 1)),
        )
        for m in cluster.get("DBClusterMembers") or []
    ]


def to_cluster(cluster: Mapping[str, Any]) -> Cluster:
    secret = cluster.get("MasterUserSecret") or {}
    return Cluster(
        db_cluster_identifier=cluster["DBClusterIdentifier"],
        status=cluster.get("Status", "unknown"),
        engine=cluster.get("Engine", ""),
        engine_version=cluster.get("EngineVersion", ""),
        endpoint=cluster.get("Endpoint", ""),
        reader_endpoint=cluster.get("ReaderEndpoint", ""),
        port=int(cluster.get("Port", 5432)),
        master_username=cluster.get("MasterUsername", ""),
        database_name=cluster.get("DatabaseName", ""),
        db_cluster_members=to_members(cluster),
        backup_retention_period=int(cluster.get("BackupRetentionPeriod", 0)),
        preferred_backup_window=cluster.get("PreferredBackupWindow", ""),
        storage_encrypted=bool(cluster.get("StorageEncrypted")),
        deletion_protection=bool(cluster.get("DeletionProtection")),
        iam_database_authentication_enabled=bool(cluster.get("IAMDatabaseAuthenticationEnabled")),
        db_cluster_parameter_group=cluster.get("DBClusterParameterGroup"),
        availability_zones=list(cluster.get("AvailabilityZones") or []),
        earliest_restorable_time=cluster.get("EarliestRestorableTime"),
        latest_restorable_time=cluster.get("LatestRestorableTime"),
        cluster_create_time=cluster.get("ClusterCreateTime"),
        master_user_secret_arn=secret.get("SecretArn"),
        tags=tag_dict(cluster.get("TagList")),
        serverless_v2_scaling_configuration=_serverless(cluster.get("ServerlessV2ScalingConfiguration")),
    )


def _serverless(config: Mapping[str, Any] | None) -> ServerlessScalingConfiguration | None:
    if not config or "MaxCapacity" not in config:
        return None
    return ServerlessScalingConfiguration(float(config.get("MinCapacity", 0.5)), float(config["MaxCapacity"]))


def to_instance(instance: Mapping[str, Any], cluster: Mapping[str, Any] | None) -> Instance:
    member: Mapping[str, Any] = next(
        (
            m
            for m in (cluster or {}).get("DBClusterMembers") or []
            if m["DBInstanceIdentifier"] == instance["DBInstanceIdentifier"]
        ),
        {},
    )
    endpoint = instance.get("Endpoint") or {}
    return Instance(
        db_instance_identifier=instance["DBInstanceIdentifier"],
        db_cluster_identifier=instance.get("DBClusterIdentifier", ""),
        status=instance.get("DBInstanceStatus", "unknown"),
        db_instance_class=instance.get("DBInstanceClass", ""),
        is_cluster_writer=bool(member.get("IsClusterWriter")),
        endpoint_address=endpoint.get("Address", ""),
        endpoint_port=int(endpoint.get("Port", 0) or 0),
        availability_zone=instance.get("AvailabilityZone"),
        promotion_tier=int(instance.get("PromotionTier", member.get("PromotionTier", 1))),
        engine_version=instance.get("EngineVersion", ""),
        db_cluster_parameter_group_status=member.get("DBClusterParameterGroupStatus", "in-sync"),
    )


def to_snapshot(snapshot: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        db_cluster_snapshot_identifier=snapshot["DBClusterSnapshotIdentifier"],
        db_cluster_identifier=snapshot.get("DBClusterIdentifier", ""),
        status=snapshot.get("Status", "unknown"),
        snapshot_type=snapshot.get("SnapshotType", "manual"),
        engine_version=snapshot.get("EngineVersion", ""),
        snapshot_create_time=snapshot.get("SnapshotCreateTime"),
        allocated_storage=int(snapshot.get("AllocatedStorage", 0)),
        storage_encrypted=bool(snapshot.get("StorageEncrypted")),
        tags=tag_dict(snapshot.get("TagList")),
    )


def to_alarm_state(alarm: Mapping[str, Any]) -> AlarmState:
    dims = alarm.get("Dimensions") or []
    return AlarmState(
        alarm_name=alarm["AlarmName"],
        metric_name=alarm.get("MetricName", ""),
        threshold=float(alarm.get("Threshold", 0.0)),
        comparison_operator=alarm.get("ComparisonOperator", ""),
        state_value=alarm.get("StateValue", "INSUFFICIENT_DATA"),
        state_reason=alarm.get("StateReason", ""),
        dimension=",".join(f"{d['Name']}={d['Value']}" for d in dims),
    )
