"""Endpoint role check: the cluster endpoint reaches the writer, the reader endpoint reaches readers (read-only,
SQLSTATE 25006 on a write) and spreads connections over them.

Which instance answered comes from ``aurora_db_instance_identifier()`` (native on Aurora, a shim on the local
backend), so the check runs unchanged on both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from aurora_kit.backends.base import ClusterBackend, ConnectionInfo
from aurora_kit.checks.common import connect, instance_identity, sqlstate_of
from aurora_kit.checks.result import CheckResult

READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction


@dataclass(frozen=True)
class EndpointAnswer:
    endpoint: str
    instance_id: str
    in_recovery: bool


@dataclass(repr=False)
class EndpointRoleReport(CheckResult):
    """Who answered on each endpoint, whether a write on the reader endpoint was refused, and the spread."""

    title = "endpoint roles"

    cluster: EndpointAnswer
    reader: EndpointAnswer
    expected_writer: str | None
    expected_readers: list[str]
    reader_write_sqlstate: str | None  # None = the write succeeded (and was rolled back)
    reader_write_error: str
    distribution: dict[str, int] = field(default_factory=dict)  # instance → reader-endpoint connections
    connection_errors: dict[str, int] = field(default_factory=dict)
    require_spread: bool = True

    @property
    def connections(self) -> int:
        return sum(self.distribution.values())

    def problems(self) -> list[str]:
        out = []
        if self.cluster.in_recovery:
            out.append(f"cluster endpoint reached {self.cluster.instance_id}, which is in recovery (read-only)")
        if self.expected_writer and self.cluster.instance_id != self.expected_writer:
            out.append(f"cluster endpoint reached {self.cluster.instance_id}, expected writer {self.expected_writer}")
        if self.expected_readers:
            if not self.reader.in_recovery:
                out.append(f"reader endpoint reached {self.reader.instance_id}, which is not read-only")
            if self.reader_write_sqlstate != READ_ONLY_SQLSTATE:
                got = self.reader_write_sqlstate or "success"
                out.append(f"a write on the reader endpoint gave {got}, expected SQLSTATE {READ_ONLY_SQLSTATE}")
            strays = {i: n for i, n in self.distribution.items() if i not in self.expected_readers}
            if strays:
                out.append(f"reader-endpoint connections reached non-readers: {strays}")
            wanted = min(2, len(self.expected_readers))
            if self.require_spread and len(self.distribution) < wanted and self.connections >= 10:
                out.append(
                    f"{self.connections} reader-endpoint connections all reached {sorted(self.distribution)}; "
                    f"no load balancing over {self.expected_readers}"
                )
        elif self.reader.instance_id != self.cluster.instance_id:
            out.append("cluster has no readers, yet the reader endpoint did not reach the writer")
        if self.connection_errors:
            out.append(f"reader-endpoint connection failures: {self.connection_errors}")
        return out

    def limits(self) -> str:
        writer = f"cluster endpoint → writer {self.cluster.instance_id}"
        if not self.expected_readers:
            return f"{writer}; no reader: the reader endpoint reaches the writer"
        spread = ", ".join(f"{i} {n}" for i, n in sorted(self.distribution.items()))
        return (
            f"{writer}; reader endpoint → readers only, a write refused with {READ_ONLY_SQLSTATE}; "
            f"{self.connections} connections spread: {spread}"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "cluster_endpoint_instance": self.cluster.instance_id,
            "cluster_endpoint_in_recovery": self.cluster.in_recovery,
            "reader_endpoint_instance": self.reader.instance_id,
            "reader_endpoint_in_recovery": self.reader.in_recovery,
            "expected_writer": self.expected_writer,
            "expected_readers": list(self.expected_readers),
            "reader_write_sqlstate": self.reader_write_sqlstate,
            "reader_connections": self.connections,
            "distribution": dict(self.distribution),
            "connection_errors": dict(self.connection_errors),
        }

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        rows: list[list[Any]] = [
            ["cluster", self.cluster.instance_id, self.cluster.in_recovery, "—"],
            ["reader", self.reader.instance_id, self.reader.in_recovery, self.reader_write_sqlstate or "write OK"],
        ]
        return ["endpoint", "answered by", "pg_is_in_recovery()", "write attempt"], rows

    def plot(self, ax: Any = None) -> Any:
        """Bar chart: reader-endpoint connections per instance."""
        import matplotlib.pyplot as plt

        if ax is None:
            _fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
        names = sorted(set(self.distribution) | set(self.expected_readers))
        ax.bar(names, [self.distribution.get(n, 0) for n in names])
        ax.set_ylabel("connections")
        ax.set_title(f"{self.connections} reader-endpoint connections")
        return ax


def _try_write(conn: psycopg.Connection[Any]) -> tuple[str | None, str]:
    """Attempt a real write inside a transaction that is always rolled back; return (SQLSTATE, message)."""
    conn.autocommit = False
    try:
        conn.execute("CREATE TABLE aurora_kit_reader_write_check (id int)")
    except psycopg.Error as exc:
        conn.rollback()
        return exc.sqlstate, str(exc).strip()
    conn.rollback()
    return None, "write succeeded (rolled back)"


def check_endpoint_roles_at(
    cluster: ConnectionInfo,
    reader: ConnectionInfo,
    *,
    expected_writer: str | None = None,
    expected_readers: list[str] | None = None,
    connections: int = 20,
    connect_timeout: float = 5.0,
    require_spread: bool = True,
) -> EndpointRoleReport:
    """The role check from endpoints alone; ``expected_*`` (instance ids) make it strict."""
    with connect(cluster, connect_timeout=connect_timeout) as conn:
        c_id, c_rec = instance_identity(conn)
    with connect(reader, connect_timeout=connect_timeout) as conn:
        r_id, r_rec = instance_identity(conn)
        state, message = _try_write(conn)
    dist: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for _ in range(connections):
        try:
            with connect(reader, connect_timeout=connect_timeout) as conn:
                dist[instance_identity(conn)[0]] += 1
        except psycopg.Error as exc:
            errors[sqlstate_of(exc)] += 1
    return EndpointRoleReport(
        cluster=EndpointAnswer("cluster", c_id, c_rec),
        reader=EndpointAnswer("reader", r_id, r_rec),
        expected_writer=expected_writer,
        expected_readers=list(expected_readers or []),
        reader_write_sqlstate=state,
        reader_write_error=message,
        distribution=dict(dist),
        connection_errors=dict(errors),
        require_spread=require_spread,
    )


def check_endpoint_roles(
    backend: ClusterBackend, cluster_id: str, *, connections: int = 20, require_spread: bool = True
) -> EndpointRoleReport:
    """Check both endpoints of ``cluster_id`` against the members the backend reports (writer / readers).

    ``require_spread``: with ≥ 2 readers and ≥ 10 connections, at least two readers must have answered. On AWS,
    clients that cache DNS defeat the reader endpoint's round robin; pass False if that is expected.
    """
    cluster = backend.describe_cluster(cluster_id)
    return check_endpoint_roles_at(
        backend.connection_info(cluster_id, "cluster"),
        backend.connection_info(cluster_id, "reader"),
        expected_writer=cluster.writer_id,
        expected_readers=cluster.reader_ids,
        connections=connections,
        require_spread=require_spread,
    )


# -- every instance, one by one ---------------------------------------------------------------------------------
@dataclass(repr=False)
class InstanceRolesReport(CheckResult):
    """Each instance's own view of its role (``pg_is_in_recovery()``, ``aurora_db_instance_identifier()``) against
    the role the control plane reports; for readers, whether a write is refused with SQLSTATE 25006."""

    title = "every instance's role, from the instance itself"

    #: instance → (control plane says writer, in recovery, identifier it reports, SQLSTATE of a write or None)
    answers: dict[str, tuple[bool, bool, str, str | None]]

    def problems(self) -> list[str]:
        out = []
        if not self.answers:
            out.append("no instance answered")
        for iid, (writer, in_recovery, ident, write_state) in self.answers.items():
            role = "writer" if writer else "reader"
            if in_recovery == writer:
                out.append(f"{iid}: the control plane says {role}, pg_is_in_recovery() = {in_recovery}")
            if ident != iid:
                out.append(f"{iid}: reports itself as {ident!r}")
            if not writer and write_state != READ_ONLY_SQLSTATE:
                out.append(f"{iid}: a write on this reader gave {write_state or 'success'}, expected 25006")
        return out

    def limits(self) -> str:
        return "writer writable, every reader in recovery and refusing writes with 25006"

    def summary(self) -> dict[str, Any]:
        return {
            iid: {"role": "writer" if w else "reader", "in_recovery": rec, "write": state}
            for iid, (w, rec, _i, state) in self.answers.items()
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [("instances", len(self.answers)), ("readers", sum(1 for a in self.answers.values() if not a[0]))]

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        rows = [
            [iid, "writer" if w else "reader", rec, ident, "—" if w else (state or "success")]
            for iid, (w, rec, ident, state) in self.answers.items()
        ]
        return ["instance", "control plane", "pg_is_in_recovery()", "identifier()", "write →"], rows


def check_instance_roles(
    backend: ClusterBackend, cluster_id: str, *, connect_timeout: float = 5.0
) -> InstanceRolesReport:
    """Connect to every member directly; readers are also asked to write (in a rolled-back transaction)."""
    cluster = backend.describe_cluster(cluster_id)
    answers: dict[str, tuple[bool, bool, str, str | None]] = {}
    for m in cluster.db_cluster_members:
        info = backend.connection_info(cluster_id, m.db_instance_identifier)
        with connect(info, connect_timeout=connect_timeout) as conn:
            ident, in_recovery = instance_identity(conn)
            state = None if m.is_cluster_writer else _try_write(conn)[0]
        answers[m.db_instance_identifier] = (m.is_cluster_writer, in_recovery, ident, state)
    return InstanceRolesReport(answers)
