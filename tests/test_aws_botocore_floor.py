"""Defect 2: every call the aws backend makes must be valid on the oldest botocore pyproject allows (boto3>=1.34 →
botocore 1.34.0). ``RestoreDBCluster*`` accept ``BackupRetentionPeriod``/``PreferredBackupWindow`` only from botocore
1.42.47; sent to an older one they fail before leaving the client.

The request shapes of that botocore come from tests/data/botocore-floor.json (``scripts/botocore_floor.py`` writes
it from the wheel); the calls are the real ones the backend makes against moto, captured before validation.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.model import ServiceModel
from botocore.validate import ParamValidator
from moto import mock_aws
from test_aws_backend import FAST, REGION, CallLog, make_spec

from aurora_kit.backends.aws import AwsBackend
from aurora_kit.specs import AlarmSpec, InstanceSpec

ROOT = Path(__file__).resolve().parents[1]
FLOOR = json.loads((ROOT / "tests" / "data" / "botocore-floor.json").read_text())


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("botocore_floor", ROOT / "scripts" / "botocore_floor.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recorded_floor_is_pyprojects_and_covers_every_operation_the_backend_calls() -> None:
    script = _script()
    assert FLOOR["botocore"] == script.floor_version(), "pyproject's boto3 floor moved: rerun scripts/botocore_floor.py"
    for service, ops in script.operations().items():
        missing = ops - set(FLOOR["services"][service]["operations"])
        assert not missing, f"{service} {sorted(missing)} not in the floor data: rerun scripts/botocore_floor.py"


def _problems(service: str, operation: str, params: dict[str, Any]) -> str:
    data = FLOOR["services"][service]
    model = ServiceModel({"metadata": data["metadata"], "operations": data["operations"], "shapes": data["shapes"]})
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    return report.generate_report() if report.has_errors() else ""


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def clients(aws_credentials: None, calls: CallLog, moto_rds_gaps: None, boto_session: Any) -> Iterator[dict[str, Any]]:
    with mock_aws():
        yield {svc: calls.hook(boto_session.client(svc)) for svc in ("rds", "secretsmanager", "cloudwatch")}


def test_defect_02_every_call_is_valid_on_the_oldest_botocore(clients: dict[str, Any], calls: CallLog) -> None:
    backend = AwsBackend(region=REGION, clients=clients, poll=FAST)
    backend.create_cluster(make_spec("orders", 1, deletion_protection=False, tags={"team": "db"}))
    backend.apply_parameters("orders", {"max_connections": "300", "work_mem": "8MB"})
    backend.reboot_pending("orders")
    backend.failover("orders")
    backend.put_alarms("orders", [AlarmSpec(metric="CPUUtilization", threshold=90)])
    backend.describe_alarms("orders")
    backend.connection_info("orders")
    backend.create_snapshot("orders", "orders-snap")
    backend.restore_from_snapshot("orders-snap", "r1", instances=[InstanceSpec(instance_id="r1-1")])
    backend.restore_to_point_in_time("orders", "r2", use_latest_restorable_time=True)
    backend.modify_cluster("orders", backup_retention_period=9)
    backend.stop_cluster("orders")
    backend.start_cluster("orders")
    backend.delete_snapshot("orders-snap")
    for cid in ("r1", "r2", "orders"):
        backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True, delete_automated_backups=False)
    made = {op for _, op, _ in calls.calls}
    assert {"RestoreDBClusterFromSnapshot", "RestoreDBClusterToPointInTime", "DeleteDBCluster"} <= made
    problems = {
        f"{service}.{op}": found for service, op, params in calls.calls if (found := _problems(service, op, params))
    }
    assert not problems, problems


def test_the_scaling_and_proxy_calls_are_valid_on_the_oldest_botocore(
    aws_credentials: None, calls: CallLog, moto_rds_gaps: None, boto_session: Any
) -> None:
    """08-scale and 09-proxy's calls (rds, application-autoscaling, iam, cloudwatch) against botocore's floor."""
    from aurora_kit.specs import ProxySpec, ReaderScalingPolicy

    services = ("rds", "secretsmanager", "cloudwatch", "application-autoscaling", "iam")
    with mock_aws():
        backend = AwsBackend(
            region=REGION, clients={s: calls.hook(boto_session.client(s)) for s in services}, poll=FAST
        )
        backend.create_cluster(make_spec("orders", 1, deletion_protection=False))
        backend.modify_instance("orders", "orders-2", instance_class="db.r6g.xlarge")
        backend.set_serverless_scaling("orders", 0.5, 8)
        policy = ReaderScalingPolicy(
            policy_name="readers", metric="RDSReaderAverageCPUUtilization", target_value=40, min_capacity=1,
            max_capacity=3,
        )  # fmt: skip
        backend.put_scaling_policy("orders", policy)
        backend.delete_scaling_policy("orders", "readers")
        backend.create_proxy("orders", ProxySpec(proxy_name="p", read_only_endpoint="p-ro"))
        backend.proxy_connection_info("p", "p-ro")
        backend.delete_proxy("p")
    made = {op for _, op, _ in calls.calls}
    assert {"CreateDBProxy", "CreateDBProxyEndpoint", "PutScalingPolicy", "CreateRole", "ModifyDBInstance"} <= made
    problems = {
        f"{service}.{op}": found for service, op, params in calls.calls if (found := _problems(service, op, params))
    }
    assert not problems, problems
