"""The aws backend's decisions, as plain functions: no boto3, no moto."""

from __future__ import annotations

import pytest

from aurora_kit.backends.aws import alarms as a
from aurora_kit.backends.aws import decisions as d
from aurora_kit.backends.aws.plan import format_plan, is_mutating
from aurora_kit.backends.base import PlannedCall, redact
from aurora_kit.errors import FailoverNotPossibleError, InvalidParameterError
from aurora_kit.specs import AlarmSpec, ClusterSpec, validated


def test_parameter_group_family_from_engine_version() -> None:
    assert d.parameter_group_family("16.4") == "aurora-postgresql16"
    assert d.parameter_group_family("15") == "aurora-postgresql15"
    with pytest.raises(InvalidParameterError):
        d.parameter_group_family("x.1")


@pytest.mark.parametrize(
    ("name", "catalogue", "expected"),
    [
        ("max_connections", {}, "static"),  # built-in table
        ("work_mem", {}, "dynamic"),
        ("work_mem", {"work_mem": {"ApplyType": "static"}}, "static"),  # the catalogue wins over the table
        ("custom.thing", {"custom.thing": {"ApplyType": "dynamic"}}, "dynamic"),
    ],
)
def test_apply_type_catalogue_first_then_table(name: str, catalogue: dict, expected: str) -> None:
    assert d.apply_type_of(name, catalogue) == expected


def test_unknown_parameter_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="unknown cluster parameter"):
        d.apply_type_of("no_such_param", {})


def test_apply_method_choice() -> None:
    assert d.choose_apply_method("shared_preload_libraries", "static") == "pending-reboot"
    assert d.choose_apply_method("work_mem", "dynamic") == "immediate"
    assert d.choose_apply_method("work_mem", "dynamic", "pending-reboot") == "pending-reboot"
    with pytest.raises(InvalidParameterError, match="static parameter") as info:
        d.choose_apply_method("max_connections", "static", "immediate")
    assert info.value.field == "max_connections"


def test_preload_merges_with_current_or_engine_default() -> None:
    assert d.merge_preload_libraries("auto_explain", None, None) == "pg_stat_statements,auto_explain"
    assert d.merge_preload_libraries("auto_explain", None, "pg_stat_statements,pglogical") == (
        "pg_stat_statements,pglogical,auto_explain"
    )
    assert d.merge_preload_libraries("pg_cron, auto_explain", "pg_stat_statements,auto_explain", None) == (
        "pg_stat_statements,auto_explain,pg_cron"
    )


@pytest.mark.parametrize("lib", ["vector", "pgvector", "pg_stat_statements,vector"])
def test_preload_rejects_extensions_that_are_not_preload_libraries(lib: str) -> None:
    with pytest.raises(InvalidParameterError, match="CREATE EXTENSION") as info:
        d.merge_preload_libraries(lib, None, None)
    assert info.value.field == "shared_preload_libraries"


def test_allowed_values_are_checked() -> None:
    entry = {"DataType": "integer", "AllowedValues": "6-8388608", "IsModifiable": True}
    d.check_allowed_value("max_connections", "100", entry)
    with pytest.raises(InvalidParameterError, match="must be in 6-8388608"):
        d.check_allowed_value("max_connections", "5", entry)
    with pytest.raises(InvalidParameterError, match="integer"):
        d.check_allowed_value("max_connections", "lots", entry)
    d.check_allowed_value("max_connections", "{DBInstanceClassMemory/9531392}", entry)  # formulas pass
    with pytest.raises(InvalidParameterError, match="not modifiable"):
        d.check_allowed_value("rds.extensions", "x", {"IsModifiable": False})
    libs = {"DataType": "list", "AllowedValues": "auto_explain,pg_stat_statements,pg_cron"}
    d.check_allowed_value("shared_preload_libraries", "pg_stat_statements,pg_cron", libs)
    with pytest.raises(InvalidParameterError, match="pg_nope"):
        d.check_allowed_value("shared_preload_libraries", "pg_stat_statements,pg_nope", libs)


def test_plan_parameter_changes_skips_unchanged_and_validates_all_first() -> None:
    catalogue = {"log_min_duration_statement": {"ParameterValue": "500", "ApplyType": "dynamic"}}
    planned = d.plan_parameter_changes({"log_min_duration_statement": "500", "max_connections": "200"}, catalogue)
    assert [(p.name, p.apply_method, p.apply_type) for p in planned] == [
        ("max_connections", "pending-reboot", "static")
    ]
    with pytest.raises(InvalidParameterError):  # second name invalid → nothing planned at all
        d.plan_parameter_changes({"work_mem": "64MB", "max_connections": "200"}, {}, apply_method="immediate")


def test_batches_of_twenty() -> None:
    assert [len(b) for b in d.batches(list(range(45)))] == [20, 20, 5]


def _spec(**kw: object) -> ClusterSpec:
    return ClusterSpec.with_readers("orders", 1, availability_zones=["us-east-1a", "us-east-1b"], **kw)


def test_create_cluster_params_are_secure_and_never_carry_a_password() -> None:
    params = d.create_cluster_params(_spec(kms_key_id="alias/aurora", tags={"team": "db"}), "orders-cluster-params")
    assert params["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in params
    assert params["Engine"] == "aurora-postgresql"
    assert params["StorageEncrypted"] is True
    assert params["KmsKeyId"] == "alias/aurora"
    assert params["DeletionProtection"] is True
    assert params["EnableIAMDatabaseAuthentication"] is True
    assert params["BackupRetentionPeriod"] == 7
    assert params["PreferredBackupWindow"] == "03:00-04:00"
    assert params["CopyTagsToSnapshot"] is True
    assert params["EnableCloudwatchLogsExports"] == ["postgresql"]
    assert params["DBClusterParameterGroupName"] == "orders-cluster-params"
    assert "ServerlessV2ScalingConfiguration" not in params
    assert params["Tags"] == [{"Key": "team", "Value": "db"}]
    serverless = ClusterSpec.with_readers(
        "s", 0, instance_class="db.serverless", serverless_v2_scaling={"min_capacity": 0.5, "max_capacity": 8}
    )
    assert d.create_cluster_params(serverless, "g")["ServerlessV2ScalingConfiguration"] == {
        "MinCapacity": 0.5,
        "MaxCapacity": 8,
    }


def test_modify_params_only_for_changed_fields() -> None:
    cluster = {"DBClusterIdentifier": "c", "DeletionProtection": True, "BackupRetentionPeriod": 7}
    assert d.modify_cluster_params(cluster, deletion_protection=True, backup_retention_period=7) == {}
    assert d.modify_cluster_params(cluster, backup_retention_period=14) == {
        "DBClusterIdentifier": "c",
        "BackupRetentionPeriod": 14,
        "ApplyImmediately": True,
    }
    with pytest.raises(InvalidParameterError):
        d.modify_cluster_params(cluster, preferred_backup_window="03:00-03:05")


def _rds_cluster(**over: object) -> dict:
    base = {
        "DBClusterIdentifier": "orders",
        "Status": "available",
        "Engine": "aurora-postgresql",
        "EngineVersion": "16.4",
        "MasterUsername": "postgres",
        "DatabaseName": "app",
        "BackupRetentionPeriod": 7,
        "PreferredBackupWindow": "03:00-04:00",
        "StorageEncrypted": True,
        "DeletionProtection": True,
        "IAMDatabaseAuthenticationEnabled": True,
        "CopyTagsToSnapshot": True,
        "EnabledCloudwatchLogsExports": ["postgresql"],
        "MasterUserSecret": {"SecretArn": "arn:x", "SecretStatus": "active"},
        "DBClusterParameterGroup": "orders-cluster-params",
        "DBClusterMembers": [
            {"DBInstanceIdentifier": "orders-1", "IsClusterWriter": True, "PromotionTier": 0},
            {"DBInstanceIdentifier": "orders-2", "IsClusterWriter": False, "PromotionTier": 1},
        ],
        "TagList": [],
    }
    base.update(over)
    return base


def _rds_instances() -> dict:
    return {
        "orders-1": {"DBInstanceClass": "db.r6g.large", "PromotionTier": 0, "AvailabilityZone": "us-east-1a"},
        "orders-2": {"DBInstanceClass": "db.r6g.large", "PromotionTier": 1, "AvailabilityZone": "us-east-1b"},
    }


def test_no_drift_for_an_identical_cluster_even_after_a_failover() -> None:
    cluster = _rds_cluster(EngineVersion="16.4")
    cluster["DBClusterMembers"][0]["IsClusterWriter"] = False
    cluster["DBClusterMembers"][1]["IsClusterWriter"] = True
    assert d.cluster_drift(_spec(), cluster, _rds_instances(), "orders-cluster-params") == []


def test_drift_lists_field_wanted_and_actual() -> None:
    cluster = _rds_cluster(BackupRetentionPeriod=1, DeletionProtection=False, EnabledCloudwatchLogsExports=[])
    instances = _rds_instances()
    instances["orders-2"]["DBInstanceClass"] = "db.r6g.xlarge"
    drift = {
        x.field: (x.wanted, x.actual) for x in d.cluster_drift(_spec(), cluster, instances, "orders-cluster-params")
    }
    assert drift == {
        "backup_retention_period": (7, 1),
        "deletion_protection": (True, False),
        "cloudwatch_logs_exports": (["postgresql"], []),
        "instances[orders-2].instance_class": ("db.r6g.large", "db.r6g.xlarge"),
    }
    err = d.ClusterDriftError("orders", d.cluster_drift(_spec(), cluster, instances, "orders-cluster-params"))
    assert "backup_retention_period: wanted 7, actual 1" in str(err)
    assert err.context["drift"][0]["field"] == "backup_retention_period"


def test_restore_settings_pass_everything_explicitly() -> None:
    source = _rds_cluster(DBSubnetGroup="private", VpcSecurityGroups=[{"VpcSecurityGroupId": "sg-1"}])
    settings = d.restore_settings(source)
    assert settings["DBClusterParameterGroupName"] == "orders-cluster-params"
    assert settings["DBSubnetGroupName"] == "private"
    assert settings["VpcSecurityGroupIds"] == ["sg-1"]
    assert settings["EnableIAMDatabaseAuthentication"] is True
    assert settings["EnableCloudwatchLogsExports"] == ["postgresql"]
    assert settings["DeletionProtection"] is True
    override = d.restore_settings(source, parameter_group="pg2", security_group_ids=["sg-9"])
    assert override["DBClusterParameterGroupName"] == "pg2"
    assert override["VpcSecurityGroupIds"] == ["sg-9"]
    assert d.restore_settings(None)["DeletionProtection"] is True  # secure defaults without a source


def test_failover_target_choice_and_refusals() -> None:
    cluster = _rds_cluster(
        DBClusterMembers=[
            {"DBInstanceIdentifier": "w", "IsClusterWriter": True, "PromotionTier": 0},
            {"DBInstanceIdentifier": "r2", "IsClusterWriter": False, "PromotionTier": 2},
            {"DBInstanceIdentifier": "r1", "IsClusterWriter": False, "PromotionTier": 1},
        ]
    )

    def rows(**status: str) -> dict[str, dict[str, str]]:
        every = {"w": "available", "r1": "available", "r2": "available", **status}
        return {i: {"DBInstanceStatus": s, "DBInstanceClass": "db.r6g.large"} for i, s in every.items()}

    assert d.choose_failover_target(cluster, rows()) == ("w", "r1")
    assert d.choose_failover_target(cluster, rows(), "r2") == ("w", "r2")
    assert d.choose_failover_target(cluster, rows(r1="rebooting")) == ("w", "r2")
    for target, st, match in [
        ("w", rows(), "already the writer"),
        ("zz", rows(), "not a reader"),
        ("r1", rows(r1="modifying"), "not available"),
    ]:
        with pytest.raises(FailoverNotPossibleError, match=match):
            d.choose_failover_target(cluster, st, target)
    single = _rds_cluster(DBClusterMembers=[{"DBInstanceIdentifier": "w", "IsClusterWriter": True}])
    with pytest.raises(FailoverNotPossibleError, match="1 instance"):
        d.choose_failover_target(single, rows())
    with pytest.raises(FailoverNotPossibleError, match="not 'available'"):
        d.choose_failover_target({**cluster, "Status": "modifying"}, rows())


def test_alarm_targets_and_params() -> None:
    lag = AlarmSpec(metric="AuroraReplicaLag", threshold=1000)
    (target,) = a.alarm_targets(lag, "c", "w", ["r1", "r2"])  # one alarm that follows the writer role (defect 5)
    assert (target.metric_name, target.dimensions, target.statistic) == (
        "AuroraReplicaLagMaximum",
        (("DBClusterIdentifier", "c"), ("Role", "WRITER")),
        "Maximum",
    )
    assert a.alarm_targets(lag, "c", "w", []) == []  # no readers, no replica lag (defect 4)
    cpu = AlarmSpec(metric="CPUUtilization", threshold=80)
    assert [t.dimension for t in a.alarm_targets(cpu, "c", "w", ["r1"])] == [
        "DBInstanceIdentifier=w",
        "DBInstanceIdentifier=r1",
    ]
    conns = validated(AlarmSpec, metric="DatabaseConnections", threshold=500, statistic="Maximum")
    (target,) = a.alarm_targets(conns, "c", "w", ["r1"])
    assert target.dimension == "DBClusterIdentifier=c"
    params = a.put_metric_alarm_params(conns, target, "c", "arn:aws:sns:us-east-1:1:t")
    assert params["Namespace"] == "AWS/RDS"
    assert params["Statistic"] == "Maximum"
    assert params["AlarmActions"] == ["arn:aws:sns:us-east-1:1:t"]
    assert params["AlarmName"].startswith(a.alarm_prefix("c"))
    assert not a.alarm_prefix("c-b").startswith(a.alarm_prefix("c"))
    assert a.stale_alarms(["x/r9/CPU", "x/w/CPU"], ["x/w/CPU"]) == ["x/r9/CPU"]


def test_plan_helpers() -> None:
    assert is_mutating("CreateDBCluster")
    assert is_mutating("RebootDBInstance")
    assert not is_mutating("DescribeDBClusters")
    assert not is_mutating("GetSecretValue")
    call = PlannedCall("rds", "ModifyDBCluster", redact({"DBClusterIdentifier": "c", "MasterUserPassword": "hunter2"}))
    text = format_plan([call])
    assert "1. rds.ModifyDBCluster" in text
    assert "DBClusterIdentifier = 'c'" in text
    assert "hunter2" not in text
    assert format_plan([]).endswith("none")


def test_alarm_period_multiples_of_60_and_the_monitoring_default_validate() -> None:
    from aurora_kit.params import MonitoringSettings

    assert AlarmSpec(metric="CPUUtilization", threshold=80, period_s=300).period_s == 300
    monitoring = MonitoringSettings(
        replica_lag_ms=1000, cpu_percent=80, freeable_memory_mb=512, max_connections=500, period_s=60,
        evaluation_periods=5,
    )  # fmt: skip
    assert {a.period_s for a in monitoring.alarm_specs()} == {60}
