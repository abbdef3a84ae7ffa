"""Decisions of the ``aws`` backend as plain functions: no boto3 here, so each is unit-testable without AWS.

The backend (:mod:`aurora_kit.backends.aws.backend`) only translates: it reads RDS state, asks a function in
this module what to do, and makes (or, in a dry run, records) the calls. Inputs are RDS response dicts
(``DescribeDBClusters → DBClusters[]`` etc.) exactly as boto3 returns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aurora_kit import rules
from aurora_kit.backends.aws.parameter_catalogue import (  # re-exported: callers ask decisions
    DEFAULT_PRELOAD as DEFAULT_PRELOAD,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    DYNAMIC_PARAMETERS as DYNAMIC_PARAMETERS,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    ENGINE as ENGINE,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    NOT_PRELOAD as NOT_PRELOAD,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    STATIC_PARAMETERS as STATIC_PARAMETERS,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    ApplyMethodRequest as ApplyMethodRequest,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    PlannedParameter as PlannedParameter,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    apply_type_of as apply_type_of,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    batches as batches,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    check_allowed_value as check_allowed_value,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    choose_apply_method as choose_apply_method,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    default_parameter_group_name as default_parameter_group_name,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    merge_preload_libraries as merge_preload_libraries,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    parameter_group_family as parameter_group_family,
)
from aurora_kit.backends.aws.parameter_catalogue import (
    plan_parameter_changes as plan_parameter_changes,
)
from aurora_kit.errors import (
    ClusterAlreadyExistsError,
    FailoverNotPossibleError,
    InvalidParameterError,
)
from aurora_kit.specs import ClusterSpec, InstanceSpec


# -- create / drift ---------------------------------------------------------------------------------------
def create_cluster_params(spec: ClusterSpec, parameter_group: str) -> dict[str, Any]:
    """CreateDBCluster parameters with secure defaults. Never a plain-text password: Secrets Manager owns it."""
    params: dict[str, Any] = {
        "DBClusterIdentifier": spec.cluster_id,
        "Engine": ENGINE,
        "EngineVersion": spec.engine_version,
        "MasterUsername": spec.master_username,
        "ManageMasterUserPassword": True,
        "DatabaseName": spec.database_name,
        "StorageEncrypted": spec.storage_encrypted,
        "DeletionProtection": spec.deletion_protection,
        "EnableIAMDatabaseAuthentication": spec.iam_database_authentication,
        "BackupRetentionPeriod": spec.backup_retention_period,  # validated by ClusterSpec (1-35)
        "PreferredBackupWindow": spec.preferred_backup_window,
        "CopyTagsToSnapshot": spec.copy_tags_to_snapshot,
        "EnableCloudwatchLogsExports": list(spec.cloudwatch_logs_exports),
        "DBClusterParameterGroupName": parameter_group,
        "Tags": tag_list(spec.tags),
    }
    if spec.kms_key_id:
        params["KmsKeyId"] = spec.kms_key_id
    if spec.port is not None:
        params["Port"] = spec.port
    if spec.preferred_maintenance_window:
        params["PreferredMaintenanceWindow"] = spec.preferred_maintenance_window
    if spec.db_subnet_group_name:
        params["DBSubnetGroupName"] = spec.db_subnet_group_name
    if spec.vpc_security_group_ids:
        params["VpcSecurityGroupIds"] = list(spec.vpc_security_group_ids)
    if spec.serverless_v2_scaling is not None:
        params["ServerlessV2ScalingConfiguration"] = {
            "MinCapacity": spec.serverless_v2_scaling.min_capacity,
            "MaxCapacity": spec.serverless_v2_scaling.max_capacity,
        }
    return params


def create_instance_params(
    cluster_id: str, spec: InstanceSpec, tags: Mapping[str, str] | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "DBInstanceIdentifier": spec.instance_id,
        "DBClusterIdentifier": cluster_id,
        "DBInstanceClass": spec.instance_class,
        "Engine": ENGINE,
        "PromotionTier": spec.promotion_tier,
        "PubliclyAccessible": False,  # explicit: the default depends on the subnet group (public subnets: True)
        "Tags": tag_list(tags or {}),
    }
    if spec.availability_zone:
        params["AvailabilityZone"] = spec.availability_zone
    return params


def orderable_problems(
    instances: Sequence[InstanceSpec],
    engine_version: str,
    region: str,
    options: Mapping[str, Sequence[Mapping[str, Any]]],
) -> InvalidParameterError | None:
    """The first instance whose class cannot be ordered for ``engine_version`` here, or whose zone does not offer
    it, as the error to raise before anything is created. ``options`` holds DescribeOrderableDBInstanceOptions'
    rows by instance class (a typo that passes the class pattern, ``db.r6g.lrage``, is caught by the pattern;
    a real class this engine version or Region does not offer is caught here)."""
    for n, inst in enumerate(instances):
        rows = options.get(inst.instance_class) or []
        field = "instance_class" if n == 0 else f"instances[{inst.instance_id}].instance_class"
        if not rows:
            return InvalidParameterError(
                field,
                inst.instance_class,
                f"not orderable for {ENGINE} {engine_version} in {region} (DescribeOrderableDBInstanceOptions)",
            )
        zones = {z.get("Name") for r in rows for z in r.get("AvailabilityZones") or []}
        if inst.availability_zone and zones and inst.availability_zone not in zones:
            return InvalidParameterError(
                "availability_zones",
                inst.availability_zone,
                f"{inst.instance_class} is not offered there (zones: {', '.join(sorted(z for z in zones if z))})",
            )
    return None


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_dict(tag_list_: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in tag_list_ or []}


@dataclass(frozen=True)
class Drift:
    """One field where the existing cluster differs from the spec."""

    field: str
    wanted: Any
    actual: Any

    def __str__(self) -> str:
        return f"{self.field}: wanted {self.wanted!r}, actual {self.actual!r}"


class ClusterDriftError(ClusterAlreadyExistsError):
    """The cluster id is taken by a cluster that differs from the spec; ``drift`` lists each difference.

    Nothing was created or changed."""

    hint = "reconcile the spec with the existing cluster (modify_cluster / create_instance), or pick another id"

    def __init__(self, cluster_id: str, drift: Sequence[Drift]) -> None:
        super().__init__(cluster_id)
        self.drift = list(drift)
        self.message = f"DB cluster {cluster_id!r} already exists and differs from the spec: " + "; ".join(
            str(d) for d in self.drift
        )
        self.context["drift"] = [{"field": d.field, "wanted": d.wanted, "actual": d.actual} for d in self.drift]
        self.args = (self._render(),)


def _version_matches(wanted: str, actual: str) -> bool:
    return actual == wanted or actual.startswith(wanted + ".")


def cluster_drift(
    spec: ClusterSpec,
    cluster: Mapping[str, Any],
    instances: Mapping[str, Mapping[str, Any]],
    parameter_group: str,
) -> list[Drift]:
    """Compare an existing cluster (DescribeDBClusters entry + DescribeDBInstances by id) with ``spec``.

    Fields the spec leaves open (subnet group, security groups, port, KMS key... when unset) are not compared;
    which instance is the writer is not compared either (a failover legitimately moves it)."""
    out: list[Drift] = []

    def cmp(name: str, wanted: Any, actual: Any) -> None:
        if wanted != actual:
            out.append(Drift(name, wanted, actual))

    cmp("engine", ENGINE, cluster.get("Engine"))
    actual_version = str(cluster.get("EngineVersion", ""))
    if not _version_matches(spec.engine_version, actual_version):
        out.append(Drift("engine_version", spec.engine_version, actual_version))
    cmp("master_username", spec.master_username, cluster.get("MasterUsername"))
    cmp("database_name", spec.database_name, cluster.get("DatabaseName"))
    if spec.port is not None:
        cmp("port", spec.port, cluster.get("Port"))
    cmp("backup_retention_period", spec.backup_retention_period, cluster.get("BackupRetentionPeriod"))
    cmp("preferred_backup_window", spec.preferred_backup_window, cluster.get("PreferredBackupWindow"))
    if spec.preferred_maintenance_window:
        cmp(
            "preferred_maintenance_window", spec.preferred_maintenance_window, cluster.get("PreferredMaintenanceWindow")
        )
    cmp("storage_encrypted", spec.storage_encrypted, cluster.get("StorageEncrypted", False))
    if spec.kms_key_id:
        actual_kms = str(cluster.get("KmsKeyId") or "")
        if not (actual_kms == spec.kms_key_id or actual_kms.endswith("/" + spec.kms_key_id)):
            out.append(Drift("kms_key_id", spec.kms_key_id, actual_kms or None))
    cmp("deletion_protection", spec.deletion_protection, cluster.get("DeletionProtection", False))
    cmp(
        "iam_database_authentication",
        spec.iam_database_authentication,
        cluster.get("IAMDatabaseAuthenticationEnabled", False),
    )
    cmp("copy_tags_to_snapshot", spec.copy_tags_to_snapshot, cluster.get("CopyTagsToSnapshot", False))
    cmp(
        "cloudwatch_logs_exports",
        sorted(spec.cloudwatch_logs_exports),
        sorted(cluster.get("EnabledCloudwatchLogsExports") or []),
    )
    cmp("managed_master_user_password", True, bool(cluster.get("MasterUserSecret")))
    if spec.db_subnet_group_name:
        cmp("db_subnet_group_name", spec.db_subnet_group_name, cluster.get("DBSubnetGroup"))
    if spec.vpc_security_group_ids:
        actual_sgs = sorted(g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups") or [])
        cmp("vpc_security_group_ids", sorted(spec.vpc_security_group_ids), actual_sgs)
    cmp("db_cluster_parameter_group_name", parameter_group, cluster.get("DBClusterParameterGroup"))
    actual_scaling = cluster.get("ServerlessV2ScalingConfiguration")
    if spec.serverless_v2_scaling is not None:
        wanted_scaling = (spec.serverless_v2_scaling.min_capacity, spec.serverless_v2_scaling.max_capacity)
        got = (actual_scaling or {}).get("MinCapacity"), (actual_scaling or {}).get("MaxCapacity")
        cmp("serverless_v2_scaling", wanted_scaling, got if actual_scaling else None)
    actual_tags = tag_dict(cluster.get("TagList"))
    missing_tags = {k: v for k, v in spec.tags.items() if actual_tags.get(k) != v}
    if missing_tags:
        out.append(Drift("tags", missing_tags, {k: actual_tags.get(k) for k in missing_tags}))

    members = [m["DBInstanceIdentifier"].lower() for m in cluster.get("DBClusterMembers") or []]
    wanted_ids = [i.instance_id.lower() for i in spec.instances]
    if sorted(members) != sorted(wanted_ids):
        out.append(Drift("instances", sorted(wanted_ids), sorted(members)))
    by_id = {k.lower(): v for k, v in instances.items()}
    for inst in spec.instances:
        actual = by_id.get(inst.instance_id.lower())
        if actual is None:
            continue
        prefix = f"instances[{inst.instance_id}]"
        cmp(f"{prefix}.instance_class", inst.instance_class, actual.get("DBInstanceClass"))
        cmp(f"{prefix}.promotion_tier", inst.promotion_tier, actual.get("PromotionTier"))
        if inst.availability_zone:
            cmp(f"{prefix}.availability_zone", inst.availability_zone, actual.get("AvailabilityZone"))
    return out


def resume_create(
    spec: ClusterSpec,
    cluster: Mapping[str, Any],
    instances: Mapping[str, Mapping[str, Any]],
    parameter_group: str,
) -> tuple[list[Drift], list[InstanceSpec]]:
    """Re-running create over an existing cluster: ``(drift, missing instances)``.

    When an earlier create was interrupted (cluster created, some CreateDBInstance not sent yet), the existing
    instances are a subset of the spec's and nothing else differs: the missing instances are returned (in spec
    order, so the first one created becomes the writer if there is none yet) and the ``instances`` drift is
    dropped. Any other difference, or an instance the spec does not list, stays drift."""
    drift = cluster_drift(spec, cluster, instances, parameter_group)
    present = {m["DBInstanceIdentifier"].lower() for m in cluster.get("DBClusterMembers") or []}
    present |= {i.lower() for i in instances}
    wanted = {i.instance_id.lower() for i in spec.instances}
    missing = [i for i in spec.instances if i.instance_id.lower() not in present]
    others = [x for x in drift if x.field != "instances"]
    if not missing or present - wanted or others:
        return drift, []
    return [], missing


# -- modify / delete / restore ------------------------------------------------------------------------------
def modify_cluster_params(
    cluster: Mapping[str, Any],
    *,
    deletion_protection: bool | None = None,
    backup_retention_period: int | None = None,
    preferred_backup_window: str | None = None,
) -> dict[str, Any]:
    """ModifyDBCluster parameters for the fields that actually change (empty dict: nothing to do)."""
    params: dict[str, Any] = {}
    if deletion_protection is not None and bool(cluster.get("DeletionProtection")) != deletion_protection:
        params["DeletionProtection"] = deletion_protection
    if backup_retention_period is not None:
        rules.check_retention(backup_retention_period)
        if cluster.get("BackupRetentionPeriod") != backup_retention_period:
            params["BackupRetentionPeriod"] = backup_retention_period
    if preferred_backup_window is not None:
        rules.check_backup_window(preferred_backup_window)
        if cluster.get("PreferredBackupWindow") != preferred_backup_window:
            params["PreferredBackupWindow"] = preferred_backup_window
    if params:
        params = {"DBClusterIdentifier": cluster["DBClusterIdentifier"], **params, "ApplyImmediately": True}
    return params


def restore_settings(
    source: Mapping[str, Any] | None,
    *,
    parameter_group: str | None = None,
    subnet_group: str | None = None,
    security_group_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Settings passed EXPLICITLY to a restore (otherwise the new cluster gets the default parameter group and
    security group, no log exports, IAM auth off...): explicit arguments win, then the source cluster's values."""
    src = source or {}
    params: dict[str, Any] = {}
    pg = parameter_group or src.get("DBClusterParameterGroup")
    if pg:
        params["DBClusterParameterGroupName"] = pg
    subnet = subnet_group or src.get("DBSubnetGroup")
    if subnet:
        params["DBSubnetGroupName"] = subnet
    sgs = (
        list(security_group_ids)
        if security_group_ids
        else [g["VpcSecurityGroupId"] for g in src.get("VpcSecurityGroups") or []]
    )
    if sgs:
        params["VpcSecurityGroupIds"] = sgs
    if source is not None:
        params["EnableIAMDatabaseAuthentication"] = bool(src.get("IAMDatabaseAuthenticationEnabled"))
        params["DeletionProtection"] = bool(src.get("DeletionProtection"))
        params["CopyTagsToSnapshot"] = bool(src.get("CopyTagsToSnapshot"))
        if src.get("EnabledCloudwatchLogsExports"):
            params["EnableCloudwatchLogsExports"] = list(src["EnabledCloudwatchLogsExports"])
        scaling = src.get("ServerlessV2ScalingConfiguration")
        if scaling and scaling.get("MaxCapacity"):
            params["ServerlessV2ScalingConfiguration"] = {
                "MinCapacity": scaling["MinCapacity"],
                "MaxCapacity": scaling["MaxCapacity"],
            }
    else:
        params["EnableIAMDatabaseAuthentication"] = True
        params["DeletionProtection"] = True
        params["CopyTagsToSnapshot"] = True
        params["EnableCloudwatchLogsExports"] = ["postgresql"]
    return params


def restore_backup_changes(source: Mapping[str, Any] | None, restored: Mapping[str, Any]) -> dict[str, Any]:
    """ModifyDBCluster parameters that give a restored cluster its source's backup retention and window, where they
    differ. A restore keeps the snapshot's settings by default; passing them to RestoreDBCluster* needs botocore
    >= 1.42.47 (pyproject allows 1.34), so they are set afterwards, and only when they differ."""
    changes: dict[str, Any] = {}
    for key in ("BackupRetentionPeriod", "PreferredBackupWindow"):
        wanted = (source or {}).get(key)
        if wanted and restored.get(key) != wanted:
            changes[key] = wanted
    return changes


# -- failover -------------------------------------------------------------------------------------------------
def choose_failover_target(
    cluster: Mapping[str, Any],
    instances: Mapping[str, Mapping[str, Any]],
    target: str | None = None,
) -> tuple[str, str]:
    """(old writer, target) by :func:`aurora_kit.rules.failover_target` from a DescribeDBClusters entry and its
    DescribeDBInstances rows by id; FailoverNotPossibleError unless the cluster is ``available``."""
    cluster_id = str(cluster.get("DBClusterIdentifier", "?"))
    if cluster.get("Status") != "available":
        raise FailoverNotPossibleError(
            f"cannot fail over cluster {cluster_id!r}: cluster status is {cluster.get('Status')!r}, not 'available'",
            cluster_id=cluster_id,
            target_instance_id=target,
        )
    by_id = {k.lower(): v for k, v in instances.items()}
    members = []
    for m in cluster.get("DBClusterMembers") or []:
        row = by_id.get(m["DBInstanceIdentifier"].lower()) or {}
        members.append(
            rules.FailoverCandidate(
                instance_id=m["DBInstanceIdentifier"].lower(),
                is_writer=bool(m.get("IsClusterWriter")),
                available=row.get("DBInstanceStatus") == "available",
                promotion_tier=int(m.get("PromotionTier", row.get("PromotionTier", 1))),
                instance_class=str(row.get("DBInstanceClass", "")),
            )
        )
    return rules.failover_target(cluster_id, members, target)


#: DescribeEvents messages of a failover that failed (Aurora User Guide, DB cluster events RDS-EVENT-0069, -0070)
FAILOVER_FAILED = ("Cluster failover failed", "Promoting previous primary again")


def failover_done(cluster: Mapping[str, Any] | None, statuses: Mapping[str, str], target: str) -> bool:
    """The target is the writer, it and the cluster are ``available``."""
    if cluster is None or cluster.get("Status") != "available" or statuses.get(target) != "available":
        return False
    members = cluster.get("DBClusterMembers") or []
    return any(m["DBInstanceIdentifier"].lower() == target and m.get("IsClusterWriter") for m in members)


def failover_failure(events: Sequence[Mapping[str, Any]], started: datetime) -> str | None:
    """Why the failover started at ``started`` has failed — the messages of failure events dated from then on (an
    earlier attempt's do not count) — or None while it may still complete. The members' own terminal statuses
    (``failed``, ``incompatible-...``) stop the wait too (api._state_terminal)."""
    failed = [
        str(e.get("Message"))
        for e in events
        if str(e.get("Message", "")).startswith(FAILOVER_FAILED) and _aware(e.get("Date")) >= started
    ]
    return " / ".join(failed) if failed else None


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return datetime.min.replace(tzinfo=timezone.utc)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
