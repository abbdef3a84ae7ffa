"""Issue 13's defects of the aws backend on real Aurora, one test each (named ``test_defect_NN_...``), written before
the fix and seen failing. Where moto in-process shows the defect they run here (fast tier); the ones that need a real
data plane or Aurora's events run on the emulated AWS (tests/test_emulator_defects.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from test_aws_backend import FAST, REGION, CallLog, make_spec

from aurora_kit.backends.aws import AwsBackend
from aurora_kit.specs import InstanceSpec


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def clients(aws_credentials: None, calls: CallLog, moto_rds_gaps: None, boto_session: Any) -> Iterator[dict[str, Any]]:
    with mock_aws():
        yield {svc: calls.hook(boto_session.client(svc)) for svc in ("rds", "secretsmanager", "cloudwatch")}


@pytest.fixture
def backend(clients: dict[str, Any]) -> AwsBackend:
    return AwsBackend(region=REGION, clients=clients, poll=FAST, ca_bundle="/etc/ssl/rds-global-bundle.pem")


def _ops(calls: CallLog) -> list[str]:
    return [op for _, op, _ in calls.calls]


def test_defect_07_the_writer_is_created_and_awaited_before_the_readers(backend: AwsBackend, calls: CallLog) -> None:
    """Concurrent CreateDBInstance calls can make a reader the writer: the first instance must be the writer (seen
    as such in DescribeDBClusters) before any reader is asked for."""
    backend.create_cluster(make_spec(readers=2))
    ops = _ops(calls)
    creates = [i for i, op in enumerate(ops) if op == "CreateDBInstance"]
    assert [p["DBInstanceIdentifier"] for p in calls.params("CreateDBInstance")] == ["orders-1", "orders-2", "orders-3"]
    between = ops[creates[0] + 1 : creates[1]]
    assert "DescribeDBClusters" in between  # the writer's role, read from the cluster's members
    assert "DescribeDBInstances" in between  # ...and its status, before any reader is created


def test_defect_10_every_instance_is_explicitly_not_publicly_accessible(backend: AwsBackend, calls: CallLog) -> None:
    backend.create_cluster(make_spec(readers=1))
    backend.create_instance("orders", InstanceSpec(instance_id="orders-9"))
    assert [p.get("PubliclyAccessible") for p in calls.params("CreateDBInstance")] == [False, False, False]


def test_defect_09_restores_keep_the_tags_and_wait_before_creating_instances(
    backend: AwsBackend, calls: CallLog
) -> None:
    """A restored cluster and its instances carry the source's tags (plus where it came from); instances are created
    only once the restored cluster is available again after its ModifyDBCluster."""
    backend.create_cluster(make_spec("src", 0, tags={"team": "db", "cost-center": "4711"}, deletion_protection=False))
    backend.create_snapshot("src", "src-snap")
    for restore in (
        lambda: backend.restore_from_snapshot("src-snap", "r1", instances=[InstanceSpec(instance_id="r1-1")]),
        lambda: backend.restore_to_point_in_time(
            "src", "r2", use_latest_restorable_time=True, instances=[InstanceSpec(instance_id="r2-1")]
        ),
    ):
        calls.clear()
        restored = restore()
        assert {"team": "db", "cost-center": "4711"}.items() <= restored.tags.items()
        (create,) = calls.params("CreateDBInstance")
        tags = {t["Key"]: t["Value"] for t in create["Tags"]}
        assert {"team": "db", "cost-center": "4711"}.items() <= tags.items()
        ops = _ops(calls)
        if "ModifyDBCluster" in ops:  # the instance waits for the modification to be applied
            between = ops[ops.index("ModifyDBCluster") + 1 : ops.index("CreateDBInstance")]
            assert "DescribeDBClusters" in between


def test_defect_08_delete_automated_backups_is_a_choice_and_in_the_plan(clients: dict, calls: CallLog) -> None:
    backend = AwsBackend(region=REGION, clients=clients, poll=FAST)
    backend.create_cluster(make_spec("keep", 0, deletion_protection=False))
    dry = AwsBackend(region=REGION, clients=clients, poll=FAST, dry_run=True)
    dry.delete_cluster("keep", final_snapshot_id=None, skip_final_snapshot=True, delete_automated_backups=False)
    assert dry.plan[-1].operation == "DeleteDBCluster"
    assert dry.plan[-1].params["DeleteAutomatedBackups"] is False
    calls.clear()
    backend.delete_cluster("keep", final_snapshot_id=None, skip_final_snapshot=True, delete_automated_backups=False)
    assert calls.params("DeleteDBCluster")[0]["DeleteAutomatedBackups"] is False
    assert backend.traits.retains_automated_backups is True
