"""Connection-pool checks with the seed's pool: SQLAlchemy ``QueuePool`` (``pool_size=10, max_overflow=20,
pool_pre_ping=True``) whose connections are made by psycopg 3 from a :class:`ConnectionInfo`.

* :func:`check_pool` — N concurrent workers on an endpoint: throughput, checkout wait p50/p99, no leak (nothing
  checked out at the end, and the pool's server sessions — tagged with a unique ``application_name`` — gone from
  ``pg_stat_activity`` on every instance after ``dispose()``).
* :func:`check_pre_ping_recovery` — fill the pool, run an action (a failover), check the pool out again: stale
  connections must be replaced by pre-ping without the application seeing an error, and land on the writer.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from sqlalchemy.pool import QueuePool

from aurora_kit.backends.base import ClusterBackend, ConnectionInfo
from aurora_kit.checks.common import connect, latency_stats, sqlstate_of
from aurora_kit.checks.result import CheckResult
from aurora_kit.polling import wait_for

#: the seed application's pool settings
SEED_POOL = {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}


def make_engine(
    info: ConnectionInfo,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_pre_ping: bool = True,
    pool_timeout: float = 30.0,
    application_name: str | None = None,
    connect_timeout: float | None = 5.0,
    **engine_kwargs: Any,
) -> sqlalchemy.Engine:
    """A SQLAlchemy engine on a QueuePool whose connections psycopg makes from ``info`` (the seed's pool)."""

    def creator() -> Any:
        return connect(info, autocommit=False, connect_timeout=connect_timeout, application_name=application_name)

    return sqlalchemy.create_engine(
        "postgresql+psycopg://",
        creator=creator,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pool_pre_ping,
        pool_timeout=pool_timeout,
        **engine_kwargs,
    )


def _count_sessions(infos: Sequence[ConnectionInfo], application_name: str | None = None) -> dict[str, int]:
    """Server sessions on each instance (pg_stat_activity is per instance), keyed by endpoint: those tagged
    ``application_name``, or every client backend when it is None. The counting session itself is left out."""
    where, params = (
        ("application_name = %s", [application_name])
        if application_name is not None
        else ("backend_type = 'client backend'", [])
    )
    out: dict[str, int] = {}
    for info in infos:
        with connect(info, connect_timeout=5) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM pg_stat_activity WHERE {where} AND pid <> pg_backend_pid()", params
            ).fetchone()
            out[info.endpoint or info.conninfo] = int(row[0]) if row else 0
    return out


def instance_infos(backend: ClusterBackend, cluster_id: str) -> list[ConnectionInfo]:
    """Per-instance connection info for every member of the cluster."""
    cluster = backend.describe_cluster(cluster_id)
    return [backend.connection_info(cluster_id, m.db_instance_identifier) for m in cluster.db_cluster_members]


@dataclass(repr=False)
class PoolCheckReport(CheckResult):
    """Throughput, checkout wait and leak evidence of a pool under concurrent workers."""

    title = "connection pool check"

    endpoint: str
    workers: int
    pool_size: int
    max_overflow: int
    pre_ping: bool
    duration_s: float
    queries: int
    errors: dict[str, int]
    checkout_wait_s: list[float] = field(repr=False)
    query_s: list[float] = field(repr=False)
    peak_checked_out: int
    checked_out_at_end: int
    server_sessions_peak: int
    server_sessions_open: int  # pool's sessions after the workers finished, before dispose()
    server_sessions_after: dict[str, int]  # per instance, after dispose(): must all be 0
    client_sessions_before: dict[str, int]
    client_sessions_after: dict[str, int]
    answered_by: dict[str, int]
    application_name: str = ""

    @property
    def throughput_qps(self) -> float:
        return self.queries / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def leaked(self) -> int:
        return max(self.checked_out_at_end, sum(self.server_sessions_after.values()))

    def problems(self) -> list[str]:
        out = []
        if self.errors:
            out.append(f"{sum(self.errors.values())} queries failed: {dict(self.errors)}")
        if self.queries == 0:
            out.append("no query completed")
        if self.checked_out_at_end:
            out.append(f"{self.checked_out_at_end} connections still checked out after the workers finished (leak)")
        if any(self.server_sessions_after.values()):
            out.append(f"pool sessions still open on the server after dispose(): {self.server_sessions_after}")
        limit = self.pool_size + self.max_overflow
        if self.server_sessions_peak > limit:
            out.append(f"{self.server_sessions_peak} server sessions exceed pool_size + max_overflow = {limit}")
        return out

    def limits(self) -> str:
        return (
            f"{self.workers} workers, pool {self.pool_size} + {self.max_overflow}: {self.queries:,} queries "
            f"({self.throughput_qps:,.0f}/s), no error, peak {self.server_sessions_peak} sessions ≤ "
            f"{self.pool_size + self.max_overflow}, none left open"
        )

    def summary(self) -> dict[str, Any]:
        wait = latency_stats(self.checkout_wait_s)
        query = latency_stats(self.query_s)
        return {
            "endpoint": self.endpoint,
            "workers": self.workers,
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_pre_ping": self.pre_ping,
            "duration_s": self.duration_s,
            "queries": self.queries,
            "throughput_qps": self.throughput_qps,
            "checkout_wait_p50_ms": wait["p50_ms"],
            "checkout_wait_p99_ms": wait["p99_ms"],
            "query_p50_ms": query["p50_ms"],
            "query_p99_ms": query["p99_ms"],
            "errors": dict(self.errors),
            "peak_checked_out": self.peak_checked_out,
            "checked_out_at_end": self.checked_out_at_end,
            "server_sessions_peak": self.server_sessions_peak,
            "server_sessions_open_before_dispose": self.server_sessions_open,
            "server_sessions_after_dispose": dict(self.server_sessions_after),
            "client_sessions_before": dict(self.client_sessions_before),
            "client_sessions_after": dict(self.client_sessions_after),
            "answered_by": dict(self.answered_by),
        }

    def raise_for_leaks(self) -> None:
        problems = [p for p in self.problems() if "leak" in p or "still open" in p]
        self._raise_if(problems)

    def plot(self, ax: Any = None) -> Any:
        """Histogram of checkout waits (how long workers queued for a connection)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
        ax.hist([w * 1000 for w in self.checkout_wait_s], bins=40)
        ax.set_xlabel("checkout wait (ms)")
        ax.set_ylabel("checkouts")
        ax.set_title(f"{self.workers} workers on {self.endpoint}: pool {self.pool_size}+{self.max_overflow}")
        return ax


Work = Callable[[sqlalchemy.Connection], Any]


def _identity_work(conn: sqlalchemy.Connection) -> Any:
    return conn.exec_driver_sql("SELECT aurora_db_instance_identifier()").scalar()


def run_pool_check(
    info: ConnectionInfo,
    server_infos: Sequence[ConnectionInfo],
    *,
    workers: int = 20,
    duration_s: float = 5.0,
    work: Work | None = None,
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_pre_ping: bool = True,
    think_time_s: float = 0.0,
    dispose_timeout_s: float = 10.0,
) -> PoolCheckReport:
    """Run ``workers`` threads for ``duration_s`` through a pool on ``info``; count sessions on ``server_infos``.

    ``work(conn)`` is one unit of work on a checked-out connection (default: ask which instance answered; its
    return value, if a string, is tallied in ``answered_by``).
    """
    app = f"aurora_kit_pool_{uuid.uuid4().hex[:10]}"
    work = work or _identity_work
    before = _count_sessions(server_infos)
    engine = make_engine(
        info, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pool_pre_ping, application_name=app
    )
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    waits: list[float] = []
    timings: list[float] = []
    errors: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    lock = threading.Lock()
    peak = 0
    server_peak = 0
    stop = threading.Event()
    deadline = time.monotonic() + duration_s

    def worker() -> None:
        nonlocal peak
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                with engine.connect() as conn:
                    t1 = time.perf_counter()
                    with lock:
                        peak = max(peak, pool.checkedout())
                    value = work(conn)
                    conn.commit()
                    t2 = time.perf_counter()
                with lock:
                    waits.append(t1 - t0)
                    timings.append(t2 - t1)
                    if isinstance(value, str):
                        answered[value] += 1
            except Exception as exc:  # every failure is evidence, tallied by kind
                with lock:
                    errors[sqlstate_of(getattr(exc, "orig", None) or exc)] += 1
                time.sleep(0.01)
            if think_time_s:
                time.sleep(think_time_s)

    def monitor() -> None:
        nonlocal server_peak
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a monitor sample may fail during an outage
                server_peak = max(server_peak, sum(_count_sessions(server_infos, app).values()))
            stop.wait(0.25)

    threads = [threading.Thread(target=worker, name=f"pool-worker-{i}", daemon=True) for i in range(workers)]
    mon = threading.Thread(target=monitor, name="pool-monitor", daemon=True)
    started = time.perf_counter()
    mon.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    stop.set()
    mon.join()
    checked_out = pool.checkedout()
    open_sessions = sum(_count_sessions(server_infos, app).values())
    server_peak = max(server_peak, open_sessions)
    engine.dispose()
    try:
        after = wait_for(
            "pool sessions to close",
            lambda: _count_sessions(server_infos, app),
            lambda counts: not any(counts.values()),
            timeout=dispose_timeout_s,
            initial_delay=0.05,
            max_delay=0.5,
        )
    except Exception:  # a timeout here is the leak evidence itself
        after = _count_sessions(server_infos, app)
    return PoolCheckReport(
        endpoint=info.endpoint,
        workers=workers,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pre_ping=pool_pre_ping,
        duration_s=elapsed,
        queries=len(timings),
        errors=dict(errors),
        checkout_wait_s=waits,
        query_s=timings,
        peak_checked_out=peak,
        checked_out_at_end=checked_out,
        server_sessions_peak=server_peak,
        server_sessions_open=open_sessions,
        server_sessions_after=after,
        client_sessions_before=before,
        client_sessions_after=_count_sessions(server_infos),
        answered_by=dict(answered),
        application_name=app,
    )


def check_pool(
    backend: ClusterBackend,
    cluster_id: str,
    endpoint: str = "cluster",
    *,
    workers: int = 20,
    duration_s: float = 5.0,
    work: Work | None = None,
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_pre_ping: bool = True,
) -> PoolCheckReport:
    """The seed's pool under ``workers`` concurrent workers on ``endpoint`` (``cluster`` or ``reader``);
    server-side sessions are counted on every instance of the cluster."""
    return run_pool_check(
        backend.connection_info(cluster_id, endpoint),
        instance_infos(backend, cluster_id),
        workers=workers,
        duration_s=duration_s,
        work=work,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pool_pre_ping,
    )


# -- pre-ping across a failover ------------------------------------------------------------------------------------
@dataclass
class PooledSession:
    instance_id: str | None
    pid: int | None
    in_recovery: bool | None
    error: str | None = None


@dataclass(repr=False)
class PrePingReport(CheckResult):
    """What the application sees from a filled pool after an action (typically a failover)."""

    title = "pool pre-ping recovery"

    pool_size: int
    pre_ping: bool
    before: list[PooledSession]
    after: list[PooledSession]
    invalidations: int
    action_s: float
    action_result: Any = field(default=None, repr=False)

    @property
    def errors_after(self) -> dict[str, int]:
        return dict(Counter(s.error for s in self.after if s.error))

    @property
    def stale_recovered(self) -> int:
        """Pooled connections from before the action that were replaced by fresh ones when checked out again."""
        old = {(s.instance_id, s.pid) for s in self.before}
        fresh = [s for s in self.after if s.error is None and (s.instance_id, s.pid) not in old]
        return min(len(fresh), len(old))

    @property
    def reused(self) -> int:
        old = {(s.instance_id, s.pid) for s in self.before}
        return sum(1 for s in self.after if s.error is None and (s.instance_id, s.pid) in old)

    @property
    def writer_before(self) -> list[str]:
        return sorted({s.instance_id for s in self.before if s.instance_id})

    @property
    def writer_after(self) -> list[str]:
        return sorted({s.instance_id for s in self.after if s.instance_id and s.error is None})

    def problems(self) -> list[str]:
        out = []
        if self.errors_after:
            out.append(f"the application saw errors from pooled connections after the action: {self.errors_after}")
        read_only = [s for s in self.after if s.in_recovery]
        if read_only:
            out.append(f"{len(read_only)} pooled connections reached a read-only node ({read_only[0].instance_id})")
        if not any(s.error is None for s in self.after):
            out.append("no pooled connection worked after the action")
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "pool_pre_ping": self.pre_ping,
            "action_s": self.action_s,
            "writer_before": self.writer_before,
            "writer_after": self.writer_after,
            "stale_recovered": self.stale_recovered,
            "reused": self.reused,
            "invalidations": self.invalidations,
            "errors_after": self.errors_after,
        }

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        rows = []
        for i in range(max(len(self.before), len(self.after))):
            b = self.before[i] if i < len(self.before) else PooledSession(None, None, None)
            a = self.after[i] if i < len(self.after) else PooledSession(None, None, None)
            rows.append([i, b.instance_id, b.pid, a.instance_id, a.pid, a.in_recovery, a.error])
        return ["#", "before: instance", "pid", "after: instance", "pid", "read-only", "error"], rows


def _checkout_all(engine: sqlalchemy.Engine, n: int) -> list[PooledSession]:
    sessions: list[PooledSession] = []
    with ExitStack() as stack:
        for _ in range(n):
            try:
                conn = stack.enter_context(engine.connect())
                row = conn.exec_driver_sql(
                    "SELECT aurora_db_instance_identifier(), pg_backend_pid(), pg_is_in_recovery()"
                ).one()
                conn.rollback()
                sessions.append(PooledSession(str(row[0]), int(row[1]), bool(row[2])))
            except Exception as exc:  # what the application would see is the measurement
                sessions.append(PooledSession(None, None, None, sqlstate_of(getattr(exc, "orig", None) or exc)))
    return sessions


def check_pre_ping_recovery(
    info: ConnectionInfo,
    action: Callable[[], Any],
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_pre_ping: bool = True,
    application_name: str = "aurora_kit_preping",
) -> PrePingReport:
    """Fill a pool on ``info`` (cluster endpoint) with ``pool_size`` sessions, run ``action()`` (e.g.
    ``lambda: backend.failover(cluster_id)``), then check ``pool_size`` connections out again and query each.

    With pre-ping the stale sessions are replaced transparently (no error, all on the new writer); without it the
    application gets the errors — the report shows which.
    """
    engine = make_engine(
        info,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pool_pre_ping,
        application_name=application_name,
    )
    invalidations = 0

    def on_invalidate(*_args: Any) -> None:
        nonlocal invalidations
        invalidations += 1

    sqlalchemy.event.listen(engine.pool, "invalidate", on_invalidate)
    try:
        before = _checkout_all(engine, pool_size)
        t0 = time.perf_counter()
        result = action()
        action_s = time.perf_counter() - t0
        after = _checkout_all(engine, pool_size)
    finally:
        engine.dispose()
    return PrePingReport(pool_size, pool_pre_ping, before, after, invalidations, action_s, result)
