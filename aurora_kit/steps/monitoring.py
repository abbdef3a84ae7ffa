"""07-monitoring: alarms on replica lag, CPU, memory and connections put on the cluster (CloudWatch on aws; the
local backend evaluates the same thresholds when asked), then judged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aurora_kit.display import Table
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import __all__ as _common

if TYPE_CHECKING:
    from aurora_kit.backends.base import AlarmState
    from aurora_kit.checks.cluster import AlarmsReport
    from aurora_kit.runbook import Run


def put_alarms(run: Run) -> list[AlarmState]:
    """Create or update one alarm per metric and target (upsert), with the SNS topic when one is given."""
    specs = run.section("monitoring").alarm_specs()
    return run.backend.put_alarms(run.params.cluster_id, specs, sns_topic_arn=run.params.aws.sns_topic_arn)


def alarms_table(states: list[AlarmState]) -> Table:
    """One row per alarm: metric, dimension, condition and observed value in the metric's unit, rounded for people
    (FreeableMemory in GiB next to its threshold in GiB); the record keeps the raw values."""
    from aurora_kit.checks.cluster import alarm_row

    rows = [alarm_row(a) for a in states]
    return Table(rows, f"{len(rows)} alarms")


def alarms(run: Run) -> AlarmsReport:
    """Every configured metric has an alarm and none is firing (see :class:`~aurora_kit.checks.cluster.AlarmsReport`
    for what INSUFFICIENT_DATA means on each backend)."""
    from aurora_kit.checks.cluster import AlarmsReport

    states = run.backend.describe_alarms(run.params.cluster_id)
    specs = run.section("monitoring").alarm_specs()
    return AlarmsReport.of(specs, states, sampled_on_demand=run.backend.traits.alarms_sampled_on_demand)


__all__ = [*_common, "alarms", "alarms_table", "put_alarms"]
