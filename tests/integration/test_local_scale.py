"""Scaling a local cluster for real: readers added and removed (slots, synchronous standbys, topology.json and the
reader endpoint follow), an instance class change restarting the instance with its class's memory settings, a
rolling class change's write gap, Serverless v2 recorded, Aurora Auto Scaling rehearsed under load, and PostgreSQL's
hot-standby rule kept (a reader never runs with fewer connections than its writer)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.checks.common import connect
from aurora_kit.checks.scale import check_reader_balance
from aurora_kit.checks.write_probe import WriteProbe
from aurora_kit.errors import InvalidParameterError
from aurora_kit.rules import FailoverCandidate, check_reader_removal, class_change_order
from aurora_kit.specs import InstanceSpec, ReaderScalingPolicy

pytestmark = pytest.mark.integration


def _show(backend: Any, cid: str, endpoint: str, name: str) -> str:
    with connect(backend.connection_info(cid, endpoint)) as conn:
        row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


def _streaming(backend: Any, cid: str) -> set[str]:
    writer = backend.describe_cluster(cid).writer_id
    return backend.nodes.streaming(cid, writer)


def test_a_reader_added_then_removed(local_backend: Any, local_cluster_factory: Callable[..., Cluster]) -> None:
    """Added: streams from the writer with its slot, is a synchronous standby candidate, in topology.json and on
    the reader endpoint. Removed: slot dropped, gone from all of them, its own endpoint refuses connections; the
    writer cannot be removed as a reader."""
    cid = local_cluster_factory(readers=1, prefix="addrm").db_cluster_identifier
    local_backend.create_instance(cid, InstanceSpec(instance_id=f"{cid}-9", availability_zone="us-east-1b"))
    own_endpoint = local_backend.connection_info(cid, f"{cid}-9")
    assert _streaming(local_backend, cid) == {f"{cid}-2", f"{cid}-9"}
    writer = local_backend.describe_cluster(cid).writer_id
    slots = {r[0] for r in local_backend.nodes.query(cid, writer, "SELECT slot_name FROM pg_replication_slots")}
    assert f"aurora_{cid.replace('-', '_')}_9" in slots
    sync = _show(local_backend, cid, "cluster", "synchronous_standby_names")
    assert f'"{cid}-9"' in sync
    topology = json.loads(local_backend.nodes.paths(cid).topology.read_text())
    assert f"{cid}-9" in [i["id"] for i in topology["instances"]]
    readers = local_backend.describe_cluster(cid).reader_ids
    balance = check_reader_balance(local_backend.connection_info(cid, "reader"), readers)
    assert balance.ok, balance.problems()

    members = local_backend.describe_cluster(cid).db_cluster_members
    with pytest.raises(InvalidParameterError, match="is the writer"):
        check_reader_removal(cid, members, writer, min_readers=0)
    local_backend.delete_instance(cid, f"{cid}-9")
    assert _streaming(local_backend, cid) == {f"{cid}-2"}
    slots = {r[0] for r in local_backend.nodes.query(cid, writer, "SELECT slot_name FROM pg_replication_slots")}
    assert f"aurora_{cid.replace('-', '_')}_9" not in slots
    topology = json.loads(local_backend.nodes.paths(cid).topology.read_text())
    assert [i["id"] for i in topology["instances"]] == [writer, f"{cid}-2"]
    after = check_reader_balance(local_backend.connection_info(cid, "reader"), [f"{cid}-2"], absent=[f"{cid}-9"])
    assert after.ok, after.problems()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(own_endpoint.conninfo, connect_timeout=2, **own_endpoint.kwargs()).close()


def test_class_changes_restart_with_the_class_memory_and_a_rolling_change_costs_one_failover(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    """Each instance starts with its class's settings (shared_buffers 1/128 of Aurora's, max_connections Aurora's);
    the rolling change (readers, failover, old writer) under a write probe loses nothing, its gap one failover's."""
    cid = local_cluster_factory(readers=1, prefix="cls").db_cluster_identifier
    before = {i: _show(local_backend, cid, i, "shared_buffers") for i in (f"{cid}-1", f"{cid}-2")}
    assert before == {f"{cid}-1": "82088kB", f"{cid}-2": "82088kB"}  # db.r6g.large: 10.0 GiB / 128
    assert _show(local_backend, cid, f"{cid}-1", "max_connections") == "1722"

    cluster = local_backend.describe_cluster(cid)
    instances = {i.db_instance_identifier: i for i in local_backend.describe_instances(cid)}
    members = [
        FailoverCandidate(m.db_instance_identifier, m.is_cluster_writer, True, m.promotion_tier,
                          instances[m.db_instance_identifier].db_instance_class)
        for m in cluster.db_cluster_members
    ]  # fmt: skip
    steps = class_change_order(members, [m.instance_id for m in members])
    with WriteProbe(local_backend.connection_info(cid, "cluster"), rate=100) as probe:
        for step in steps:
            if step.action == "modify":
                local_backend.modify_instance(cid, step.instance_id, instance_class="db.r6g.xlarge")
            else:
                local_backend.failover(cid, target_instance_id=step.instance_id)
    report = probe.report
    assert report is not None
    assert report.lost == 0
    assert report.rto_s is not None
    assert report.rto_s < 10
    assert [s.action for s in steps] == ["modify", "failover", "modify"]
    for iid in (f"{cid}-1", f"{cid}-2"):
        assert _show(local_backend, cid, iid, "shared_buffers") == "169032kB"  # db.r6g.xlarge: 20.6 GiB / 128
        assert _show(local_backend, cid, iid, "max_connections") == "3479"
        assert local_backend.class_memory_settings(cid, iid)[0] == {"max_connections": 3479, "shared_buffers": 169032}
    assert _streaming(local_backend, cid) == {f"{cid}-1"}  # the old writer replays as a reader


def test_a_reader_never_runs_below_its_writers_max_connections(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    """PostgreSQL stops a standby whose max_connections is below its primary's. A failover to a larger class
    restarts the smaller readers at the new writer's value; a parameter change that lowers it reaches the readers
    after the writer (their first reboot keeps the writer's old value)."""
    cid = local_cluster_factory(readers=2, prefix="hsb").db_cluster_identifier
    local_backend.modify_instance(cid, f"{cid}-3", instance_class="db.r6g.xlarge")  # 3479 > 1722
    local_backend.failover(cid, target_instance_id=f"{cid}-3")
    for iid in (f"{cid}-1", f"{cid}-2", f"{cid}-3"):
        assert int(_show(local_backend, cid, iid, "max_connections")) >= 3479, iid
    assert _streaming(local_backend, cid) == {f"{cid}-1", f"{cid}-2"}

    local_backend.apply_parameters(cid, {"max_connections": "200"})  # lower than every running value
    rebooted = [i.db_instance_identifier for i in local_backend.reboot_pending(cid)]
    assert rebooted[-1] == f"{cid}-3"  # Aurora's order: readers first, the writer last
    assert {i: _show(local_backend, cid, i, "max_connections") for i in (f"{cid}-1", f"{cid}-2", f"{cid}-3")} == {
        f"{cid}-1": "200", f"{cid}-2": "200", f"{cid}-3": "200"}  # fmt: skip
    assert _streaming(local_backend, cid) == {f"{cid}-1", f"{cid}-2"}
    assert {i.status for i in local_backend.describe_instances(cid)} == {"available"}
    assert {m.db_cluster_parameter_group_status for m in local_backend.describe_cluster(cid).db_cluster_members} == {
        "in-sync"
    }


def test_serverless_v2_is_recorded_and_sizes_its_instances_by_the_maximum_capacity(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cid = local_cluster_factory(readers=1, prefix="slv2").db_cluster_identifier
    with pytest.raises(InvalidParameterError, match="capacity range"):
        local_backend.modify_instance(cid, f"{cid}-2", instance_class="db.serverless")
    with pytest.raises(InvalidParameterError, match="steps of"):
        local_backend.set_serverless_scaling(cid, 1.2, 4)
    cluster = local_backend.set_serverless_scaling(cid, 0.5, 4)
    assert cluster.serverless_v2_scaling_configuration is not None
    assert cluster.serverless_v2_scaling_configuration.max_capacity == 4.0
    inst = local_backend.modify_instance(cid, f"{cid}-2", instance_class="db.serverless")
    assert inst.db_instance_class == "db.serverless"
    # 4 ACUs ≈ 8 GiB: Aurora's formulas give 865 connections, ~5 GB of buffers (here / 128); the cluster's
    # largest class (db.r6g.large, 1722) sets max_connections for every instance
    assert _show(local_backend, cid, f"{cid}-2", "shared_buffers") == "39688kB"
    assert _show(local_backend, cid, f"{cid}-2", "max_connections") == "1722"


def test_auto_scaling_adds_a_reader_under_load_and_removes_only_its_own(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cid = local_cluster_factory(readers=1, prefix="aas").db_cluster_identifier
    policy = ReaderScalingPolicy(
        policy_name="readers", metric="RDSReaderAverageDatabaseConnections", target_value=4, min_capacity=1,
        max_capacity=2, scale_in_cooldown_s=0, scale_out_cooldown_s=0,
    )  # fmt: skip
    shown = local_backend.put_scaling_policy(cid, policy)
    assert [a.alarm_name.split(f"{cid}-")[1].split("-")[0] for a in shown.alarms] == ["AlarmHigh", "AlarmLow"]
    assert local_backend.evaluate_scaling_policy(cid) is None  # idle: 1 connection (the sample) per reader
    load = [connect(local_backend.connection_info(cid, "reader")) for _ in range(12)]
    try:
        out = local_backend.evaluate_scaling_policy(cid)
    finally:
        for conn in load:
            conn.close()
    assert out is not None
    assert out.status_code == "Successful"
    assert len(out.added) == 1
    added = out.added[0]
    assert added.startswith("application-autoscaling-")
    inst = next(i for i in local_backend.describe_instances(cid) if i.db_instance_identifier == added)
    assert (inst.promotion_tier, inst.db_instance_class) == (15, "db.r6g.large")
    assert added in _streaming(local_backend, cid)
    back = local_backend.evaluate_scaling_policy(cid)
    assert back is not None
    assert back.removed == [added]  # only the reader it created
    assert local_backend.describe_cluster(cid).reader_ids == [f"{cid}-2"]
    assert [a.activity_id for a in local_backend.describe_scaling_activities(cid)] == [
        back.activity_id,
        out.activity_id,
    ]
    local_backend.delete_scaling_policy(cid, "readers")
    assert local_backend.describe_scaling_policies(cid) == []
