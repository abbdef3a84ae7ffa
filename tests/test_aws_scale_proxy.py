"""The aws backend's scaling and proxy operations (08-scale, 09-proxy): against moto in-process (its gaps filled by
:mod:`aurora_kit.emulator.gaps_capacity`), and with botocore's Stubber where only the real response shapes show
the behaviour (an instance ``modifying`` before the new class is in place; proxy targets ``REGISTERING`` before
``AVAILABLE``; the alarms Application Auto Scaling creates, with their state from CloudWatch).

Calls are counted with the same botocore hook as tests/test_aws_backend.py: "no mutating call" means none left
boto3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from test_aws_backend import FAST, REGION, CallLog, make_spec

from aurora_kit.backends.aws import AwsBackend
from aurora_kit.backends.aws import scale_decisions as sd
from aurora_kit.errors import InvalidParameterError, ProxyNotFoundError, UnsupportedOperationError
from aurora_kit.specs import ProxySpec, ReaderScalingPolicy

SERVICES = ("rds", "secretsmanager", "cloudwatch", "application-autoscaling", "iam")
POLICY = ReaderScalingPolicy(
    policy_name="readers", metric="RDSReaderAverageDatabaseConnections", target_value=100, min_capacity=1,
    max_capacity=4, scale_in_cooldown_s=600, scale_out_cooldown_s=120,
)  # fmt: skip
PROXY = ProxySpec(
    proxy_name="orders-proxy", read_only_endpoint="orders-proxy-ro", max_connections_percent=50,
    max_idle_connections_percent=10, idle_client_timeout_s=900,
)  # fmt: skip


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def backend(aws_credentials: None, calls: CallLog, moto_rds_gaps: None, boto_session: Any) -> Iterator[AwsBackend]:
    with mock_aws():
        clients = {svc: calls.hook(boto_session.client(svc)) for svc in SERVICES}
        yield AwsBackend(region=REGION, clients=clients, poll=FAST, ca_bundle="/etc/ssl/rds-global-bundle.pem")


@pytest.fixture
def cluster(backend: AwsBackend, calls: CallLog) -> str:
    backend.create_cluster(make_spec("orders", readers=1, deletion_protection=False))
    calls.clear()
    return "orders"


# -- instance class and Serverless v2 --------------------------------------------------------------------------
def test_modify_instance_applies_the_class_now_and_returns_it(
    backend: AwsBackend, cluster: str, calls: CallLog
) -> None:
    inst = backend.modify_instance(cluster, "orders-2", instance_class="db.r6g.xlarge")
    assert inst.db_instance_class == "db.r6g.xlarge"
    assert calls.params("ModifyDBInstance") == [
        {"DBInstanceIdentifier": "orders-2", "DBInstanceClass": "db.r6g.xlarge", "ApplyImmediately": True}
    ]
    calls.clear()
    backend.modify_instance(cluster, "orders-2", instance_class="db.r6g.xlarge")  # already so: no call
    assert calls.mutating == []


def test_db_serverless_is_refused_before_any_call_without_the_capacity_range(
    backend: AwsBackend, cluster: str, calls: CallLog
) -> None:
    with pytest.raises(InvalidParameterError, match="capacity range"):
        backend.modify_instance(cluster, "orders-2", instance_class="db.serverless")
    with pytest.raises(InvalidParameterError, match="steps of"):
        backend.set_serverless_scaling(cluster, 0.25, 4)
    assert calls.mutating == []
    scaled = backend.set_serverless_scaling(cluster, 0.5, 8)
    assert scaled.serverless_v2_scaling_configuration is not None
    assert (scaled.serverless_v2_scaling_configuration.min_capacity, scaled.serverless_v2_scaling_configuration
            .max_capacity) == (0.5, 8.0)  # fmt: skip
    assert calls.params("ModifyDBCluster")[0]["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5,
                                                                                     "MaxCapacity": 8.0}  # fmt: skip
    assert backend.modify_instance(cluster, "orders-2", instance_class="db.serverless").db_instance_class == (
        "db.serverless"
    )


def test_a_dry_run_plans_the_changes_and_makes_none(backend: AwsBackend, cluster: str, calls: CallLog) -> None:
    backend.dry_run = True
    assert backend.modify_instance(cluster, "orders-2", instance_class="db.r6g.xlarge").status == "dry-run"
    assert backend.set_serverless_scaling(cluster, 1, 4).status == "dry-run"
    assert backend.put_scaling_policy(cluster, POLICY).status == "dry-run"
    assert backend.create_proxy(cluster, PROXY).status == "dry-run"
    assert calls.mutating == []
    planned = [c.operation for c in backend.plan]
    assert planned[:4] == ["ModifyDBInstance", "ModifyDBCluster", "RegisterScalableTarget", "PutScalingPolicy"]
    assert {"CreateRole", "PutRolePolicy", "CreateDBProxy", "ModifyDBProxyTargetGroup", "RegisterDBProxyTargets",
            "CreateDBProxyEndpoint"} <= set(planned)  # fmt: skip


# -- Aurora Auto Scaling ---------------------------------------------------------------------------------------
def test_scaling_policy_registers_the_readers_and_tracks_the_target(
    backend: AwsBackend, cluster: str, calls: CallLog
) -> None:
    policy = backend.put_scaling_policy(cluster, POLICY)
    assert calls.params("RegisterScalableTarget") == [
        {"ServiceNamespace": "rds", "ResourceId": "cluster:orders", "ScalableDimension": "rds:cluster:ReadReplicaCount",
         "MinCapacity": 1, "MaxCapacity": 4}
    ]  # fmt: skip
    config = calls.params("PutScalingPolicy")[0]["TargetTrackingScalingPolicyConfiguration"]
    assert config == {
        "TargetValue": 100.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "RDSReaderAverageDatabaseConnections"},
        "ScaleInCooldown": 600,
        "ScaleOutCooldown": 120,
        "DisableScaleIn": False,
    }
    assert (policy.min_capacity, policy.max_capacity, policy.target_value) == (1, 4, 100.0)
    kinds = sorted(a.alarm_name.split("-")[2] for a in policy.alarms)  # TargetTracking-cluster:orders-AlarmHigh-…
    assert kinds == ["AlarmHigh", "AlarmLow"]
    assert {a.metric_name for a in policy.alarms} == {"DatabaseConnections"}
    assert sorted(a.threshold or 0 for a in policy.alarms) == [90.0, 100.0]
    backend.delete_scaling_policy(cluster, "readers")
    assert [op for op in calls.mutating if "Scal" in op][-2:] == ["DeleteScalingPolicy", "DeregisterScalableTarget"]
    assert backend.describe_scaling_policies(cluster) == []
    with pytest.raises(InvalidParameterError, match="no scaling policy"):
        backend.delete_scaling_policy(cluster, "readers")


def test_aws_evaluates_its_policies_itself(backend: AwsBackend, cluster: str) -> None:
    assert backend.traits.scaling_evaluated_on_demand is False
    with pytest.raises(UnsupportedOperationError):
        backend.evaluate_scaling_policy(cluster)


def test_policy_alarms_show_cloudwatch_state(aws_credentials: None) -> None:
    """Real shapes: DescribeScalingPolicies names the alarms, DescribeAlarms gives their state."""
    aas = boto3.client("application-autoscaling", region_name=REGION)
    cw = boto3.client("cloudwatch", region_name=REGION)
    high, low = "TargetTracking-cluster:orders-AlarmHigh-1f2e", "TargetTracking-cluster:orders-AlarmLow-3a4b"
    common = {"ServiceNamespace": "rds", "ScalableDimension": "rds:cluster:ReadReplicaCount"}
    with Stubber(aas) as a, Stubber(cw) as c:
        a.add_response("describe_scalable_targets", {"ScalableTargets": [
            {"ResourceId": "cluster:orders", "MinCapacity": 1, "MaxCapacity": 4, "RoleARN": "arn:aws:iam::1:role/x",
             "CreationTime": datetime(2026, 11, 1, tzinfo=timezone.utc), **common}]},
            {"ResourceIds": ["cluster:orders"], **common})  # fmt: skip
        a.add_response("describe_scaling_policies", {"ScalingPolicies": [
            {"PolicyARN": "arn:aws:autoscaling:us-east-1:1:scalingPolicy:x", "PolicyName": "readers",
             "ResourceId": "cluster:orders", "PolicyType": "TargetTrackingScaling",
             "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 40.0, "PredefinedMetricSpecification": {
                 "PredefinedMetricType": "RDSReaderAverageCPUUtilization"}},
             "Alarms": [{"AlarmName": high, "AlarmARN": "arn:aws:cloudwatch:x:1:alarm:h"},
                        {"AlarmName": low, "AlarmARN": "arn:aws:cloudwatch:x:1:alarm:l"}],
             "CreationTime": datetime(2026, 11, 1, tzinfo=timezone.utc), **common}]},
            {"ResourceId": "cluster:orders", **common})  # fmt: skip
        c.add_response("describe_alarms", {"MetricAlarms": [
            {"AlarmName": high, "StateValue": "ALARM", "MetricName": "CPUUtilization", "Threshold": 40.0,
             "ComparisonOperator": "GreaterThanThreshold", "EvaluationPeriods": 3},
            {"AlarmName": low, "StateValue": "OK", "MetricName": "CPUUtilization", "Threshold": 36.0,
             "ComparisonOperator": "LessThanThreshold", "EvaluationPeriods": 15}]},
            {"AlarmNames": [high, low]})  # fmt: skip
        backend = AwsBackend(region=REGION, clients={"application-autoscaling": aas, "cloudwatch": cw}, poll=FAST)
        (policy,) = backend.describe_scaling_policies("orders")
    assert policy.scale_in_cooldown == policy.scale_out_cooldown == 300  # AWS's defaults when not given
    assert [(a.state_value, a.threshold, a.evaluation_periods) for a in policy.alarms] == [
        ("ALARM", 40.0, 3),
        ("OK", 36.0, 15),
    ]


# -- RDS Proxy -------------------------------------------------------------------------------------------------
def test_create_proxy_with_its_own_role_targets_and_read_only_endpoint(
    backend: AwsBackend, cluster: str, calls: CallLog
) -> None:
    proxy = backend.create_proxy(cluster, PROXY)
    role = calls.params("CreateRole")[0]
    assert role["RoleName"] == "aurora-kit-proxy-orders-proxy"
    assert json.loads(role["AssumeRolePolicyDocument"])["Statement"][0]["Principal"] == {"Service": "rds.amazonaws.com"}
    secret_arn = backend.describe_cluster(cluster).master_user_secret_arn
    policy = json.loads(calls.params("PutRolePolicy")[0]["PolicyDocument"])
    read = policy["Statement"][0]
    assert (read["Action"], read["Resource"]) == ("secretsmanager:GetSecretValue", secret_arn)  # this secret only
    created = calls.params("CreateDBProxy")[0]
    assert created["EngineFamily"] == "POSTGRESQL"
    assert created["Auth"] == [{"AuthScheme": "SECRETS", "SecretArn": secret_arn, "IAMAuth": "DISABLED",
                                "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256"}]  # fmt: skip
    assert (created["RequireTLS"], created["IdleClientTimeout"]) == (True, 900)
    assert len(created["VpcSubnetIds"]) >= 2  # the cluster's (default) DB subnet group
    assert calls.params("ModifyDBProxyTargetGroup")[0]["ConnectionPoolConfig"] == {
        "MaxConnectionsPercent": 50, "MaxIdleConnectionsPercent": 10, "ConnectionBorrowTimeout": 120}  # fmt: skip
    assert calls.params("RegisterDBProxyTargets") == [
        {"DBProxyName": "orders-proxy", "TargetGroupName": "default", "DBClusterIdentifiers": ["orders"]}
    ]
    assert calls.params("CreateDBProxyEndpoint")[0]["TargetRole"] == "READ_ONLY"
    assert proxy.status == "available"
    assert proxy.targets_available
    assert {(t.rds_resource_id, t.role) for t in proxy.targets if t.type == "RDS_INSTANCE"} == {
        ("orders-1", "READ_WRITE"),
        ("orders-2", "READ_ONLY"),
    }
    assert [(e.db_proxy_endpoint_name, e.target_role) for e in proxy.endpoints] == [
        ("orders-proxy", "READ_WRITE"),
        ("orders-proxy-ro", "READ_ONLY"),
    ]
    info = backend.proxy_connection_info("orders-proxy", "orders-proxy-ro")
    assert "orders-proxy-ro.endpoint.proxy-" in info.conninfo
    assert "sslmode=verify-full" in info.conninfo
    assert "sslrootcert=system" in info.conninfo  # RDS Proxy's certificate is from ACM, not the RDS CA bundle
    assert info.password
    assert info.password not in info.conninfo

    calls.clear()
    assert backend.create_proxy(cluster, PROXY).db_proxy_name == "orders-proxy"  # the same proxy again: found
    assert [op for op in calls.mutating if op != "ModifyDBProxyTargetGroup"] == []
    with pytest.raises(InvalidParameterError, match="exists and differs"):
        backend.create_proxy(cluster, ProxySpec(proxy_name="orders-proxy", require_tls=False))

    backend.delete_proxy("orders-proxy")
    deleting = [op for op in calls.mutating if op.startswith("Delete")]
    assert deleting == ["DeleteDBProxyEndpoint", "DeleteDBProxy", "DeleteRolePolicy", "DeleteRole"]
    with pytest.raises(ProxyNotFoundError):
        backend.describe_proxy("orders-proxy")


def test_a_given_role_is_used_and_kept(backend: AwsBackend, cluster: str, calls: CallLog) -> None:
    given = "arn:aws:iam::123456789012:role/existing-proxy-role"
    backend.create_proxy(cluster, ProxySpec(proxy_name="p2", role_arn=given))
    assert calls.params("CreateDBProxy")[0]["RoleArn"] == given
    assert not calls.params("CreateRole")
    backend.delete_proxy("p2")
    assert not calls.params("DeleteRole")


def test_the_proxy_role_may_decrypt_a_customer_managed_secret_key_through_secrets_manager_only() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/0000"
    statements = json.loads(sd.proxy_secret_policy("arn:secret", key, "eu-west-1"))["Statement"]
    assert statements[1]["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}
    assert len(json.loads(sd.proxy_secret_policy("arn:secret", None, "eu-west-1"))["Statement"]) == 1


def test_the_proxy_wait_holds_until_every_instance_target_is_available(aws_credentials: None) -> None:
    """Real shapes: targets REGISTERING, then one UNAVAILABLE (PENDING_PROXY_CAPACITY), then all AVAILABLE."""
    rds = boto3.client("rds", region_name=REGION)

    def targets(*states: str) -> dict[str, Any]:
        rows = [{"RdsResourceId": "orders", "Type": "TRACKED_CLUSTER", "Endpoint": "orders.cluster-x", "Port": 5432}]
        rows += [
            {"RdsResourceId": f"orders-{n}", "Type": "RDS_INSTANCE", "Role": "READ_WRITE" if n == 1 else "READ_ONLY",
             "Endpoint": f"orders-{n}.x", "Port": 5432, "TargetHealth": {"State": s}
             | ({"Reason": "PENDING_PROXY_CAPACITY"} if s == "UNAVAILABLE" else {})}
            for n, s in enumerate(states, start=1)
        ]  # fmt: skip
        return {"Targets": rows}

    with Stubber(rds) as stub:
        for states in (("REGISTERING", "REGISTERING"), ("AVAILABLE", "UNAVAILABLE"), ("AVAILABLE", "AVAILABLE")):
            stub.add_response("describe_db_proxy_targets", targets(*states), {"DBProxyName": "orders-proxy"})
        backend = AwsBackend(region=REGION, clients={"rds": rds}, poll=FAST)
        backend._wait_targets("orders-proxy", None)
        stub.assert_no_pending_responses()
    assert sd.instance_targets_ready(targets("AVAILABLE")["Targets"])
    assert not sd.instance_targets_ready(targets()["Targets"])  # a tracked cluster alone is not ready


def test_modify_instance_waits_until_the_new_class_is_in_place(aws_credentials: None) -> None:
    """Real shapes: ModifyDBInstance answers with the change pending; describes show ``modifying`` first."""
    rds = boto3.client("rds", region_name=REGION)
    cluster = {"DBClusterIdentifier": "orders", "DBClusterMembers": [
        {"DBInstanceIdentifier": "orders-2", "IsClusterWriter": False}], "Status": "available"}  # fmt: skip

    def instance(cls: str, status: str, pending: str | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {"DBInstanceIdentifier": "orders-2", "DBClusterIdentifier": "orders",
                               "DBInstanceClass": cls, "DBInstanceStatus": status}  # fmt: skip
        if pending:
            row["PendingModifiedValues"] = {"DBInstanceClass": pending}
        return {"DBInstances": [row]}

    one = {"DBInstanceIdentifier": "orders-2"}
    with Stubber(rds) as stub:
        stub.add_response("describe_db_clusters", {"DBClusters": [cluster]}, {"DBClusterIdentifier": "orders"})
        stub.add_response("describe_db_instances", instance("db.r6g.large", "available"), one)
        stub.add_response(
            "modify_db_instance",
            {"DBInstance": instance("db.r6g.large", "available", "db.r6g.xlarge")["DBInstances"][0]},
            {**one, "DBInstanceClass": "db.r6g.xlarge", "ApplyImmediately": True},
        )
        stub.add_response("describe_db_instances", instance("db.r6g.large", "modifying", "db.r6g.xlarge"), one)
        stub.add_response("describe_db_instances", instance("db.r6g.xlarge", "modifying"), one)
        stub.add_response("describe_db_instances", instance("db.r6g.xlarge", "available"), one)
        stub.add_response("describe_db_clusters", {"DBClusters": [cluster]}, {"DBClusterIdentifier": "orders"})
        backend = AwsBackend(region=REGION, clients={"rds": rds}, poll=FAST)
        done = backend.modify_instance("orders", "orders-2", instance_class="db.r6g.xlarge")
        stub.assert_no_pending_responses()
    assert (done.db_instance_class, done.status) == ("db.r6g.xlarge", "available")
