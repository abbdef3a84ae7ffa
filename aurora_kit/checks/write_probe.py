"""Write probe for failovers: a background writer at a fixed rate through the cluster endpoint.

Every attempt gets a new id; a write counts as *acknowledged* only when the INSERT's commit returned to the
client (autocommit), which with synchronous replication means the standby confirmed it. After the event, all
acknowledged ids are read back from the (new) writer: any missing id is a lost commit. RTO is the longest gap
between two consecutive acknowledged writes (client clock; the server's ``clock_timestamp()`` gap is reported
beside it). Writes that failed are "in doubt" (the commit may or may not have happened): reported, not lost.

No ``statement_timeout`` is set: a commit waiting for synchronous replication is not bounded by it, and a
cancelled wait returns *success* with a WARNING although the standby never confirmed — such acknowledgements are
flagged (``acked_with_sync_warning``). Dead sockets are bounded by TCP keepalives / ``tcp_user_timeout`` instead;
a commit still blocked when ``stop()`` gives up on the writer thread is reported (``writer_stuck``).

The read-back must run on a writer: when the endpoint only reaches a read-only (possibly lagging) node, ids missing
there are reported as *unverified*, not lost.

::

    with WriteProbe(backend.connection_info(cid, "cluster")) as probe:
        backend.failover(cid, mode="crash")
    probe.report.assert_ok(max_rto_s=30)
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import psycopg

from aurora_kit.backends.base import ClusterBackend, ConnectionInfo, FailoverMode, FailoverResult
from aurora_kit.checks._probe_tables import SCHEMA, ensure_probe_tables
from aurora_kit.checks.common import connect, instance_identity, must_reconnect, sqlstate_of
from aurora_kit.checks.result import CheckResult
from aurora_kit.display import quantity
from aurora_kit.errors import InvalidParameterError, VerificationError, WaitTimeoutError
from aurora_kit.polling import wait_for

#: libpq options bounding how long a dead server can block the probe (no statement_timeout, see module doc)
DEAD_SOCKET_OPTIONS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,
}

_SYNC_CANCEL = "canceling wait for synchronous replication"


@dataclass(frozen=True)
class Ack:
    """One acknowledged write: client time (s since probe start), server time, who stored it."""

    id: int
    t: float
    written_at: datetime
    instance_id: str
    timeline: int | None
    sync_warning: bool = False


@dataclass(frozen=True)
class Failure:
    """One failed attempt: ``phase`` is connect (reaching a writer) or write (the INSERT/commit)."""

    t: float
    phase: str
    kind: str
    message: str
    id: int | None = None


@dataclass(repr=False)
class WriteProbeReport(CheckResult):
    """RTO, lost acknowledged commits, errors by kind and the writer before/after, from one probe run."""

    title = "write probe"

    run_id: str
    rate: float
    duration_s: float
    attempted: int
    acks: list[Ack] = field(repr=False)
    failures: list[Failure] = field(repr=False)
    lost_ids: list[int]
    in_doubt_ids: list[int]
    in_doubt_committed: list[int]
    verified_on: str | None  # instance the read-back ran on
    verified_on_read_only: bool | None
    recovered: bool  # writes resumed after the last failure
    #: acknowledged ids missing from a read-back that could only run on a read-only (possibly lagging) node:
    #: not proven lost, not proven present
    unverified_ids: list[int] = field(default_factory=list)
    #: the writer thread was still inside a call (e.g. a commit waiting for synchronous replication) when
    #: stop() gave up waiting for it: its last attempt is unaccounted for
    writer_stuck: bool = False
    marks: list[tuple[float, str]] = field(default_factory=list)
    max_rto_s: float | None = None
    expected_writer: str | None = None
    max_lost: int = 0
    #: client connections the probe opened (1: its first connection outlived the event, as through a proxy)
    connections: int = 1

    # -- derived figures --------------------------------------------------------------------------------
    @property
    def lost(self) -> int:
        return len(self.lost_ids)

    @property
    def errors_by_kind(self) -> dict[str, int]:
        return dict(Counter(f"{f.phase}: {f.kind}" for f in self.failures))

    def _largest_gap(self) -> tuple[Ack, Ack] | None:
        ordered = sorted(self.acks, key=lambda a: a.t)
        pairs = list(itertools.pairwise(ordered))
        return max(pairs, key=lambda p: p[1].t - p[0].t) if pairs else None

    @property
    def rto_s(self) -> float | None:
        """Longest gap between consecutive acknowledged writes, client clock."""
        gap = self._largest_gap()
        return gap[1].t - gap[0].t if gap else None

    @property
    def rto_server_s(self) -> float | None:
        """The same gap by the servers' ``clock_timestamp()`` (old writer's last row → new writer's first)."""
        gap = self._largest_gap()
        return (gap[1].written_at - gap[0].written_at).total_seconds() if gap else None

    @property
    def writers(self) -> list[str]:
        """Instances that acknowledged writes, in order of first appearance."""
        seen: list[str] = []
        for a in sorted(self.acks, key=lambda a: a.t):
            if not seen or seen[-1] != a.instance_id:
                seen.append(a.instance_id)
        return seen

    @property
    def old_writer(self) -> str | None:
        return self.writers[0] if self.writers else None

    @property
    def new_writer(self) -> str | None:
        return self.writers[-1] if self.writers else None

    @property
    def timelines(self) -> list[int]:
        return sorted({a.timeline for a in self.acks if a.timeline is not None})

    @property
    def acked_with_sync_warning(self) -> int:
        return sum(1 for a in self.acks if a.sync_warning)

    # -- verdict -----------------------------------------------------------------------------------------
    def problems(
        self, max_rto_s: float | None = None, expected_writer: str | None = None, max_lost: int | None = None
    ) -> list[str]:
        """What is wrong: more than ``max_lost`` acknowledged writes missing, RTO over ``max_rto_s``, writes not
        ending on ``expected_writer``, no read-back on a writer, ... (empty: all good). Limits not given are the
        report's own (set by :func:`probe_failover`)."""
        limit = self.max_rto_s if max_rto_s is None else max_rto_s
        writer = self.expected_writer if expected_writer is None else expected_writer
        max_lost = self.max_lost if max_lost is None else max_lost
        out = []
        if self.lost > max_lost:
            out.append(
                f"{self.lost} acknowledged writes missing after the event > {max_lost} allowed "
                f"(ids {self.lost_ids[:20]})"
            )
        if not self.acks:
            out.append("no write was ever acknowledged")
        if not self.recovered:
            out.append("writes did not resume after the last failure")
        if self.verified_on is None:
            out.append("could not read the probe table back from a writer")
        elif self.verified_on_read_only:
            out.append(
                f"could not verify on the writer: read-back ran on {self.verified_on}, which is read-only "
                f"(possibly lagging); {len(self.unverified_ids)} acknowledged writes not visible there are "
                "unverified, not counted as lost"
            )
        if self.writer_stuck:
            out.append(
                "the writer thread was still blocked when the probe stopped (e.g. a commit waiting for synchronous "
                "replication): its last attempt is unaccounted for"
            )
        rto = self.rto_s
        if limit is not None and rto is not None and rto > limit:
            out.append(f"RTO {rto:.2f}s > {limit:g}s")
        if writer is not None and self.new_writer != writer:
            out.append(f"writes ended on {self.new_writer}, expected new writer {writer}")
        return out

    def assert_ok(
        self, max_rto_s: float | None = None, expected_writer: str | None = None, max_lost: int | None = None
    ) -> WriteProbeReport:
        self._raise_if(self.problems(max_rto_s, expected_writer, max_lost))
        return self

    def limits(self) -> str:
        parts = [f"RTO {self.rto_s:.3f} s" + (f" ≤ {self.max_rto_s:g} s" if self.max_rto_s is not None else "")]
        parts.append(f"{self.lost} lost commits ≤ {self.max_lost}")
        if self.expected_writer:
            parts.append(f"writes resumed on {self.expected_writer}")
        return ", ".join(parts) if self.rto_s is not None else f"{self.lost} lost commits ≤ {self.max_lost}"

    def raise_for_lost_commits(self) -> None:
        if self.lost:
            raise VerificationError(
                f"{self.lost} acknowledged writes lost",
                lost_ids=self.lost_ids,
                run_id=self.run_id,
                old_writer=self.old_writer,
                new_writer=self.new_writer,
            )

    def summary(self) -> dict[str, Any]:
        gap = self._largest_gap()
        return {
            "run_id": self.run_id,
            "rate_per_s": self.rate,
            "duration_s": self.duration_s,
            "attempted": self.attempted,
            "acknowledged": len(self.acks),
            "failed_attempts": len(self.failures),
            "rto_s": self.rto_s,
            "rto_server_s": self.rto_server_s,
            "last_ack_before": gap[0].id if gap else None,
            "first_ack_after": gap[1].id if gap else None,
            "lost": self.lost,
            "lost_ids": self.lost_ids[:100],
            "in_doubt": len(self.in_doubt_ids),
            "in_doubt_committed": len(self.in_doubt_committed),
            "unverified": len(self.unverified_ids),
            "unverified_ids": self.unverified_ids[:100],
            "writer_stuck": self.writer_stuck,
            "connections": self.connections,
            "acked_with_sync_warning": self.acked_with_sync_warning,
            "old_writer": self.old_writer,
            "new_writer": self.new_writer,
            "writers": self.writers,
            "timelines": self.timelines,
            "verified_on": self.verified_on,
            "recovered": self.recovered,
            "errors_by_kind": self.errors_by_kind,
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        """The figures a DBA reads first, rounded (every raw value is in :meth:`summary`)."""
        s = self.summary()
        return [
            ("RTO (client)", quantity(s["rto_s"], "s")),
            ("RTO (server timestamps)", quantity(s["rto_server_s"], "s")),
            ("lost commits", s["lost"]),
            ("in doubt (commit outcome unknown)", f"{s['in_doubt']} ({s['in_doubt_committed']} found committed)"),
            ("writes attempted / acknowledged", f"{s['attempted']} / {s['acknowledged']} at {self.rate:g}/s"),
            ("failed attempts", s["failed_attempts"]),
            ("writer", f"{s['old_writer']} → {s['new_writer']}"),
            ("verified on", s["verified_on"]),
            ("writes resumed", s["recovered"]),
            ("probe ran", quantity(s["duration_s"], "s")),
        ]

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        return ["error (phase: kind)", "count"], [[k, v] for k, v in sorted(self.errors_by_kind.items())]

    def plot(self, ax: Any = None) -> Any:
        """Timeline: acknowledged writes per instance, failed attempts, and marks (e.g. failover start/end)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _fig, ax = plt.subplots(figsize=(9, 3), layout="constrained")
        lanes = [*self.writers]
        lanes = list(dict.fromkeys(lanes))
        for lane, name in enumerate(lanes):
            ts = [a.t for a in self.acks if a.instance_id == name]
            ax.scatter(ts, [lane] * len(ts), s=4, label=f"ack on {name}")
        ft = [f.t for f in self.failures]
        ax.scatter(ft, [len(lanes)] * len(ft), s=8, marker="x", color="red", label="failed attempt")
        for i, (t, label) in enumerate(self.marks):
            ax.axvline(t, color="grey", linestyle="--", linewidth=1)
            ax.annotate(label, (t, len(lanes) + 0.25 + 0.2 * (i % 3)), fontsize="x-small")
        ax.set_yticks(range(len(lanes) + 1), [*lanes, "failed"])
        ax.set_ylim(-0.5, len(lanes) + 0.9)
        ax.set_xlabel("seconds since probe start")
        rto = self.rto_s
        ax.set_title(f"write probe: RTO {rto:.2f}s, lost {self.lost}" if rto is not None else "write probe")
        return ax


class WriteProbe:
    """Background writer at ``rate`` writes/s through the cluster endpoint; see the module doc.

    ``start()`` returns once ``warmup_writes`` are acknowledged; ``stop()`` waits until ``settle_writes`` more are
    acknowledged after the last failure (or ``settle_timeout_s``), stops the writer and reads everything back.
    """

    def __init__(
        self,
        info: ConnectionInfo,
        *,
        rate: float = 100.0,
        connect_timeout: float = 2.0,
        warmup_writes: int = 20,
        settle_writes: int = 20,
        settle_timeout_s: float = 60.0,
        verify_timeout_s: float = 60.0,
        stop_timeout_s: float | None = None,
        run_id: str | None = None,
        prepared: bool = True,
    ) -> None:
        if rate <= 0:
            raise InvalidParameterError("rate", rate, "writes per second must be positive")
        self.info = info
        self.rate = rate
        self.connect_timeout = connect_timeout
        self.warmup_writes = warmup_writes
        self.settle_writes = settle_writes
        self.settle_timeout_s = settle_timeout_s
        self.verify_timeout_s = verify_timeout_s
        #: how long stop() waits for the writer thread to finish its current call
        self.stop_timeout_s = connect_timeout + 15 if stop_timeout_s is None else stop_timeout_s
        self.run_id = run_id or f"wp-{uuid.uuid4().hex[:12]}"
        #: server-side prepared statements (psycopg's); off for a transaction-pooling proxy (PgBouncer) that cannot
        #: keep them between transactions
        self.prepared = prepared
        self.report: WriteProbeReport | None = None
        self._acks: list[Ack] = []
        self._failures: list[Failure] = []
        self._marks: list[tuple[float, str]] = []
        self._attempted = 0
        self._connections = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._lock = threading.Lock()
        self._crash: BaseException | None = None

    # -- control -----------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self._t0

    def mark(self, label: str) -> None:
        """Put a labelled vertical line on the timeline (e.g. ``"failover requested"``)."""
        self._marks.append((self.now(), label))

    def start(self) -> WriteProbe:
        with connect(self.info, connect_timeout=self.connect_timeout) as conn:
            ident, read_only = instance_identity(conn)
            if read_only:
                raise VerificationError(f"cluster endpoint reached read-only {ident}; cannot probe writes")
            ensure_probe_tables(conn)
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"write-probe-{self.run_id}", daemon=True)
        self._thread.start()
        try:
            wait_for(
                f"{self.warmup_writes} acknowledged probe writes",
                lambda: (len(self._acks), self._crash),
                lambda s: s[0] >= self.warmup_writes or s[1] is not None,
                timeout=max(30.0, 3 * self.warmup_writes / self.rate),
                initial_delay=0.01,
                max_delay=0.2,
            )
            if self._crash is not None:
                raise self._crash
        except BaseException:
            # no __exit__/stop() will run for a probe that failed to start: do not leave its writer behind
            self._stop.set()
            self._thread.join(timeout=self.stop_timeout_s)
            raise
        return self

    def stop(self) -> WriteProbeReport:
        if self._thread is None:
            raise InvalidParameterError("probe", self.run_id, "stop() before start()")
        if self.settle_writes:
            settled = self._settle_point()
            # a cluster that never recovers is the finding itself, reported as recovered=False
            with contextlib.suppress(WaitTimeoutError):
                wait_for(
                    f"{self.settle_writes} acknowledged writes after the last failure",
                    settled,
                    bool,
                    timeout=self.settle_timeout_s,
                    initial_delay=0.02,
                    max_delay=0.5,
                )
        self._stop.set()
        self._thread.join(timeout=self.stop_timeout_s)
        if self._crash is not None:
            raise self._crash
        self.report = self._verify(writer_stuck=self._thread.is_alive())
        return self.report

    def __enter__(self) -> WriteProbe:
        self.start()
        self.mark("enter")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.mark("exit")
        report = self.stop()
        del report  # available as self.report; an exception from the body propagates unchanged

    # -- the writer thread -------------------------------------------------------------------------------
    def _settle_point(self) -> Any:
        exit_t = self.now()

        def done() -> bool:
            with self._lock:
                last_fail = max((f.t for f in self._failures), default=0.0)
                since = max(last_fail, exit_t)
                return sum(1 for a in self._acks if a.t > since) >= self.settle_writes

        return done

    def _connect(self) -> tuple[psycopg.Connection[Any], list[str]]:
        """A connection that reached a writer (``_ReadOnlyNodeError`` otherwise), with its notices collected."""
        conn = connect(
            self.info,
            connect_timeout=self.connect_timeout,
            application_name="aurora_kit_write_probe",
            **DEAD_SOCKET_OPTIONS,
        )
        if not self.prepared:
            conn.prepare_threshold = None
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        ident, read_only = instance_identity(conn)
        if read_only:
            conn.close()
            raise _ReadOnlyNodeError(ident)
        with self._lock:
            self._connections += 1
        return conn, notices

    def _run(self) -> None:
        period = 1.0 / self.rate
        conn: psycopg.Connection[Any] | None = None
        notices: list[str] = []
        next_id = 1
        next_t = time.monotonic()
        # the row names the instance and timeline that stored it: through a proxy one client connection outlives the
        # writer it first reached, so what the connection saw at connect time is not enough
        insert = (
            f"INSERT INTO {SCHEMA}.write_probe (run_id, id, instance_id, timeline) "
            "VALUES (%s, %s, aurora_db_instance_identifier(), "
            "('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int) "
            "RETURNING written_at, instance_id, timeline"
        )
        try:
            while not self._stop.is_set():
                if conn is None:
                    try:
                        conn, notices = self._connect()
                    except _ReadOnlyNodeError as exc:
                        self._fail("connect", "connected to read-only node", f"reached {exc.instance_id}")
                    except psycopg.Error as exc:
                        self._fail("connect", sqlstate_of(exc), str(exc).strip().splitlines()[0] if str(exc) else "")
                    if conn is None:
                        next_t = self._pace(next_t, period)
                        continue
                    assert conn is not None
                attempt = next_id
                next_id += 1
                with self._lock:
                    self._attempted += 1
                notices.clear()
                try:
                    row = conn.execute(insert, [self.run_id, attempt], prepare=self.prepared).fetchone()
                    assert row is not None
                    warned = any(_SYNC_CANCEL in n for n in notices)
                    with self._lock:
                        self._acks.append(Ack(attempt, self.now(), row[0], str(row[1]), row[2], warned))
                except psycopg.Error as exc:
                    self._fail("write", sqlstate_of(exc), str(exc).strip().splitlines()[0] if str(exc) else "", attempt)
                    if must_reconnect(exc, conn):
                        conn.close()
                        conn = None
                next_t = self._pace(next_t, period)
        except BaseException as exc:  # surfaced by start()/stop(), never swallowed
            self._crash = exc
            raise
        finally:
            if conn is not None:
                conn.close()

    def _pace(self, next_t: float, period: float) -> float:
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
            return next_t
        return time.monotonic()  # behind schedule (outage): do not burst to catch up

    def _fail(self, phase: str, kind: str, message: str, attempt: int | None = None) -> None:
        with self._lock:
            self._failures.append(Failure(self.now(), phase, kind, message[:200], attempt))

    # -- verification ------------------------------------------------------------------------------------
    def _read_back(self) -> tuple[set[int], str, bool]:
        with connect(self.info, connect_timeout=self.connect_timeout) as conn:
            ident, read_only = instance_identity(conn)
            ids = {
                int(r[0]) for r in conn.execute(f"SELECT id FROM {SCHEMA}.write_probe WHERE run_id = %s", [self.run_id])
            }
        return ids, ident, read_only

    def _verify(self, *, writer_stuck: bool = False) -> WriteProbeReport:
        with self._lock:
            acks = list(self._acks)
            failures = list(self._failures)
            attempted = self._attempted
        acked = {a.id for a in acks}
        in_doubt = sorted({f.id for f in failures if f.id is not None} - acked)
        present: set[int] | None = None
        verified_on: str | None = None
        read_only: bool | None = None
        try:
            present, verified_on, read_only = wait_for(
                "read-back of the probe table from the writer",
                self._read_back,
                lambda r: not r[2],
                timeout=self.verify_timeout_s,
                retry_on=(psycopg.OperationalError,),
                initial_delay=0.1,
                max_delay=1.0,
            )
        except Exception:  # the report says the read-back could not be done
            try:
                present, verified_on, read_only = self._read_back()
            except psycopg.Error:
                present = None
        missing = sorted(acked - present) if present is not None else []
        # a read-only node may simply not have replayed the latest commits yet: absent there is not lost
        lost, unverified = ([], missing) if read_only else (missing, [])
        last_fail = max((f.t for f in failures), default=-1.0)
        recovered = any(a.t > last_fail for a in acks)
        return WriteProbeReport(
            run_id=self.run_id,
            rate=self.rate,
            duration_s=self.now(),
            attempted=attempted,
            acks=acks,
            failures=failures,
            lost_ids=lost,
            in_doubt_ids=in_doubt,
            in_doubt_committed=sorted(set(in_doubt) & present) if present is not None else [],
            verified_on=verified_on if present is not None else None,
            verified_on_read_only=read_only,
            recovered=recovered,
            marks=list(self._marks),
            unverified_ids=unverified,
            writer_stuck=writer_stuck,
            connections=self._connections,
        )


class _ReadOnlyNodeError(Exception):
    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id)
        self.instance_id = instance_id


def probe_failover(
    backend: ClusterBackend,
    cluster_id: str,
    *,
    mode: FailoverMode = "planned",
    target_instance_id: str | None = None,
    rate: float = 100.0,
    max_rto_s: float | None = None,
    max_lost: int = 0,
) -> tuple[FailoverResult, WriteProbeReport]:
    """Run ``backend.failover`` inside a :class:`WriteProbe`; the report expects the failover's new writer."""
    with WriteProbe(backend.connection_info(cluster_id, "cluster"), rate=rate) as probe:
        probe.mark(f"{mode} failover requested")
        result = backend.failover(cluster_id, target_instance_id=target_instance_id, mode=mode)
        probe.mark("failover returned")
    report = probe.report
    assert report is not None
    report.max_rto_s = max_rto_s
    report.max_lost = max_lost
    report.expected_writer = result.new_writer if result.status != "dry-run" else None
    return result, report
