"""07-monitoring: alarms on replica lag, CPU, memory and connections put on the cluster (CloudWatch on aws; the
local backend evaluates the same thresholds when asked), then judged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aurora_kit.display import Table
from aurora_kit.rules import check_alarm_can_fire
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import DataPlane, connect_timeout
from aurora_kit.steps.common import __all__ as _common

if TYPE_CHECKING:
    from aurora_kit.backends.base import AlarmState
    from aurora_kit.checks.cluster import AlarmsReport
    from aurora_kit.runbook import Run


def connection_limit(run: Run, dp: DataPlane | None = None) -> int | None:
    """``max_connections`` of the cluster: its parameter group's value, else (a formula, the engine default) the
    writer's ``SHOW max_connections`` when the data plane answers; None when neither says."""
    value = run.backend.get_parameters(run.params.cluster_id, ["max_connections"]).get("max_connections")
    if value is not None and str(value).isdigit():
        return int(value)
    if dp is None or not dp.available:
        return None
    from aurora_kit.checks.common import connect

    with connect(run.backend.connection_info(run.params.cluster_id), connect_timeout=connect_timeout(run)) as conn:
        row = conn.execute("SELECT current_setting('max_connections')::int").fetchone()
    return int(row[0]) if row else None


def put_alarms(run: Run, dp: DataPlane | None = None) -> list[AlarmState]:
    """Create or update one alarm per metric and target (upsert), with the SNS topic when one is given. Refused
    before any alarm when the connections threshold is at or above ``max_connections`` (it could never fire)."""
    monitoring = run.section("monitoring")
    limit = connection_limit(run, dp)
    if limit is not None:
        check_alarm_can_fire(monitoring.max_connections, limit)
    specs = monitoring.alarm_specs()
    return run.backend.put_alarms(run.params.cluster_id, specs, sns_topic_arn=run.params.aws.sns_topic_arn)


def alarms_table(states: list[AlarmState]) -> Table:
    """One row per alarm: metric, dimension, condition and observed value in the metric's unit, rounded for people
    (FreeableMemory in GiB next to its threshold in GiB); the record keeps the raw values."""
    from aurora_kit.checks.cluster import alarm_row

    rows = [alarm_row(a) for a in states]
    return Table(rows, f"{len(rows)} alarms")


#: how long CloudWatch's first evaluation of a new alarm may take beyond its window (60 s metrics arrive late)
FIRST_EVALUATION_SLACK_S = 180.0


def alarms(run: Run, wait_s: float | None = None) -> AlarmsReport:
    """Every configured metric has an alarm, has data and none is firing. Where alarms are evaluated over periods
    (CloudWatch), first wait until none is INSUFFICIENT_DATA — at most ``wait_s``, by default one evaluation window
    plus :data:`FIRST_EVALUATION_SLACK_S` — so an alarm whose metric nobody publishes fails instead of passing
    unevaluated (:class:`~aurora_kit.checks.cluster.AlarmsReport`)."""
    import time

    from aurora_kit.checks.cluster import AlarmsReport
    from aurora_kit.errors import WaitTimeoutError
    from aurora_kit.polling import wait_for

    cid = run.params.cluster_id
    monitoring = run.section("monitoring")
    traits = run.backend.traits
    states = run.backend.describe_alarms(cid)
    started = time.monotonic()
    if not traits.alarms_sampled_on_demand and not run.params.dry_run:
        if wait_s is None:
            wait_s = monitoring.period_s * monitoring.evaluation_periods + FIRST_EVALUATION_SLACK_S
        if wait_s > 0:
            try:
                states = wait_for(
                    "every alarm evaluated (none INSUFFICIENT_DATA)",
                    lambda: run.backend.describe_alarms(cid),
                    lambda found: all(a.state_value != "INSUFFICIENT_DATA" for a in found),
                    timeout=wait_s,
                    initial_delay=1.0,
                    max_delay=traits.poll_max_delay_s,
                    describe=lambda found: f"{sum(a.state_value == 'INSUFFICIENT_DATA' for a in found)} unevaluated",
                    progress=run.backend.progress,
                )
            except WaitTimeoutError:
                states = run.backend.describe_alarms(cid)
    readers = len(run.backend.describe_cluster(cid).reader_ids)
    return AlarmsReport.of(
        monitoring.alarm_specs(),
        states,
        sampled_on_demand=traits.alarms_sampled_on_demand,
        readers=readers,
        waited_s=round(time.monotonic() - started, 1) if wait_s else 0.0,
    )


__all__ = [*_common, "alarms", "alarms_table", "connection_limit", "put_alarms"]
