"""CloudWatch alarms of an Aurora cluster: put (upsert) the alarms :mod:`.alarms` decides, delete the ones under the
cluster's prefix the new set no longer has, describe them."""

from __future__ import annotations

from aurora_kit.backends.aws import alarms as a
from aurora_kit.backends.aws.api import AwsApi, _lower
from aurora_kit.backends.aws.translate import to_alarm_state
from aurora_kit.backends.base import AlarmState
from aurora_kit.specs import AlarmSpec


class MonitoringOps(AwsApi):
    """The alarms of :class:`~aurora_kit.backends.aws.AwsBackend`."""

    def put_alarms(
        self, cluster_id: str, alarms: list[AlarmSpec], *, sns_topic_arn: str | None = None
    ) -> list[AlarmState]:
        """PutMetricAlarm (namespace AWS/RDS) per alarm and target (:func:`.alarms.alarm_targets`; upserts), then
        DeleteAlarms for the cluster's alarms the set no longer has."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        members = cluster.get("DBClusterMembers") or []
        writer = next((m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")), None)
        readers = sorted(m["DBInstanceIdentifier"] for m in members if not m.get("IsClusterWriter"))
        names: list[str] = []
        planned: list[AlarmState] = []
        for spec in alarms:
            for target in a.alarm_targets(spec, cluster_id, writer, readers):
                self._call(
                    "cloudwatch", "PutMetricAlarm", **a.put_metric_alarm_params(spec, target, cluster_id, sns_topic_arn)
                )
                names.append(target.alarm_name)
                planned.append(
                    AlarmState(
                        target.alarm_name,
                        target.metric_name,
                        spec.threshold,
                        spec.comparison,
                        "dry-run",
                        "dry run: not created",
                        target.dimension,
                    )
                )
        existing = [s.alarm_name for s in self.describe_alarms(cluster_id)]
        stale = a.stale_alarms(existing, names)
        if stale:
            self._call("cloudwatch", "DeleteAlarms", AlarmNames=stale)
        if self.dry_run:
            return planned
        by_name = {s.alarm_name: s for s in self.describe_alarms(cluster_id)}
        return [by_name[n] for n in names if n in by_name]

    def describe_alarms(self, cluster_id: str) -> list[AlarmState]:
        cluster_id = _lower(cluster_id)
        rows = self._pages("cloudwatch", "DescribeAlarms", "MetricAlarms", AlarmNamePrefix=a.alarm_prefix(cluster_id))
        return [to_alarm_state(r) for r in rows]
