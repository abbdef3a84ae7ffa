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
    rows = [
        {
            "alarm": a.alarm_name,
            "metric": a.metric_name,
            "dimension": a.dimension,
            "condition": f"{a.comparison_operator} {a.threshold:g}",
            "observed": a.observed_value,
            "state": a.state_value,
        }
        for a in states
    ]
    return Table(rows, f"{len(rows)} alarms")


def alarms(run: Run) -> AlarmsReport:
    """Every configured metric has an alarm and none is firing (see :class:`~aurora_kit.checks.cluster.AlarmsReport`
    for what INSUFFICIENT_DATA means on each backend)."""
    from aurora_kit.checks.cluster import AlarmsReport

    cid = run.params.cluster_id
    states = run.backend.describe_alarms(cid)
    specs = run.section("monitoring").alarm_specs()
    readers = len(run.backend.describe_cluster(cid).reader_ids)
    return AlarmsReport.of(
        specs, states, sampled_on_demand=run.backend.traits.alarms_sampled_on_demand, readers=readers
    )


__all__ = [*_common, "alarms", "alarms_table", "connection_limit", "put_alarms"]
