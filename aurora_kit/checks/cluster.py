"""Checks of what the control plane reports (no database connection): the cluster against its parameters, its
automated backups and restorable window, its alarms. Same results on both backends, from the RDS-shaped data
classes of :mod:`aurora_kit.backends.base`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aurora_kit.backends.base import AlarmState, Cluster
from aurora_kit.checks.result import CheckResult
from aurora_kit.display import quantity
from aurora_kit.rules import METRIC_UNITS, alarm_covers
from aurora_kit.specs import AlarmSpec, ClusterSpec


# -- the cluster against its parameters ---------------------------------------------------------------------------
@dataclass(repr=False)
class ClusterMatchReport(CheckResult):
    """The cluster has exactly the spec's instances, a writer, the spec's backup settings and deletion protection,
    and is available. Which instance writes may differ from the spec's first one after a failover: that is
    operation, not drift (it is shown)."""

    title = "cluster matches the parameters"

    cluster: Cluster
    spec: ClusterSpec

    def problems(self) -> list[str]:
        c, spec = self.cluster, self.spec
        out = []
        if c.status != "available":
            out.append(f"status {c.status}, expected available")
        wanted = sorted(i.instance_id for i in spec.instances)
        members = sorted(m.db_instance_identifier for m in c.db_cluster_members)
        if members != wanted:
            out.append(f"instances {members}, expected {wanted}")
        if c.writer_id is None:
            out.append("no writer")
        if c.backup_retention_period != spec.backup_retention_period:
            out.append(f"backup retention {c.backup_retention_period} d, expected {spec.backup_retention_period}")
        if c.preferred_backup_window != spec.preferred_backup_window:
            out.append(f"backup window {c.preferred_backup_window}, expected {spec.preferred_backup_window}")
        if c.deletion_protection != spec.deletion_protection:
            out.append(f"deletion protection {c.deletion_protection}, expected {spec.deletion_protection}")
        return out

    def limits(self) -> str:
        moved = "" if self.cluster.writer_id == self.spec.instances[0].instance_id else ", after a failover"
        return f"writer {self.cluster.writer_id}{moved}, readers {', '.join(sorted(self.cluster.reader_ids)) or 'none'}"

    def summary(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster.db_cluster_identifier,
            "status": self.cluster.status,
            "writer": self.cluster.writer_id,
            "readers": sorted(self.cluster.reader_ids),
            "backup_retention_period": self.cluster.backup_retention_period,
            "preferred_backup_window": self.cluster.preferred_backup_window,
            "deletion_protection": self.cluster.deletion_protection,
        }


# -- automated backups ---------------------------------------------------------------------------------------------
#: how far ``LatestRestorableTime`` may trail the check (Aurora: typically within the last 5 minutes)
MAX_RESTORABLE_AGE_S = 600.0


@dataclass(repr=False)
class BackupsReport(CheckResult):
    """Automated backups: the configured retention *and* a live restorable window — EarliestRestorableTime and
    LatestRestorableTime present, earliest ≤ latest, latest at most ``max_latest_age_s`` behind ``checked_at``."""

    title = "automated backups"

    cluster_id: str
    retention_days: int
    wanted_days: int
    earliest_restorable: datetime | None
    latest_restorable: datetime | None
    checked_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    max_latest_age_s: float = MAX_RESTORABLE_AGE_S

    @classmethod
    def of(cls, cluster: Cluster, wanted_days: int, max_latest_age_s: float = MAX_RESTORABLE_AGE_S) -> BackupsReport:
        return cls(
            cluster.db_cluster_identifier,
            cluster.backup_retention_period,
            wanted_days,
            _aware(cluster.earliest_restorable_time),
            _aware(cluster.latest_restorable_time),
            checked_at=datetime.now(timezone.utc),
            max_latest_age_s=max_latest_age_s,
        )

    @property
    def latest_age_s(self) -> float | None:
        if self.latest_restorable is None:
            return None
        return (self.checked_at - self.latest_restorable).total_seconds()

    def problems(self) -> list[str]:
        out = []
        if self.retention_days < self.wanted_days:
            out.append(f"retention {self.retention_days} d < wanted {self.wanted_days} d")
        if self.retention_days < 1:
            out.append("automated backups are off (retention 0)")
        if self.earliest_restorable is None:
            out.append("no EarliestRestorableTime reported: no restorable window")
        if self.latest_restorable is None:
            out.append("no LatestRestorableTime reported: point-in-time restore has no target")
        if self.earliest_restorable and self.latest_restorable and self.earliest_restorable > self.latest_restorable:
            out.append(
                f"EarliestRestorableTime {self.earliest_restorable.isoformat()} is after LatestRestorableTime "
                f"{self.latest_restorable.isoformat()}"
            )
        age = self.latest_age_s
        if age is not None and age > self.max_latest_age_s:
            out.append(
                f"LatestRestorableTime {self.latest_restorable.isoformat() if self.latest_restorable else None} "
                f"is {age:.0f}s old > {self.max_latest_age_s:g}s: backups / WAL archiving are not keeping up"
            )
        return out

    def limits(self) -> str:
        return f"retention ≥ {self.wanted_days} d, restorable window ending ≤ {self.max_latest_age_s:g} s ago"

    def summary(self) -> dict[str, Any]:
        return {
            "retention_days": self.retention_days,
            "earliest_restorable_time": self.earliest_restorable.isoformat() if self.earliest_restorable else None,
            "latest_restorable_time": self.latest_restorable.isoformat() if self.latest_restorable else None,
            "latest_restorable_age_s": None if self.latest_age_s is None else round(self.latest_age_s, 1),
        }


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


# -- alarms ----------------------------------------------------------------------------------------------------
@dataclass(repr=False)
class AlarmsReport(CheckResult):
    """Every configured metric has an alarm and none is in ALARM. ``INSUFFICIENT_DATA`` is a failure where the
    backend samples every metric when asked (no data = the metric could not be measured), and on CloudWatch once
    ``waited_s`` > 0 covered an evaluation window (the alarm's metric is not published: it can never fire); read at
    once (``waited_s`` 0), a new CloudWatch alarm is INSUFFICIENT_DATA until a period was evaluated — reported, not
    failed."""

    title = "alarms"

    wanted: list[str]
    states: list[AlarmState]
    sampled_on_demand: bool
    readers: int | None = None
    waited_s: float = 0.0

    @classmethod
    def of(
        cls,
        specs: Sequence[AlarmSpec],
        states: Sequence[AlarmState],
        *,
        sampled_on_demand: bool,
        readers: int | None = None,
        waited_s: float = 0.0,
    ) -> AlarmsReport:
        """``readers``: the cluster's reader count — without readers there is no replica lag to alarm on.
        ``waited_s``: how long the states were awaited for CloudWatch's first evaluation."""
        metrics = {a.metric for a in specs}
        if readers == 0:
            metrics.discard("AuroraReplicaLag")
        return cls(sorted(metrics), list(states), sampled_on_demand, readers, waited_s)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.states:
            counts[a.state_value] = counts.get(a.state_value, 0) + 1
        return counts

    def problems(self) -> list[str]:
        present = {a.metric_name for a in self.states}
        out = [f"no alarm on {m}" for m in self.wanted if not any(alarm_covers(m, p) for p in present)]
        out += [f"{a.alarm_name} is in ALARM ({a.state_reason})" for a in self.states if a.state_value == "ALARM"]
        if self.sampled_on_demand:
            out += [
                f"{a.alarm_name} is INSUFFICIENT_DATA ({a.state_reason}): this backend measures on demand, so the "
                "metric could not be measured"
                for a in self.states
                if a.state_value == "INSUFFICIENT_DATA"
            ]
        elif self.waited_s > 0:
            out += [
                f"{a.alarm_name} is still INSUFFICIENT_DATA after {self.waited_s:g} s: no data for its metric "
                "(it can never fire)"
                for a in self.states
                if a.state_value == "INSUFFICIENT_DATA"
            ]
        return out

    def limits(self) -> str:
        pending = "INSUFFICIENT_DATA" in self.counts and not self.sampled_on_demand and not self.waited_s
        waiting = "; INSUFFICIENT_DATA: CloudWatch has not evaluated a period yet" if pending else ""
        no_lag = "; no readers: no replica lag to alarm on" if self.readers == 0 else ""
        return f"{len(self.states)} alarms on {', '.join(self.wanted)}, none firing{waiting}{no_lag}"

    def summary(self) -> dict[str, Any]:
        return {
            "wanted": list(self.wanted),
            "states": self.counts,
            "alarms": [
                {
                    "name": a.alarm_name,
                    "metric": a.metric_name,
                    "state": a.state_value,
                    "threshold": a.threshold,
                    "observed": a.observed_value,
                }
                for a in self.states
            ],
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [("alarms", len(self.states)), *sorted(self.counts.items())]

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        rows = [[*alarm_row(a).values(), "" if a.state_value == "OK" else a.state_reason] for a in self.states]
        return ["alarm", "metric", "dimension", "condition", "observed", "state", "reason"], rows


_COMPARISONS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": "≥",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "≤",
}


def alarm_row(a: AlarmState) -> dict[str, Any]:
    """An alarm for people: condition and observed value in the metric's unit (FreeableMemory in GiB)."""
    unit = METRIC_UNITS.get(a.metric_name, "")
    sign = _COMPARISONS.get(a.comparison_operator, a.comparison_operator)
    return {
        "alarm": a.alarm_name,
        "metric": a.metric_name,
        "dimension": a.dimension,
        "condition": f"{sign} {quantity(a.threshold, unit)}",
        "observed": quantity(a.observed_value, unit),
        "state": a.state_value,
    }
