"""Issue 13's defects that need a real data plane or Aurora's events, on the emulated AWS (``aurora-kit emulate``),
one test each (``test_defect_NN_...``), written before the fix and seen failing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from plugins.aws_emulator import RunningEmulator

from aurora_kit import params, runner

pytestmark = [pytest.mark.integration, pytest.mark.notebooks, pytest.mark.timeout(600)]


def _run(name: str, parameters: dict[str, Any], audit_dir: Path) -> runner.RunResult:
    return runner.run_notebook(runner.resolve(name), parameters, audit_dir=audit_dir)


def _ok(result: runner.RunResult) -> dict[str, Any]:
    assert result.status == "passed", f"{result.runbook}: {result.failure or result.error}"
    return result.results or {}


def test_defect_01_with_iam_auth_the_runbooks_log_in_as_the_iam_user(
    emulator_env: RunningEmulator, tmp_path: Path
) -> None:
    """iam_auth: true — 01 creates aws.iam_db_user, grants it rds_iam (connecting once as the master user with the
    managed secret) and checks it logs in with a token; 04 then runs every check as that user; the master user never
    logs in with a token."""
    path = emulator_env.parameters(
        tmp_path / "iam.yaml", cluster_id="ak-iam", readers=1, iam_auth=True, aws={"iam_db_user": "app_iam"},
        availability_zones=["us-east-1a", "us-east-1b"], deletion_protection=False,
    )  # fmt: skip
    p = params.load(path).injected()
    audit_dir = tmp_path / "audit"
    created = _ok(_run("01", p, audit_dir))
    assert created["iam_user"]["user"] == "app_iam"
    assert created["iam_user"]["logged_in_as"] == "app_iam"
    assert "rds_iam" in created["iam_user"]["granted"]
    _ok(_run("04", p, audit_dir))
    connects = [c for c in emulator_env.client.calls() if c["service"] == "rds-db"]
    assert connects, "no IAM login at all"
    assert all(c["ok"] and c["resource"].endswith("/app_iam") for c in connects), connects


@pytest.mark.timing  # "fails fast": within 15 s (the emulator reports the failure in about a second)
def test_defect_03_a_failed_failover_fails_fast_with_the_events_message(emulator_env: RunningEmulator) -> None:
    """Aurora reports a failed failover with RDS-EVENT-0069 (and 0070 when the old writer is promoted again): the
    backend stops at once with that message instead of polling to its deadline; the failover's own poll profile
    polls at least every 2 s for at most ~5 minutes; a completed failover reports its control-plane time with the
    poll's error bound."""
    import time

    from aurora_kit.backends.aws import AwsBackend, PollSettings
    from aurora_kit.errors import FailoverFailedError
    from aurora_kit.specs import ClusterSpec

    profile = PollSettings().profile("failover")
    assert profile.max_delay <= 2.0
    assert 240 <= profile.timeout <= 360
    backend = AwsBackend(**emulator_env.backend_options(poll=PollSettings(timeout=120)))
    backend.create_cluster(ClusterSpec.with_readers("ak-fo", 1, availability_zones=["us-east-1a", "us-east-1b"],
                                                    deletion_protection=False))  # fmt: skip
    emulator_env.client.inject_fault("FailoverDBCluster", "ak-fo")
    started = time.monotonic()
    with pytest.raises(FailoverFailedError) as failed:
        backend.failover("ak-fo")
    assert time.monotonic() - started < 15
    assert "Cluster failover failed, check the health of your cluster instances and try again." in str(failed.value)
    assert backend.describe_cluster("ak-fo").writer_id == "ak-fo-1"
    done = backend.failover("ak-fo")
    assert done.new_writer == "ak-fo-2"
    assert 0 < done.control_plane_error_s <= 2.0
    assert done.control_plane_seconds > 0


def test_defect_05_every_alarm_still_has_data_after_a_failover(emulator_env: RunningEmulator, tmp_path: Path) -> None:
    """Alarms bound to instance roles go silent when the roles swap (a reader's AuroraReplicaLag alarm on an instance
    that now writes: Aurora publishes no replica lag for a writer). After a failover, every alarm's metric — its
    name and exact dimensions — must still be published."""
    import time
    from datetime import datetime, timedelta, timezone

    import boto3

    from aurora_kit.backends.aws import AwsBackend
    from aurora_kit.specs import ClusterSpec

    backend = AwsBackend(**emulator_env.backend_options())
    backend.create_cluster(ClusterSpec.with_readers("ak-alarms", 1, availability_zones=["us-east-1a", "us-east-1b"],
                                                    deletion_protection=False))  # fmt: skip
    specs = params.load(emulator_env.parameters(tmp_path / "p.yaml")).section("monitoring")
    backend.put_alarms("ak-alarms", specs.alarm_specs())
    backend.failover("ak-alarms")
    after = datetime.now(timezone.utc)
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix="aurora-kit/ak-alarms/")["MetricAlarms"]
    assert {a["MetricName"] for a in alarms} >= {"CPUUtilization", "FreeableMemory", "DatabaseConnections"}

    def silent() -> list[str]:
        out = []
        for alarm in alarms:
            points = cloudwatch.get_metric_statistics(
                Namespace=alarm["Namespace"], MetricName=alarm["MetricName"], Dimensions=alarm["Dimensions"],
                StartTime=after, EndTime=datetime.now(timezone.utc) + timedelta(minutes=1), Period=60,
                Statistics=["Maximum"],
            )["Datapoints"]  # fmt: skip
            if not points:
                out.append(alarm["AlarmName"])
        return out

    deadline = time.monotonic() + 20  # the emulator publishes every 2 s
    while (quiet := silent()) and time.monotonic() < deadline:
        time.sleep(1)
    assert quiet == [], f"alarms without data after the failover: {quiet}"
