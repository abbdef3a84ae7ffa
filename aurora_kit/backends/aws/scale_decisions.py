"""Pure decisions and translations of the scaling and proxy operations (08-scale, 09-proxy) on AWS: request
parameters, IAM documents, response → data class. No boto3 here (as :mod:`.decisions`, kept apart from it)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aurora_kit.backends.capacity import (
    SCALABLE_DIMENSION,
    SERVICE_NAMESPACE,
    Proxy,
    ProxyEndpoint,
    ProxyTarget,
    ScalingActivity,
    ScalingAlarm,
    ScalingPolicy,
    scaling_resource_id,
)
from aurora_kit.specs import ProxySpec, ReaderScalingPolicy

ENGINE_FAMILY = "POSTGRESQL"
PROXY_ROLE_TAG = "aurora-kit:proxy"
PROXY_POLICY_NAME = "read-cluster-secret"
DEFAULT_TARGET_GROUP = "default"


# -- Application Auto Scaling -----------------------------------------------------------------------------------
def scalable_target_params(cluster_id: str, policy: ReaderScalingPolicy) -> dict[str, Any]:
    return {
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": scaling_resource_id(cluster_id),
        "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": policy.min_capacity,
        "MaxCapacity": policy.max_capacity,
    }


def scaling_policy_params(cluster_id: str, policy: ReaderScalingPolicy) -> dict[str, Any]:
    """PutScalingPolicy: target tracking on a predefined reader metric, with its cooldowns."""
    return {
        "PolicyName": policy.policy_name,
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": scaling_resource_id(cluster_id),
        "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(policy.target_value),
            "PredefinedMetricSpecification": {"PredefinedMetricType": policy.metric},
            "ScaleInCooldown": policy.scale_in_cooldown_s,
            "ScaleOutCooldown": policy.scale_out_cooldown_s,
            "DisableScaleIn": policy.disable_scale_in,
        },
    }


def to_scaling_policy(
    row: Mapping[str, Any], target: Mapping[str, Any] | None, alarms: Mapping[str, Mapping[str, Any]]
) -> ScalingPolicy:
    """A DescribeScalingPolicies entry, its scalable target (capacity) and its alarms (DescribeAlarms by name)."""
    config = row.get("TargetTrackingScalingPolicyConfiguration") or {}
    metric = (config.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType", "custom")
    shown = []
    for alarm in row.get("Alarms") or []:
        name = str(alarm.get("AlarmName", ""))
        found = alarms.get(name) or {}
        shown.append(
            ScalingAlarm(
                name,
                str(found.get("StateValue", "INSUFFICIENT_DATA")),
                str(found.get("MetricName", "")),
                str(found.get("ComparisonOperator", "")),
                found.get("Threshold"),
                found.get("EvaluationPeriods"),
            )
        )
    return ScalingPolicy(
        policy_name=str(row["PolicyName"]),
        resource_id=str(row.get("ResourceId", "")),
        predefined_metric_type=str(metric),
        target_value=float(config.get("TargetValue", 0.0)),
        min_capacity=int((target or {}).get("MinCapacity", 0)),
        max_capacity=int((target or {}).get("MaxCapacity", 0)),
        scale_in_cooldown=int(config.get("ScaleInCooldown", 300)),
        scale_out_cooldown=int(config.get("ScaleOutCooldown", 300)),
        disable_scale_in=bool(config.get("DisableScaleIn", False)),
        alarms=shown,
        policy_arn=str(row.get("PolicyARN", "")),
    )


def to_scaling_activity(row: Mapping[str, Any]) -> ScalingActivity:
    start = row.get("StartTime")
    return ScalingActivity(
        activity_id=str(row.get("ActivityId", "")),
        description=str(row.get("Description", "")),
        cause=str(row.get("Cause", "")),
        status_code=str(row.get("StatusCode", "")),
        start_time=start if isinstance(start, datetime) else datetime.fromisoformat(str(start)),
        end_time=row.get("EndTime"),
        status_message=str(row.get("StatusMessage", "")),
    )


# -- RDS Proxy ----------------------------------------------------------------------------------------------------
#: the name of the role created for a proxy starts so; ``aurora-kit iam-policy`` scopes the role's IAM actions to it
#: (aurora_kit.iam.PROXY_ROLE_PREFIX, the same: tests/test_iam_policy.py)
PROXY_ROLE_PREFIX = "aurora-kit-proxy-"


def proxy_role_name(proxy_name: str) -> str:
    """The role created for a proxy when none is given (IAM role names: 64 characters at most)."""
    return f"{PROXY_ROLE_PREFIX}{proxy_name}"[:64]


def proxy_trust_policy() -> str:
    """RDS Proxy assumes the role (service principal ``rds.amazonaws.com``)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "rds.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def proxy_secret_policy(secret_arn: str, kms_key_id: str | None, region: str) -> str:
    """What the proxy's role may do: read the cluster's managed secret, and decrypt it through Secrets Manager when
    it is encrypted with a customer managed key (the account's ``aws/secretsmanager`` key needs no grant)."""
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadClusterSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": secret_arn},
    ]  # fmt: skip
    if kms_key_id and ":alias/aws/" not in kms_key_id:
        statements.append(
            {
                "Sid": "DecryptClusterSecret",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": kms_key_id,
                "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def create_proxy_params(
    spec: ProxySpec,
    *,
    secret_arn: str,
    role_arn: str,
    subnets: Sequence[str],
    security_groups: Sequence[str],
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """CreateDBProxy: POSTGRESQL, the cluster's secret (SCRAM between clients and the proxy), TLS, idle timeout."""
    params: dict[str, Any] = {
        "DBProxyName": spec.proxy_name,
        "EngineFamily": ENGINE_FAMILY,
        "Auth": [
            {
                "AuthScheme": "SECRETS",
                "SecretArn": secret_arn,
                "IAMAuth": "REQUIRED" if spec.iam_auth else "DISABLED",
                "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
            }
        ],
        "RoleArn": role_arn,
        "VpcSubnetIds": list(subnets),
        "RequireTLS": spec.require_tls,
        "IdleClientTimeout": spec.idle_client_timeout_s,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    if security_groups:
        params["VpcSecurityGroupIds"] = list(security_groups)
    return params


def target_group_params(spec: ProxySpec) -> dict[str, Any]:
    return {
        "DBProxyName": spec.proxy_name,
        "TargetGroupName": DEFAULT_TARGET_GROUP,
        "ConnectionPoolConfig": {
            "MaxConnectionsPercent": spec.max_connections_percent,
            "MaxIdleConnectionsPercent": spec.max_idle_connections_percent,
            "ConnectionBorrowTimeout": spec.connection_borrow_timeout_s,
        },
    }


def proxy_drift(spec: ProxySpec, row: Mapping[str, Any]) -> list[str]:
    """How an existing proxy of that name differs from ``spec`` (empty: the same proxy)."""
    out = []
    if row.get("EngineFamily") != ENGINE_FAMILY:
        out.append(f"EngineFamily: wanted {ENGINE_FAMILY} vs actual {row.get('EngineFamily')}")
    if bool(row.get("RequireTLS")) != spec.require_tls:
        out.append(f"RequireTLS: wanted {spec.require_tls} vs actual {row.get('RequireTLS')}")
    if int(row.get("IdleClientTimeout") or 0) != spec.idle_client_timeout_s:
        out.append(f"IdleClientTimeout: wanted {spec.idle_client_timeout_s} vs actual {row.get('IdleClientTimeout')}")
    return out


def to_proxy(
    row: Mapping[str, Any],
    targets: Sequence[Mapping[str, Any]],
    endpoints: Sequence[Mapping[str, Any]],
    group: Mapping[str, Any] | None,
) -> Proxy:
    """DescribeDBProxies + DescribeDBProxyTargets + DescribeDBProxyEndpoints + the default target group."""
    pool = (group or {}).get("ConnectionPoolConfig") or {}
    cluster_id = next((str(t.get("RdsResourceId")) for t in targets if t.get("Type") == "TRACKED_CLUSTER"), "")
    auth = (row.get("Auth") or [{}])[0]
    shown_targets = [
        ProxyTarget(
            str(t.get("RdsResourceId", "")),
            str(t.get("Type", "")),
            str(t.get("Role", "UNKNOWN")),
            str(t.get("Endpoint", "")),
            int(t.get("Port") or 0),
            str((t.get("TargetHealth") or {}).get("State", "REGISTERING")),
            str((t.get("TargetHealth") or {}).get("Reason", "")),
        )
        for t in targets
    ]
    shown_endpoints = [
        ProxyEndpoint(
            str(row["DBProxyName"]), str(row.get("Endpoint", "")), "READ_WRITE", str(row.get("Status", "")), True
        )
    ]
    shown_endpoints += [
        ProxyEndpoint(
            str(e.get("DBProxyEndpointName", "")),
            str(e.get("Endpoint", "")),
            str(e.get("TargetRole", "")),
            str(e.get("Status", "")),
            bool(e.get("IsDefault")),
        )
        for e in endpoints
        if not e.get("IsDefault")
    ]
    return Proxy(
        db_proxy_name=str(row["DBProxyName"]),
        db_cluster_identifier=cluster_id,
        status=str(row.get("Status", "")),
        engine_family=str(row.get("EngineFamily", "")),
        endpoint=str(row.get("Endpoint", "")),
        port=5432,
        require_tls=bool(row.get("RequireTLS")),
        idle_client_timeout=int(row.get("IdleClientTimeout") or 0),
        role_arn=str(row.get("RoleArn", "")),
        max_connections_percent=int(pool.get("MaxConnectionsPercent") or 100),
        max_idle_connections_percent=int(pool.get("MaxIdleConnectionsPercent") or 50),
        connection_borrow_timeout=int(pool.get("ConnectionBorrowTimeout") or 120),
        targets=shown_targets,
        endpoints=shown_endpoints,
        auth_secret_arn=str(auth.get("SecretArn", "")),
        iam_auth=str(auth.get("IAMAuth", "DISABLED")),
    )


def instance_targets_ready(targets: Sequence[Mapping[str, Any]]) -> bool:
    """Every instance target of the proxy is AVAILABLE (the tracked cluster entry has no health of its own)."""
    instances = [t for t in targets if t.get("Type") != "TRACKED_CLUSTER"]
    return bool(instances) and all((t.get("TargetHealth") or {}).get("State") == "AVAILABLE" for t in instances)
