"""Input validation (before any mutation) and the one polling helper."""

from __future__ import annotations

import pytest

from aurora_kit.errors import InvalidParameterError, WaitTimeoutError
from aurora_kit.polling import wait_for
from aurora_kit.specs import ClusterSpec, validated


def test_with_readers_names_writer_first_and_spreads_zones() -> None:
    spec = ClusterSpec.with_readers("orders", 2, availability_zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"])
    assert [i.instance_id for i in spec.instances] == ["orders-1", "orders-2", "orders-3"]
    assert [i.availability_zone for i in spec.instances] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert spec.instances[0].promotion_tier == 0
    assert spec.backup_retention_period == 7
    assert spec.preferred_backup_window == "03:00-04:00"
    assert spec.storage_encrypted
    assert spec.deletion_protection


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backup_retention_period", 0),
        ("backup_retention_period", 36),
        ("preferred_backup_window", "3am-4am"),
        ("preferred_backup_window", "03:00-03:10"),
        ("engine_version", "latest"),
        ("master_username", "1admin"),
    ],
)
def test_bad_cluster_values_name_the_field_and_value(field: str, value: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        ClusterSpec.with_readers("orders", 1, **{field: value})
    assert info.value.field == field
    assert info.value.value == value
    assert field in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("bad_id", ["1orders", "orders-", "or--ders", "a" * 64, "orders_1"])
def test_bad_identifiers_are_rejected(bad_id: str) -> None:
    with pytest.raises(InvalidParameterError, match="cluster_id"):
        ClusterSpec.with_readers(bad_id, 0)


def test_duplicate_instances_and_serverless_without_scaling_are_rejected() -> None:
    inst = {"instance_id": "a-1"}
    with pytest.raises(InvalidParameterError, match="duplicate instance_id"):
        validated(ClusterSpec, cluster_id="a", instances=[inst, inst])
    with pytest.raises(InvalidParameterError, match="serverless_v2_scaling"):
        validated(ClusterSpec, cluster_id="a", instances=[{"instance_id": "a-1", "instance_class": "db.serverless"}])


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="backup_retention"):
        ClusterSpec.with_readers("orders", 0, backup_retention=7)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_for_backs_off_and_returns_the_first_done_state() -> None:
    clock = FakeClock()
    states = iter(["creating", "creating", "backing-up", "available"])
    result = wait_for(
        "cluster available", lambda: next(states), lambda s: s == "available",
        initial_delay=1, backoff=2, max_delay=3, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert result == "available"
    assert clock.sleeps == [1, 2, 3]


def test_wait_for_times_out_naming_what_and_last_state() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeoutError) as info:
        wait_for("writer promoted", lambda: "in-recovery", lambda s: False, timeout=10, clock=clock, sleep=clock.sleep)
    assert info.value.what == "writer promoted"
    assert info.value.last_state == "'in-recovery'"
    assert sum(clock.sleeps) == pytest.approx(10)


def test_wait_for_retries_listed_exceptions_only() -> None:
    clock = FakeClock()
    calls = iter([ConnectionError("refused"), ConnectionError("refused"), "up"])

    def probe() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert wait_for("server up", probe, lambda s: s == "up", retry_on=(ConnectionError,), clock=clock,
                    sleep=clock.sleep) == "up"  # fmt: skip
    with pytest.raises(KeyError):
        wait_for("boom", lambda: {}["x"], lambda s: True, retry_on=(ConnectionError,))


def test_wait_for_stops_at_a_terminal_state() -> None:
    from aurora_kit.errors import InvalidStateError

    clock = FakeClock()
    states = iter(["creating", "incompatible-parameters", "available"])
    with pytest.raises(InvalidStateError, match="incompatible-parameters") as info:
        wait_for(
            "cluster available", lambda: next(states), lambda s: s == "available",
            fail_if=lambda s: f"status is {s}" if s.startswith("incompatible") else None,
            clock=clock, sleep=clock.sleep,
        )  # fmt: skip
    assert info.value.context["what"] == "cluster available"
    assert len(clock.sleeps) == 1


def test_identifiers_are_lowercased_as_rds_stores_them() -> None:
    spec = ClusterSpec.with_readers("Orders", 1)
    assert spec.cluster_id == "orders"
    assert [i.instance_id for i in spec.instances] == ["orders-1", "orders-2"]
