"""The aws backend against moto in-process (``mock_aws``): every operation, idempotency, negative paths.

Calls are counted with a botocore ``before-call`` hook on the injected clients (independent of the backend's
own bookkeeping), so "0 mutating calls" means no Create/Modify/Delete/... request left boto3.

moto 5.2.x gaps found here (the paths are covered in test_aws_stubber.py with real response shapes instead):

- ``DBClusterMembers[].DBClusterParameterGroupStatus`` is always ``in-sync``, ``RebootDBInstance`` is a no-op
  answering ``available``, ``DescribeEngineDefaultClusterParameters`` is not implemented, and
  ``RestoreDBClusterFromSnapshot`` raises KeyError('_master_user_password') when the source used
  ManageMasterUserPassword. The ``moto_rds_gaps`` fixture applies the patches of
  :mod:`aurora_kit.emulator.gaps` (the one place for them, shared with the emulator): pending-reboot after a
  reboot-applied change until the instance is rebooted; ``rebooting`` in the reboot answer; an empty engine-default
  catalogue; a managed source restores. Their timing is covered with the Stubber, their reality on the emulator.
- ``DescribeDBClusterParameters`` returns only user-set parameters, without ApplyType/AllowedValues.
- No validation of BackupRetentionPeriod 1-35 (0 is accepted); deletion of a protected cluster answers
  InvalidParameterCombination (as AWS does).
- Restores do not copy IAM auth / log exports from the source (AWS neither, hence explicit settings).
- New alarms start ``OK`` (AWS: ``INSUFFICIENT_DATA``); the managed secret's value is fixed
  (username ``admin``); endpoints are fake hostnames.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aurora_kit.backends import get_backend
from aurora_kit.backends.aws import AwsBackend, ClusterDriftError, PollSettings
from aurora_kit.errors import (
    ClusterAlreadyExistsError,
    ClusterNotFoundError,
    DeletionProtectionError,
    FailoverNotPossibleError,
    InstanceNotFoundError,
    InvalidParameterError,
    InvalidStateError,
    RestoreWindowError,
    SnapshotAlreadyExistsError,
    SnapshotNotFoundError,
    UnsupportedOperationError,
)
from aurora_kit.specs import AlarmSpec, ClusterSpec, InstanceSpec

REGION = "us-east-1"
FAST = PollSettings(initial_delay=0.001, max_delay=0.01, backoff=1.5, timeout=5, short_timeout=5)
READ_ONLY = ("Describe", "List", "Get")


class CallLog:
    """Every API call made through the hooked clients: (service, operation, params)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def hook(self, client: Any) -> Any:
        client.meta.events.register("provide-client-params", self._capture)
        return client

    def _capture(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.service_model.service_name, model.name, dict(params)))

    @property
    def mutating(self) -> list[str]:
        return [op for _, op, _ in self.calls if not op.startswith(READ_ONLY)]

    def params(self, operation: str) -> list[dict[str, Any]]:
        return [p for _, op, p in self.calls if op == operation]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def clients(aws: None, calls: CallLog, moto_rds_gaps: None, boto_session: Any) -> dict[str, Any]:
    return {svc: calls.hook(boto_session.client(svc)) for svc in ("rds", "secretsmanager", "cloudwatch")}


@pytest.fixture
def backend(clients: dict[str, Any]) -> AwsBackend:
    return AwsBackend(region=REGION, clients=clients, poll=FAST, ca_bundle="/etc/ssl/rds-global-bundle.pem")


def make_spec(cluster_id: str = "orders", readers: int = 2, **kw: Any) -> ClusterSpec:
    return ClusterSpec.with_readers(cluster_id, readers, availability_zones=["us-east-1a", "us-east-1b"], **kw)


@pytest.fixture
def cluster(backend: AwsBackend, calls: CallLog) -> ClusterSpec:
    spec = make_spec()
    backend.create_cluster(spec)
    calls.clear()
    return spec


# -- construction ---------------------------------------------------------------------------------------------
def test_get_backend_builds_the_aws_backend(aws: None) -> None:
    backend = get_backend("aws", region=REGION, dry_run=True, iam_auth=True)
    assert isinstance(backend, AwsBackend)
    assert backend.dry_run
    assert backend.iam_auth
    assert backend.client("rds").meta.region_name == REGION


def test_bad_endpoint_override_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="host:port"):
        AwsBackend(region=REGION, endpoint_overrides={"x.rds.amazonaws.com": "localhost"})


# -- create ---------------------------------------------------------------------------------------------------
def test_create_cluster_with_secure_defaults_and_every_instance(backend: AwsBackend, calls: CallLog) -> None:
    spec = make_spec(tags={"team": "db"})
    result = backend.create_cluster(spec)

    assert calls.mutating == ["CreateDBClusterParameterGroup", "CreateDBCluster", *["CreateDBInstance"] * 3]
    (group,) = calls.params("CreateDBClusterParameterGroup")
    assert group["DBParameterGroupFamily"] == "aurora-postgresql16"
    (create,) = calls.params("CreateDBCluster")
    assert create["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in create
    assert create["Engine"] == "aurora-postgresql"
    assert create["EngineVersion"] == "16.4"
    assert create["StorageEncrypted"]
    assert create["DeletionProtection"]
    assert create["EnableIAMDatabaseAuthentication"]
    assert create["BackupRetentionPeriod"] == 7
    assert create["PreferredBackupWindow"] == "03:00-04:00"
    assert create["CopyTagsToSnapshot"]
    assert create["EnableCloudwatchLogsExports"] == ["postgresql"]
    assert create["DBClusterParameterGroupName"] == "orders-cluster-params"
    instances = calls.params("CreateDBInstance")
    assert [i["DBInstanceIdentifier"] for i in instances] == ["orders-1", "orders-2", "orders-3"]
    assert {i["DBClusterIdentifier"] for i in instances} == {"orders"}
    assert [i["PromotionTier"] for i in instances] == [0, 1, 1]
    assert [i["AvailabilityZone"] for i in instances] == ["us-east-1a", "us-east-1b", "us-east-1a"]

    assert result.status == "available"
    assert result.writer_id == "orders-1"
    assert result.reader_ids == ["orders-2", "orders-3"]
    assert result.storage_encrypted
    assert result.deletion_protection
    assert result.iam_database_authentication_enabled
    assert result.master_user_secret_arn
    assert result.tags == {"team": "db"}
    assert [i.status for i in backend.describe_instances("orders")] == ["available"] * 3


def test_create_serverless_v2_passes_scaling_configuration(backend: AwsBackend, calls: CallLog) -> None:
    spec = ClusterSpec.with_readers(
        "sls", 0, instance_class="db.serverless", serverless_v2_scaling={"min_capacity": 0.5, "max_capacity": 4}
    )
    backend.create_cluster(spec)
    assert calls.params("CreateDBCluster")[0]["ServerlessV2ScalingConfiguration"] == {
        "MinCapacity": 0.5,
        "MaxCapacity": 4,
    }
    assert calls.params("CreateDBInstance")[0]["DBInstanceClass"] == "db.serverless"


def test_rerunning_create_makes_zero_mutating_calls(backend: AwsBackend, calls: CallLog, cluster: ClusterSpec) -> None:
    again = backend.create_cluster(cluster)
    assert calls.mutating == []
    assert again.status == "available"
    assert again.writer_id == "orders-1"


def test_create_over_a_different_cluster_reports_drift_and_changes_nothing(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec
) -> None:
    changed = make_spec(backup_retention_period=14, readers=3)
    with pytest.raises(ClusterDriftError) as info:
        backend.create_cluster(changed)
    assert isinstance(info.value, ClusterAlreadyExistsError)
    drift = {x.field: (x.wanted, x.actual) for x in info.value.drift}
    assert drift["backup_retention_period"] == (14, 7)
    assert drift["instances"][0] == ["orders-1", "orders-2", "orders-3", "orders-4"]
    assert "backup_retention_period: wanted 14, actual 7" in str(info.value)
    assert calls.mutating == []


def test_rerunning_an_interrupted_create_creates_only_the_missing_instances(
    backend: AwsBackend, calls: CallLog
) -> None:
    backend.create_cluster(make_spec(readers=0))  # as if interrupted after the cluster and its first instance
    calls.clear()
    resumed = backend.create_cluster(make_spec(readers=2))
    assert [p["DBInstanceIdentifier"] for p in calls.params("CreateDBInstance")] == ["orders-2", "orders-3"]
    assert calls.mutating == ["CreateDBInstance", "CreateDBInstance"]
    assert resumed.writer_id == "orders-1"
    assert resumed.reader_ids == ["orders-2", "orders-3"]
    calls.clear()
    backend.create_cluster(make_spec(readers=2))
    assert calls.mutating == []
    with pytest.raises(ClusterDriftError) as info:  # an instance the spec does not list is drift, not a resume
        backend.create_cluster(make_spec(readers=1))
    assert [x.field for x in info.value.drift] == ["instances"]
    assert calls.mutating == []


def test_mixed_case_identifiers_are_lowercased_as_rds_does(backend: AwsBackend, calls: CallLog) -> None:
    created = backend.create_cluster(make_spec("Orders", 1))
    assert created.db_cluster_identifier == "orders"
    assert backend.describe_cluster("Orders").writer_id == "orders-1"
    assert [i.db_instance_identifier for i in backend.describe_instances("ORDERS")] == ["orders-1", "orders-2"]
    calls.clear()
    assert backend.create_cluster(make_spec("Orders", 1)).status == "available"  # no drift, no call
    assert calls.mutating == []
    assert backend.failover("Orders", target_instance_id="Orders-2").new_writer == "orders-2"
    assert backend.create_snapshot("Orders", "Orders-Snap").db_cluster_snapshot_identifier == "orders-snap"
    assert backend.connection_info("Orders", "Orders-1").endpoint == "orders-1"
    backend.delete_instance("Orders", "Orders-1")
    assert backend.delete_cluster("Orders", final_snapshot_id=None, skip_final_snapshot=True,
                                  lift_deletion_protection=True) is None  # fmt: skip
    with pytest.raises(ClusterNotFoundError):
        backend.describe_cluster("orders")


def test_existing_parameter_group_of_another_family_is_refused(backend: AwsBackend, clients: dict) -> None:
    clients["rds"].create_db_cluster_parameter_group(
        DBClusterParameterGroupName="pg15", DBParameterGroupFamily="aurora-postgresql15", Description="x"
    )
    with pytest.raises(InvalidParameterError, match="aurora-postgresql15"):
        backend.create_cluster(make_spec(db_cluster_parameter_group_name="pg15"))


# -- describe / errors ------------------------------------------------------------------------------------------
def test_unknown_cluster_raises_typed_error_with_the_aws_code(backend: AwsBackend) -> None:
    with pytest.raises(ClusterNotFoundError) as info:
        backend.describe_cluster("nope")
    assert info.value.cluster_id == "nope"
    assert info.value.context["code"] == "DBClusterNotFoundFault"
    assert isinstance(info.value.__cause__, Exception)
    for call in (
        lambda: backend.describe_instances("nope"),
        lambda: backend.failover("nope"),
        lambda: backend.create_snapshot("nope", "s"),
        lambda: backend.connection_info("nope"),
    ):
        with pytest.raises(ClusterNotFoundError):
            call()


def test_list_clusters_and_instances(backend: AwsBackend, cluster: ClusterSpec) -> None:
    assert [c.db_cluster_identifier for c in backend.list_clusters()] == ["orders"]
    instances = backend.describe_instances("orders")
    assert [(i.db_instance_identifier, i.is_cluster_writer) for i in instances] == [
        ("orders-1", True),
        ("orders-2", False),
        ("orders-3", False),
    ]
    assert instances[0].endpoint_address
    assert instances[0].endpoint_port == 5432
    assert instances[1].as_rds()["IsClusterWriter"] is False


# -- modify / stop / start ---------------------------------------------------------------------------------------
def test_modify_cluster_applies_only_changes(backend: AwsBackend, calls: CallLog, cluster: ClusterSpec) -> None:
    result = backend.modify_cluster("orders", backup_retention_period=14, preferred_backup_window="05:00-06:00")
    assert result.backup_retention_period == 14
    assert result.preferred_backup_window == "05:00-06:00"
    (params,) = calls.params("ModifyDBCluster")
    assert params["ApplyImmediately"] is True
    calls.clear()
    backend.modify_cluster("orders", backup_retention_period=14)
    assert calls.mutating == []


@pytest.mark.parametrize("days", [0, 36])
def test_retention_out_of_range_is_rejected_before_any_call(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec, days: int
) -> None:
    with pytest.raises(InvalidParameterError) as info:
        backend.modify_cluster("orders", backup_retention_period=days)
    assert info.value.field == "backup_retention_period"
    with pytest.raises(InvalidParameterError):
        backend.create_cluster(make_spec("other", backup_retention_period=days))  # type: ignore[arg-type]
    assert calls.mutating == []


def test_stop_and_start(backend: AwsBackend, calls: CallLog, cluster: ClusterSpec) -> None:
    assert backend.stop_cluster("orders").status == "stopped"
    assert backend.stop_cluster("orders").status == "stopped"  # idempotent
    assert backend.start_cluster("orders").status == "available"
    assert calls.mutating == ["StopDBCluster", "StartDBCluster"]


# -- instances ---------------------------------------------------------------------------------------------------
def test_create_reboot_delete_instance(backend: AwsBackend, calls: CallLog, cluster: ClusterSpec) -> None:
    inst = backend.create_instance("orders", InstanceSpec(instance_id="orders-4", promotion_tier=5))
    assert inst.status == "available"
    assert not inst.is_cluster_writer
    assert inst.promotion_tier == 5
    assert backend.create_instance("orders", InstanceSpec(instance_id="orders-4")).db_instance_identifier == "orders-4"
    assert calls.mutating == ["CreateDBInstance"]  # second create was a no-op
    # no assertion on reboot_instance here: moto's reboot is a no-op (test_aws_stubber.py covers the wait)
    backend.delete_instance("orders", "orders-4")
    assert "orders-4" not in [i.db_instance_identifier for i in backend.describe_instances("orders")]
    with pytest.raises(InstanceNotFoundError):
        backend.reboot_instance("orders", "orders-4")


# -- parameters ---------------------------------------------------------------------------------------------------
def test_apply_parameters_chooses_apply_method_and_merges_preload(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec
) -> None:
    result = backend.apply_parameters(
        "orders", {"shared_preload_libraries": "auto_explain", "log_min_duration_statement": "500"}
    )
    (call,) = calls.params("ModifyDBClusterParameterGroup")
    sent = {p["ParameterName"]: (p["ParameterValue"], p["ApplyMethod"]) for p in call["Parameters"]}
    assert sent == {
        "shared_preload_libraries": ("pg_stat_statements,auto_explain", "pending-reboot"),
        "log_min_duration_statement": ("500", "immediate"),
    }
    assert [(c.parameter_name, c.apply_type) for c in result.changes] == [
        ("shared_preload_libraries", "static"),
        ("log_min_duration_statement", "dynamic"),
    ]
    assert backend.get_parameters("orders", ["log_min_duration_statement", "work_mem"]) == {
        "log_min_duration_statement": "500",
        "work_mem": None,
    }
    calls.clear()
    again = backend.apply_parameters("orders", {"log_min_duration_statement": "500"})
    assert again.status == "no-change"
    assert calls.mutating == []
    backend.apply_parameters("orders", {"shared_preload_libraries": "pg_cron"})
    (call,) = calls.params("ModifyDBClusterParameterGroup")
    assert call["Parameters"][0]["ParameterValue"] == "pg_stat_statements,auto_explain,pg_cron"


@pytest.mark.parametrize(
    ("parameters", "kwargs", "match"),
    [
        ({"max_connections": "500"}, {"apply_method": "immediate"}, "static parameter"),
        ({"shared_preload_libraries": "vector"}, {}, "CREATE EXTENSION"),
        ({"no_such_parameter": "1"}, {}, "unknown cluster parameter"),
        ({"work_mem": "64MB", "max_connections": "500"}, {"apply_method": "immediate"}, "static"),
    ],
)
def test_bad_parameters_are_rejected_before_any_call(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec, parameters: dict, kwargs: dict, match: str
) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        backend.apply_parameters("orders", parameters, **kwargs)
    assert calls.mutating == []


def test_default_parameter_group_cannot_be_modified(backend: AwsBackend, calls: CallLog) -> None:
    backend.create_cluster(make_spec("dflt", 0, db_cluster_parameter_group_name="default.aurora-postgresql16"))
    calls.clear()
    with pytest.raises(InvalidStateError, match="default parameter group"):
        backend.apply_parameters("dflt", {"work_mem": "64MB"})
    assert calls.mutating == []


def test_static_change_then_rolling_reboot_under_patched_moto(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec
) -> None:
    # moto's member status and reboot answer are patched to AWS's shapes (tests/plugins/moto_server.py)
    applied = backend.apply_parameters("orders", {"max_connections": "500"})
    assert applied.pending_reboot_instances == ["orders-1", "orders-2", "orders-3"]
    calls.clear()
    rebooted = backend.reboot_pending("orders")
    assert [i.db_instance_identifier for i in rebooted] == ["orders-2", "orders-3", "orders-1"]  # writer last
    assert calls.mutating == ["RebootDBInstance"] * 3
    assert [m.db_cluster_parameter_group_status for m in backend.describe_cluster("orders").db_cluster_members] == [
        "in-sync"
    ] * 3


def test_reboot_pending_with_nothing_pending_reboots_nothing(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec
) -> None:
    assert backend.reboot_pending("orders") == []
    assert calls.mutating == []


# -- failover -----------------------------------------------------------------------------------------------------
def test_failover_to_target(backend: AwsBackend, calls: CallLog, cluster: ClusterSpec) -> None:
    result = backend.failover("orders", target_instance_id="orders-3")
    assert (result.old_writer, result.new_writer, result.status) == ("orders-1", "orders-3", "completed")
    assert result.control_plane_seconds >= 0
    assert calls.params("FailoverDBCluster") == [
        {"DBClusterIdentifier": "orders", "TargetDBInstanceIdentifier": "orders-3"}
    ]
    assert backend.describe_cluster("orders").writer_id == "orders-3"
    default = backend.failover("orders")  # best reader: lowest promotion tier → orders-1 (tier 0)
    assert default.new_writer == "orders-1"


def test_failover_refusals(backend: AwsBackend, calls: CallLog) -> None:
    backend.create_cluster(make_spec("solo", 0))
    calls.clear()
    with pytest.raises(FailoverNotPossibleError, match="1 instance"):
        backend.failover("solo")
    with pytest.raises(InvalidStateError) as info:  # what AWS itself answers, mapped
        backend._call("rds", "FailoverDBCluster", DBClusterIdentifier="solo")
    assert info.value.context["code"] == "InvalidDBClusterStateFault"
    calls.clear()
    backend.create_cluster(make_spec("pair", 1))
    with pytest.raises(FailoverNotPossibleError, match="not a reader"):
        backend.failover("pair", target_instance_id="solo-1")
    with pytest.raises(UnsupportedOperationError, match="aurora_inject_crash"):
        backend.failover("pair", mode="crash")
    assert "FailoverDBCluster" not in calls.mutating


# -- snapshots / restore ------------------------------------------------------------------------------------------
def test_snapshots_tagged_listed_deleted(backend: AwsBackend, cluster: ClusterSpec) -> None:
    snap = backend.create_snapshot("orders", "orders-snap-1", tags={"purpose": "runbook-05"})
    assert snap.status == "available"
    assert snap.snapshot_type == "manual"
    assert snap.tags == {"aurora-kit:cluster": "orders", "purpose": "runbook-05"}
    assert "orders-snap-1" in [s.db_cluster_snapshot_identifier for s in backend.describe_snapshots("orders")]
    with pytest.raises(SnapshotAlreadyExistsError):
        backend.create_snapshot("orders", "orders-snap-1")
    backend.delete_snapshot("orders-snap-1")
    assert "orders-snap-1" not in [s.db_cluster_snapshot_identifier for s in backend.describe_snapshots("orders")]
    with pytest.raises(SnapshotNotFoundError) as info:
        backend.delete_snapshot("orders-snap-1")
    assert info.value.context["code"] == "DBClusterSnapshotNotFoundFault"


def test_restore_from_snapshot_passes_settings_and_creates_instances(
    backend: AwsBackend, clients: dict, calls: CallLog
) -> None:
    # moto cannot restore a snapshot of a ManageMasterUserPassword cluster (KeyError): build the source by hand
    rds = clients["rds"]
    rds.create_db_cluster_parameter_group(
        DBClusterParameterGroupName="src-params", DBParameterGroupFamily="aurora-postgresql16", Description="x"
    )
    rds.create_db_cluster(
        DBClusterIdentifier="src", Engine="aurora-postgresql", EngineVersion="16.4", MasterUsername="postgres",
        MasterUserPassword="test-only-password", DBClusterParameterGroupName="src-params",
        VpcSecurityGroupIds=["sg-0123456789abcdef0"], EnableIAMDatabaseAuthentication=True,
        EnableCloudwatchLogsExports=["postgresql"], DeletionProtection=True,
    )  # fmt: skip
    rds.create_db_cluster_snapshot(DBClusterSnapshotIdentifier="src-snap", DBClusterIdentifier="src")
    calls.clear()

    restored = backend.restore_from_snapshot(
        "src-snap",
        "restored",
        instances=[InstanceSpec(instance_id="restored-1"), InstanceSpec(instance_id="restored-2")],
    )
    assert calls.mutating == ["RestoreDBClusterFromSnapshot", "ModifyDBCluster", "CreateDBInstance", "CreateDBInstance"]
    (params,) = calls.params("RestoreDBClusterFromSnapshot")
    assert params["DBClusterParameterGroupName"] == "src-params"
    assert params["VpcSecurityGroupIds"] == ["sg-0123456789abcdef0"]
    assert params["DBSubnetGroupName"] == "default"
    assert params["EnableIAMDatabaseAuthentication"] is True
    assert params["EnableCloudwatchLogsExports"] == ["postgresql"]
    assert params["DeletionProtection"] is True
    assert calls.params("ModifyDBCluster")[0]["ManageMasterUserPassword"] is True
    assert restored.status == "available"
    assert restored.writer_id == "restored-1"
    assert restored.reader_ids == ["restored-2"]
    assert restored.db_cluster_parameter_group == "src-params"
    assert restored.master_user_secret_arn

    with pytest.raises(ClusterAlreadyExistsError):
        backend.restore_from_snapshot("src-snap", "restored")
    with pytest.raises(SnapshotNotFoundError):
        backend.restore_from_snapshot("no-snap", "restored-x")


def test_restore_to_point_in_time(backend: AwsBackend, calls: CallLog, cluster: ClusterSpec) -> None:
    source = backend.describe_cluster("orders")
    assert source.earliest_restorable_time
    assert source.latest_restorable_time
    with pytest.raises(RestoreWindowError):
        backend.restore_to_point_in_time(
            "orders", "pitr", restore_time=source.earliest_restorable_time - timedelta(hours=1)
        )
    with pytest.raises(RestoreWindowError):
        backend.restore_to_point_in_time("orders", "pitr", restore_time=datetime.now(timezone.utc) + timedelta(hours=1))
    with pytest.raises(InvalidParameterError, match="exactly one"):
        backend.restore_to_point_in_time("orders", "pitr")
    assert calls.mutating == []

    inside = source.earliest_restorable_time
    restored = backend.restore_to_point_in_time(
        "orders", "pitr", restore_time=inside, instances=[InstanceSpec(instance_id="pitr-1")]
    )
    (params,) = calls.params("RestoreDBClusterToPointInTime")
    assert params["SourceDBClusterIdentifier"] == "orders"
    assert params["RestoreToTime"] is not None
    assert "UseLatestRestorableTime" not in params
    assert params["DBClusterParameterGroupName"] == "orders-cluster-params"
    assert params["EnableIAMDatabaseAuthentication"] is True
    assert restored.writer_id == "pitr-1"
    assert restored.status == "available"
    assert restored.iam_database_authentication_enabled

    calls.clear()
    latest = backend.restore_to_point_in_time("orders", "pitr-latest", use_latest_restorable_time=True)
    assert calls.params("RestoreDBClusterToPointInTime")[0]["UseLatestRestorableTime"] is True
    assert latest.db_cluster_members == []  # as on Aurora: a restore creates no instance
    with pytest.raises(ClusterNotFoundError):
        backend.restore_to_point_in_time("nope", "x", use_latest_restorable_time=True)


# -- delete -------------------------------------------------------------------------------------------------------
def test_delete_under_deletion_protection_is_refused(backend: AwsBackend, calls: CallLog, cluster: ClusterSpec) -> None:
    with pytest.raises(DeletionProtectionError):
        backend.delete_cluster("orders", final_snapshot_id=None, skip_final_snapshot=True)
    assert calls.mutating == []
    with pytest.raises(DeletionProtectionError) as info:  # what AWS itself answers, mapped
        backend._call("rds", "DeleteDBCluster", DBClusterIdentifier="orders", SkipFinalSnapshot=True)
    assert info.value.context["code"] == "InvalidParameterCombination"


@pytest.mark.parametrize(("final", "skip"), [(None, False), ("final", True)])
def test_delete_needs_an_explicit_final_snapshot_choice(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec, final: str | None, skip: bool
) -> None:
    with pytest.raises(InvalidParameterError, match="exactly one"):
        backend.delete_cluster("orders", final_snapshot_id=final, skip_final_snapshot=skip)
    assert calls.mutating == []


def test_delete_lifts_protection_deletes_instances_then_cluster(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec
) -> None:
    snap = backend.delete_cluster("orders", final_snapshot_id="orders-final", lift_deletion_protection=True)
    assert calls.mutating == ["ModifyDBCluster", "DeleteDBInstance", "DeleteDBInstance", "DeleteDBInstance",
                              "DeleteDBCluster"]  # fmt: skip
    assert calls.params("ModifyDBCluster")[0]["DeletionProtection"] is False
    assert [p["DBInstanceIdentifier"] for p in calls.params("DeleteDBInstance")][-1] == "orders-1"  # writer last
    assert calls.params("DeleteDBCluster")[0]["FinalDBSnapshotIdentifier"] == "orders-final"
    assert snap is not None
    assert snap.status == "available"
    with pytest.raises(ClusterNotFoundError):
        backend.describe_cluster("orders")


def test_delete_without_final_snapshot(backend: AwsBackend, calls: CallLog) -> None:
    backend.create_cluster(make_spec("scratch", 0, deletion_protection=False))
    calls.clear()
    assert backend.delete_cluster("scratch", final_snapshot_id=None, skip_final_snapshot=True) is None
    assert calls.params("DeleteDBCluster") == [
        {"DBClusterIdentifier": "scratch", "DeleteAutomatedBackups": True, "SkipFinalSnapshot": True}
    ]
    assert backend.list_clusters() == []


def test_final_snapshot_id_taken_is_refused_before_deleting(
    backend: AwsBackend, calls: CallLog, cluster: ClusterSpec
) -> None:
    backend.create_snapshot("orders", "taken")
    calls.clear()
    with pytest.raises(SnapshotAlreadyExistsError):
        backend.delete_cluster("orders", final_snapshot_id="taken", lift_deletion_protection=True)
    assert calls.mutating == []


# -- alarms -------------------------------------------------------------------------------------------------------
def test_put_and_describe_alarms(backend: AwsBackend, calls: CallLog, cluster: ClusterSpec) -> None:
    specs = [
        AlarmSpec(metric="AuroraReplicaLag", threshold=1000),
        AlarmSpec(metric="CPUUtilization", threshold=80),
        AlarmSpec(metric="FreeableMemory", threshold=2**30, comparison="LessThanThreshold"),
        AlarmSpec(metric="DatabaseConnections", threshold=500, statistic="Maximum"),
    ]
    topic = "arn:aws:sns:us-east-1:123456789012:dba"
    states = backend.put_alarms("orders", specs, sns_topic_arn=topic)
    sent = calls.params("PutMetricAlarm")
    assert len(sent) == 1 + 3 + 3 + 1  # lag on the writer role, cpu/memory per instance, connections per cluster
    assert {p["Namespace"] for p in sent} == {"AWS/RDS"}
    assert all(p["AlarmActions"] == [topic] for p in sent)
    lag = next(p for p in sent if p["MetricName"] == "AuroraReplicaLagMaximum")
    assert lag["Dimensions"] == [
        {"Name": "DBClusterIdentifier", "Value": "orders"},
        {"Name": "Role", "Value": "WRITER"},
    ]
    dims = {(p["MetricName"], p["Dimensions"][0]["Name"], p["Dimensions"][0]["Value"]) for p in sent}
    assert ("DatabaseConnections", "DBClusterIdentifier", "orders") in dims
    memory = next(p for p in sent if p["MetricName"] == "FreeableMemory")
    assert memory["ComparisonOperator"] == "LessThanThreshold"
    assert memory["Threshold"] == 2**30
    assert len(states) == 8
    assert {s.metric_name for s in states} == {"AuroraReplicaLagMaximum", "CPUUtilization", "FreeableMemory",
                                                "DatabaseConnections"}  # fmt: skip
    # another cluster whose name starts with "orders" must not show up
    boto3.client("cloudwatch", region_name=REGION).put_metric_alarm(
        AlarmName="aurora-kit/orders-2/DatabaseConnections", MetricName="DatabaseConnections", Namespace="AWS/RDS",
        Statistic="Average", Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    described = backend.describe_alarms("orders")
    assert len(described) == 8
    assert all(s.state_value in ("OK", "ALARM", "INSUFFICIENT_DATA") for s in described)


# -- data plane credentials ---------------------------------------------------------------------------------------
def test_connection_info_uses_the_managed_secret_and_keeps_it_out_of_conninfo(
    backend: AwsBackend, clients: dict, cluster: ClusterSpec
) -> None:
    info = backend.connection_info("orders")
    described = backend.describe_cluster("orders")
    secret = json.loads(
        clients["secretsmanager"].get_secret_value(SecretId=described.master_user_secret_arn)["SecretString"]
    )
    assert info.password == secret["password"]
    assert secret["password"] not in info.conninfo
    assert secret["password"] not in repr(info)
    assert f"host={described.endpoint}" in info.conninfo
    assert "sslmode=verify-full" in info.conninfo
    assert "sslrootcert=/etc/ssl/rds-global-bundle.pem" in info.conninfo
    assert "user=postgres" in info.conninfo
    assert "dbname=app" in info.conninfo
    assert info.kwargs() == {"password": secret["password"]}
    assert f"host={described.reader_endpoint}" in backend.connection_info("orders", "reader").conninfo
    instance = backend.connection_info("orders", "orders-2")
    assert "host=orders-2." in instance.conninfo
    with pytest.raises(InstanceNotFoundError):
        backend.connection_info("orders", "orders-9")


def test_connection_info_with_iam_token_and_endpoint_override(clients: dict, cluster_for_iam: str) -> None:
    described = AwsBackend(region=REGION, clients=clients, poll=FAST).describe_cluster(cluster_for_iam)
    backend = AwsBackend(
        region=REGION, clients=clients, poll=FAST, iam_auth=True, iam_user="app_rw", sslmode="require",
        endpoint_overrides={described.endpoint: "127.0.0.1:6543"},
    )  # fmt: skip
    info = backend.connection_info(cluster_for_iam)
    assert f"host={described.endpoint}" in info.conninfo  # TLS (verify-full) checks the RDS name...
    assert "hostaddr=127.0.0.1" in info.conninfo  # ...while the connection goes to the override
    assert "port=6543" in info.conninfo
    assert "user=app_rw" in info.conninfo
    assert "sslmode=require" in info.conninfo
    assert info.password is not None
    # the token is signed for the real RDS hostname, not the override
    assert info.password.startswith(f"{described.endpoint}:5432/?Action=connect&DBUser=app_rw")
    assert info.password not in info.conninfo


def test_endpoint_override_keeps_the_rds_hostname_for_verify_full(clients: dict, cluster: ClusterSpec) -> None:
    """Defect 12: a tunnel/bastion override connects to its address (hostaddr) but keeps the RDS hostname as host, so
    sslmode=verify-full still checks the certificate against the RDS name; a ``*.suffix`` key covers every endpoint."""
    described = AwsBackend(region=REGION, clients=clients, poll=FAST).describe_cluster("orders")
    exact = AwsBackend(
        region=REGION, clients=clients, poll=FAST, ca_bundle="/ca.pem",
        endpoint_overrides={described.endpoint: "127.0.0.1:15432", "*.us-east-1.rds.amazonaws.com": "127.0.0.2:5999"},
    )  # fmt: skip
    from psycopg.conninfo import conninfo_to_dict

    writer = conninfo_to_dict(exact.connection_info("orders").conninfo)
    assert (writer["host"], writer["hostaddr"], writer["port"]) == (described.endpoint, "127.0.0.1", "15432")
    assert writer["sslmode"] == "verify-full"
    reader = conninfo_to_dict(exact.connection_info("orders", "reader").conninfo)
    assert (reader["host"], reader["hostaddr"], reader["port"]) == (described.reader_endpoint, "127.0.0.2", "5999")
    plain = conninfo_to_dict(AwsBackend(region=REGION, clients=clients, poll=FAST).connection_info("orders").conninfo)
    assert "hostaddr" not in plain
    assert plain["host"] == described.endpoint


def test_endpoint_override_names_are_resolved_to_an_address(clients: dict, cluster: ClusterSpec) -> None:
    backend = AwsBackend(region=REGION, clients=clients, poll=FAST,
                         endpoint_overrides={"*.rds.amazonaws.com": "localhost:15432"})  # fmt: skip
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(backend.connection_info("orders").conninfo)
    assert params["hostaddr"] in ("127.0.0.1", "::1")
    assert params["host"].endswith(".rds.amazonaws.com")


@pytest.fixture
def cluster_for_iam(backend: AwsBackend) -> str:
    backend.create_cluster(make_spec("iam", 0))
    return "iam"


def test_iam_auth_refused_when_disabled_on_the_cluster(clients: dict, backend: AwsBackend) -> None:
    backend.create_cluster(make_spec("noiam", 0, iam_database_authentication=False))
    with pytest.raises(InvalidStateError, match="IAM database authentication"):
        AwsBackend(region=REGION, clients=clients, poll=FAST, iam_auth=True).connection_info("noiam")


# -- dry run ------------------------------------------------------------------------------------------------------
def test_dry_run_records_without_mutating(clients: dict, calls: CallLog) -> None:
    dry = AwsBackend(region=REGION, clients=clients, poll=FAST, dry_run=True)
    projected = dry.create_cluster(make_spec())
    assert projected.status == "dry-run"
    assert projected.writer_id == "orders-1"
    assert calls.mutating == []
    assert [c.operation for c in dry.plan] == ["CreateDBClusterParameterGroup", "CreateDBCluster",
                                               *["CreateDBInstance"] * 3]  # fmt: skip
    assert dry.plan[1].params["ManageMasterUserPassword"] is True
    text = dry.format_plan()
    assert "1. rds.CreateDBClusterParameterGroup" in text
    assert "ManageMasterUserPassword = True" in text
    with pytest.raises(ClusterNotFoundError):
        dry.describe_cluster("orders")


def test_dry_run_of_destructive_operations_on_a_real_cluster(
    clients: dict, calls: CallLog, cluster: ClusterSpec
) -> None:
    dry = AwsBackend(region=REGION, clients=clients, poll=FAST, dry_run=True)
    snap = dry.delete_cluster("orders", final_snapshot_id="final", lift_deletion_protection=True)
    assert snap is not None
    assert snap.status == "dry-run"
    assert dry.failover("orders").status == "dry-run"
    assert dry.apply_parameters("orders", {"max_connections": "500"}).status == "dry-run"
    assert dry.restore_to_point_in_time("orders", "p", use_latest_restorable_time=True).status == "dry-run"
    assert all(a.state_value == "dry-run" for a in dry.put_alarms("orders", [AlarmSpec(metric="CPUUtilization",
                                                                                         threshold=80)]))  # fmt: skip
    assert calls.mutating == []
    ops = [c.operation for c in dry.plan]
    assert ops[:5] == ["ModifyDBCluster", "DeleteDBInstance", "DeleteDBInstance", "DeleteDBInstance", "DeleteDBCluster"]
    assert {"FailoverDBCluster", "ModifyDBClusterParameterGroup", "RestoreDBClusterToPointInTime",
            "PutMetricAlarm"} <= set(ops)  # fmt: skip
    assert backend_cluster_still_there(clients)


def backend_cluster_still_there(clients: dict) -> bool:
    return bool(clients["rds"].describe_db_clusters(DBClusterIdentifier="orders")["DBClusters"])


def test_transport_failures_become_backend_operation_errors(aws_credentials: None) -> None:
    import socket

    from botocore.config import Config

    from aurora_kit.errors import BackendOperationError

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = boto3.client(
        "rds", region_name=REGION, endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )  # fmt: skip
    backend = AwsBackend(region=REGION, clients={"rds": client}, poll=FAST)
    with pytest.raises(BackendOperationError) as info:
        backend.describe_cluster("orders")
    assert info.value.context["code"] == "EndpointConnectionError"
    with pytest.raises(BackendOperationError) as info:  # paginated reads: same wrapping, same hint
        backend.list_clusters()
    assert info.value.context["code"] == "EndpointConnectionError"
    assert "AWS_ENDPOINT_URL" in info.value.hint
