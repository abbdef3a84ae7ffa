"""The rules of 08-scale and 09-proxy (:mod:`aurora_kit.rules`) and their parameters (``scale:``, ``proxy:``): each rule
refuses with the field named, before anything changes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aurora_kit import params, rules
from aurora_kit.errors import InvalidParameterError
from aurora_kit.rules import FailoverCandidate as C
from aurora_kit.specs import ProxySpec, ReaderScalingPolicy, ServerlessV2Scaling, validated

ROOT = Path(__file__).resolve().parents[1]


# -- Serverless v2 capacity --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("low", "high", "field", "reason"),
    [
        (0.5, 0.5, "max_capacity", "from 1 to 256"),
        (0.5, 256.5, "max_capacity", "from 1 to 256"),
        (0.75, 4, "min_capacity", "steps of 0.5"),
        (1, 4.2, "max_capacity", "steps of 0.5"),
        (-0.5, 4, "min_capacity", "from 0 to 256"),
        (8, 4, "min_capacity", "must not exceed max_capacity"),
        (True, 4, "min_capacity", "number of ACUs"),
        (math.nan, 4, "min_capacity", "number of ACUs"),
        ("1", 4, "min_capacity", "number of ACUs"),
    ],
)
def test_acu_range_rules(low: Any, high: Any, field: str, reason: str) -> None:
    with pytest.raises(InvalidParameterError, match=reason) as info:
        rules.check_acu_capacity(low, high)
    assert info.value.field == f"serverless.{field}"


@given(st.integers(min_value=1, max_value=512), st.integers(min_value=2, max_value=512))
def test_every_half_acu_range_in_limits_is_accepted(low_halves: int, high_halves: int) -> None:
    low, high = low_halves / 2, high_halves / 2
    if low > high:
        low, high = high, low
    assert rules.check_acu_capacity(low, high) == (low, high)


@pytest.mark.parametrize(
    ("version", "zero_allowed"),
    [
        ("16.2", False),
        ("16.3", True),
        ("15.6", False),
        ("15.7", True),
        ("13.15", True),
        ("13.14", False),
        ("17.4", True),
        ("12.22", False),
    ],
)
def test_zero_acus_only_where_the_engine_can_pause(version: str, zero_allowed: bool) -> None:
    assert rules.supports_auto_pause(version) is zero_allowed
    if zero_allowed:
        assert rules.check_acu_capacity(0, 4, engine_version=version) == (0.0, 4.0)
    else:
        with pytest.raises(InvalidParameterError, match="automatic pause"):
            rules.check_acu_capacity(0, 4, engine_version=version)


def test_db_serverless_needs_the_capacity_range_first() -> None:
    with pytest.raises(InvalidParameterError, match="capacity range"):
        rules.check_serverless_class("db.serverless", None)
    rules.check_serverless_class("db.serverless", {"min_capacity": 0.5, "max_capacity": 4})
    rules.check_serverless_class("db.r6g.large", None)
    with pytest.raises(InvalidParameterError, match=r"steps of 0\.5"):
        validated(ServerlessV2Scaling, min_capacity=0.3, max_capacity=4)


# -- memory of instance classes ------------------------------------------------------------------------------------
def test_documented_max_connections_are_aurora_s_own_table() -> None:
    """AuroraUserGuide, "Maximum connections to an Aurora PostgreSQL DB instance": the values below 5000."""
    expected = {"db.r6g.large": 1722, "db.r6g.xlarge": 3479, "db.t4g.medium": 405, "db.t3.medium": 420,
                "db.r5.large": 1600, "db.r6g.2xlarge": 5000, "db.r6g.16xlarge": 5000}  # fmt: skip
    for cls, connections in expected.items():
        found = rules.memory_settings(cls)
        assert found is not None
        assert found.max_connections == connections, cls


def test_shared_buffers_follows_aurora_s_formula_on_the_class_memory() -> None:
    found = rules.memory_settings("db.r6g.large")
    assert found is not None
    assert found.source == "documented"
    pages = found.db_instance_class_memory // 12038 - 50003  # SUM({DBInstanceClassMemory/12038},-50003)
    assert found.shared_buffers_kb == pages * 8
    assert 9.9 * 2**20 < found.shared_buffers_kb < 10.1 * 2**20  # ~10 GiB of a 16 GiB class
    bigger = rules.memory_settings("db.r6g.4xlarge")
    assert bigger is not None
    assert bigger.source == "estimated"
    assert bigger.shared_buffers_kb > 8 * found.shared_buffers_kb


def test_serverless_memory_comes_from_the_maximum_capacity() -> None:
    assert rules.memory_settings("db.serverless") is None  # no range: nothing to size it by
    small, large = rules.memory_settings("db.serverless", max_acu=4), rules.memory_settings("db.serverless", max_acu=64)
    assert small is not None
    assert large is not None
    assert small.memory_gib == 8
    assert small.max_connections < large.max_connections == 5000
    assert rules.memory_settings("db.m5.large") is None  # a class without figures: no invented value


# -- readers on demand, class change order ------------------------------------------------------------------------
class _M:
    def __init__(self, iid: str, writer: bool) -> None:
        self.db_instance_identifier = iid
        self.is_cluster_writer = writer


MEMBERS = [_M("c-1", True), _M("c-2", False), _M("c-3", False)]


@pytest.mark.parametrize(
    ("target", "minimum", "reason"),
    [("c-1", 0, "is the writer"), ("c-9", 0, "not a member"), ("c-2", 2, "below the configured minimum of 2")],
)
def test_reader_removal_is_refused_for_the_writer_and_below_the_minimum(target: str, minimum: int, reason: str) -> None:
    with pytest.raises(InvalidParameterError, match=reason):
        rules.check_reader_removal("c", MEMBERS, target, min_readers=minimum)


def test_reader_removal_down_to_the_minimum_is_allowed() -> None:
    rules.check_reader_removal("c", MEMBERS, "C-3", min_readers=1)  # identifiers compare lowercased


def test_at_most_fifteen_readers() -> None:
    assert rules.check_reader_additions(13, 2) == 2
    with pytest.raises(InvalidParameterError, match="at most 15"):
        rules.check_reader_additions(14, 2)


def test_class_change_order_readers_then_failover_to_a_changed_reader_then_the_old_writer() -> None:
    members = [C("c-1", True, True, 0, "db.r6g.large"), C("c-3", False, True, 1, "db.r6g.large"),
               C("c-2", False, True, 1, "db.r6g.large")]  # fmt: skip
    steps = rules.class_change_order(members, ["c-1", "c-2", "c-3"])
    assert [(s.action, s.instance_id) for s in steps] == [
        ("modify", "c-2"),
        ("modify", "c-3"),
        ("failover", "c-2"),
        ("modify", "c-1"),
    ]
    readers_only = rules.class_change_order(members, ["c-3"])
    assert [(s.action, s.instance_id) for s in readers_only] == [("modify", "c-3")]
    with pytest.raises(InvalidParameterError, match="changed, available reader"):
        rules.class_change_order(members, ["c-1"])  # the writer alone: nothing changed to fail over to


# -- Aurora Auto Scaling ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "metric", "target", "expected"),
    [
        (2, 10.0, 5.0, 4),  # twice the target: twice the readers
        (2, 5.5, 5.0, 3),  # just above: at least one more
        (2, 4.6, 5.0, 2),  # between 90 % and 100 %: hold
        (3, 1.0, 5.0, 1),  # far below: scale in (to the min)
        (2, 100.0, 5.0, 6),  # capped by the max
    ],
)
def test_target_tracking_capacity(current: int, metric: float, target: float, expected: int) -> None:
    assert rules.target_tracking_capacity(current, metric, target, min_capacity=1, max_capacity=6) == expected


def test_target_tracking_never_scales_in_when_disabled_and_stays_within_limits() -> None:
    assert rules.target_tracking_capacity(3, 0.0, 5.0, min_capacity=1, max_capacity=6, scale_in=False) == 3
    assert rules.target_tracking_capacity(0, 0.0, 5.0, min_capacity=2, max_capacity=6) == 2  # min enforced


@pytest.mark.parametrize(("low", "high"), [(-1, 3), (0, 16), (4, 3), (1.5, 3), (True, 3)])
def test_replica_capacity_limits(low: Any, high: Any) -> None:
    with pytest.raises(InvalidParameterError):
        rules.check_replica_capacity(low, high)


def test_a_cpu_target_is_a_percentage() -> None:
    with pytest.raises(InvalidParameterError, match="percentage"):
        validated(ReaderScalingPolicy, policy_name="p", metric="RDSReaderAverageCPUUtilization", target_value=120,
                  min_capacity=1, max_capacity=2)  # fmt: skip


# -- RDS Proxy ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_connections_percent": 0}, "max_connections_percent"),
        ({"max_connections_percent": 101}, "max_connections_percent"),
        ({"max_connections_percent": 20, "max_idle_connections_percent": 30}, "max_idle_connections_percent"),
        ({"idle_client_timeout_s": 0}, "idle_client_timeout_s"),
        ({"idle_client_timeout_s": 28801}, "idle_client_timeout_s"),
        ({"connection_borrow_timeout_s": 3601}, "connection_borrow_timeout_s"),
        ({"proxy_name": "Bad--name"}, "proxy_name"),
        ({"role_arn": "arn:aws:iam::1:user/x"}, "role_arn"),
    ],
)
def test_proxy_limits(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        validated(ProxySpec, **{"proxy_name": "p", **changes})
    assert field in info.value.field


def test_the_pool_is_a_share_of_max_connections() -> None:
    assert rules.proxy_pool_size(200, 10) == 20
    assert rules.proxy_pool_size(5, 10) == 1  # never zero


# -- the parameters files --------------------------------------------------------------------------------------------
def _load(path: Path, **overrides: Any) -> Any:
    return params.load(path, [f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.parametrize("name", ["local.yaml", "aws-dev.example.yaml", "aws-prod.example.yaml", "aws-emulated.yaml"])
def test_every_parameters_file_has_the_scale_and_proxy_sections(name: str) -> None:
    data = yaml.safe_load((ROOT / "parameters" / name).read_text())
    assert {"scale", "proxy"} <= set(data)
    loaded = params.load(ROOT / "parameters" / name)
    assert loaded.scale is not None
    assert loaded.proxy is not None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("scale.min_readers=9", "scale.min_readers"),
        ("scale.add_readers=0", "scale"),  # 'added' names the reader this run adds
        ("scale.instance_class_to=db.huge", "scale.instance_class_to"),
        ("proxy.max_connections_percent=0", "proxy.max_connections_percent"),
        ("proxy.iam_auth=true", "proxy.iam_auth"),  # the local backend has no IAM authentication
    ],
)
def test_bad_scale_and_proxy_parameters_are_refused_naming_the_key(override: str, field: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        params.load(ROOT / "parameters" / "local.yaml", [override])
    assert info.value.field.startswith(field), info.value.field


def test_a_runbook_receives_only_its_own_sections() -> None:
    loaded = params.load(ROOT / "parameters" / "local.yaml")
    assert {"scale", "probe"} <= set(loaded.injected("08-scale"))
    assert "proxy" not in loaded.injected("08-scale")
    assert {"proxy", "probe"} <= set(loaded.injected("09-proxy"))
    assert "scale" not in loaded.injected("09-proxy")
    assert params.RUNBOOKS.index("08-scale") < params.RUNBOOKS.index("09-proxy") < params.RUNBOOKS.index("99-teardown")
