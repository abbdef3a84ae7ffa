"""Aurora's rules (:mod:`aurora_kit.rules`): each one here, and each defined nowhere else."""

from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aurora_kit import rules
from aurora_kit.errors import FailoverNotPossibleError, InvalidParameterError, RestoreWindowError
from aurora_kit.rules import FailoverCandidate as C

PACKAGE = Path(rules.__file__).resolve().parent


@pytest.mark.parametrize("days", [0, 36, -1, True, 7.0, "7", None])
def test_retention_is_a_whole_number_of_days_from_1_to_35(days: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        rules.check_retention(days)
    assert info.value.field == "backup_retention_period"


@given(st.integers(min_value=1, max_value=35))
def test_every_retention_from_1_to_35_is_accepted(days: int) -> None:
    assert rules.check_retention(days) == days


@pytest.mark.parametrize("window", ["03:00-03:29", "23:50-00:10", "3:00-04:00", "24:00-01:00", "", None])
def test_backup_window_format_and_length(window: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        rules.check_backup_window(window)
    assert info.value.field == "preferred_backup_window"


def test_backup_window_may_wrap_midnight() -> None:
    assert rules.check_backup_window("23:45-00:15") == "23:45-00:15"


@pytest.mark.parametrize(
    ("window", "backup", "reason"),
    [
        ("sun:05:00-sun:05:20", None, "at least 30"),
        ("sunday:05:00-sun:06:00", None, "ddd:hh:mm"),
        ("xyz:05:00-sun:06:00", None, "ddd:hh:mm"),
        ("mon:03:30-mon:04:30", "03:00-04:00", "overlaps"),
        ("sun:23:50-mon:00:30", "00:00-00:30", "overlaps"),  # across midnight, into Monday's backup
        ("sat:23:00-sun:00:30", "00:00-01:00", "overlaps"),  # across the week's end
    ],
)
def test_maintenance_window_rules(window: str, backup: str | None, reason: str) -> None:
    with pytest.raises(InvalidParameterError, match=reason) as info:
        rules.check_maintenance_window(window, backup)
    assert info.value.field == "preferred_maintenance_window"


def test_maintenance_window_next_to_the_backup_window_is_fine() -> None:
    assert rules.check_maintenance_window("Sun:04:00-Sun:04:30", "03:00-04:00") == "sun:04:00-sun:04:30"


@pytest.mark.parametrize("value", ["db.r6g.lrage", "r6g.large", "db.r6g", "db..large", "db.serverles", "DB.R6G.LARGE"])
def test_instance_class_typos_are_refused(value: str) -> None:
    with pytest.raises(InvalidParameterError, match="not a DB instance class"):
        rules.check_instance_class(value)


@pytest.mark.parametrize("value", ["db.r6g.large", "db.r7g.16xlarge", "db.t4g.medium", "db.serverless", "db.x2g.metal"])
def test_instance_classes_are_accepted(value: str) -> None:
    assert rules.check_instance_class(value) == value


def test_instance_class_rank_orders_sizes() -> None:
    order = ["db.t4g.medium", "db.r6g.large", "db.r6g.xlarge", "db.r6g.2xlarge", "db.r6g.16xlarge", "db.r6g.metal"]
    assert sorted(order, key=rules.instance_class_rank) == order


def test_restore_window() -> None:
    now = datetime.now(timezone.utc)
    earliest, latest = now - timedelta(days=1), now - timedelta(minutes=5)
    assert rules.check_restore_window(now - timedelta(hours=1), earliest, latest)
    for bad in (now, now - timedelta(days=2)):
        with pytest.raises(RestoreWindowError) as info:
            rules.check_restore_window(bad, earliest, latest, cluster_id="c")
        assert info.value.context["latest"] == latest
        assert "'c'" in str(info.value)
    with pytest.raises(InvalidParameterError, match="timezone-aware"):
        rules.check_restore_window(datetime(2026, 1, 1), earliest, latest)
    with pytest.raises(RestoreWindowError, match="no restorable window"):
        rules.check_restore_window(now, None, None)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_one_automated_backup_a_day_once_the_window_opens() -> None:
    window = "03:00-04:00"
    created = _utc("2030-01-01T10:00")  # the backup taken at creation
    assert not rules.backup_due(window, created, _utc("2030-01-02T02:59"))  # window not open yet
    assert rules.backup_due(window, created, _utc("2030-01-02T03:00"))  # open: due
    assert rules.backup_due(window, created, _utc("2030-01-02T09:00"))  # missed: still due (caught up, late)
    taken = _utc("2030-01-02T03:05")
    assert not rules.backup_due(window, taken, _utc("2030-01-02T03:30"))  # one a day
    assert not rules.backup_due(window, taken, _utc("2030-01-03T02:59"))
    assert rules.backup_due(window, taken, _utc("2030-01-03T03:00"))
    assert rules.backup_due(window, None, _utc("2030-01-03T01:00"))  # none at all: due now
    assert not rules.backup_due(window, _utc("2030-01-01T03:10"), _utc("2030-01-01T03:20"))  # created in the window
    # the next one: the next window's start, or now when due
    assert rules.next_backup_due(window, taken, _utc("2030-01-02T12:00")) == _utc("2030-01-03T03:00")
    assert rules.next_backup_due(window, created, _utc("2030-01-02T05:00")) == _utc("2030-01-02T05:00")
    # a window across midnight: it opened yesterday evening
    assert rules.backup_window_start("23:30-00:30", _utc("2030-01-02T00:10")) == _utc("2030-01-01T23:30")
    assert rules.backup_window_start(
        "23:30-00:30",
        datetime(2030, 1, 2, 3, 10, tzinfo=timezone(timedelta(hours=2))),  # 01:10 UTC
    ) == _utc("2030-01-01T23:30")


def test_retention_keeps_the_period_restorable() -> None:
    now = _utc("2030-01-10T04:00")
    taken = [_utc(f"2030-01-{d:02d}T03:05") for d in (1, 5, 6, 7, 8, 9, 10)]
    # 3 days: backups since 01-07 04:00 are kept, plus the newest before (01-07 03:05) — a restore to 01-07 04:00
    # replays from it; 01-01..01-06 expire
    assert rules.retention_keeps(taken, 3, now) == [False, False, False, True, True, True, True]
    assert rules.retention_keeps(taken[:1], 1, now) == [True]  # the only (newest) one always stays
    assert rules.retention_keeps([], 1, now) == []
    # a deleted cluster's retained backups: kept while the period still reaches its deletion, then all expire
    deleted = _utc("2030-01-09T12:00")
    assert rules.retention_keeps(taken[:6], 1, now, logs_end=deleted) == [False] * 5 + [True]
    assert rules.retention_keeps(taken[:6], 1, _utc("2030-01-10T12:01"), logs_end=deleted) == [False] * 6
    with pytest.raises(InvalidParameterError):
        rules.retention_keeps(taken, 0, now)


def test_final_snapshot_choice_must_be_explicit() -> None:
    rules.check_final_snapshot_choice("final", False)
    rules.check_final_snapshot_choice(None, True)
    for args in ((None, False), ("final", True)):
        with pytest.raises(InvalidParameterError, match="exactly one"):
            rules.check_final_snapshot_choice(*args)


def test_failover_target_tier_then_size_then_name() -> None:
    w = C("w", True, True, 0, "db.r6g.large")
    members = [
        w,
        C("r-b", False, True, 1, "db.r6g.large"),
        C("r-a", False, True, 1, "db.r6g.large"),
        C("r-big", False, True, 1, "db.r6g.2xlarge"),
        C("r-tier2", False, True, 2, "db.r6g.16xlarge"),
    ]
    assert rules.failover_target("c", members) == ("w", "r-big")  # same tier: the largest
    same = [m for m in members if m.instance_id != "r-big"]
    assert rules.failover_target("c", same) == ("w", "r-a")  # same tier and size: by name
    down = [C(m.instance_id, m.is_writer, m.instance_id != "r-a", m.promotion_tier, m.instance_class) for m in same]
    assert rules.failover_target("c", down) == ("w", "r-b")  # unavailable readers are skipped
    assert rules.failover_target("c", members, "R-TIER2") == ("w", "r-tier2")  # RDS ids are case-insensitive


@pytest.mark.parametrize(
    ("members", "requested", "match"),
    [
        ([C("w", True, True)], None, "1 instance"),
        ([C("r", False, True)], None, "no writer"),
        ([C("w", True, True), C("r", False, False)], None, "no reader is available"),
        ([C("w", True, True), C("r", False, True)], "w", "already the writer"),
        ([C("w", True, True), C("r", False, True)], "x", "not a reader"),
        ([C("w", True, True), C("r", False, False)], "r", "not available"),
    ],
)
def test_failover_target_refusals(members: list[C], requested: str | None, match: str) -> None:
    with pytest.raises(FailoverNotPossibleError, match=match):
        rules.failover_target("c", members, requested)


def test_reboot_order_readers_first_writer_last() -> None:
    from aurora_kit.backends.base import ClusterMember

    members = [
        ClusterMember("w", True, "pending-reboot"),
        ClusterMember("r2", False, "pending-reboot"),
        ClusterMember("r3", False, "in-sync"),
        ClusterMember("r1", False, "pending-reboot"),
    ]
    assert rules.reboot_order(members) == ["r1", "r2", "w"]


@pytest.mark.parametrize("period", [10, 30, 59, 90, 0, True, 60.0])
def test_alarm_period_is_a_multiple_of_60(period: object) -> None:
    with pytest.raises(InvalidParameterError, match="multiple of 60"):
        rules.check_alarm_period(period)


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("MasterUserPassword", True),
        ("db_pwd", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_SESSION_TOKEN", True),
        ("client_credentials", True),
        ("MasterUserSecretArn", False),  # names a secret, is not one
        ("secret_arn", False),
        ("ManageMasterUserPassword", False),  # a switch
        ("cluster_id", False),
        ("DBClusterIdentifier", False),
    ],
)
def test_secret_key_rule(key: str, secret: bool) -> None:
    assert rules.is_secret_key(key) is secret


def test_plan_record_and_redaction_agree_on_secret_keys() -> None:
    """The dry-run plan, the audit record and the parameters model all use the one rule."""
    from aurora_kit.backends.base import REDACTED, redact
    from aurora_kit.redaction import Redactor

    params = {"MasterUserSecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:x", "MasterUserPassword": "hunter22"}
    plan = redact(params)
    record = Redactor().obj(params)
    assert plan == record == {"MasterUserSecretArn": params["MasterUserSecretArn"], "MasterUserPassword": REDACTED}


# -- one home per rule ------------------------------------------------------------------------------------------
#: functions only rules.py may define (a second definition is a second rule that can disagree)
RULE_FUNCTIONS = {
    "check_identifier",
    "check_retention",
    "check_backup_window",
    "backup_window_start",
    "backup_due",
    "next_backup_due",
    "retention_keeps",
    "check_maintenance_window",
    "window_minutes",
    "check_instance_class",
    "check_restore_window",
    "check_final_snapshot_choice",
    "failover_target",
    "reboot_order",
    "check_alarm_period",
    "is_secret_key",
}


def test_every_rule_is_defined_only_in_rules_py() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "rules.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in RULE_FUNCTIONS:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} defines {node.name}")
    assert not offenders, offenders


def test_the_secret_words_appear_only_in_rules_py() -> None:
    """A regex listing password|secret|token outside rules.py would be a second secret-key rule."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "rules.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "password|" in line.lower() or "|token" in line.lower() or "secret|" in line.lower():
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}")
    assert not offenders, offenders
