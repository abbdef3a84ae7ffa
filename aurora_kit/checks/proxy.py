"""What a connection proxy (RDS Proxy; locally PgBouncer) must prove, measured through its endpoints on both backends:

- **failover**: a write probe through the proxy and one on the cluster endpoint, side by side through the same
  failover: each one's write gap (longest time without an acknowledged write), lost commits and the client
  connections it had to open (1: its connection outlived the failover). RDS Proxy claims failovers up to 66 %
  shorter for its clients (it does not wait for DNS); the report gives the measured reduction;
- **multiplexing**: many client connections open at once, each running transactions, served by few server
  sessions (distinct ``pg_backend_pid()``, at most the pool's size);
- **session pinning**: one client's session-level ``SET`` — where the proxy pins (RDS Proxy), the client keeps the
  value and its server session for its next transactions; where it cannot (PgBouncer), the value lasts for its
  transaction only; in both, no other client ever sees it;
- **read-only endpoint**: every connection through it lands on a reader (and refuses writes).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from aurora_kit.backends.base import ClusterBackend, ConnectionInfo, FailoverMode, FailoverResult
from aurora_kit.checks.common import connect, instance_identity, sqlstate_of
from aurora_kit.checks.result import CheckResult
from aurora_kit.checks.write_probe import WriteProbe, WriteProbeReport
from aurora_kit.display import quantity
from aurora_kit.rules import proxy_pool_size

#: RDS Proxy's documented claim for Aurora Multi-AZ failovers
CLAIMED_REDUCTION = 0.66


# == failover through the proxy vs the cluster endpoint =========================================================
@dataclass(repr=False)
class ProxyFailoverReport(CheckResult):
    """Two write probes through one failover: the cluster endpoint's and the proxy's."""

    title = "failover through the proxy"

    mode: str
    direct: WriteProbeReport
    proxied: WriteProbeReport
    failover: dict[str, Any]
    max_lost: int = 0
    #: the proxy's gap may exceed the cluster endpoint's by at most this much before the check fails
    slack_s: float = 0.0

    @property
    def direct_gap_s(self) -> float | None:
        return self.direct.rto_s

    @property
    def proxy_gap_s(self) -> float | None:
        return self.proxied.rto_s

    @property
    def reduction(self) -> float | None:
        """How much shorter the proxy's gap was (0.66 = 66 % shorter; negative: longer)."""
        d, p = self.direct_gap_s, self.proxy_gap_s
        return None if d is None or p is None or d <= 0 else 1 - p / d

    def problems(self) -> list[str]:
        out = []
        for label, report in (("cluster endpoint", self.direct), ("proxy", self.proxied)):
            out += [f"{label}: {p}" for p in report.problems(max_lost=self.max_lost)]
        d, p = self.direct_gap_s, self.proxy_gap_s
        if d is not None and p is not None and p > d + self.slack_s:
            out.append(
                f"the proxy's write gap {p:.3f} s is longer than the cluster endpoint's {d:.3f} s"
                + (f" (+ {self.slack_s:g} s allowed)" if self.slack_s else "")
            )
        return out

    def limits(self) -> str:
        d, p = self.direct_gap_s, self.proxy_gap_s
        if d is None or p is None:
            return ""
        shorter = self.reduction
        rel = f"{abs(shorter) * 100:.0f} % {'shorter' if shorter >= 0 else 'longer'}" if shorter is not None else ""
        if self.slack_s and abs(p - d) <= self.slack_s:  # one failover each: a difference this small is noise
            rel += f", within ±{self.slack_s:g} s: no difference one failover can show"
        return (
            f"{self.mode}: proxy gap {p:.3f} s vs cluster endpoint {d:.3f} s ({rel}; RDS Proxy claims up to "
            f"{CLAIMED_REDUCTION * 100:.0f} %), lost commits {self.proxied.lost} / {self.direct.lost} ≤ {self.max_lost}"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "proxy_gap_s": self.proxy_gap_s,
            "cluster_endpoint_gap_s": self.direct_gap_s,
            "reduction": self.reduction,
            "claimed_reduction": CLAIMED_REDUCTION,
            "proxy_lost_commits": self.proxied.lost,
            "cluster_endpoint_lost_commits": self.direct.lost,
            "proxy_client_connections": self.proxied.connections,
            "cluster_endpoint_client_connections": self.direct.connections,
            "proxy_failed_attempts": len(self.proxied.failures),
            "cluster_endpoint_failed_attempts": len(self.direct.failures),
            "failover": self.failover,
            "proxy_probe": self.proxied.summary(),
            "cluster_endpoint_probe": self.direct.summary(),
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        shorter = self.reduction
        return [
            ("failover", f"{self.mode}: {self.failover.get('old_writer')} → {self.failover.get('new_writer')}"),
            ("write gap through the proxy", quantity(self.proxy_gap_s, "s")),
            ("write gap on the cluster endpoint", quantity(self.direct_gap_s, "s")),
            ("proxy's gap shorter by", "n/a" if shorter is None else f"{shorter * 100:.0f} %"),
            ("lost commits (proxy / cluster endpoint)", f"{self.proxied.lost} / {self.direct.lost}"),
            (
                "client connections opened (proxy / cluster endpoint)",
                f"{self.proxied.connections} / {self.direct.connections}",
            ),
            (
                "failed attempts (proxy / cluster endpoint)",
                f"{len(self.proxied.failures)} / {len(self.direct.failures)}",
            ),
        ]

    def plot(self, ax: Any = None) -> Any:
        import matplotlib.pyplot as plt

        if ax is None:
            _fig, ax = plt.subplots(figsize=(9, 3), layout="constrained")
        for lane, (label, report) in enumerate((("cluster endpoint", self.direct), ("proxy", self.proxied))):
            ax.scatter([a.t for a in report.acks], [lane] * len(report.acks), s=4, label=f"acks via {label}")
            ax.scatter([f.t for f in report.failures], [lane + 0.3] * len(report.failures), s=8, marker="x",
                       color="red")  # fmt: skip
        ax.set_yticks([0, 1], ["cluster endpoint", "proxy"])
        ax.set_xlabel("seconds since each probe started")
        ax.set_title(f"{self.mode} failover: write gap proxy {quantity(self.proxy_gap_s, 's')} vs "
                     f"cluster endpoint {quantity(self.direct_gap_s, 's')}")  # fmt: skip
        return ax


def compare_failover(
    backend: ClusterBackend,
    cluster_id: str,
    proxy_name: str,
    *,
    mode: FailoverMode = "planned",
    target_instance_id: str | None = None,
    rate: float = 100.0,
    max_lost: int = 0,
    slack_s: float = 0.0,
) -> tuple[FailoverResult, ProxyFailoverReport]:
    """Fail over with a write probe on the cluster endpoint and one through the proxy (no server-side prepared
    statements there: a transaction pool cannot keep them), both started before and stopped after it."""
    direct = WriteProbe(backend.connection_info(cluster_id, "cluster"), rate=rate)
    proxied = WriteProbe(backend.proxy_connection_info(proxy_name), rate=rate, prepared=False)
    direct.start()
    try:
        proxied.start()
    except BaseException:
        direct.stop()
        raise
    try:
        for probe in (direct, proxied):
            probe.mark(f"{mode} failover requested")
        result = backend.failover(cluster_id, target_instance_id=target_instance_id, mode=mode)
        for probe in (direct, proxied):
            probe.mark("failover returned")
    finally:
        with ThreadPoolExecutor(max_workers=2) as pool:  # each waits for its own writes to settle
            reports = list(pool.map(lambda p: p.stop(), (direct, proxied)))
    for report in reports:
        report.max_lost = max_lost
        report.expected_writer = result.new_writer if result.status != "dry-run" else None
    failover = {
        "old_writer": result.old_writer,
        "new_writer": result.new_writer,
        "control_plane_s": round(result.control_plane_seconds, 3),
    }
    return result, ProxyFailoverReport(mode, reports[0], reports[1], failover, max_lost, slack_s)


# == multiplexing ================================================================================================
@dataclass(repr=False)
class MultiplexingReport(CheckResult):
    """Client connections held open at once vs the server sessions that served their transactions."""

    title = "connection multiplexing"

    clients: int
    transactions: int
    server_sessions: int
    pool_size: int | None
    per_session: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.clients / self.server_sessions if self.server_sessions else 0.0

    def problems(self) -> list[str]:
        out = []
        if self.errors:
            out.append(f"transactions failed: {self.errors}")
        if self.server_sessions == 0:
            out.append("no transaction was served")
        elif self.server_sessions >= self.clients:
            out.append(
                f"{self.clients} client connections used {self.server_sessions} server sessions: no multiplexing"
            )
        if self.pool_size is not None and self.server_sessions > self.pool_size:
            out.append(f"{self.server_sessions} server sessions exceed the pool's {self.pool_size}")
        return out

    def limits(self) -> str:
        pool = f" ≤ pool {self.pool_size}" if self.pool_size is not None else ""
        return f"{self.clients} client connections → {self.server_sessions} server sessions{pool} ({self.ratio:.1f}×)"

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "transactions": self.transactions,
            "server_sessions": self.server_sessions,
            "pool_size": self.pool_size,
            "multiplexing_ratio": round(self.ratio, 2),
            "errors": dict(self.errors),
        }


def check_multiplexing(
    info: ConnectionInfo,
    *,
    clients: int = 40,
    transactions: int = 5,
    pool_size: int | None = None,
    max_connections_percent: int | None = None,
    connect_timeout: float = 5.0,
) -> MultiplexingReport:
    """Open ``clients`` connections through the proxy (all held open), then let each run ``transactions`` short
    transactions at once; count the distinct server sessions (``pg_backend_pid()``) that served them. Without a
    ``pool_size`` (RDS Proxy does not report one), the pool is ``max_connections_percent`` of the writer's
    ``max_connections`` as the proxy's first session reads it (RDS Proxy's definition of the pool)."""
    conns: list[psycopg.Connection[Any]] = []
    pids: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def work(conn: psycopg.Connection[Any]) -> None:
        start.wait(timeout=60)
        for _ in range(transactions):
            try:
                row = conn.execute("SELECT pg_backend_pid()", prepare=False).fetchone()
                assert row is not None
                with lock:
                    pids[int(row[0])] += 1
            except psycopg.Error as exc:
                with lock:
                    errors[sqlstate_of(exc)] += 1

    try:
        for _ in range(clients):
            conn = connect(info, connect_timeout=connect_timeout, application_name="aurora_kit_multiplexing")
            conn.prepare_threshold = None
            conns.append(conn)
        if pool_size is None and max_connections_percent is not None:
            row = conns[0].execute("SELECT current_setting('max_connections')::int", prepare=False).fetchone()
            pool_size = proxy_pool_size(int(row[0]), max_connections_percent) if row else None
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(work, conns))
    finally:
        for conn in conns:
            conn.close()
    return MultiplexingReport(clients, clients * transactions, len(pids), pool_size, dict(pids), dict(errors))


# == session pinning =============================================================================================
@dataclass(repr=False)
class PinningReport(CheckResult):
    """One client's session-level SET through the proxy, and what it and the other clients saw afterwards."""

    title = "session pinning"

    pins_expected: bool
    transactions: int
    kept: int  # of the setting client's later transactions, how many still saw its value
    same_session: int  # ... and ran on the server session of its SET
    others_transactions: int
    leaked: int  # transactions of other clients that saw the value
    others_on_pinned_session: int  # ... that ran on the setting client's server session

    @property
    def pinned(self) -> bool:
        return self.kept == self.transactions and self.same_session == self.transactions

    def problems(self) -> list[str]:
        out = []
        if self.leaked:
            out.append(f"{self.leaked} transaction(s) of other clients saw another session's SET")
        if self.pins_expected:
            if not self.pinned:
                out.append(
                    f"the session was not pinned: its value in {self.kept} and its server session in "
                    f"{self.same_session} of {self.transactions} later transactions"
                )
            if self.others_on_pinned_session:
                out.append(f"{self.others_on_pinned_session} transaction(s) of other clients used the pinned session")
        elif self.kept:
            out.append(f"the SET survived its transaction in {self.kept} of {self.transactions}: state leaks "
                       "between transactions of the pool")  # fmt: skip
        return out

    def limits(self) -> str:
        if self.pins_expected:
            return (
                f"pinned: value and server session kept in {self.kept}/{self.transactions} transactions, "
                f"seen by others {self.leaked}/{self.others_transactions}"
            )
        return (
            f"not pinned (PgBouncer cannot pin; RDS Proxy would): value kept {self.kept}/{self.transactions}, seen by "
            f"others {self.leaked}/{self.others_transactions}"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "pins_expected": self.pins_expected,
            "pinned": self.pinned,
            "transactions": self.transactions,
            "kept": self.kept,
            "same_session": self.same_session,
            "others_transactions": self.others_transactions,
            "leaked": self.leaked,
            "others_on_pinned_session": self.others_on_pinned_session,
        }


PIN_SETTING = "aurora_kit.pin_probe"


def check_pinning(
    info: ConnectionInfo,
    *,
    pins_expected: bool,
    others: int = 4,
    transactions: int = 10,
    connect_timeout: float = 5.0,
) -> PinningReport:
    """Client A runs ``SET aurora_kit.pin_probe = '<unique>'`` (session level) through the proxy, then A and
    ``others`` clients run ``transactions`` transactions each, reading the setting and their server session."""
    marker = f"pin-{uuid.uuid4().hex[:12]}"
    read = f"SELECT current_setting('{PIN_SETTING}', true), pg_backend_pid()"
    a = connect(info, connect_timeout=connect_timeout, application_name="aurora_kit_pinning")
    rest = [
        connect(info, connect_timeout=connect_timeout, application_name="aurora_kit_pinning") for _ in range(others)
    ]
    try:
        for conn in (a, *rest):
            conn.prepare_threshold = None
        a.execute(f"SET {PIN_SETTING} = '{marker}'", prepare=False)
        row = a.execute(read, prepare=False).fetchone()  # the same implicit session, if pinned
        pinned_pid = int(row[1]) if row else -1
        kept = same = leaked = on_pinned = 0
        for _ in range(transactions):
            value, pid = a.execute(read, prepare=False).fetchone() or (None, -1)
            kept += value == marker
            same += int(pid) == pinned_pid
            for conn in rest:
                value, pid = conn.execute(read, prepare=False).fetchone() or (None, -1)
                leaked += value == marker
                on_pinned += int(pid) == pinned_pid
        return PinningReport(pins_expected, transactions, kept, same, transactions * others, leaked, on_pinned)
    finally:
        for conn in (a, *rest):
            conn.close()


# == the read-only endpoint =====================================================================================
@dataclass(repr=False)
class ReadOnlyEndpointReport(CheckResult):
    """Connections through the proxy's read-only endpoint: where each one landed, and whether it refused a write."""

    title = "read-only proxy endpoint"

    answers: dict[str, int]
    in_recovery: int
    connections: int
    write_refused: bool
    readers: list[str]

    def problems(self) -> list[str]:
        out = []
        if self.connections == 0:
            out.append("no connection through the read-only endpoint answered")
        if self.in_recovery < self.connections:
            out.append(f"{self.connections - self.in_recovery} of {self.connections} connections landed on a writer")
        if self.readers and not set(self.answers) <= set(self.readers):
            out.append(f"answers from {sorted(set(self.answers) - set(self.readers))}, not readers")
        if not self.write_refused:
            out.append("a write through the read-only endpoint was not refused")
        return out

    def limits(self) -> str:
        spread = ", ".join(f"{k} ×{v}" for k, v in sorted(self.answers.items()))
        return f"{self.in_recovery}/{self.connections} on readers ({spread}); writes refused"

    def summary(self) -> dict[str, Any]:
        return {
            "answers": dict(self.answers),
            "connections": self.connections,
            "in_recovery": self.in_recovery,
            "write_refused": self.write_refused,
            "readers": list(self.readers),
        }


def check_read_only_endpoint(
    info: ConnectionInfo, readers: list[str], *, connections: int = 12, connect_timeout: float = 5.0
) -> ReadOnlyEndpointReport:
    """``connections`` connections through the read-only endpoint, each inside a transaction at the same time (so
    each holds a server session of its own: a pool spreads them over the readers); each names its instance; then a
    write, rolled back, must be refused."""
    answers: Counter[str] = Counter()
    in_recovery = 0
    conns: list[psycopg.Connection[Any]] = []
    refused = False
    try:
        for _ in range(connections):
            conn = connect(info, connect_timeout=connect_timeout)
            conn.prepare_threshold = None
            conns.append(conn)
            conn.execute("BEGIN", prepare=False)
            ident, read_only = instance_identity(conn)
            answers[ident] += 1
            in_recovery += read_only
        try:
            conns[0].execute("CREATE TABLE aurora_kit_ro_probe (x int)", prepare=False)
        except psycopg.errors.ReadOnlySqlTransaction:
            refused = True
        except psycopg.Error as exc:  # another refusal (e.g. the proxy's) is no proof either way
            refused = sqlstate_of(exc).startswith("25006")
    finally:
        for conn in conns:
            if not conn.closed and not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK", prepare=False)
            conn.close()
    return ReadOnlyEndpointReport(dict(answers), in_recovery, len(conns), refused, list(readers))
