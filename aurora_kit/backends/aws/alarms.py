"""Which CloudWatch alarms an :class:`~aurora_kit.specs.AlarmSpec` becomes on Aurora (pure decisions; the calls are in
:mod:`.monitoring`).

Alarms must stay right across failovers, so none is bound to an instance's role (Amazon Aurora User Guide, "Amazon
CloudWatch metrics for Amazon Aurora": ``AuroraReplicaLag`` is published for replicas only, so a reader's lag alarm
goes silent once that instance writes):

- replica lag → one alarm on ``AuroraReplicaLagMaximum`` with the dimensions ``DBClusterIdentifier`` +
  ``Role=WRITER`` (whichever instance writes publishes the largest lag of its readers), statistic Maximum; none on a
  cluster without readers (there is no replica lag; nothing would ever publish it);
- CPUUtilization and FreeableMemory → one alarm per instance (``DBInstanceIdentifier``): every instance publishes
  them whatever its role, and a hot writer is not averaged away by idle readers;
- DatabaseConnections → one cluster-wide alarm (``DBClusterIdentifier``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aurora_kit.specs import AlarmSpec

ALARM_PREFIX = "aurora-kit"
#: the CloudWatch metric the replica-lag alarm watches (it follows the writer role)
REPLICA_LAG_METRIC = "AuroraReplicaLagMaximum"


def alarm_prefix(cluster_id: str) -> str:
    """'/' cannot occur in an identifier, so the prefix of cluster ``a`` never matches cluster ``a-b``."""
    return f"{ALARM_PREFIX}/{cluster_id}/"


@dataclass(frozen=True)
class AlarmTarget:
    alarm_name: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]  # (Name, Value) pairs, exactly as CloudWatch matches them
    statistic: str

    @property
    def dimension(self) -> str:
        return ",".join(f"{n}={v}" for n, v in self.dimensions)


def alarm_targets(spec: AlarmSpec, cluster_id: str, writer: str | None, readers: Sequence[str]) -> list[AlarmTarget]:
    """The alarms ``spec`` becomes (module docstring)."""
    prefix = alarm_prefix(cluster_id)
    if spec.metric == "AuroraReplicaLag":
        if not readers:
            return []
        dims = (("DBClusterIdentifier", cluster_id), ("Role", "WRITER"))
        return [AlarmTarget(f"{prefix}{REPLICA_LAG_METRIC}", REPLICA_LAG_METRIC, dims, "Maximum")]
    if spec.metric == "DatabaseConnections":
        return [AlarmTarget(f"{prefix}{spec.metric}", spec.metric, (("DBClusterIdentifier", cluster_id),),
                            spec.statistic)]  # fmt: skip
    instances = [*([writer] if writer else []), *readers]
    return [
        AlarmTarget(f"{prefix}{iid}/{spec.metric}", spec.metric, (("DBInstanceIdentifier", iid),), spec.statistic)
        for iid in instances
    ]


def put_metric_alarm_params(
    spec: AlarmSpec, target: AlarmTarget, cluster_id: str, sns_topic_arn: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "AlarmName": target.alarm_name,
        "AlarmDescription": f"aurora_kit: {spec.metric} {spec.comparison} {spec.threshold} on {cluster_id}",
        "Namespace": "AWS/RDS",
        "MetricName": target.metric_name,
        "Dimensions": [{"Name": n, "Value": v} for n, v in target.dimensions],
        "Statistic": target.statistic,
        "Period": spec.period_s,
        "EvaluationPeriods": spec.evaluation_periods,
        "Threshold": spec.threshold,
        "ComparisonOperator": spec.comparison,
        "TreatMissingData": "missing",
        "Tags": [{"Key": "aurora-kit:cluster", "Value": cluster_id}],
    }
    if sns_topic_arn:
        params["AlarmActions"] = [sns_topic_arn]
        params["OKActions"] = [sns_topic_arn]
    return params


def stale_alarms(existing: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Alarms under the cluster's prefix that the new set no longer has (an instance gone, a role-bound alarm from
    an earlier version): deleted, so no alarm watches a metric nobody publishes."""
    keep = set(wanted)
    return sorted(name for name in existing if name not in keep)
