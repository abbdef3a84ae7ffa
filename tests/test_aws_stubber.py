"""aws backend paths moto cannot exercise, checked with botocore's Stubber and RDS response shapes.

The Stubber validates every response against boto3's RDS service model and every request against the expected
parameters and order, so these tests pin the exact call sequence. They are verified ONLY against these shapes,
not against a live Aurora cluster:

- parameter changes settling: first DescribeDBClusterParameters must show every new ParameterValue, then every
  member must reach ``pending-reboot`` (a reboot-applied change) or stop ``applying`` (dynamic only: a member left
  pending-reboot earlier stays so); a first poll still ``in-sync`` right after a static change does not end the
  wait (moto always says in-sync);
- parameter validation against the catalogue's ApplyType / AllowedValues / IsModifiable and the engine default
  of shared_preload_libraries (moto: DescribeEngineDefaultClusterParameters not implemented, DescribeDBCluster-
  Parameters returns only user-set values without ApplyType);
- a DescribeEngineDefaultClusterParameters failure (InternalFailure, HTTP 500) raised typed and not cached;
- reboot_pending ordering and its wait for ``available`` + ``in-sync`` (moto: RebootDBInstance is a no-op);
- reboot_instance waiting through ``rebooting``, and not ending on a stale ``available`` before the reboot shows
  (the "seen down" seed is RebootDBInstance's answer ``DBInstanceStatus: rebooting``);
- terminal states stopping a wait at once with InvalidStateError naming resource and state: cluster
  ``inaccessible-encryption-credentials`` (start), instance ``incompatible-network`` (create_instance),
  ``incompatible-parameters`` (reboot), ``failed`` (failover target), snapshot ``failed``, cluster
  ``incompatible-restore`` (PITR);
- restore from a snapshot of a ManageMasterUserPassword cluster (moto raises KeyError) with every setting
  passed explicitly; a restore answering without MasterUserSecret gets ModifyDBCluster(ManageMasterUserPassword)
  then the secret wait, also with ``wait=False``; a dry-run restore plans that ModifyDBCluster;
- create_cluster not returning while an instance is still ``creating`` although the cluster is ``available``
  (moto makes everything available at once);
- failover done only when the target is writer (moto switches instantly);
- wait timeouts naming what was awaited and the last state;
- AWS error codes moto does not produce (InvalidParameterValue for retention 0/36, InvalidRestoreFault...)
  mapped to typed errors with the code kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from aurora_kit.backends.aws import AwsBackend, PollSettings
from aurora_kit.errors import (
    BackendOperationError,
    ClusterAlreadyExistsError,
    FailoverFailedError,
    InvalidParameterError,
    InvalidStateError,
    RestoreWindowError,
    WaitTimeoutError,
)
from aurora_kit.specs import ClusterSpec, InstanceSpec

REGION = "us-east-1"
FAST = PollSettings(initial_delay=0.001, max_delay=0.002, backoff=1.0, timeout=5, short_timeout=5)
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=timezone.utc)
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-0a1b2c3d-4e5f-AbCdEf"


@pytest.fixture
def rds(aws_credentials: None) -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("rds", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def backend(rds: tuple[Any, Stubber]) -> AwsBackend:
    return AwsBackend(region=REGION, clients={"rds": rds[0]}, poll=FAST)


def member(instance_id: str, writer: bool, status: str = "in-sync", tier: int = 1) -> dict[str, Any]:
    return {
        "DBInstanceIdentifier": instance_id,
        "IsClusterWriter": writer,
        "DBClusterParameterGroupStatus": status,
        "PromotionTier": tier,
    }


def db_cluster(cluster_id: str = "orders", status: str = "available", members: Any = None, **over: Any) -> dict:
    cluster = {
        "DBClusterIdentifier": cluster_id,
        "DBClusterArn": f"arn:aws:rds:us-east-1:123456789012:cluster:{cluster_id}",
        "Status": status,
        "Engine": "aurora-postgresql",
        "EngineVersion": "16.4",
        "EngineMode": "provisioned",
        "Endpoint": f"{cluster_id}.cluster-cdef1234abcd.us-east-1.rds.amazonaws.com",
        "ReaderEndpoint": f"{cluster_id}.cluster-ro-cdef1234abcd.us-east-1.rds.amazonaws.com",
        "Port": 5432,
        "MasterUsername": "postgres",
        "DatabaseName": "app",
        "AllocatedStorage": 1,
        "AvailabilityZones": ["us-east-1a", "us-east-1b", "us-east-1c"],
        "BackupRetentionPeriod": 7,
        "PreferredBackupWindow": "03:00-04:00",
        "PreferredMaintenanceWindow": "sun:05:00-sun:05:30",
        "DBClusterParameterGroup": f"{cluster_id}-cluster-params",
        "DBSubnetGroup": "private-db",
        "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-0123456789abcdef0", "Status": "active"}],
        "StorageEncrypted": True,
        "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "DeletionProtection": True,
        "IAMDatabaseAuthenticationEnabled": True,
        "CopyTagsToSnapshot": True,
        "EnabledCloudwatchLogsExports": ["postgresql"],
        "EarliestRestorableTime": NOW - timedelta(days=7),
        "LatestRestorableTime": NOW - timedelta(minutes=5),
        "ClusterCreateTime": NOW - timedelta(days=30),
        "MasterUserSecret": {"SecretArn": SECRET_ARN, "SecretStatus": "active", "KmsKeyId": "alias/aws/secretsmanager"},
        "DBClusterMembers": members if members is not None else [],
        "TagList": [],
    }
    cluster.update(over)
    return cluster


def clusters(*args: Any, **kw: Any) -> dict:
    return {"DBClusters": [db_cluster(*args, **kw)]}


def db_instance(instance_id: str, status: str = "available", cluster_id: str = "orders", tier: int = 1) -> dict:
    return {
        "DBInstanceIdentifier": instance_id,
        "DBInstanceClass": "db.r6g.large",
        "Engine": "aurora-postgresql",
        "EngineVersion": "16.4",
        "DBInstanceStatus": status,
        "DBClusterIdentifier": cluster_id,
        "Endpoint": {"Address": f"{instance_id}.cdef1234abcd.us-east-1.rds.amazonaws.com", "Port": 5432},
        "AvailabilityZone": "us-east-1a",
        "PromotionTier": tier,
        "StorageEncrypted": True,
    }


def instances(statuses: dict[str, str], cluster_id: str = "orders") -> dict:
    return {"DBInstances": [db_instance(i, s, cluster_id) for i, s in statuses.items()]}


FILTER = {"Filters": [{"Name": "db-cluster-id", "Values": ["orders"]}]}
ONE = {"DBClusterIdentifier": "orders"}


def parameter(name: str, value: str | None, apply_type: str, data_type: str, allowed: str, **over: Any) -> dict:
    p = {
        "ParameterName": name,
        "Description": name,
        "Source": "engine-default",
        "ApplyType": apply_type,
        "DataType": data_type,
        "AllowedValues": allowed,
        "IsModifiable": True,
        "ApplyMethod": "pending-reboot",
        "SupportedEngineModes": ["provisioned"],
    }
    if value is not None:
        p["ParameterValue"] = value
    p.update(over)
    return p


PRELOAD_ALLOWED = "auto_explain,orafce,pgaudit,pglogical,pg_bigm,pg_cron,pg_hint_plan,pg_prewarm,pg_stat_statements"
CATALOGUE = [
    parameter("shared_preload_libraries", "pg_stat_statements", "static", "list", PRELOAD_ALLOWED),
    parameter("max_connections", "LEAST({DBInstanceClassMemory/9531392},5000)", "static", "integer", "6-8388607"),
    parameter("log_min_duration_statement", None, "dynamic", "integer", "-1-2147483647", ApplyMethod="immediate"),
    parameter("rds.extensions", "vector,pg_stat_statements", "static", "list", "", IsModifiable=False),
]


def expect_catalogue(stub: Stubber) -> None:
    stub.add_response(
        "describe_db_cluster_parameters",
        {"Parameters": CATALOGUE},
        {"DBClusterParameterGroupName": "orders-cluster-params"},
    )
    stub.add_response(
        "describe_engine_default_cluster_parameters",
        {"EngineDefaults": {"DBParameterGroupFamily": "aurora-postgresql16", "Parameters": CATALOGUE}},
        {"DBParameterGroupFamily": "aurora-postgresql16"},
    )


TWO = [member("orders-1", True, tier=0), member("orders-2", False)]


# -- parameters ---------------------------------------------------------------------------------------------------
def test_static_change_is_reported_pending_reboot(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    expect_catalogue(stub)
    stub.add_response(
        "modify_db_cluster_parameter_group",
        {"DBClusterParameterGroupName": "orders-cluster-params"},
        {
            "DBClusterParameterGroupName": "orders-cluster-params",
            "Parameters": [
                {
                    "ParameterName": "shared_preload_libraries",
                    "ParameterValue": "pg_stat_statements,pg_cron",
                    "ApplyMethod": "pending-reboot",
                },
                {"ParameterName": "log_min_duration_statement", "ParameterValue": "250", "ApplyMethod": "immediate"},
            ],
        },
    )
    # the group shows the new values (first poll: not yet)...
    group = {"DBClusterParameterGroupName": "orders-cluster-params"}
    stub.add_response("describe_db_cluster_parameters", {"Parameters": CATALOGUE}, group)
    updated = [
        parameter("shared_preload_libraries", "pg_stat_statements,pg_cron", "static", "list", PRELOAD_ALLOWED),
        parameter("log_min_duration_statement", "250", "dynamic", "integer", "-1-2147483647"),
    ]
    stub.add_response("describe_db_cluster_parameters", {"Parameters": updated}, group)
    # ...then the members: the first poll still says in-sync (they have not started applying), which must not
    # end the wait with nothing pending; then applying, then (one member before the other) pending-reboot
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    applying = [member("orders-1", True, "applying", 0), member("orders-2", False, "applying")]
    stub.add_response("describe_db_clusters", clusters(members=applying), ONE)
    half = [member("orders-1", True, "applying", 0), member("orders-2", False, "pending-reboot")]
    stub.add_response("describe_db_clusters", clusters(members=half), ONE)
    pending = [member("orders-1", True, "pending-reboot", 0), member("orders-2", False, "pending-reboot")]
    stub.add_response("describe_db_clusters", clusters(members=pending), ONE)

    result = backend.apply_parameters(
        "orders", {"shared_preload_libraries": "pg_cron", "log_min_duration_statement": "250"}
    )
    assert result.needs_reboot
    assert result.pending_reboot_instances == ["orders-1", "orders-2"]
    assert [(c.parameter_name, c.old_value, c.apply_method) for c in result.changes] == [
        ("shared_preload_libraries", "pg_stat_statements", "pending-reboot"),
        ("log_min_duration_statement", None, "immediate"),
    ]


@pytest.mark.parametrize(
    ("parameters", "match"),
    [
        ({"max_connections": "5"}, "must be in 6-8388607"),
        ({"shared_preload_libraries": "pg_nonexistent"}, "not among the allowed values"),
        ({"rds.extensions": "vector"}, "not modifiable"),
        ({"log_min_duration_statement": "soon"}, "integer"),
    ],
)
def test_catalogue_validation_happens_before_any_modify(
    backend: AwsBackend, rds: tuple[Any, Stubber], parameters: dict, match: str
) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    expect_catalogue(stub)
    with pytest.raises(InvalidParameterError, match=match):
        backend.apply_parameters("orders", parameters)
    # no ModifyDBClusterParameterGroup was queued: the Stubber would have raised on an unexpected call


def test_dynamic_change_waits_for_the_value_then_in_sync(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    expect_catalogue(stub)
    stub.add_response("modify_db_cluster_parameter_group", {"DBClusterParameterGroupName": "orders-cluster-params"},
                      {"DBClusterParameterGroupName": "orders-cluster-params",
                       "Parameters": [{"ParameterName": "log_min_duration_statement", "ParameterValue": "250",
                                       "ApplyMethod": "immediate"}]})  # fmt: skip
    group = {"DBClusterParameterGroupName": "orders-cluster-params"}
    stub.add_response(
        "describe_db_cluster_parameters",
        {"Parameters": [parameter("log_min_duration_statement", "250", "dynamic", "integer", "-1-2147483647")]},
        group,
    )
    # orders-2 is still pending-reboot from an earlier static change: that must not keep the wait going
    applying = [member("orders-1", True, "applying", 0), member("orders-2", False, "pending-reboot")]
    stub.add_response("describe_db_clusters", clusters(members=applying), ONE)
    settled = [member("orders-1", True, "in-sync", 0), member("orders-2", False, "pending-reboot")]
    stub.add_response("describe_db_clusters", clusters(members=settled), ONE)
    result = backend.apply_parameters("orders", {"log_min_duration_statement": "250"})
    assert result.pending_reboot_instances == ["orders-2"]


def test_engine_defaults_failure_is_raised_typed_and_not_cached(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    group = {"DBClusterParameterGroupName": "orders-cluster-params"}
    family = {"DBParameterGroupFamily": "aurora-postgresql16"}
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_response("describe_db_cluster_parameters", {"Parameters": CATALOGUE}, group)
    stub.add_client_error("describe_engine_default_cluster_parameters", "InternalFailure", "internal error", 500,
                          expected_params=family)  # fmt: skip
    with pytest.raises(BackendOperationError) as info:
        backend.apply_parameters("orders", {"max_connections": "5000"})
    assert info.value.context["code"] == "InternalFailure"
    assert info.value.context["operation"] == "DescribeEngineDefaultClusterParameters"
    # not cached as "no defaults": the next call asks AWS again (and validates against the real catalogue)
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    expect_catalogue(stub)
    with pytest.raises(InvalidParameterError, match="6-8388607"):
        backend.apply_parameters("orders", {"max_connections": "5"})


def test_reboot_pending_readers_first_then_writer_each_waited_for(
    backend: AwsBackend, rds: tuple[Any, Stubber]
) -> None:
    _, stub = rds
    members = [
        member("orders-1", True, "pending-reboot", 0),
        member("orders-2", False, "pending-reboot"),
        member("orders-3", False, "pending-reboot"),
    ]
    stub.add_response("describe_db_clusters", clusters(members=members), ONE)
    for iid in ["orders-2", "orders-3", "orders-1"]:
        stub.add_response(
            "reboot_db_instance", {"DBInstance": db_instance(iid, "rebooting")}, {"DBInstanceIdentifier": iid}
        )
        # first poll: still rebooting; second: available but parameters not yet in-sync; third: done
        for status, param_status in (("rebooting", "pending-reboot"), ("available", "pending-reboot"),
                                     ("available", "in-sync")):  # fmt: skip
            polled = [dict(m) for m in members]
            for m in polled:
                if m["DBInstanceIdentifier"] == iid:
                    m["DBClusterParameterGroupStatus"] = param_status
            stub.add_response("describe_db_clusters", clusters(members=polled), ONE)
            stub.add_response("describe_db_instances", {"DBInstances": [db_instance(iid, status)]},
                              {"DBInstanceIdentifier": iid})  # fmt: skip
        members = polled  # this instance is in-sync from now on
    rebooted = backend.reboot_pending("orders")
    assert [i.db_instance_identifier for i in rebooted] == ["orders-2", "orders-3", "orders-1"]
    assert all(i.status == "available" for i in rebooted)
    assert rebooted[0].db_cluster_parameter_group_status == "in-sync"


def test_reboot_instance_waits_through_rebooting(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_response(
        "reboot_db_instance", {"DBInstance": db_instance("orders-2", "rebooting")}, {"DBInstanceIdentifier": "orders-2"}
    )
    for status in ("rebooting", "available"):
        stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
        stub.add_response(
            "describe_db_instances",
            {"DBInstances": [db_instance("orders-2", status)]},
            {"DBInstanceIdentifier": "orders-2"},
        )
    assert backend.reboot_instance("orders", "orders-2").status == "available"


def test_reboot_instance_is_not_fooled_by_a_stale_available(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    # an answer that does not (yet) say "rebooting", and a first poll still showing the pre-reboot "available"
    stub.add_response(
        "reboot_db_instance", {"DBInstance": db_instance("orders-2", "available")}, {"DBInstanceIdentifier": "orders-2"}
    )
    for status in ("available", "rebooting", "available"):
        stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
        stub.add_response(
            "describe_db_instances",
            {"DBInstances": [db_instance("orders-2", status)]},
            {"DBInstanceIdentifier": "orders-2"},
        )
    assert backend.reboot_instance("orders", "orders-2").status == "available"
    # every queued poll was used: the wait did not stop at the stale first "available" (fixture checks pending)


def test_reboot_into_incompatible_parameters_stops_the_wait_at_once(
    backend: AwsBackend, rds: tuple[Any, Stubber]
) -> None:
    _, stub = rds
    pending = [member("orders-1", True, "pending-reboot", 0)]
    stub.add_response("describe_db_clusters", clusters(members=pending), ONE)
    stub.add_response(
        "reboot_db_instance", {"DBInstance": db_instance("orders-1", "rebooting")}, {"DBInstanceIdentifier": "orders-1"}
    )
    stub.add_response("describe_db_clusters", clusters(members=pending), ONE)
    stub.add_response("describe_db_instances", {"DBInstances": [db_instance("orders-1", "incompatible-parameters")]},
                      {"DBInstanceIdentifier": "orders-1"})  # fmt: skip
    with pytest.raises(InvalidStateError, match="instance orders-1 is incompatible-parameters"):
        backend.reboot_pending("orders")


# -- create waits for every instance ---------------------------------------------------------------------------------
def test_create_waits_for_instances_after_the_cluster_is_available(
    backend: AwsBackend, rds: tuple[Any, Stubber]
) -> None:
    _, stub = rds
    spec = ClusterSpec.with_readers("orders", 1)
    stub.add_client_error("describe_db_clusters", "DBClusterNotFoundFault", "DBCluster orders not found.", 404,
                          expected_params=ONE)  # fmt: skip
    stub.add_response(  # the class must be orderable for the engine version here, checked before anything is made
        "describe_orderable_db_instance_options",
        {"OrderableDBInstanceOptions": [{"DBInstanceClass": "db.r6g.large", "Engine": "aurora-postgresql",
                                         "EngineVersion": "16.4", "AvailabilityZones": [{"Name": "us-east-1a"}]}]},
        {"Engine": "aurora-postgresql", "EngineVersion": "16.4", "DBInstanceClass": "db.r6g.large"},
    )  # fmt: skip
    stub.add_client_error(
        "describe_db_cluster_parameter_groups", "DBParameterGroupNotFound", "not found", 404,
        expected_params={"DBClusterParameterGroupName": "orders-cluster-params"},
    )  # fmt: skip
    stub.add_response(
        "create_db_cluster_parameter_group",
        {"DBClusterParameterGroup": {"DBClusterParameterGroupName": "orders-cluster-params",
                                     "DBParameterGroupFamily": "aurora-postgresql16"}},
        {"DBClusterParameterGroupName": "orders-cluster-params", "DBParameterGroupFamily": "aurora-postgresql16",
         "Description": ANY, "Tags": ANY},
    )  # fmt: skip
    create_params = {
        "DBClusterIdentifier": "orders", "Engine": "aurora-postgresql", "EngineVersion": "16.4",
        "MasterUsername": "postgres", "ManageMasterUserPassword": True, "DatabaseName": "app",
        "StorageEncrypted": True, "DeletionProtection": True, "EnableIAMDatabaseAuthentication": True,
        "BackupRetentionPeriod": 7, "PreferredBackupWindow": "03:00-04:00", "CopyTagsToSnapshot": True,
        "EnableCloudwatchLogsExports": ["postgresql"], "DBClusterParameterGroupName": "orders-cluster-params",
        "Tags": [],
    }  # fmt: skip
    stub.add_response("create_db_cluster", {"DBCluster": db_cluster(status="creating")}, create_params)
    stub.add_response("describe_db_clusters", clusters(status="creating"), ONE)
    stub.add_response("describe_db_clusters", clusters(status="available"), ONE)
    for iid, tier in (("orders-1", 0), ("orders-2", 1)):
        stub.add_response(
            "create_db_instance", {"DBInstance": db_instance(iid, "creating")},
            {"DBInstanceIdentifier": iid, "DBClusterIdentifier": "orders", "DBInstanceClass": "db.r6g.large",
             "Engine": "aurora-postgresql", "PromotionTier": tier, "PubliclyAccessible": False, "Tags": []},
        )  # fmt: skip
        if iid == "orders-1":  # the writer alone first, until the cluster names it the writer and it is up
            for status in ("creating", "available"):
                stub.add_response("describe_db_clusters", clusters(members=[member("orders-1", True, tier=0)]), ONE)
                stub.add_response("describe_db_instances", instances({"orders-1": status}), FILTER)
    # the cluster is "available" throughout; the instances are not — boto3's cluster waiter would stop here
    for statuses in ({"orders-1": "creating", "orders-2": "creating"},
                     {"orders-1": "available", "orders-2": "configuring-enhanced-monitoring"},
                     {"orders-1": "available", "orders-2": "available"}):  # fmt: skip
        stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
        stub.add_response("describe_db_instances", instances(statuses), FILTER)
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)  # secret already active
    result = backend.create_cluster(spec)
    assert result.status == "available"
    assert result.writer_id == "orders-1"


# -- restore from a managed-password snapshot -------------------------------------------------------------------------
def test_restore_from_managed_password_snapshot_passes_settings_explicitly(
    backend: AwsBackend, rds: tuple[Any, Stubber]
) -> None:
    _, stub = rds
    snapshot = {
        "DBClusterSnapshotIdentifier": "orders-snap", "DBClusterIdentifier": "orders", "Engine": "aurora-postgresql",
        "EngineVersion": "16.4", "Status": "available", "SnapshotType": "manual", "StorageEncrypted": True,
        "SnapshotCreateTime": NOW, "AllocatedStorage": 10,
    }  # fmt: skip
    stub.add_response("describe_db_cluster_snapshots", {"DBClusterSnapshots": [snapshot]},
                      {"DBClusterSnapshotIdentifier": "orders-snap"})  # fmt: skip
    stub.add_client_error("describe_db_clusters", "DBClusterNotFoundFault", "not found", 404,
                          expected_params={"DBClusterIdentifier": "orders-restored"})  # fmt: skip
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    restore_params = {
        "DBClusterIdentifier": "orders-restored", "SnapshotIdentifier": "orders-snap", "Engine": "aurora-postgresql",
        "EngineVersion": "16.4", "DBClusterParameterGroupName": "orders-cluster-params",
        "DBSubnetGroupName": "private-db", "VpcSecurityGroupIds": ["sg-0123456789abcdef0"],
        "EnableIAMDatabaseAuthentication": True, "DeletionProtection": True, "CopyTagsToSnapshot": True,
        "EnableCloudwatchLogsExports": ["postgresql"],  # retention and window: the snapshot's (defect 2)
        "Tags": [{"Key": "aurora-kit:restored-from-snapshot", "Value": "orders-snap"}],
    }  # fmt: skip
    restored = "orders-restored"
    one = {"DBClusterIdentifier": restored}
    stub.add_response("restore_db_cluster_from_snapshot", {"DBCluster": db_cluster(restored, "creating")},
                      restore_params)  # fmt: skip
    stub.add_response("describe_db_clusters", clusters(restored, "available"), one)
    stub.add_response(
        "create_db_instance", {"DBInstance": db_instance("orders-restored-1", "creating", restored)},
        {"DBInstanceIdentifier": "orders-restored-1", "DBClusterIdentifier": restored,
         "DBInstanceClass": "db.r6g.large", "Engine": "aurora-postgresql", "PromotionTier": 1,
         "PubliclyAccessible": False, "Tags": [{"Key": "aurora-kit:restored-from-snapshot", "Value": "orders-snap"}]},
    )  # fmt: skip
    restored_filter = {"Filters": [{"Name": "db-cluster-id", "Values": [restored]}]}
    for status in ("creating", "available"):
        stub.add_response("describe_db_clusters", clusters(restored, members=[member("orders-restored-1", True)]), one)
        stub.add_response("describe_db_instances", instances({"orders-restored-1": status}, restored), restored_filter)
    stub.add_response("describe_db_clusters", clusters(restored, members=[member("orders-restored-1", True)]), one)
    result = backend.restore_from_snapshot(
        "orders-snap", restored, instances=[InstanceSpec(instance_id=f"{restored}-1")]
    )
    assert result.writer_id == "orders-restored-1"
    assert result.status == "available"


SNAPSHOT = {
    "DBClusterSnapshotIdentifier": "orders-snap", "DBClusterIdentifier": "orders", "Engine": "aurora-postgresql",
    "EngineVersion": "16.4", "Status": "available", "SnapshotType": "manual", "StorageEncrypted": True,
    "SnapshotCreateTime": NOW, "AllocatedStorage": 10,
}  # fmt: skip


def without_secret(cluster: dict) -> dict:
    return {k: v for k, v in cluster.items() if k != "MasterUserSecret"}


def expect_restore_start(stub: Stubber, restored: str, status: str = "creating") -> None:
    """DescribeDBClusterSnapshots, new id free, source read, RestoreDBClusterFromSnapshot answering no secret."""
    stub.add_response("describe_db_cluster_snapshots", {"DBClusterSnapshots": [SNAPSHOT]},
                      {"DBClusterSnapshotIdentifier": "orders-snap"})  # fmt: skip
    stub.add_client_error("describe_db_clusters", "DBClusterNotFoundFault", "not found", 404,
                          expected_params={"DBClusterIdentifier": restored})  # fmt: skip
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_response("restore_db_cluster_from_snapshot", {"DBCluster": without_secret(db_cluster(restored, status))})


def test_restore_without_managed_secret_hands_the_password_to_secrets_manager(
    backend: AwsBackend, rds: tuple[Any, Stubber]
) -> None:
    _, stub = rds
    restored = "orders-restored"
    one = {"DBClusterIdentifier": restored}
    expect_restore_start(stub, restored)
    stub.add_response("describe_db_clusters", {"DBClusters": [without_secret(db_cluster(restored))]}, one)
    stub.add_response("modify_db_cluster", {"DBCluster": without_secret(db_cluster(restored, "modifying"))},
                      {**one, "ManageMasterUserPassword": True, "ApplyImmediately": True})  # fmt: skip
    # the instance waits until the cluster is available again after the modification
    stub.add_response("describe_db_clusters", {"DBClusters": [without_secret(db_cluster(restored, "modifying"))]}, one)
    stub.add_response("describe_db_clusters", clusters(restored), one)
    stub.add_response(
        "create_db_instance", {"DBInstance": db_instance("orders-restored-1", "creating", restored)},
        {"DBInstanceIdentifier": "orders-restored-1", "DBClusterIdentifier": restored,
         "DBInstanceClass": "db.r6g.large", "Engine": "aurora-postgresql", "PromotionTier": 1,
         "PubliclyAccessible": False, "Tags": [{"Key": "aurora-kit:restored-from-snapshot", "Value": "orders-snap"}]},
    )  # fmt: skip
    members = [member("orders-restored-1", True)]
    restored_filter = {"Filters": [{"Name": "db-cluster-id", "Values": [restored]}]}
    stub.add_response("describe_db_clusters", clusters(restored, members=members), one)
    stub.add_response("describe_db_instances", instances({"orders-restored-1": "available"}, restored), restored_filter)
    creating = {"SecretArn": SECRET_ARN, "SecretStatus": "creating"}
    stub.add_response("describe_db_clusters", clusters(restored, members=members, MasterUserSecret=creating), one)
    stub.add_response("describe_db_clusters", clusters(restored, members=members), one)  # secret active
    result = backend.restore_from_snapshot(
        "orders-snap", restored, instances=[InstanceSpec(instance_id=f"{restored}-1")]
    )
    assert result.master_user_secret_arn == SECRET_ARN


def test_restore_without_wait_still_hands_the_password_to_secrets_manager(
    backend: AwsBackend, rds: tuple[Any, Stubber]
) -> None:
    _, stub = rds
    restored = "orders-restored"
    one = {"DBClusterIdentifier": restored}
    expect_restore_start(stub, restored)
    stub.add_response("describe_db_clusters", {"DBClusters": [without_secret(db_cluster(restored, "creating"))]}, one)
    stub.add_response("describe_db_clusters", {"DBClusters": [without_secret(db_cluster(restored))]}, one)
    stub.add_response("modify_db_cluster", {"DBCluster": without_secret(db_cluster(restored, "modifying"))},
                      {**one, "ManageMasterUserPassword": True, "ApplyImmediately": True})  # fmt: skip
    stub.add_response("describe_db_clusters", {"DBClusters": [without_secret(db_cluster(restored, "modifying"))]}, one)
    result = backend.restore_from_snapshot("orders-snap", restored, wait=False)
    assert result.status == "modifying"


def test_dry_run_restore_plans_the_secret_step(rds: tuple[Any, Stubber]) -> None:
    client, stub = rds
    dry = AwsBackend(region=REGION, clients={"rds": client}, poll=FAST, dry_run=True)
    restored = "orders-restored"
    stub.add_response("describe_db_cluster_snapshots", {"DBClusterSnapshots": [SNAPSHOT]},
                      {"DBClusterSnapshotIdentifier": "orders-snap"})  # fmt: skip
    stub.add_client_error("describe_db_clusters", "DBClusterNotFoundFault", "not found", 404,
                          expected_params={"DBClusterIdentifier": restored})  # fmt: skip
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    result = dry.restore_from_snapshot("orders-snap", restored, instances=[InstanceSpec(instance_id="orders-r-1")])
    assert result.status == "dry-run"
    assert [c.operation for c in dry.plan] == ["RestoreDBClusterFromSnapshot", "ModifyDBCluster", "CreateDBInstance"]
    assert dry.plan[1].params["ManageMasterUserPassword"] is True


def test_restore_outside_window_is_refused_before_the_call(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    with pytest.raises(RestoreWindowError) as info:
        backend.restore_to_point_in_time("orders", "pitr", restore_time=NOW)  # after LatestRestorableTime
    assert info.value.context["latest"] == NOW - timedelta(minutes=5)


# -- failover -------------------------------------------------------------------------------------------------------
def test_failover_done_only_when_target_is_writer(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_response("describe_db_instances", instances({"orders-1": "available", "orders-2": "available"}), FILTER)
    stub.add_response("failover_db_cluster", {"DBCluster": db_cluster(members=TWO)},
                      {"DBClusterIdentifier": "orders", "TargetDBInstanceIdentifier": "orders-2"})  # fmt: skip
    swapped = [member("orders-1", False, tier=0), member("orders-2", True)]
    for status, members in (("failing-over", TWO), ("available", TWO), ("available", swapped)):
        stub.add_response("describe_db_clusters", clusters(status=status, members=members), ONE)
        stub.add_response("describe_db_instances", instances({"orders-1": "available", "orders-2": "available"}),
                          FILTER)  # fmt: skip
        stub.add_response("describe_events", {"Events": [event("Started cross AZ failover to DB instance: orders-2.")]},
                          EVENTS)  # fmt: skip
    result = backend.failover("orders", target_instance_id="orders-2")
    assert (result.old_writer, result.new_writer) == ("orders-1", "orders-2")
    assert 0 < result.control_plane_error_s <= 1.0  # the poll interval that saw it done


EVENTS = {"SourceIdentifier": "orders", "SourceType": "db-cluster", "StartTime": ANY}


def event(message: str, date: datetime | None = None) -> dict[str, Any]:
    return {"SourceIdentifier": "orders", "SourceType": "db-cluster", "Message": message,
            "EventCategories": ["failover"], "Date": date or datetime.now(timezone.utc),
            "SourceArn": "arn:aws:rds:us-east-1:123456789012:cluster:orders"}  # fmt: skip


def test_defect_03_a_failure_event_stops_the_failover_wait_at_once(
    backend: AwsBackend, rds: tuple[Any, Stubber]
) -> None:
    """RDS-EVENT-0069 (and 0070) in DescribeEvents: FailoverFailedError with their messages, no further polling."""
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_response("describe_db_instances", instances({"orders-1": "available", "orders-2": "available"}), FILTER)
    stub.add_response("failover_db_cluster", {"DBCluster": db_cluster(members=TWO)},
                      {"DBClusterIdentifier": "orders", "TargetDBInstanceIdentifier": "orders-2"})  # fmt: skip
    started = event("Started cross AZ failover to DB instance: orders-2.")
    later = datetime.now(timezone.utc) + timedelta(seconds=30)  # emitted after the call
    failed = event("Cluster failover failed, check the health of your cluster instances and try again.", later)
    again = event("Promoting previous primary again: orders-1.", later)
    earlier = event(failed["Message"], datetime.now(timezone.utc) - timedelta(seconds=3))  # an earlier attempt's
    for messages in ([earlier, started], [earlier, started, failed, again]):
        stub.add_response("describe_db_clusters", clusters(status="failing-over", members=TWO), ONE)
        stub.add_response("describe_db_instances", instances({"orders-1": "available", "orders-2": "available"}),
                          FILTER)  # fmt: skip
        stub.add_response("describe_events", {"Events": messages}, EVENTS)
    with pytest.raises(FailoverFailedError) as info:
        backend.failover("orders", target_instance_id="orders-2")
    assert "Cluster failover failed, check the health of your cluster instances and try again." in str(info.value)
    assert "Promoting previous primary again: orders-1." in str(info.value)
    stub.assert_no_pending_responses()


def test_wait_timeout_names_what_and_last_state(aws_credentials: None) -> None:
    client = boto3.client("rds", region_name=REGION)
    backend = AwsBackend(
        region=REGION, clients={"rds": client},
        poll=PollSettings(initial_delay=0.01, max_delay=0.01, backoff=1.0, timeout=0.05, short_timeout=0.05),
    )  # fmt: skip
    with Stubber(client) as stub:  # more canned answers than a 0.05 s wait can use; the rest stay unused
        for _ in range(40):
            stub.add_response("describe_db_clusters", clusters(status="creating"), ONE)
        with pytest.raises(WaitTimeoutError) as info:
            backend._wait_cluster_status("orders", "available")
    assert info.value.what == "cluster orders available"
    assert info.value.last_state == "creating"
    assert "cluster orders available" in str(info.value)


# -- error codes AWS returns and moto does not ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("operation", "params", "code", "error_type"),
    [
        ("ModifyDBCluster", {"DBClusterIdentifier": "orders", "BackupRetentionPeriod": 36}, "InvalidParameterValue",
         InvalidParameterError),
        ("ModifyDBCluster", {"DBClusterIdentifier": "orders", "BackupRetentionPeriod": 0}, "InvalidParameterValue",
         InvalidParameterError),
        ("ModifyDBClusterParameterGroup",
         {"DBClusterParameterGroupName": "p", "Parameters": [{"ParameterName": "max_connections",
                                                              "ParameterValue": "9", "ApplyMethod": "immediate"}]},
         "InvalidParameterCombination", InvalidParameterError),
        ("RestoreDBClusterToPointInTime", {"DBClusterIdentifier": "p", "SourceDBClusterIdentifier": "orders"},
         "InvalidRestoreFault", RestoreWindowError),
        ("StopDBCluster", {"DBClusterIdentifier": "orders"}, "InvalidDBClusterStateFault", InvalidStateError),
        ("CreateDBCluster", {"DBClusterIdentifier": "orders", "Engine": "aurora-postgresql"},
         "DBClusterAlreadyExistsFault", ClusterAlreadyExistsError),
        ("CreateDBInstance", {"DBInstanceIdentifier": "i", "DBInstanceClass": "db.r6g.large",
                              "Engine": "aurora-postgresql"}, "DBInstanceAlreadyExists", BackendOperationError),
    ],
)  # fmt: skip
def test_aws_error_codes_become_typed_errors_keeping_the_code(
    backend: AwsBackend, rds: tuple[Any, Stubber], operation: str, params: dict, code: str, error_type: type
) -> None:
    from botocore import xform_name

    _, stub = rds
    stub.add_client_error(xform_name(operation), code, f"{code} from AWS", 400, expected_params=params)
    with pytest.raises(error_type) as info:
        backend._call("rds", operation, **params)
    assert info.value.context["code"] == code
    assert info.value.context["operation"] == operation
    assert info.value.__cause__ is not None


# -- terminal states stop a wait at once ------------------------------------------------------------------------------
def test_start_into_inaccessible_encryption_credentials_fails_at_once(
    backend: AwsBackend, rds: tuple[Any, Stubber]
) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(status="stopped", members=TWO), ONE)
    stub.add_response("start_db_cluster", {"DBCluster": db_cluster(status="starting")}, ONE)
    stub.add_response("describe_db_clusters", clusters(status="inaccessible-encryption-credentials", members=TWO), ONE)
    stub.add_response("describe_db_instances", instances({"orders-1": "stopped", "orders-2": "stopped"}), FILTER)
    with pytest.raises(InvalidStateError, match="cluster orders is inaccessible-encryption-credentials") as info:
        backend.start_cluster("orders")
    assert info.value.context["what"] == "cluster orders and its instances available"


def test_instance_in_incompatible_network_fails_create_at_once(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_client_error("describe_db_instances", "DBInstanceNotFound", "not found", 404,
                          expected_params={"DBInstanceIdentifier": "orders-3"})  # fmt: skip
    stub.add_response(
        "create_db_instance", {"DBInstance": db_instance("orders-3", "creating")},
        {"DBInstanceIdentifier": "orders-3", "DBClusterIdentifier": "orders", "DBInstanceClass": "db.r6g.large",
         "Engine": "aurora-postgresql", "PromotionTier": 1, "PubliclyAccessible": False, "Tags": []},
    )  # fmt: skip
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_response(
        "describe_db_instances",
        instances({"orders-1": "available", "orders-2": "available", "orders-3": "incompatible-network"}),
        FILTER,
    )
    with pytest.raises(InvalidStateError, match="instance orders-3 is incompatible-network"):
        backend.create_instance("orders", InstanceSpec(instance_id="orders-3"))


def test_failed_snapshot_fails_the_wait_at_once(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    snap_id = {"DBClusterSnapshotIdentifier": "orders-snap"}
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_client_error("describe_db_cluster_snapshots", "DBClusterSnapshotNotFoundFault", "not found", 404,
                          expected_params=snap_id)  # fmt: skip
    snapshot = {"DBClusterSnapshotIdentifier": "orders-snap", "DBClusterIdentifier": "orders", "Status": "creating"}
    stub.add_response("create_db_cluster_snapshot", {"DBClusterSnapshot": snapshot},
                      {**ONE, **snap_id, "Tags": [{"Key": "aurora-kit:cluster", "Value": "orders"}]})  # fmt: skip
    stub.add_response("describe_db_cluster_snapshots", {"DBClusterSnapshots": [{**snapshot, "Status": "failed"}]},
                      snap_id)  # fmt: skip
    with pytest.raises(InvalidStateError, match="snapshot orders-snap is failed"):
        backend.create_snapshot("orders", "orders-snap")


def test_incompatible_restore_fails_the_wait_at_once(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_client_error("describe_db_clusters", "DBClusterNotFoundFault", "not found", 404,
                          expected_params={"DBClusterIdentifier": "pitr"})  # fmt: skip
    pitr = {k: v for k, v in db_cluster("pitr", "creating").items() if k != "MasterUserSecret"}
    stub.add_response("restore_db_cluster_to_point_in_time", {"DBCluster": pitr})  # params: see the moto test
    pitr_failed = {k: v for k, v in db_cluster("pitr", "incompatible-restore").items() if k != "MasterUserSecret"}
    stub.add_response("describe_db_clusters", {"DBClusters": [pitr_failed]}, {"DBClusterIdentifier": "pitr"})
    with pytest.raises(InvalidStateError, match="cluster pitr is incompatible-restore"):
        backend.restore_to_point_in_time("orders", "pitr", use_latest_restorable_time=True)


def test_failover_target_failing_stops_the_wait_at_once(backend: AwsBackend, rds: tuple[Any, Stubber]) -> None:
    _, stub = rds
    stub.add_response("describe_db_clusters", clusters(members=TWO), ONE)
    stub.add_response("describe_db_instances", instances({"orders-1": "available", "orders-2": "available"}), FILTER)
    stub.add_response("failover_db_cluster", {"DBCluster": db_cluster(members=TWO)},
                      {"DBClusterIdentifier": "orders", "TargetDBInstanceIdentifier": "orders-2"})  # fmt: skip
    stub.add_response("describe_db_clusters", clusters(status="failing-over", members=TWO), ONE)
    stub.add_response("describe_db_instances", instances({"orders-1": "available", "orders-2": "failed"}), FILTER)
    stub.add_response("describe_events", {"Events": []}, EVENTS)
    with pytest.raises(InvalidStateError, match="instance orders-2 is failed"):
        backend.failover("orders", target_instance_id="orders-2")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ([], "not orderable for aurora-postgresql 16.4 in us-east-1"),
        ([{"DBInstanceClass": "db.r6g.large", "AvailabilityZones": [{"Name": "us-east-1b"}]}], "not offered there"),
    ],
    ids=["class", "zone"],
)
def test_an_instance_class_aws_does_not_offer_is_refused_before_anything_is_created(
    backend: AwsBackend, rds: tuple[Any, Stubber], options: list[dict[str, Any]], match: str
) -> None:
    """A class that passes the pattern (db.r6g.large in a Region or version without it) is refused from
    DescribeOrderableDBInstanceOptions' answer; the Stubber would fail on any further (mutating) call."""
    _, stub = rds
    stub.add_client_error("describe_db_clusters", "DBClusterNotFoundFault", "not found", 404, expected_params=ONE)
    stub.add_response(
        "describe_orderable_db_instance_options",
        {"OrderableDBInstanceOptions": options},
        {"Engine": "aurora-postgresql", "EngineVersion": "16.4", "DBInstanceClass": "db.r6g.large"},
    )
    spec = ClusterSpec.with_readers("orders", 0, availability_zones=["us-east-1a"])
    with pytest.raises(InvalidParameterError, match=match):
        backend.create_cluster(spec)
