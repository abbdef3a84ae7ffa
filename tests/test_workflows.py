"""aurora_kit.workflows without servers: a fake backend, real parameters, real sockets for the reachability probe."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aurora_kit import params
from aurora_kit import workflows as wf
from aurora_kit.backends.base import (
    AlarmState,
    Cluster,
    ClusterMember,
    ConnectionInfo,
    FailoverResult,
    ParameterChange,
    ParameterChangeResult,
)
from aurora_kit.checks.write_probe import Ack, WriteProbeReport
from aurora_kit.errors import (
    ClusterNotFoundError,
    ConfirmationRequiredError,
    DeletionProtectionError,
    VerificationError,
)
from aurora_kit.runbook import Run

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 26, 22, 0, tzinfo=timezone.utc)


def _cluster(**changes: Any) -> Cluster:
    base = Cluster(
        db_cluster_identifier="ak-local",
        status="available",
        engine="aurora-postgresql",
        engine_version="16.4",
        endpoint="127.0.0.1:5432",
        reader_endpoint="127.0.0.1:5433",
        port=5432,
        master_username="postgres",
        database_name="app",
        db_cluster_members=[
            ClusterMember("ak-local-1", True, "in-sync", 0),
            ClusterMember("ak-local-2", False, "in-sync", 1),
            ClusterMember("ak-local-3", False, "in-sync", 1),
        ],
        backup_retention_period=1,
        preferred_backup_window="03:00-04:00",
        storage_encrypted=True,
        deletion_protection=False,
    )
    return dataclasses.replace(base, **changes)


class FakeBackend:
    name = "fake"

    def __init__(self, cluster: Cluster | None = None, conninfo: str = "host=127.0.0.1 port=1") -> None:
        self.cluster = cluster
        self.conninfo = conninfo
        self.dry_run = False
        self.progress = False
        self.plan: list[Any] = []
        self.calls: list[str] = []

    def describe_cluster(self, cluster_id: str) -> Cluster:
        if self.cluster is None:
            raise ClusterNotFoundError(cluster_id)
        return self.cluster

    def list_clusters(self) -> list[Cluster]:
        return [self.cluster] if self.cluster else []

    def connection_info(self, cluster_id: str, endpoint: str = "cluster") -> ConnectionInfo:
        return ConnectionInfo(self.conninfo, user="postgres", dbname="app", password="pw", endpoint=endpoint)

    def failover(self, cluster_id: str, **kwargs: Any) -> FailoverResult:
        self.calls.append(f"failover {kwargs}")
        return FailoverResult(cluster_id, kwargs["mode"], "ak-local-1", "ak-local-2", T0, T0)

    def reboot_pending(self, cluster_id: str) -> list[Any]:
        self.calls.append("reboot_pending")
        return []

    def delete_cluster(self, cluster_id: str, **kwargs: Any) -> None:
        self.calls.append(f"delete_cluster {kwargs}")

    def close(self) -> None:
        pass


def _run(backend: FakeBackend, *overrides: str) -> Run:
    p = params.load(ROOT / "parameters" / "local.yaml", list(overrides))
    return Run("test", p, "run-1", "tester", "host", T0, _backend=backend)  # type: ignore[arg-type]


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        yield srv.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- data plane --------------------------------------------------------------------------------------------------
def test_probe_tcp_tells_open_refused_and_unresolvable_apart(listening: int) -> None:
    assert wf.probe_tcp("127.0.0.1", listening) is None
    assert "refused or unreachable" in str(wf.probe_tcp("127.0.0.1", _closed_port(), timeout=1))
    assert str(wf.probe_tcp("ak.cluster-x.invalid", 5432)).startswith("cannot resolve ak.cluster-x.invalid")


def test_data_plane_available_when_any_endpoint_host_accepts(listening: int) -> None:
    backend = FakeBackend(_cluster(), f"host=127.0.0.1,127.0.0.1 port={_closed_port()},{listening}")
    dp = wf.data_plane(_run(backend))
    assert dp
    assert dp.record == "available"


def test_data_plane_unreachable_says_why_and_records_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    backend = FakeBackend(_cluster(), "host=ak.cluster-x.invalid port=5432")
    dp = wf.data_plane(
        _run(backend, "backend=aws", "aws.ca_bundle=/ca.pem", "availability_zones=[us-east-1a, us-east-1b]")
    )
    assert not dp
    assert dp.record.startswith("skipped (cannot resolve ak.cluster-x.invalid")
    assert "AWS_ENDPOINT_URL is set" in dp.reason
    assert "SKIPPED" in str(dp)


def test_data_plane_of_a_missing_cluster_in_a_dry_run() -> None:
    dp = wf.data_plane(_run(FakeBackend(None), "dry_run=true"))
    assert not dp
    assert "dry run: the cluster was not created" in dp.reason


def test_when_runs_only_with_a_data_plane_and_skips_writes_in_dry_runs(capsys: pytest.CaptureFixture[str]) -> None:
    up, down = wf.DataPlane(True, "ok"), wf.DataPlane(False, "no route")
    assert wf.when(up, lambda x: x + 1, 1) == 2
    skipped = wf.when(down, wf.check_roles, None)
    assert isinstance(skipped, wf.Skipped)
    assert skipped.summary() == "skipped (data plane not reachable: no route)"
    assert "SKIPPED check roles" in capsys.readouterr().out
    dry = wf.DataPlane(True, "ok", dry_run=True)
    assert wf.when(dry, lambda: 1, writes=True).reason == "dry run: no data-plane writes"
    assert wf.when(dry, lambda: 1) == 1


def test_a_skipped_check_is_never_reported_as_passed(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = wf.Skipped("replica lag", "data plane not reachable: x")
    wf.verify(skipped)
    out = capsys.readouterr().out
    assert "not verified" in out
    assert "PASS" not in out
    assert skipped.ok is None
    assert "SKIPPED" in skipped._repr_html_()


def test_summary_turns_results_into_recordable_values() -> None:
    class Check:
        def summary(self) -> dict[str, int]:
            return {"n": 1}

    out = wf.summary(
        dp=wf.DataPlane(False, "why"),
        check=Check(),
        skipped=wf.Skipped("a", "b"),
        table=wf.Table([{"a": 1}]),
        plain=3,
    )
    assert out == {"dp": "skipped (why)", "check": {"n": 1}, "skipped": "skipped (b)", "table": [{"a": 1}], "plain": 3}


# -- 01 / 02 -------------------------------------------------------------------------------------------------------
def test_check_cluster_matches_names_every_difference() -> None:
    spec = _run(FakeBackend()).spec
    wf.check_cluster_matches(_cluster(), spec)
    failed_over = [
        ClusterMember("ak-local-1", False),
        ClusterMember("ak-local-2", True),
        ClusterMember("ak-local-3", False),
    ]
    wf.check_cluster_matches(_cluster(db_cluster_members=failed_over), spec)  # another writer is not drift
    wrong = _cluster(backup_retention_period=7, db_cluster_members=[ClusterMember("ak-local-2", True)])
    with pytest.raises(VerificationError) as exc:
        wf.check_cluster_matches(wrong, spec)
    text = str(exc.value)
    assert "instances ['ak-local-2'], expected ['ak-local-1', 'ak-local-2', 'ak-local-3']" in text
    assert "backup retention 7 d, expected 1" in text
    with pytest.raises(VerificationError, match="no writer"):
        wf.check_cluster_matches(
            _cluster(db_cluster_members=[ClusterMember(m.db_instance_identifier, False) for m in failed_over]), spec
        )


def test_parameter_diff_and_settings_report() -> None:
    diff = wf.parameter_diff({"a": "1", "b": "2"}, {"a": "1", "b": "3"})
    assert diff.title == "1 of 2 parameters change"
    report = wf.SettingsReport(
        {"log_min_duration_statement": "250", "max_connections": "200"},
        {
            "i1": {"log_min_duration_statement": ("250ms", "250", False), "max_connections": ("200", "200", False)},
            "i2": {"log_min_duration_statement": ("250ms", "250", False), "max_connections": ("100", "100", True)},
            "i3": {"log_min_duration_statement": ("-1", "-1", False), "max_connections": ("100", "100", True)},
        },
        still_pending=["i3"],
        static=["max_connections"],
    )
    assert report.problems() == [
        "i2: max_connections = 100 (setting 100), wanted 200",
        "i2: max_connections still pending restart",
        "i3: log_min_duration_statement = -1 (setting -1), wanted 250",  # dynamic: no excuse on a pending instance
    ]
    with pytest.raises(VerificationError):
        report.assert_ok()


def _change_result(pending: list[str]) -> ParameterChangeResult:
    return ParameterChangeResult(
        "ak-local", [ParameterChange("max_connections", "100", "200", "static", "pending-reboot")], pending
    )


def test_rolling_reboot_respects_allow_reboot_and_confirm() -> None:
    backend = FakeBackend(_cluster())
    assert wf.rolling_reboot(_run(backend), _change_result([])) == wf.RebootOutcome([], [], ["max_connections"])
    kept = wf.rolling_reboot(_run(backend, "parameter_group.allow_reboot=false"), _change_result(["ak-local-1"]))
    assert kept.still_pending == ["ak-local-1"]
    with pytest.raises(ConfirmationRequiredError, match="confirm: true"):
        wf.rolling_reboot(_run(backend), _change_result(["ak-local-1"]))  # the parameters file's default
    assert backend.calls == []
    assert wf.rolling_reboot(_run(backend, "confirm=true"), _change_result(["ak-local-1"])).still_pending == []
    assert backend.calls == ["reboot_pending"]


# -- 05 ------------------------------------------------------------------------------------------------------------
def test_restore_ids_snapshot_id_and_target() -> None:
    run = _run(FakeBackend())
    assert wf.restore_ids(run) == {"snapshot": "ak-local-restored", "pitr": "ak-local-restored-pitr"}
    assert wf.restore_ids(_run(FakeBackend(), "backup_restore.restore_mode=pitr")) == {"pitr": "ak-local-restored"}
    assert wf.snapshot_id(run) == "ak-local-20261126-220000"
    assert wf.snapshot_id(_run(FakeBackend(), "backup_restore.snapshot_id=keep-me")) == "keep-me"

    class Seeded:
        cutoff = T0

    assert wf.restore_target(run, Seeded()) == T0
    assert wf.restore_target(run, wf.Skipped("seed", "x")) is None
    given = _run(FakeBackend(), "backup_restore.restore_time=2026-11-26T21:00:00Z")
    assert wf.restore_target(given, Seeded()) == datetime(2026, 11, 26, 21, 0, tzinfo=timezone.utc)


def test_retention_report() -> None:
    now = T0 + timedelta(hours=2)
    live = {"checked_at": now}
    assert wf.RetentionReport("c", 1, 1, T0, now - timedelta(minutes=4), **live).problems() == []
    with pytest.raises(VerificationError, match="retention 1 d < wanted 7 d"):
        wf.RetentionReport("c", 1, 7, T0, now, **live).assert_ok()


def test_retention_report_requires_a_live_restorable_window() -> None:
    now = T0 + timedelta(hours=2)
    missing = wf.RetentionReport("c", 1, 1, None, None, checked_at=now).problems()
    assert missing == [
        "no EarliestRestorableTime reported: no restorable window",
        "no LatestRestorableTime reported: point-in-time restore has no target",
    ]
    with pytest.raises(VerificationError, match="is after LatestRestorableTime"):
        wf.RetentionReport("c", 1, 1, now, T0, checked_at=now + timedelta(minutes=1)).assert_ok()
    with pytest.raises(VerificationError, match=r"is 660s old > 600s"):
        wf.RetentionReport("c", 1, 1, T0, now - timedelta(minutes=11), checked_at=now).assert_ok()
    tight = wf.RetentionReport("c", 1, 1, T0, now - timedelta(minutes=4), checked_at=now, max_latest_age_s=120)
    assert len(tight.problems()) == 1
    assert "240s old > 120s" in tight.problems()[0]


def test_check_backups_reads_the_cluster_now() -> None:
    now = datetime.now(timezone.utc)
    fresh = FakeBackend(_cluster(earliest_restorable_time=T0, latest_restorable_time=now))
    report = wf.check_backups(_run(fresh)).assert_ok()
    assert report.summary()["latest_restorable_age_s"] < 60
    stale = FakeBackend(_cluster(earliest_restorable_time=T0, latest_restorable_time=now - timedelta(hours=1)))
    with pytest.raises(VerificationError, match="backups / WAL archiving are not keeping up"):
        wf.check_backups(_run(stale)).assert_ok()
    assert "is 3600s old" not in " ".join(wf.check_backups(_run(stale), max_latest_age_s=7200).problems())
    with pytest.raises(VerificationError, match="no LatestRestorableTime"):
        wf.check_backups(_run(FakeBackend(_cluster()))).assert_ok()


# -- 06 ------------------------------------------------------------------------------------------------------------
def _probe_report(lost: int = 0, gap_s: float = 0.4) -> WriteProbeReport:
    """A real write-probe report: 10 writes, ak-local-1 then (after a ``gap_s`` outage) ak-local-2."""
    acks = [
        Ack(i, t, T0 + timedelta(seconds=t), "ak-local-1" if i < 5 else "ak-local-2", 1 if i < 5 else 2)
        for i, t in enumerate([0.0, 0.1, 0.2, 0.3, 0.4] + [0.4 + gap_s + 0.1 * k for k in range(5)])
    ]
    return WriteProbeReport(
        run_id="r",
        rate=10,
        duration_s=1.0,
        attempted=len(acks),
        acks=acks,
        failures=[],
        lost_ids=list(range(lost)),
        in_doubt_ids=[],
        in_doubt_committed=[],
        verified_on="ak-local-2",
        verified_on_read_only=False,
        recovered=True,
    )


def test_failover_needs_confirm_before_any_call() -> None:
    backend = FakeBackend(_cluster())
    unreachable = wf.DataPlane(False, "test: no data plane")
    with pytest.raises(ConfirmationRequiredError, match="planned failover on 'ak-local' needs confirm: true"):
        wf.failover(_run(backend), unreachable)  # the parameters file's default: confirm: false
    with pytest.raises(ConfirmationRequiredError, match="crash failover"):
        wf.failover(_run(backend, "failover.mode=crash"), unreachable)
    assert backend.calls == []
    result, probe = wf.failover(_run(backend, "confirm=true"), unreachable)
    assert backend.calls == ["failover {'target_instance_id': None, 'mode': 'planned'}"]
    assert result.new_writer == "ak-local-2"
    assert isinstance(probe, wf.Skipped)


def test_check_failover_limits() -> None:
    run = _run(FakeBackend())
    result = FailoverResult("ak-local", "planned", "ak-local-1", "ak-local-2", T0, T0)
    assert wf.check_failover(run, result, _probe_report())["lost_commits"] == 0
    with pytest.raises(VerificationError, match="1 acknowledged writes missing after the event > 0 allowed"):
        wf.check_failover(run, result, _probe_report(lost=1))
    allowed = _run(FakeBackend(), "failover.max_lost_commits=1")
    assert wf.check_failover(allowed, result, _probe_report(lost=1))["lost_commits"] == 1
    with pytest.raises(VerificationError, match="2 acknowledged writes missing after the event > 1 allowed"):
        wf.check_failover(allowed, result, _probe_report(lost=2))
    with pytest.raises(VerificationError, match=r"RTO 20\.00s > 15s"):
        wf.check_failover(run, result, _probe_report(gap_s=20))
    with pytest.raises(VerificationError, match="writes ended on ak-local-2, expected new writer ak-local-3"):
        wf.check_failover(run, dataclasses.replace(result, new_writer="ak-local-3"), _probe_report())
    figures = wf.check_failover(run, result, wf.Skipped("write probe", "no route"))
    assert figures["write_probe"] == "skipped (no route)"
    assert "rto_s" not in figures


# -- 07 / 99 -------------------------------------------------------------------------------------------------------
def _alarm(metric: str, state: str = "OK") -> AlarmState:
    return AlarmState(f"aurora-kit/ak-local/{metric}", metric, 1.0, "GreaterThanThreshold", state)


METRICS = ["AuroraReplicaLag", "CPUUtilization", "FreeableMemory", "DatabaseConnections"]


def test_check_alarms_insufficient_data_fails_locally_not_on_aws() -> None:
    states = [_alarm(m, "INSUFFICIENT_DATA" if m == "AuroraReplicaLag" else "OK") for m in METRICS]
    with pytest.raises(VerificationError, match="AuroraReplicaLag is INSUFFICIENT_DATA") as exc:
        wf.check_alarms(_run(FakeBackend()), states)  # local: sampled on demand, no data = not measurable
    assert exc.value.context["states"] == {"INSUFFICIENT_DATA": 1, "OK": 3}
    aws = _run(FakeBackend(), "backend=aws", "aws.ca_bundle=/ca.pem", "availability_zones=[us-east-1a, us-east-1b]")
    assert wf.check_alarms(aws, states) == {"INSUFFICIENT_DATA": 1, "OK": 3}  # CloudWatch: not evaluated yet


def test_check_alarms() -> None:
    run = _run(FakeBackend())
    metrics = METRICS
    assert wf.check_alarms(run, [_alarm(m) for m in metrics]) == {"OK": 4}
    with pytest.raises(VerificationError, match="no alarm on FreeableMemory"):
        wf.check_alarms(run, [_alarm(m) for m in metrics if m != "FreeableMemory"])
    with pytest.raises(VerificationError, match="is in ALARM"):
        wf.check_alarms(run, [_alarm(m, "ALARM" if m == "CPUUtilization" else "OK") for m in metrics])


def test_teardown_stops_before_deleting_a_protected_cluster_or_without_confirm() -> None:
    protected = FakeBackend(_cluster(deletion_protection=True))
    run = _run(protected)
    with pytest.raises(DeletionProtectionError):
        wf.teardown_plan(run, protected.cluster)
    assert (
        "will be lifted first"
        in wf.teardown_plan(_run(protected, "teardown.lift_deletion_protection=true"), protected.cluster).title
    )
    backend = FakeBackend(_cluster())
    with pytest.raises(ConfirmationRequiredError, match="confirm: true"):
        wf.teardown(_run(backend), backend.cluster)  # the parameters file's default: confirm: false
    assert backend.calls == []
    typed = "teardown.confirm_cluster_id=ak-local"
    with pytest.raises(ConfirmationRequiredError, match="confirm: true"):
        wf.teardown(_run(backend, typed), backend.cluster)
    for wrong in ([], ["teardown.confirm_cluster_id=ak-other"]):  # confirm alone is not enough
        with pytest.raises(ConfirmationRequiredError) as exc:
            wf.teardown(_run(backend, "confirm=true", *wrong), backend.cluster)
        assert "cluster_id='ak-local'" in str(exc.value)
        assert f"teardown.confirm_cluster_id={'ak-other' if wrong else None!r}" in str(exc.value)
        assert "-p teardown.confirm_cluster_id=ak-local" in str(exc.value)
    assert backend.calls == []
    planned = wf.teardown(_run(backend, "dry_run=true"), backend.cluster)  # a dry run only plans
    assert planned is None
    backend.calls.clear()
    wf.teardown(_run(backend, "confirm=true", typed), backend.cluster)
    assert backend.calls == [
        "delete_cluster {'final_snapshot_id': None, 'skip_final_snapshot': True, 'lift_deletion_protection': False}"
    ]
    with pytest.raises(VerificationError, match="still exists"):
        wf.check_gone(_run(backend))
    assert wf.check_gone(_run(FakeBackend(None))) is True
    assert wf.find_cluster(_run(FakeBackend(None))) is None
