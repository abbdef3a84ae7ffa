"""Replica-lag probe: write a marker on the writer, time until each reader sees it.

Lag here is what an application observes: from the writer acknowledging the commit to the marker being visible
in a query on the reader (per-instance connections, so each reader is measured separately), including one poll
round trip. Alongside, ``aurora_replica_status()`` (Aurora's; locally the same surface in ``pg_catalog``) and
``pg_stat_replication`` rows are recorded where the server offers them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from aurora_kit.backends.base import ClusterBackend, ConnectionInfo
from aurora_kit.checks._probe_tables import SCHEMA, ensure_probe_tables
from aurora_kit.checks.common import connect, instance_identity, latency_stats
from aurora_kit.checks.result import CheckResult
from aurora_kit.errors import VerificationError
from aurora_kit.jsonable import jsonable


@dataclass
class ReaderLag:
    """Lag samples of one reader, in seconds; None = the marker was not visible within the timeout."""

    instance_id: str
    in_recovery: bool
    lags_s: list[float | None] = field(default_factory=list)
    not_polled: int = 0  # markers skipped after the reader stalled

    @property
    def visible(self) -> list[float]:
        return [v for v in self.lags_s if v is not None]

    @property
    def not_visible(self) -> int:
        return sum(1 for v in self.lags_s if v is None) + self.not_polled

    def stats(self) -> dict[str, float | None]:
        return latency_stats(self.visible)


@dataclass(repr=False)
class ReplicaLagReport(CheckResult):
    """Per-reader lag distribution (p50/p95/p99/max) of markers written on the writer."""

    title = "replica lag"

    writer_id: str
    readers: dict[str, ReaderLag]
    samples: int
    timeout_s: float
    max_p99_ms: float | None = None
    replica_status: list[dict[str, Any]] = field(default_factory=list)
    replication: list[dict[str, Any]] = field(default_factory=list)

    def problems(self, max_p99_ms: float | None = None) -> list[str]:
        limit = self.max_p99_ms if max_p99_ms is None else max_p99_ms
        out = []
        if not self.readers:
            out.append("no readers to measure")
        for name, r in self.readers.items():
            if not r.in_recovery:
                out.append(f"{name} is not in recovery: not a reader")
            if r.not_visible:
                out.append(
                    f"{name}: {r.not_visible} of {self.samples} markers not visible within {self.timeout_s:g}s "
                    f"(replication stalled or replay paused)"
                )
            p99 = r.stats()["p99_ms"]
            if limit is not None and p99 is not None and p99 > limit:
                out.append(f"{name}: lag p99 {p99:.1f} ms > {limit:g} ms")
        return out

    def assert_ok(self, max_p99_ms: float | None = None) -> ReplicaLagReport:
        self._raise_if(self.problems(max_p99_ms))
        return self

    def limits(self) -> str:
        worst = max((r.stats()["p99_ms"] or 0.0 for r in self.readers.values()), default=None)
        shown = "—" if worst is None else f"{worst:.1f} ms"
        bound = f" ≤ {self.max_p99_ms:g} ms" if self.max_p99_ms is not None else ""
        return f"worst reader lag p99 {shown}{bound}, every marker seen within {self.timeout_s:g} s"

    def raise_for_lag(self, max_p99_ms: float) -> None:
        """Raise VerificationError if any reader's p99 exceeds ``max_p99_ms`` or missed a marker."""
        self.assert_ok(max_p99_ms)

    def summary(self) -> dict[str, Any]:
        per_reader = {}
        for name, r in self.readers.items():
            s = r.stats()
            per_reader[name] = {
                "p50_ms": s["p50_ms"],
                "p95_ms": s["p95_ms"],
                "p99_ms": s["p99_ms"],
                "max_ms": s["max_ms"],
                "not_visible": r.not_visible,
            }
        worst = [v["p99_ms"] for v in per_reader.values() if v["p99_ms"] is not None]
        return {
            "writer": self.writer_id,
            "samples": self.samples,
            "timeout_s": self.timeout_s,
            "max_p99_ms": self.max_p99_ms,
            "worst_p99_ms": max(worst) if worst else None,
            "markers_not_visible": sum(r.not_visible for r in self.readers.values()),
            "readers": per_reader,
            "replica_status": jsonable(self.replica_status, strict=False),
        }

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        rows = []
        for name, r in self.readers.items():
            s = r.stats()
            rows.append([name, len(r.visible), r.not_visible, s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]])
        return ["reader", "visible", "not visible", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows

    def plot(self) -> Any:
        """Histogram of lag per reader (one panel each); the p99 limit is drawn when it is on the same scale as the
        samples, else named in the title (a 2 s limit would squeeze millisecond lags into one invisible bar)."""
        import matplotlib.pyplot as plt

        n = max(1, len(self.readers))
        fig, axes = plt.subplots(1, n, figsize=(4 * n, 3), squeeze=False, layout="constrained")
        for ax, (name, r) in zip(axes[0], self.readers.items(), strict=False):
            lags_ms = [v * 1000 for v in r.visible]
            ax.hist(lags_ms, bins=30)
            limit = self.max_p99_ms
            title = f"{name} (missed {r.not_visible})"
            if limit and lags_ms and max(lags_ms) * 3 >= limit:
                ax.axvline(limit, color="red", linestyle="--", linewidth=1)
            elif limit:
                title += f"; p99 limit {limit:g} ms, off scale"
            ax.set_title(title, fontsize="small")
            ax.set_xlabel("lag (ms)")
        axes[0][0].set_ylabel("markers")
        return fig


def _poll_until_visible(
    conn: psycopg.Connection[Any], marker: int, acked: float, timeout_s: float, poll_s: float
) -> float | None:
    deadline = acked + timeout_s
    query = f"SELECT 1 FROM {SCHEMA}.lag_marker WHERE id = %s"
    while True:
        if conn.execute(query, [marker], prepare=True).fetchone() is not None:
            return time.perf_counter() - acked
        if time.perf_counter() >= deadline:
            return None
        if poll_s:
            time.sleep(poll_s)


def _rows(conn: psycopg.Connection[Any], query: str) -> list[dict[str, Any]]:
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return [dict(r) for r in cur.execute(query).fetchall()]
    except psycopg.Error:
        return []


def measure_replica_lag_at(
    writer: ConnectionInfo,
    readers: Mapping[str, ConnectionInfo],
    *,
    samples: int = 50,
    interval_s: float = 0.02,
    timeout_s: float = 5.0,
    poll_interval_s: float = 0.0002,
    stop_after_timeouts: int = 1,
    max_p99_ms: float | None = None,
) -> ReplicaLagReport:
    """Write ``samples`` markers on ``writer`` and time their visibility on each reader (instance connections).

    After ``stop_after_timeouts`` markers in a row are not visible on a reader within ``timeout_s``, that reader
    is no longer polled (its remaining markers count as not visible) so a stalled reader cannot stretch the run.
    """
    run_id = uuid.uuid4().hex[:12]
    with connect(writer, connect_timeout=5) as wconn:
        writer_id, writer_in_recovery = instance_identity(wconn)
        if writer_in_recovery:
            raise VerificationError(f"the writer endpoint reached {writer_id}, which is read-only", writer=writer_id)
        ensure_probe_tables(wconn)
        rconns: dict[str, psycopg.Connection[Any]] = {}
        try:
            for name, info in readers.items():  # inside the try: a failed connect closes the ones already open
                rconns[name] = connect(info, connect_timeout=5)
            results: dict[str, ReaderLag] = {}
            for name, conn in rconns.items():
                ident, rec = instance_identity(conn)
                results[name] = ReaderLag(ident, rec)
            # no wait for the probe table to replicate first: where it is not replayed yet, polling for a marker
            # fails with UndefinedTable, which _poll_until_visible_safe counts as "not visible yet" (a marker cannot
            # be visible before the table it is in)
            stalled = dict.fromkeys(rconns, 0)
            with ThreadPoolExecutor(max_workers=max(1, len(rconns)), thread_name_prefix="lag-poll") as pool:
                for _ in range(samples):
                    row = wconn.execute(
                        f"INSERT INTO {SCHEMA}.lag_marker (run_id) VALUES (%s) RETURNING id", [run_id], prepare=True
                    ).fetchone()
                    acked = time.perf_counter()
                    assert row is not None
                    marker = int(row[0])
                    futures = {}
                    for name, conn in rconns.items():
                        if stalled[name] >= stop_after_timeouts:
                            results[name].not_polled += 1
                            continue
                        futures[name] = pool.submit(
                            _poll_until_visible_safe, conn, marker, acked, timeout_s, poll_interval_s
                        )
                    for name, fut in futures.items():
                        lag = fut.result()
                        results[name].lags_s.append(lag)
                        stalled[name] = stalled[name] + 1 if lag is None else 0
                    if interval_s:
                        time.sleep(interval_s)
            status = _rows(
                wconn,  # Aurora's own column names: the same query runs on both backends
                "SELECT server_id, session_id, durable_lsn, highest_lsn_rcvd, current_read_lsn, replica_lag_in_msec, "
                "last_update_timestamp FROM aurora_replica_status()",
            )
            replication = _rows(
                wconn,
                "SELECT application_name, state, sync_state, write_lag::text, flush_lag::text, replay_lag::text "
                "FROM pg_stat_replication ORDER BY application_name",
            )
            wconn.execute(f"DELETE FROM {SCHEMA}.lag_marker WHERE run_id = %s", [run_id])
        finally:
            for conn in rconns.values():
                conn.close()
    return ReplicaLagReport(
        writer_id=writer_id,
        readers=results,
        samples=samples,
        timeout_s=timeout_s,
        max_p99_ms=max_p99_ms,
        replica_status=status,
        replication=replication,
    )


def _poll_until_visible_safe(
    conn: psycopg.Connection[Any], marker: int, acked: float, timeout_s: float, poll_s: float
) -> float | None:
    # the table itself may not have replayed yet on a lagging reader: that is "not visible yet" too
    deadline = acked + timeout_s
    while True:
        try:
            return _poll_until_visible(conn, marker, acked, max(0.0, deadline - time.perf_counter()), poll_s)
        except psycopg.errors.UndefinedTable:
            if time.perf_counter() >= deadline:
                return None
            time.sleep(max(poll_s, 0.001))


def measure_replica_lag(
    backend: ClusterBackend,
    cluster_id: str,
    *,
    samples: int = 50,
    interval_s: float = 0.02,
    timeout_s: float = 5.0,
    max_p99_ms: float | None = None,
) -> ReplicaLagReport:
    """Lag of every reader the backend reports, markers written through the cluster endpoint."""
    cluster = backend.describe_cluster(cluster_id)
    readers = {rid: backend.connection_info(cluster_id, rid) for rid in cluster.reader_ids}
    return measure_replica_lag_at(
        backend.connection_info(cluster_id, "cluster"),
        readers,
        samples=samples,
        interval_s=interval_s,
        timeout_s=timeout_s,
        max_p99_ms=max_p99_ms,
    )
