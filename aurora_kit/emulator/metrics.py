"""CloudWatch for the emulated clusters: the ``AWS/RDS`` metrics Aurora publishes, measured on the real instances,
and alarm states evaluated from them (moto stores alarms and metric data but never evaluates an alarm, and leaves a
new alarm ``OK``).

Published every agent round (Aurora: every 60 s; Amazon Aurora User Guide, "Amazon CloudWatch metrics for Amazon
Aurora"), with Aurora's dimension sets:

=============================  ==================================================  ===================================
metric                         measured as                                         dimensions
=============================  ==================================================  ===================================
CPUUtilization (Percent)       the instance's PostgreSQL processes (psutil)        instance; cluster + Role
FreeableMemory (Bytes)         the host's available memory (instances share it)    instance; cluster + Role
DatabaseConnections (Count)    client backends in ``pg_stat_activity``            instance; cluster; cluster + Role
AuroraReplicaLag (ms)          time to replay the writer's flushed WAL (sampled)   reader instance; cluster + READER
AuroraReplicaLagMaximum (ms)   the largest reader lag, published by the writer     writer instance; cluster + WRITER
=============================  ==================================================  ===================================

An alarm is evaluated over its last ``Period × EvaluationPeriods`` seconds of datapoints with exactly its
dimensions: none → ``INSUFFICIENT_DATA`` (``TreatMissingData=missing``), else its statistic of them against the
threshold → ``ALARM`` / ``OK``. CloudWatch evaluates each period separately; the trailing window is the emulator's
simplification (documented in the README's table).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]
import psycopg

from aurora_kit.backends.local.monitoring import replica_lag_ms

if TYPE_CHECKING:
    from aurora_kit.emulator.bridge import Bridge

log = logging.getLogger("aurora_kit.emulator.metrics")
NAMESPACE = "AWS/RDS"
KEEP = timedelta(hours=3)  # datapoints kept (CloudWatch keeps 60 s points 15 days)


class Metrics:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._procs: dict[int, psutil.Process] = {}

    def _cloudwatch(self) -> Any:
        from moto.cloudwatch.models import cloudwatch_backends

        return cloudwatch_backends[self.bridge.account_id][self.bridge.region]

    # -- measuring -------------------------------------------------------------------------------------------
    def _cpu(self, data_directory: str) -> float:
        try:
            with open(os.path.join(data_directory, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
            root = psutil.Process(pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                cached = self._procs.setdefault(proc.pid, proc)
                total += cached.cpu_percent(None)
        except (OSError, ValueError, psutil.Error):
            return 0.0
        return round(total / (psutil.cpu_count() or 1), 2)

    def sample(self, cluster_id: str) -> list[dict[str, Any]]:
        """One round of datapoints for the cluster's instances."""
        view = self.bridge.views[cluster_id]
        writer = view.writer
        now = datetime.now(timezone.utc).replace(tzinfo=None)  # moto keeps metric timestamps naive (UTC)
        memory = float(psutil.virtual_memory().available)
        points: list[dict[str, Any]] = []
        lags: dict[str, float] = {}
        per_role: dict[str, dict[str, list[float]]] = {"WRITER": {}, "READER": {}}

        def put(name: str, value: float, unit: str, **dims: str) -> None:
            dimensions = [{"Name": k, "Value": v} for k, v in dims.items()]
            points.append(
                {"MetricName": name, "Value": value, "Unit": unit, "Dimensions": dimensions, "Timestamp": now}
            )

        total_connections = 0.0
        with contextlib.ExitStack() as stack:
            conns = {iid: stack.enter_context(self.bridge.master(cluster_id, iid)) for iid in list(view.addresses)}
            for iid, conn in conns.items():
                role = "WRITER" if iid == writer else "READER"
                row = conn.execute(
                    "SELECT current_setting('data_directory'), (SELECT count(*) - 1 FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend')"
                ).fetchone()
                assert row is not None
                values = {
                    "CPUUtilization": (self._cpu(str(row[0])), "Percent"),
                    "FreeableMemory": (memory, "Bytes"),
                    "DatabaseConnections": (float(row[1]), "Count"),
                }
                total_connections += float(row[1])
                for name, (value, unit) in values.items():
                    put(name, value, unit, DBInstanceIdentifier=iid)
                    per_role[role].setdefault(name, []).append(value)
            readers = [i for i in conns if i != writer]
            if writer in conns and readers:
                try:  # a writer demoted since the view was read refuses pg_current_wal_flush_lsn(): no sample
                    measured = replica_lag_ms(conns[writer], {r: conns[r] for r in readers})
                except psycopg.Error:
                    measured = {}
                lags = {r: ms for r, ms in measured.items() if ms is not None}
        for reader in lags:
            put("AuroraReplicaLag", lags[reader], "Milliseconds", DBInstanceIdentifier=reader)
            per_role["READER"].setdefault("AuroraReplicaLag", []).append(lags[reader])
        if writer is not None and lags:
            maximum = max(lags.values())
            put("AuroraReplicaLagMaximum", maximum, "Milliseconds", DBInstanceIdentifier=writer)
            put("AuroraReplicaLagMaximum", maximum, "Milliseconds", DBClusterIdentifier=cluster_id, Role="WRITER")
        units = {"CPUUtilization": "Percent", "FreeableMemory": "Bytes", "DatabaseConnections": "Count",
                 "AuroraReplicaLag": "Milliseconds"}  # fmt: skip
        for role, metrics in per_role.items():
            for name, vals in metrics.items():
                value = sum(vals) if name == "DatabaseConnections" else sum(vals) / len(vals)
                put(name, value, units[name], DBClusterIdentifier=cluster_id, Role=role)
        put("DatabaseConnections", total_connections, "Count", DBClusterIdentifier=cluster_id)
        return points

    def publish(self, cluster_id: str) -> None:
        points = self.sample(cluster_id)
        cloudwatch = self._cloudwatch()
        cutoff = datetime.now(timezone.utc) - KEEP
        with self.bridge.moto_lock:
            cloudwatch.put_metric_data(NAMESPACE, points)
            cloudwatch.metric_data[:] = [m for m in cloudwatch.metric_data if _aware(m.timestamp) >= cutoff]

    # -- alarms ----------------------------------------------------------------------------------------------
    def evaluate_alarms(self) -> None:
        cloudwatch = self._cloudwatch()
        now = datetime.now(timezone.utc)
        with self.bridge.moto_lock:
            alarms = [a for a in cloudwatch.alarms.values() if a.namespace == NAMESPACE and a.metric_name]
            data = [m for m in cloudwatch.metric_data if m.namespace == NAMESPACE]
        for alarm in alarms:
            wanted = {(d.name, d.value) for d in alarm.dimensions}
            window = timedelta(seconds=int(alarm.period) * int(alarm.evaluation_periods))
            values = [
                float(m.value)
                for m in data
                if m.name == alarm.metric_name
                and {(d.name, d.value) for d in m.dimensions} == wanted
                and _aware(m.timestamp) >= now - window
                and hasattr(m, "value")
            ]
            state, reason, observed = self._judge(alarm, values, window)
            if state != alarm.state_value:  # CloudWatch updates the reason on a state change only
                reason_data = json.dumps({"observed": observed, "datapoints": len(values)})
                with self.bridge.moto_lock:
                    cloudwatch.set_alarm_state(alarm.name, reason, reason_data, state)

    @staticmethod
    def _judge(alarm: Any, values: list[float], window: timedelta) -> tuple[str, str, float | None]:
        if not values:
            return "INSUFFICIENT_DATA", f"no datapoints in the last {int(window.total_seconds())} s", None
        stat = str(alarm.statistic or "Average")
        observed = {
            "Average": sum(values) / len(values),
            "Maximum": max(values),
            "Minimum": min(values),
            "Sum": sum(values),
            "SampleCount": float(len(values)),
        }.get(stat, sum(values) / len(values))
        threshold = float(alarm.threshold)
        breached = {
            "GreaterThanThreshold": observed > threshold,
            "GreaterThanOrEqualToThreshold": observed >= threshold,
            "LessThanThreshold": observed < threshold,
            "LessThanOrEqualToThreshold": observed <= threshold,
        }.get(str(alarm.comparison_operator), False)
        verb = "crossed" if breached else "did not cross"
        reason = f"{stat} {observed:g} of {len(values)} datapoints {verb} the threshold ({threshold:g})"
        return ("ALARM" if breached else "OK"), reason, round(observed, 3)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
