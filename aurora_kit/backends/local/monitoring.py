"""Alarms of a local cluster: the AlarmSpecs are stored in state; ``describe_alarms`` evaluates each threshold
*now* from the instances (a single sample, not CloudWatch's period × evaluation periods):

* ``AuroraReplicaLag`` (ms, one alarm per reader): measured by :func:`replica_lag_ms` — how long after the writer's
  flushed WAL position is read the reader has replayed up to it;
* ``CPUUtilization`` (% of the host, one alarm per instance): CPU of the postmaster and its children sampled over
  0.2 s with psutil, divided by the CPU count;
* ``FreeableMemory`` (bytes, one alarm per instance): ``psutil.virtual_memory().available`` of the host;
* ``DatabaseConnections`` (one cluster-wide alarm): client backends in ``pg_stat_activity``, summed over the
  instances (``statistic`` Sum) or their Average/Maximum/Minimum.

Alarm names follow the aws backend: ``aurora-kit/<cluster>/<instance>/<metric>`` or
``aurora-kit/<cluster>/DatabaseConnections``. An instance that is not running gives ``INSUFFICIENT_DATA``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import psutil  # type: ignore[import-untyped]
import psycopg

from aurora_kit.backends.base import AlarmState
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import ClusterRecord
from aurora_kit.errors import InvalidParameterError
from aurora_kit.specs import AlarmSpec

PREFIX = "aurora-kit"
#: how long a lag sample waits for a reader to replay what the writer has flushed, and how often it looks
LAG_WAIT_S = 2.0
LAG_POLL_S = 0.005


def replica_lag_ms(
    writer: psycopg.Connection[Any], readers: Mapping[str, psycopg.Connection[Any]], *, wait_s: float = LAG_WAIT_S
) -> dict[str, float | None]:
    """``AuroraReplicaLag`` of each reader, measured: the writer's flushed WAL position is read, then each reader is
    polled until it has replayed up to it; the lag is the time that took (an upper bound: it includes the round
    trips, ~1 ms). A reader still behind after ``wait_s`` reports the larger of the time waited and the age of the
    last transaction it replayed. None for a connection that is not in recovery (no longer a reader).

    Why not the usual one-liners: ``clock_timestamp() - pg_last_xact_replay_timestamp()`` is the age of the last
    *commit* replayed, so a caught-up reader of a quiet cluster reads seconds "behind" whenever a record that is no
    transaction (a checkpoint, the 15-s running-xacts record) has been received and not yet replayed — an alarm that
    fired on an idle cluster in CI; and ``pg_stat_replication.replay_lag`` keeps its last measured value while a
    reader stops replaying but goes on receiving."""
    start = time.monotonic()
    row = writer.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    target = row[0]
    out: dict[str, float | None] = {}
    pending = dict(readers)
    while True:
        waited_ms = (time.monotonic() - start) * 1000
        for iid, conn in list(pending.items()):
            sample = conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, "
                "EXTRACT(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000",
                (target,),
            ).fetchone()
            assert sample is not None
            replayed, commit_age_ms = sample
            if replayed is None:
                out[iid] = None
            elif replayed:
                out[iid] = round((time.monotonic() - start) * 1000, 1)
            elif waited_ms >= wait_s * 1000:
                out[iid] = round(max(waited_ms, float(commit_age_ms or 0.0)), 1)
            else:
                continue
            del pending[iid]
        if not pending:
            return out
        time.sleep(LAG_POLL_S)


def check_alarms(alarms: list[AlarmSpec]) -> None:
    for a in alarms:
        if not isinstance(a, AlarmSpec):
            raise InvalidParameterError("alarms", a, "each alarm must be an AlarmSpec")


def _targets(spec: AlarmSpec, cl: ClusterRecord) -> list[tuple[str, str]]:
    """(alarm name, dimension) pairs the spec expands to, as the aws backend names them."""
    cid = cl.cluster_id
    if spec.metric == "DatabaseConnections":
        return [(f"{PREFIX}/{cid}/{spec.metric}", f"DBClusterIdentifier={cid}")]
    members = cl.reader_ids if spec.metric == "AuroraReplicaLag" else cl.ordered
    return [(f"{PREFIX}/{cid}/{iid}/{spec.metric}", f"DBInstanceIdentifier={iid}") for iid in members]


def store_alarms(nodes: Nodes, cluster_id: str, alarms: list[AlarmSpec], sns_topic_arn: str | None) -> None:
    """Keep one alarm per metric (the latest wins) and the topic in state."""

    def change(cl: ClusterRecord) -> ClusterRecord:
        by_metric = {a["metric"]: a for a in cl.alarms}
        by_metric.update({a.metric: a.model_dump() for a in alarms})
        return cl.replace(alarms=tuple(by_metric.values()), sns_topic_arn=sns_topic_arn)

    nodes.store.update_cluster(cluster_id, change)


def _cpu_percent(nodes: Nodes, cl: ClusterRecord, members: list[str]) -> dict[str, float]:
    procs = {iid: nodes.controller(cl.cluster_id, iid, cl).processes() for iid in members}
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


def _client_backends(nodes: Nodes, cluster_id: str, iid: str) -> float | None:
    """``DatabaseConnections`` of one instance (None when it does not answer)."""
    try:
        row = nodes.query(
            cluster_id, iid, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )[0]
    except psycopg.Error:
        return None
    return None if row[0] is None else float(row[0])


#: Aurora Auto Scaling's predefined metrics → the per-instance CloudWatch metric they average over the readers
READER_METRICS = {
    "RDSReaderAverageCPUUtilization": "CPUUtilization",
    "RDSReaderAverageDatabaseConnections": "DatabaseConnections",
}


def reader_average(nodes: Nodes, cl: ClusterRecord, predefined: str) -> tuple[float | None, dict[str, float]]:
    """A reader scaling policy's metric sampled now: the average over the running readers of ``CPUUtilization``
    (0.2 s of CPU, % of the host) or ``DatabaseConnections`` (client backends, the sampling one included), and
    each reader's value. (None, {}) when no reader answers."""
    metric = READER_METRICS[predefined]
    readers = [r for r in nodes.running(cl.cluster_id, cl) if r in cl.reader_ids]
    if metric == "CPUUtilization":
        values = _cpu_percent(nodes, cl, readers)
    else:
        found = {r: _client_backends(nodes, cl.cluster_id, r) for r in readers}
        values = {r: v for r, v in found.items() if v is not None}
    if not values:
        return None, {}
    return sum(values.values()) / len(values), values


def _lags(nodes: Nodes, cl: ClusterRecord, running: list[str]) -> dict[str, float | None]:
    """:func:`replica_lag_ms` of the running readers ({} when the writer or no reader answers)."""
    writer = cl.writer_id
    readers = [r for r in running if r in cl.reader_ids]
    if writer not in running or not readers:
        return {}
    with contextlib.ExitStack() as stack:
        try:
            wconn = stack.enter_context(nodes.connect(cl.cluster_id, writer, cl=cl))
            rconns: dict[str, psycopg.Connection[Any]] = {}
            for r in readers:
                with contextlib.suppress(psycopg.Error):
                    rconns[r] = stack.enter_context(nodes.connect(cl.cluster_id, r, cl=cl))
            return replica_lag_ms(wconn, rconns)
        except psycopg.Error:
            return {}


def _aggregate(values: list[float], statistic: str) -> float:
    if statistic == "Sum":
        return sum(values)
    if statistic == "Maximum":
        return max(values)
    if statistic == "Minimum":
        return min(values)
    return sum(values) / len(values)


def describe_alarms(nodes: Nodes, cluster_id: str) -> list[AlarmState]:
    cl = nodes.store.cluster(cluster_id)
    specs = [AlarmSpec(**a) for a in cl.alarms]
    running = nodes.running(cluster_id, cl)
    cpu = _cpu_percent(nodes, cl, running) if any(s.metric == "CPUUtilization" for s in specs) else {}
    lags = _lags(nodes, cl, running) if any(s.metric == "AuroraReplicaLag" for s in specs) else {}
    out: list[AlarmState] = []
    for spec in specs:
        for name, dimension in _targets(spec, cl):
            iid = dimension.split("=", 1)[1]
            value: float | None
            if spec.metric == "DatabaseConnections":
                values = [v for v in (_client_backends(nodes, cluster_id, i) for i in running) if v is not None]
                value = _aggregate(values, spec.statistic) if values else None
            elif iid not in running:
                value = None
            elif spec.metric == "CPUUtilization":
                value = cpu.get(iid)
            elif spec.metric == "FreeableMemory":
                value = float(psutil.virtual_memory().available)
            else:  # AuroraReplicaLag
                value = lags.get(iid)
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
