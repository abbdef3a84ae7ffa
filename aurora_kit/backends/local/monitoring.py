"""Alarms of a local cluster: the AlarmSpecs are stored in state; ``describe_alarms`` evaluates each threshold
*now* from the instances (a single sample, not CloudWatch's period × evaluation periods):

* ``AuroraReplicaLag`` (ms, one alarm per reader): 0 when the reader replayed all it received, else
  ``clock_timestamp() - pg_last_xact_replay_timestamp()``;
* ``CPUUtilization`` (% of the host, one alarm per instance): CPU of the postmaster and its children sampled over
  0.2 s with psutil, divided by the CPU count;
* ``FreeableMemory`` (bytes, one alarm per instance): ``psutil.virtual_memory().available`` of the host;
* ``DatabaseConnections`` (one cluster-wide alarm): client backends in ``pg_stat_activity``, summed over the
  instances (``statistic`` Sum) or their Average/Maximum/Minimum.

Alarm names follow the aws backend: ``aurora-kit/<cluster>/<instance>/<metric>`` or
``aurora-kit/<cluster>/DatabaseConnections``. An instance that is not running gives ``INSUFFICIENT_DATA``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]
import psycopg

from aurora_kit.backends.base import AlarmState
from aurora_kit.errors import InvalidParameterError
from aurora_kit.specs import AlarmSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aurora_kit.backends.local.backend import LocalBackend

PREFIX = "aurora-kit"


def _targets(spec: AlarmSpec, cluster_id: str, cl: Mapping[str, Any], backend: LocalBackend) -> list[tuple[str, str]]:
    """(alarm name, dimension) pairs the spec expands to, as the aws backend names them."""
    if spec.metric == "DatabaseConnections":
        return [(f"{PREFIX}/{cluster_id}/{spec.metric}", f"DBClusterIdentifier={cluster_id}")]
    members = backend.reader_ids(cl) if spec.metric == "AuroraReplicaLag" else backend._ordered(cl)
    return [(f"{PREFIX}/{cluster_id}/{iid}/{spec.metric}", f"DBInstanceIdentifier={iid}") for iid in members]


def put_alarms(
    backend: LocalBackend, cluster_id: str, alarms: list[AlarmSpec], *, sns_topic_arn: str | None = None
) -> list[AlarmState]:
    backend.cluster_state(cluster_id)
    for a in alarms:
        if not isinstance(a, AlarmSpec):
            raise InvalidParameterError("alarms", a, "each alarm must be an AlarmSpec")
    if backend.dry_run:
        backend._record(
            "local",
            "PutMetricAlarm",
            DBClusterIdentifier=cluster_id,
            Alarms=[a.model_dump() for a in alarms],
            SnsTopicArn=sns_topic_arn,
        )
        return []
    with backend.store.cluster_lock(cluster_id), backend.update_cluster(cluster_id) as rec:
        by_metric = {a["metric"]: a for a in rec.get("alarms") or []}
        by_metric.update({a.metric: a.model_dump() for a in alarms})  # one alarm per metric, latest wins
        rec["alarms"] = list(by_metric.values())
        rec["sns_topic_arn"] = sns_topic_arn
    return describe_alarms(backend, cluster_id)


def _cpu_percent(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any], members: list[str]) -> dict[str, float]:
    procs = {iid: backend.controller(cluster_id, iid, cl).processes() for iid in members}
    for plist in procs.values():
        for p in plist:
            try:
                p.cpu_percent(None)
            except psutil.NoSuchProcess:
                continue
    time.sleep(0.2)
    out: dict[str, float] = {}
    for iid, plist in procs.items():
        if not plist:
            continue
        total = 0.0
        for p in plist:
            try:
                total += p.cpu_percent(None)
            except psutil.NoSuchProcess:
                continue
        out[iid] = total / (psutil.cpu_count() or 1)
    return out


def _instance_metric(backend: LocalBackend, cluster_id: str, iid: str, metric: str) -> float | None:
    try:
        if metric == "AuroraReplicaLag":
            row = backend.query(
                cluster_id,
                iid,
                "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL "
                "WHEN pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0 "
                "ELSE EXTRACT(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000 END",
            )[0]
        else:
            row = backend.query(
                cluster_id, iid, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            )[0]
    except psycopg.Error:
        return None
    return None if row[0] is None else float(row[0])


def _aggregate(values: list[float], statistic: str) -> float:
    if statistic == "Sum":
        return sum(values)
    if statistic == "Maximum":
        return max(values)
    if statistic == "Minimum":
        return min(values)
    return sum(values) / len(values)


def describe_alarms(backend: LocalBackend, cluster_id: str) -> list[AlarmState]:
    cl = backend.cluster_state(cluster_id)
    specs = [AlarmSpec(**a) for a in cl.get("alarms") or []]
    running = [iid for iid in backend._ordered(cl) if backend.controller(cluster_id, iid, cl).pm_status() == "ready"]
    cpu = _cpu_percent(backend, cluster_id, cl, running) if any(s.metric == "CPUUtilization" for s in specs) else {}
    out: list[AlarmState] = []
    for spec in specs:
        for name, dimension in _targets(spec, cluster_id, cl, backend):
            iid = dimension.split("=", 1)[1]
            value: float | None
            if spec.metric == "DatabaseConnections":
                values = [
                    v for v in (_instance_metric(backend, cluster_id, i, spec.metric) for i in running) if v is not None
                ]
                value = _aggregate(values, spec.statistic) if values else None
            elif iid not in running:
                value = None
            elif spec.metric == "CPUUtilization":
                value = cpu.get(iid)
            elif spec.metric == "FreeableMemory":
                value = float(psutil.virtual_memory().available)
            else:
                value = _instance_metric(backend, cluster_id, iid, spec.metric)
            if value is None:
                state, reason = "INSUFFICIENT_DATA", "no sample (instance not running or not reachable)"
            elif spec.breached(value):
                state, reason = "ALARM", f"{spec.metric}={value:g} {spec.comparison} {spec.threshold:g}"
            else:
                state, reason = "OK", f"{spec.metric}={value:g} within threshold {spec.threshold:g}"
            out.append(
                AlarmState(
                    alarm_name=name,
                    metric_name=spec.metric,
                    threshold=spec.threshold,
                    comparison_operator=spec.comparison,
                    state_value=state,
                    state_reason=reason,
                    dimension=dimension,
                    observed_value=value,
                )
            )
    return out
