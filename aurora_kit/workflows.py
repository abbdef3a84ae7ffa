"""Steps the runbooks call, so a notebook cell stays one to three lines (STYLE 1).

Every function takes the :class:`~aurora_kit.runbook.Run` and reads its typed parameters; control-plane steps
go through ``run.backend`` (local or aws, unchanged), data-plane steps through endpoints with psycopg.

Data plane: :func:`data_plane` finds out once per runbook whether the cluster's endpoints can be reached from
here (they cannot under the moto server, whose endpoints are fake hostnames, nor in a dry run before the cluster
exists). :func:`when` runs a data-plane step only when they can; otherwise it prints why and returns a
:class:`Skipped` that says so in the notebook and in the audit record (``data_plane: skipped (reason)``) — a
skipped check is never shown or recorded as a pass.

Checks raise typed errors (:class:`~aurora_kit.errors.VerificationError` and friends), so papermill marks the
failing cell and the run fails; nothing here catches them.
"""

from __future__ import annotations

import html
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aurora_kit.backends.base import Cluster, FailoverResult, Instance, ParameterChangeResult, Snapshot
from aurora_kit.errors import (
    AuroraKitError,
    ClusterNotFoundError,
    ConfirmationRequiredError,
    DeletionProtectionError,
    VerificationError,
)
from aurora_kit.polling import wait_for
from aurora_kit.specs import ClusterSpec, InstanceSpec

if TYPE_CHECKING:
    from aurora_kit.backends.base import AlarmState, ClusterBackend, ConnectionInfo
    from aurora_kit.checks import RestoreReport, SeededDataset, TableFingerprint
    from aurora_kit.runbook import Run


# == display ===================================================================================================
def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


@dataclass
class Table:
    """Rows of dicts shown as an HTML table in the notebook and as aligned text elsewhere."""

    rows: list[dict[str, Any]]
    title: str = ""

    @property
    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for row in self.rows:
            cols.update(dict.fromkeys(row))
        return list(cols)

    def _repr_html_(self) -> str:
        cols = self.columns
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
            for r in self.rows
        )
        title = f"<h4 style='margin:4px 0'>{html.escape(self.title)}</h4>" if self.title else ""
        empty = "" if self.rows else "<p><i>(none)</i></p>"
        return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{empty}"

    def __str__(self) -> str:
        cols = self.columns
        cells = [[_fmt(r.get(c)) for c in cols] for r in self.rows]
        widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
        lines = [self.title] if self.title else []
        lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
        if not self.rows:
            lines.append("(none)")
        return "\n".join(lines)

    __repr__ = __str__


def connection_info(run: Run, endpoint: str = "cluster", cluster_id: str | None = None) -> ConnectionInfo:
    """``run.connection_info`` that declares each password secret once per run (not once per connection)."""
    from aurora_kit.runbook import register_secret

    info = run.backend.connection_info(cluster_id or run.params.cluster_id, endpoint)
    seen: set[str] = run.__dict__.setdefault("_declared_secrets", set())
    if info.password and info.password not in seen:
        register_secret(info.password)
        seen.add(info.password)
    return info


# == data plane availability ===================================================================================
@dataclass(frozen=True)
class DataPlane:
    """Whether the cluster's endpoints answer a TCP connection from here, and why not."""

    available: bool
    reason: str
    dry_run: bool = False
    targets: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.available

    @property
    def record(self) -> str:
        """What the audit record says: ``available`` or ``skipped (reason)``."""
        return "available" if self.available else f"skipped ({self.reason})"

    def __str__(self) -> str:
        if self.available:
            return f"data plane: available ({self.reason})"
        return f"data plane: SKIPPED — {self.reason}; data-plane cells below print SKIPPED and run nothing"

    __repr__ = __str__


def _endpoints_of(conninfo: str) -> list[tuple[str, int]]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo)
    hosts = str(params.get("host") or "").split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [(h, int(p)) for h, p in zip(hosts, ports, strict=False) if h]


def probe_tcp(host: str, port: int, timeout: float = 3.0) -> str | None:
    """None when ``host:port`` accepts a TCP connection, else why not (one sentence)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve {host} ({exc.strerror})"
    last = "no address"
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(address)
            except OSError as exc:
                last = f"{host}:{port} refused or unreachable ({exc.strerror or exc})"
                continue
            return None
    return last


def data_plane(run: Run, cluster_id: str | None = None, *, timeout: float = 3.0) -> DataPlane:
    """Can this runbook reach ``cluster_id``'s (default: the run's cluster) writer endpoint? Never raises for an
    unreachable endpoint: the answer and its reason are the result."""
    cid = cluster_id or run.params.cluster_id
    dry = run.params.dry_run
    try:
        cluster = run.backend.describe_cluster(cid)
    except ClusterNotFoundError:
        missing = "dry run: the cluster was not created" if dry else "it does not exist"
        return DataPlane(False, f"cluster {cid!r}: {missing}", dry)
    if not cluster.endpoint:
        return DataPlane(False, f"cluster {cid!r} has no endpoint yet (status {cluster.status})", dry)
    try:
        info = connection_info(run, "cluster", cid)
    except AuroraKitError as exc:
        return DataPlane(False, f"no connection info for {cid!r}: {exc}", dry)
    targets = _endpoints_of(info.conninfo)
    failures: list[str] = []
    for host, port in targets:
        why = probe_tcp(host, port, timeout)
        if why is None:
            return DataPlane(True, f"{host}:{port} accepts connections", dry, tuple(f"{h}:{p}" for h, p in targets))
        failures.append(why)
    hint = ""
    if run.params.backend == "aws":
        hint = (
            " — AWS_ENDPOINT_URL is set (a moto server's endpoints are fake hostnames)"
            if os.environ.get("AWS_ENDPOINT_URL")
            else " — run from inside the cluster's VPC (or through a tunnel/bastion) to reach the endpoints"
        )
    return DataPlane(False, "; ".join(failures) + hint, dry, tuple(f"{h}:{p}" for h, p in targets))


@dataclass(frozen=True)
class Skipped:
    """Stands in for a data-plane result that was not produced; says so wherever it is shown or recorded."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"SKIPPED {self.what}: {self.reason}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<p style='color:#9a6700'><b>SKIPPED</b> {html.escape(self.what)}: {html.escape(self.reason)}</p>"

    @property
    def ok(self) -> None:  # neither passed nor failed
        return None

    def summary(self) -> str:
        return f"skipped ({self.reason})"

    def assert_ok(self, *args: Any, **kwargs: Any) -> Skipped:
        print(f"not verified — {self}")
        return self

    def plot(self, *args: Any, **kwargs: Any) -> None:
        print(f"nothing to plot — {self}")


def when(dp: DataPlane, step: Callable[..., Any], *args: Any, writes: bool = False, **kwargs: Any) -> Any:
    """``step(*args, **kwargs)`` when the data plane is available (and, for ``writes=True`` steps, not a dry
    run); otherwise print why and return a :class:`Skipped`."""
    what = getattr(step, "__name__", str(step)).replace("_", " ")
    if not dp.available:
        skipped = Skipped(what, f"data plane not reachable: {dp.reason}")
    elif writes and dp.dry_run:
        skipped = Skipped(what, "dry run: no data-plane writes")
    else:
        return step(*args, **kwargs)
    print(skipped)
    return skipped


def verify(result: Any, **limits: Any) -> None:
    """Show ``result`` (its table, even when the check fails), then ``result.assert_ok(**limits)`` — which raises
    the check's typed error when the claim fails — then one line with the verdict. A :class:`Skipped` result is
    shown and printed as not verified."""
    _show(result)
    result.assert_ok(**limits)
    if isinstance(result, Skipped):
        return
    title = getattr(result, "title", type(result).__name__)
    print(f"{title}: PASS")


def _show(value: Any) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        print(value)
        return
    if get_ipython() is not None:
        display(value)
    else:
        print(value)


def summary(**results: Any) -> dict[str, Any]:
    """Key results for ``run.record_all``: anything with a ``summary()`` (check results; skipped steps give
    ``skipped (reason)``) becomes it, the data plane ``available`` / ``skipped (reason)``, tables their rows."""
    out: dict[str, Any] = {}
    for name, value in results.items():
        if isinstance(value, DataPlane):
            out[name] = value.record
        elif callable(getattr(value, "summary", None)):  # check results, Skipped, RebootOutcome...
            out[name] = value.summary()
        elif isinstance(value, Table):
            out[name] = value.rows
        else:
            out[name] = value
    return out


def enable_progress(run: Run) -> None:
    """Progress bars on every wait of the run's backend (``backend.progress``)."""
    import warnings

    with warnings.catch_warnings():  # tqdm.auto warns once when ipywidgets is absent; text bars are fine
        warnings.simplefilter("ignore")
        import tqdm.auto  # noqa: F401
    run.backend.progress = True


# == 01: create ================================================================================================
def spec_table(spec: ClusterSpec) -> Table:
    """What will be created: one row per instance, with the cluster settings that matter for safety."""
    rows = [
        {
            "instance": inst.instance_id,
            "role": "writer" if n == 0 else "reader",
            "class": inst.instance_class,
            "AZ": inst.availability_zone,
            "promotion tier": inst.promotion_tier,
        }
        for n, inst in enumerate(spec.instances)
    ]
    title = (
        f"{spec.cluster_id}: aurora-postgresql {spec.engine_version}, backups {spec.backup_retention_period} d "
        f"in {spec.preferred_backup_window} UTC, encrypted={spec.storage_encrypted}, "
        f"deletion protection={spec.deletion_protection}, IAM auth={spec.iam_database_authentication}"
    )
    return Table(rows, title)


def plan_table(backend: ClusterBackend) -> Table:
    """The mutating calls a dry run recorded (empty when the calls were made for real)."""
    rows = [
        {"#": n + 1, "service": c.service, "call": c.operation, "parameters": c.params}
        for n, c in enumerate(backend.plan)
    ]
    title = "dry-run plan: calls that would be made" if backend.dry_run else "not a dry run: the calls were made"
    return Table(rows, title)


def members_table(run: Run, cluster: Cluster) -> Table:
    """Endpoints and members: role, status, AZ, address, parameter-group status."""
    rows: list[dict[str, Any]] = [
        {"name": "cluster endpoint (writer)", "role": "endpoint", "address": cluster.endpoint, "port": cluster.port},
        {"name": "reader endpoint", "role": "endpoint", "address": cluster.reader_endpoint, "port": cluster.port},
    ]
    instances: dict[str, Instance] = {}
    if cluster.status != "dry-run":
        instances = {i.db_instance_identifier: i for i in run.backend.describe_instances(cluster.db_cluster_identifier)}
    for m in cluster.db_cluster_members:
        inst = instances.get(m.db_instance_identifier)
        rows.append(
            {
                "name": m.db_instance_identifier,
                "role": "writer" if m.is_cluster_writer else "reader",
                "status": inst.status if inst else cluster.status,
                "AZ": inst.availability_zone if inst else None,
                "address": inst.endpoint_address if inst else None,
                "port": inst.endpoint_port if inst else None,
                "parameters": m.db_cluster_parameter_group_status,
                "promotion tier": m.promotion_tier,
            }
        )
    return Table(rows, f"{cluster.db_cluster_identifier}: {cluster.status}")


def check_cluster_matches(cluster: Cluster, spec: ClusterSpec) -> None:
    """VerificationError unless the cluster has exactly the spec's instances, one of them the writer, and the
    spec's backup settings and deletion protection (and is available — or a dry-run projection). Which instance
    writes may differ from the spec's first one after a failover: that is operation, not drift (it is printed)."""
    problems = []
    if cluster.status not in ("available", "dry-run"):
        problems.append(f"status {cluster.status}, expected available")
    wanted = sorted(i.instance_id for i in spec.instances)
    members = sorted(m.db_instance_identifier for m in cluster.db_cluster_members)
    if members != wanted:
        problems.append(f"instances {members}, expected {wanted}")
    if cluster.writer_id is None:
        problems.append("no writer")
    if cluster.backup_retention_period != spec.backup_retention_period:
        problems.append(
            f"backup retention {cluster.backup_retention_period} d, expected {spec.backup_retention_period}"
        )
    if cluster.preferred_backup_window != spec.preferred_backup_window:
        problems.append(f"backup window {cluster.preferred_backup_window}, expected {spec.preferred_backup_window}")
    if cluster.deletion_protection != spec.deletion_protection:
        problems.append(f"deletion protection {cluster.deletion_protection}, expected {spec.deletion_protection}")
    if problems:
        raise VerificationError(
            f"cluster {cluster.db_cluster_identifier} does not match the parameters: " + "; ".join(problems),
            problems=problems,
            cluster_id=cluster.db_cluster_identifier,
        )
    moved = "" if cluster.writer_id == spec.instances[0].instance_id else " (after a failover)"
    print(
        f"{cluster.db_cluster_identifier} matches the parameters: writer {cluster.writer_id}{moved}, "
        f"readers {sorted(cluster.reader_ids)}"
    )


def who_answers(run: Run) -> Table:
    """Which instance answers on the cluster and reader endpoints, its role and server version."""
    from aurora_kit.checks._common import connect

    rows = []
    for endpoint in ("cluster", "reader"):
        with connect(connection_info(run, endpoint), connect_timeout=run_connect_timeout(run)) as conn:
            row = conn.execute(
                "SELECT aurora_db_instance_identifier(), pg_is_in_recovery(), current_setting('server_version')"
            ).fetchone()
        assert row is not None
        rows.append({"endpoint": endpoint, "answered by": row[0], "read-only": row[1], "server version": row[2]})
    return Table(rows, "who answers on each endpoint")


def run_connect_timeout(run: Run) -> float:
    probe = run.params.probe
    return float(probe.connect_timeout_s) if probe is not None else 5.0


def cluster_summary(cluster: Cluster) -> dict[str, Any]:
    return {
        "cluster_id": cluster.db_cluster_identifier,
        "status": cluster.status,
        "engine_version": cluster.engine_version,
        "writer": cluster.writer_id,
        "readers": cluster.reader_ids,
        "endpoint": cluster.endpoint,
        "reader_endpoint": cluster.reader_endpoint,
        "backup_retention_period": cluster.backup_retention_period,
        "preferred_backup_window": cluster.preferred_backup_window,
        "deletion_protection": cluster.deletion_protection,
        "storage_encrypted": cluster.storage_encrypted,
    }


# == 02: parameters ============================================================================================
def parameter_diff(current: Mapping[str, str | None], wanted: Mapping[str, str]) -> Table:
    """Current vs wanted value of each parameter, and whether it changes."""
    rows = [
        {"parameter": name, "current": current.get(name), "wanted": value, "change": current.get(name) != value}
        for name, value in wanted.items()
    ]
    changing = sum(1 for r in rows if r["change"])
    return Table(rows, f"{changing} of {len(rows)} parameters change")


def changes_table(result: ParameterChangeResult) -> Table:
    rows = [
        {
            "parameter": c.parameter_name,
            "old": c.old_value,
            "new": c.new_value,
            "apply type": c.apply_type,
            "apply method": c.apply_method,
        }
        for c in result.changes
    ]
    pending = ", ".join(result.pending_reboot_instances) or "none"
    return Table(rows, f"{result.status}; pending-reboot instances: {pending}")


@dataclass(frozen=True)
class RebootOutcome:
    """Which instances the rolling reboot restarted, and which stay pending-reboot (reboot not allowed)."""

    rebooted: list[str]
    still_pending: list[str]
    static: list[str] = field(default_factory=list)  # parameters that take effect only at a reboot

    def summary(self) -> dict[str, Any]:
        return {"rebooted": list(self.rebooted), "still_pending": list(self.still_pending), "static": self.static}

    def __str__(self) -> str:
        pending = ", ".join(self.still_pending) or "none"
        return f"rebooted: {', '.join(self.rebooted) or 'none'}; still pending-reboot: {pending}"

    __repr__ = __str__


def rolling_reboot(run: Run, result: ParameterChangeResult) -> RebootOutcome:
    """Reboot the pending-reboot instances (readers first, then the writer) when ``allow_reboot``; needs
    ``confirm``. Prints what it did or why not."""
    pending = list(result.pending_reboot_instances)
    static = [c.parameter_name for c in result.changes if c.apply_method == "pending-reboot"]
    if not pending:
        print("no instance is pending-reboot: nothing to reboot")
        return RebootOutcome([], [], static)
    if not run.section("parameter_group").allow_reboot:
        print(
            f"allow_reboot is false: {', '.join(pending)} stay pending-reboot; static parameters take effect at "
            "their next reboot"
        )
        return RebootOutcome([], pending, static)
    run.require_confirm("rolling reboot of " + ", ".join(pending))
    rebooted = [i.db_instance_identifier for i in run.backend.reboot_pending(run.params.cluster_id)]
    if run.params.dry_run:
        print("dry run: no reboot made")
        return RebootOutcome([], pending, static)
    return RebootOutcome(rebooted, [], static)


@dataclass(repr=False)
class SettingsReport:
    """``SHOW`` (and ``pg_settings.setting``) of each wanted parameter on every instance."""

    wanted: dict[str, str]
    values: dict[str, dict[str, tuple[str, str, bool]]]  # instance → name → (SHOW, setting, pending_restart)
    still_pending: list[str] = field(default_factory=list)  # instances left pending-reboot (reboot not allowed)
    static: list[str] = field(default_factory=list)  # parameters that wait for a reboot on those instances

    title = "parameters on every instance"

    def problems(self) -> list[str]:
        out = []
        for inst, values in self.values.items():
            for name, want in self.wanted.items():
                shown, setting, pending = values.get(name, ("<missing>", "<missing>", False))
                excused = inst in self.still_pending and (pending or name in self.static)
                if want not in (shown, setting) and not excused:
                    out.append(f"{inst}: {name} = {shown} (setting {setting}), wanted {want}")
                if pending and not excused:
                    out.append(f"{inst}: {name} still pending restart")
        if not self.values:
            out.append("no instance answered")
        return out

    def assert_ok(self) -> SettingsReport:
        problems = self.problems()
        if problems:
            raise VerificationError(
                "parameters not in effect: " + "; ".join(problems), problems=problems, evidence=self.summary()
            )
        if self.still_pending:
            print(
                f"static parameters ({', '.join(self.static) or 'none'}) wait for a reboot on "
                f"{', '.join(self.still_pending)} (allow_reboot: false); every other value is in effect"
            )
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "wanted": dict(self.wanted),
            "show": {i: {n: v[0] for n, v in vals.items()} for i, vals in self.values.items()},
            "still_pending": list(self.still_pending),
            "static": list(self.static),
            "problems": self.problems(),
        }

    def table(self) -> Table:
        rows = []
        for inst, vals in self.values.items():
            row: dict[str, Any] = {"instance": inst}
            row.update({name: v[0] + (" (pending restart)" if v[2] else "") for name, v in vals.items()})
            rows.append(row)
        return Table(rows, "SHOW on every instance")

    def _repr_html_(self) -> str:
        verdict = "PASS" if not self.problems() else "FAIL"
        return f"<h4>{self.title}: {verdict}</h4>" + self.table()._repr_html_()

    def __str__(self) -> str:
        return f"{self.title}: {'PASS' if not self.problems() else 'FAIL'}\n{self.table()}"

    __repr__ = __str__


def show_settings(run: Run, wanted: Mapping[str, str], reboot: RebootOutcome | None = None) -> SettingsReport:
    """Connect to every instance and read each wanted parameter with ``SHOW`` and from ``pg_settings``."""
    from psycopg import sql

    from aurora_kit.checks._common import connect

    cid = run.params.cluster_id
    values: dict[str, dict[str, tuple[str, str, bool]]] = {}
    for inst in run.backend.describe_instances(cid):
        iid = inst.db_instance_identifier
        with connect(connection_info(run, iid), connect_timeout=run_connect_timeout(run)) as conn:
            got = {}
            for name in wanted:
                shown = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                row = conn.execute(
                    "SELECT setting, pending_restart FROM pg_settings WHERE name = %s", [name]
                ).fetchone()
                got[name] = (
                    str(shown[0]) if shown else "<missing>",
                    str(row[0]) if row else "<missing>",
                    bool(row[1]) if row else False,
                )
        values[iid] = got
    reboot = reboot or RebootOutcome([], [])
    return SettingsReport(dict(wanted), values, list(reboot.still_pending), list(reboot.static))


# == 03: pgvector ==============================================================================================
def install_pgvector(run: Run) -> Any:
    """``CREATE EXTENSION vector`` / ``ALTER EXTENSION vector UPDATE`` to the server's default version on the
    writer; in a dry run only the status is read."""
    from aurora_kit.checks import vector

    info = connection_info(run, "cluster")
    if run.params.dry_run:
        print("dry run: extension status only, nothing installed")
        return vector.vector_extension_status(info)
    return vector.ensure_vector_extension(info)


def prove_pgvector(run: Run) -> Any:
    """Synthetic dataset → HNSW index → recall@k / QPS / speed-up against exact search (sizes from ``pgvector``)."""
    from aurora_kit.checks import vector

    s = run.section("pgvector")
    return vector.prove_pgvector(
        connection_info(run, "cluster"),
        rows=s.rows,
        dim=s.dim,
        k=s.k,
        queries=s.queries,
        m=s.hnsw_m,
        ef_construction=s.hnsw_ef_construction,
        sweep=tuple(s.ef_search),
        min_recall=s.min_recall,
        ensure_extension=False,
    )


# == 04: read/write ============================================================================================
def check_roles(run: Run) -> Any:
    """Endpoint roles: cluster endpoint → writer, reader endpoint → readers (write refused, 25006), spread."""
    from aurora_kit.checks import check_endpoint_roles

    return check_endpoint_roles(run.backend, run.params.cluster_id, connections=20)


@dataclass(repr=False)
class ReadOnlyReport:
    """A write attempted on every reader instance directly must fail with SQLSTATE 25006."""

    results: dict[str, tuple[bool, str | None]]  # reader → (in_recovery, SQLSTATE of the write; None = it worked)
    title = "readers refuse writes"

    def problems(self) -> list[str]:
        out = [f"{r}: not in recovery" for r, (rec, _) in self.results.items() if not rec]
        out += [
            f"{r}: write gave {state or 'success'}, expected 25006"
            for r, (_, state) in self.results.items()
            if state != "25006"
        ]
        return out

    def assert_ok(self) -> ReadOnlyReport:
        if self.problems():
            raise VerificationError("readers accept writes: " + "; ".join(self.problems()), problems=self.problems())
        print(f"{len(self.results)} readers refuse writes with SQLSTATE 25006" if self.results else "no readers")
        return self

    def summary(self) -> dict[str, Any]:
        return {r: state for r, (_, state) in self.results.items()}

    def _repr_html_(self) -> str:
        rows = [
            {"reader": r, "pg_is_in_recovery()": rec, "write →": s or "success"} for r, (rec, s) in self.results.items()
        ]
        return Table(rows, self.title)._repr_html_()

    def __str__(self) -> str:
        return f"{self.title}: {self.summary()}"

    __repr__ = __str__


def readers_read_only(run: Run) -> ReadOnlyReport:
    """Attempt a write (in a rolled-back transaction) on every reader instance."""
    from aurora_kit.checks._common import connect, instance_identity
    from aurora_kit.checks.endpoints import _try_write

    cid = run.params.cluster_id
    results = {}
    for rid in run.backend.describe_cluster(cid).reader_ids:
        with connect(connection_info(run, rid), connect_timeout=run_connect_timeout(run)) as conn:
            _ident, in_recovery = instance_identity(conn)
            state, _msg = _try_write(conn)
        results[rid] = (in_recovery, state)
    return ReadOnlyReport(results)


@dataclass(repr=False)
class RoundTripReport:
    """Rows written on the writer read back, identical, through the reader endpoint."""

    rows: int
    writer_checksum: str
    reader_checksum: str | None
    reader_rows: int
    visible_after_s: float | None
    read_by: str
    title = "write on the writer, read back on the reader endpoint"

    def problems(self) -> list[str]:
        if self.visible_after_s is None:
            return [f"only {self.reader_rows} of {self.rows} rows visible through the reader endpoint in time"]
        if self.reader_checksum != self.writer_checksum:
            return [f"content differs: writer {self.writer_checksum}, reader {self.reader_checksum}"]
        return []

    def assert_ok(self) -> RoundTripReport:
        if self.problems():
            raise VerificationError("round trip failed: " + "; ".join(self.problems()), evidence=self.summary())
        print(f"{self.rows} rows identical on {self.read_by} after {self.visible_after_s:.3f}s")
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "reader_rows": self.reader_rows,
            "checksum": self.writer_checksum,
            "reader_checksum": self.reader_checksum,
            "visible_after_s": self.visible_after_s,
            "read_by": self.read_by,
        }

    def _repr_html_(self) -> str:
        return Table([self.summary()], self.title)._repr_html_()

    def __str__(self) -> str:
        return f"{self.title}: {self.summary()}"

    __repr__ = __str__


def write_read_back(run: Run) -> RoundTripReport:
    """Write ``probe.rows`` rows on the writer; poll the reader endpoint until they are all there (deadline
    ``probe.max_replica_lag_s`` × 10, at least 5 s) and compare an md5 of the content."""
    import time
    import uuid

    from aurora_kit.checks._common import connect
    from aurora_kit.checks._probe_tables import SCHEMA

    p = run.section("probe")
    tag = uuid.uuid4().hex[:12]
    count_sql = (
        "SELECT count(*), md5(coalesce(string_agg(id::text || ':' || payload, ',' ORDER BY id), '')) "
        f"FROM {SCHEMA}.rw_check WHERE tag = %s"
    )
    with connect(connection_info(run, "cluster"), connect_timeout=p.connect_timeout_s) as w:
        w.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        w.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.rw_check (tag text, id int, payload text, PRIMARY KEY (tag, id))"
        )
        w.execute(
            f"INSERT INTO {SCHEMA}.rw_check SELECT %s, g, md5(g::text) FROM generate_series(1, %s) g", [tag, p.rows]
        )
        written = time.perf_counter()
        wrow = w.execute(count_sql, [tag]).fetchone()
    assert wrow is not None
    deadline = max(5.0, 10 * p.max_replica_lag_s)
    with connect(connection_info(run, "reader"), connect_timeout=p.connect_timeout_s) as r:
        by = r.execute("SELECT aurora_db_instance_identifier()").fetchone()

        def probe() -> tuple[int, str]:
            try:
                row = r.execute(count_sql, [tag]).fetchone()
            except Exception:  # the table may not have replayed yet
                return 0, ""
            assert row is not None
            return int(row[0]), str(row[1])

        try:
            got = wait_for(
                "rows visible on the reader endpoint",
                probe,
                lambda s: s[0] >= p.rows,
                timeout=deadline,
                initial_delay=0.002,
                max_delay=0.1,
            )
            visible: float | None = time.perf_counter() - written
        except AuroraKitError:
            got, visible = probe(), None
    with connect(connection_info(run, "cluster"), connect_timeout=p.connect_timeout_s) as w:
        w.execute(f"DELETE FROM {SCHEMA}.rw_check WHERE tag = %s", [tag])
    return RoundTripReport(p.rows, str(wrow[1]), got[1] or None, got[0], visible, str(by[0]) if by else "?")


def measure_lag(run: Run) -> Any:
    """Replica lag of every reader: ``duration_s / interval_s`` markers, limit ``max_replica_lag_s`` (p99)."""
    from aurora_kit.checks import measure_replica_lag

    p = run.section("probe")
    return measure_replica_lag(
        run.backend,
        run.params.cluster_id,
        samples=max(5, round(p.duration_s / p.interval_s)),
        interval_s=p.interval_s,
        timeout_s=max(2.0, 2 * p.max_replica_lag_s),
        max_p99_ms=p.max_replica_lag_s * 1000,
    )


def check_pool(run: Run) -> Any:
    """The seed's pool (10 + 20 overflow, pre-ping) under 20 concurrent workers for ``probe.duration_s``."""
    from aurora_kit.checks import check_pool as _check_pool

    return _check_pool(
        run.backend, run.params.cluster_id, "cluster", workers=20, duration_s=run.section("probe").duration_s
    )


# == 05: backup and restore ====================================================================================
#: how far ``LatestRestorableTime`` may trail the check (AWS: typically within the last 5 minutes)
MAX_RESTORABLE_AGE_S = 600.0


@dataclass(repr=False)
class RetentionReport:
    """Automated backups: the configured retention *and* a live restorable window — EarliestRestorableTime and
    LatestRestorableTime present, earliest ≤ latest, latest at most ``max_latest_age_s`` behind ``checked_at``."""

    cluster_id: str
    retention_days: int
    wanted_days: int
    earliest_restorable: datetime | None
    latest_restorable: datetime | None
    checked_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    max_latest_age_s: float = MAX_RESTORABLE_AGE_S
    title = "automated backups"

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

    def assert_ok(self) -> RetentionReport:
        if self.problems():
            raise VerificationError(
                f"{self.cluster_id}: " + "; ".join(self.problems()),
                hint="retention: raise backup_retention_period with 01-create-cluster (ModifyDBCluster); a missing "
                "or stale restorable window: check the cluster's automated backups (on local, its WAL archive)",
                cluster_id=self.cluster_id,
                problems=self.problems(),
            )
        print(
            f"retention {self.retention_days} d ≥ {self.wanted_days} d; restorable window ends "
            f"{self.latest_age_s:.0f}s ago (≤ {self.max_latest_age_s:g}s)"
        )
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "retention_days": self.retention_days,
            "earliest_restorable_time": self.earliest_restorable.isoformat() if self.earliest_restorable else None,
            "latest_restorable_time": self.latest_restorable.isoformat() if self.latest_restorable else None,
            "latest_restorable_age_s": None if self.latest_age_s is None else round(self.latest_age_s, 1),
        }

    def _repr_html_(self) -> str:
        return Table([{"cluster": self.cluster_id, **self.summary()}], self.title)._repr_html_()

    def __str__(self) -> str:
        return f"{self.title}: {self.summary()}"

    __repr__ = __str__


def check_backups(run: Run, max_latest_age_s: float = MAX_RESTORABLE_AGE_S) -> RetentionReport:
    """Retention and the restorable window of the cluster now (``max_latest_age_s``: how far
    LatestRestorableTime may trail; default 10 minutes — AWS typically stays within 5)."""
    c = run.backend.describe_cluster(run.params.cluster_id)
    return RetentionReport(
        c.db_cluster_identifier,
        c.backup_retention_period,
        run.params.backup_retention_period,
        _aware(c.earliest_restorable_time),
        _aware(c.latest_restorable_time),
        checked_at=datetime.now(timezone.utc),
        max_latest_age_s=max_latest_age_s,
    )


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def seed(run: Run) -> SeededDataset:
    """Known rows on either side of a cut-off T (each batch its own commit) for the PITR exactness check."""
    from aurora_kit.checks import seed_pitr_dataset

    return seed_pitr_dataset(
        connection_info(run, "cluster"), batches_before=3, batches_after=3, rows_per_batch=100, gap_s=0.2
    )


def fingerprints(run: Run) -> dict[str, TableFingerprint]:
    """Row count + content checksum of every user table on the writer (taken right before the snapshot)."""
    from aurora_kit.checks import table_fingerprints

    return dict(table_fingerprints(connection_info(run, "cluster")))


def fingerprint_table(fps: Mapping[str, TableFingerprint]) -> Table:
    return Table([{"table": n, "rows": f.rows, "checksum": f.checksum} for n, f in fps.items()], "source tables")


def snapshot_id(run: Run) -> str:
    """``backup_restore.snapshot_id``, else ``<cluster_id>-<run start, UTC>``."""
    given = run.section("backup_restore").snapshot_id
    return given or f"{run.params.cluster_id}-{run.started_at:%Y%m%d-%H%M%S}"


def restore_ids(run: Run) -> dict[str, str]:
    """Restored cluster per mode: ``restore_cluster_id`` for the first, ``-pitr`` appended when both run."""
    s = run.section("backup_restore")
    if s.restore_mode == "both":
        return {"snapshot": s.restore_cluster_id, "pitr": f"{s.restore_cluster_id}-pitr"}
    return {s.restore_mode: s.restore_cluster_id}


def _restore_instances(run: Run, cluster_id: str) -> list[InstanceSpec]:
    n = run.section("backup_restore").restore_instances
    zones = run.params.availability_zones
    return [
        InstanceSpec(
            instance_id=f"{cluster_id}-{i + 1}",
            instance_class=run.params.instance_class,
            availability_zone=zones[i % len(zones)] if zones else None,
        )
        for i in range(n)
    ]


def restore_snapshot(run: Run, snapshot: Snapshot) -> Cluster | Skipped:
    """Restore ``snapshot`` into a new cluster with ``restore_instances`` instances (restore_mode snapshot/both)."""
    ids = restore_ids(run)
    if "snapshot" not in ids:
        print("restore_mode is pitr: no restore from the snapshot")
        return Skipped("restore from snapshot", "restore_mode: pitr")
    new_id = ids["snapshot"]
    return run.backend.restore_from_snapshot(
        snapshot.db_cluster_snapshot_identifier, new_id, instances=_restore_instances(run, new_id)
    )


def restore_target(run: Run, seeded: Any) -> datetime | None:
    """PITR target: ``backup_restore.restore_time``, else the seeded cut-off T, else None (latest restorable)."""
    given = run.section("backup_restore").restore_time
    if given is not None:
        return given
    if isinstance(seeded, Skipped):
        return None
    return seeded.cutoff


def wait_restorable(run: Run, target: datetime | None, timeout_s: float | None = None) -> Cluster:
    """Wait until ``LatestRestorableTime`` ≥ ``target`` (on AWS it trails by up to ~5 minutes)."""
    cid = run.params.cluster_id
    if target is None or "pitr" not in restore_ids(run) or run.params.dry_run:
        return run.backend.describe_cluster(cid)
    if run.params.backend == "local":
        # the local backend archives on demand at restore time (marker commit + pg_switch_wal), so T is reachable
        print("local backend: WAL up to now is archived by the restore itself; no wait")
        return run.backend.describe_cluster(cid)
    timeout = timeout_s or 900.0

    def ok(c: Cluster) -> bool:
        return c.latest_restorable_time is not None and c.latest_restorable_time >= target

    return wait_for(
        f"latest restorable time ≥ {target.isoformat(timespec='milliseconds')}",
        lambda: run.backend.describe_cluster(cid),
        ok,
        timeout=timeout,
        initial_delay=0.1,
        max_delay=30.0,
        describe=lambda c: f"latest restorable {c.latest_restorable_time}",
        progress=run.backend.progress,
    )


def restore_pitr(run: Run, target: datetime | None) -> Cluster | Skipped:
    """Point-in-time restore to ``target`` (None: latest restorable time) into a new cluster."""
    ids = restore_ids(run)
    if "pitr" not in ids:
        print("restore_mode is snapshot: no point-in-time restore")
        return Skipped("point-in-time restore", "restore_mode: snapshot")
    new_id = ids["pitr"]
    return run.backend.restore_to_point_in_time(
        run.params.cluster_id,
        new_id,
        restore_time=target,
        use_latest_restorable_time=target is None,
        instances=_restore_instances(run, new_id),
    )


def verify_snapshot_restore(
    run: Run, expected: Mapping[str, TableFingerprint], restored: Any
) -> RestoreReport | Skipped:
    """Row counts + checksums of every table in the restored cluster vs those taken before the snapshot."""
    from aurora_kit.checks import verify_restore

    if isinstance(restored, Skipped):
        return restored
    return verify_restore(dict(expected), connection_info(run, "cluster", restored.db_cluster_identifier))


def verify_pitr(run: Run, seeded: Any, restored: Any, target: datetime | None) -> Any:
    """Exactness at T: every row committed by T present and unchanged, none written after T."""
    from aurora_kit.checks import verify_pitr as _verify_pitr

    if isinstance(restored, Skipped):
        return restored
    if isinstance(seeded, Skipped):
        return Skipped("PITR exactness", "no seeded dataset (data plane skipped)")
    if target != seeded.cutoff:
        return Skipped(
            "PITR exactness", f"restore_time {target} is not the seeded cut-off; exactness is only known at T"
        )
    return _verify_pitr(seeded, connection_info(run, "cluster", restored.db_cluster_identifier))


def delete_restores(run: Run, *restored: Any, snapshot: Snapshot | None = None) -> list[str]:
    """With ``delete_restored_cluster``: delete the restored clusters (no final snapshot) and, when
    ``snapshot_id`` was not given, the auto-named snapshot this run took for the test. Returns what was deleted."""
    s = run.section("backup_restore")
    if not s.delete_restored_cluster:
        kept = [c.db_cluster_identifier for c in restored if isinstance(c, Cluster)]
        print(f"delete_restored_cluster is false: kept {', '.join(kept) or 'nothing'}")
        return []
    deleted = []
    for c in restored:
        if isinstance(c, Cluster) and c.status != "dry-run":
            # this run's own test restore: no final snapshot; protection copied from the source is lifted
            run.backend.delete_cluster(
                c.db_cluster_identifier, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True
            )
            deleted.append(c.db_cluster_identifier)
    if snapshot is not None and s.snapshot_id is None and snapshot.status != "dry-run":
        run.backend.delete_snapshot(snapshot.db_cluster_snapshot_identifier)
        deleted.append(f"snapshot {snapshot.db_cluster_snapshot_identifier}")
    print(f"deleted: {', '.join(deleted) or 'nothing (dry run)'}")
    return deleted


# == 06: failover ==============================================================================================
def failover_plan(run: Run) -> Table:
    """Members with their role; the failover target (given, or the backend's choice among readers)."""
    c = run.backend.describe_cluster(run.params.cluster_id)
    fo = run.section("failover")
    rows = [
        {
            "instance": m.db_instance_identifier,
            "role": "writer" if m.is_cluster_writer else "reader",
            "promotion tier": m.promotion_tier,
            "target": m.db_instance_identifier == fo.target_instance_id,
        }
        for m in c.db_cluster_members
    ]
    target = fo.target_instance_id or "the backend's best reader (promotion tier, replay position)"
    return Table(rows, f"{fo.mode} failover of {c.db_cluster_identifier} to {target}")


def failover(run: Run, dp: DataPlane) -> tuple[FailoverResult, Any]:
    """Fail over (``failover.mode``) with a write probe running through the cluster endpoint when the data
    plane is reachable; without it the failover still runs and the probe is reported as skipped. Needs
    ``confirm`` (ConfirmationRequiredError before any call otherwise)."""
    from aurora_kit.checks import probe_failover

    fo = run.section("failover")
    cid = run.params.cluster_id
    run.require_confirm(f"{fo.mode} failover")
    if dp.available and not run.params.dry_run:
        rate = 1.0 / run.section("probe").interval_s
        return probe_failover(
            run.backend, cid, mode=fo.mode, target_instance_id=fo.target_instance_id, rate=rate, max_rto_s=fo.max_rto_s
        )
    why = "dry run" if run.params.dry_run else f"data plane not reachable: {dp.reason}"
    skipped = Skipped("write probe (RTO, lost commits)", why)
    print(skipped)
    return run.backend.failover(cid, target_instance_id=fo.target_instance_id, mode=fo.mode), skipped


def failover_table(result: FailoverResult) -> Table:
    return Table(
        [
            {
                "mode": result.mode,
                "old writer": result.old_writer,
                "new writer": result.new_writer,
                "status": result.status,
                "control plane s": result.control_plane_seconds,
            }
        ],
        "failover",
    )


def check_failover(run: Run, result: FailoverResult, report: Any) -> dict[str, Any]:
    """RTO ≤ ``max_rto_s``, lost acknowledged commits ≤ ``max_lost_commits``, writes ended on the new writer.
    VerificationError otherwise. Returns the figures."""
    fo = run.section("failover")
    if result.status == "dry-run":
        print("dry run: no failover happened, nothing to verify")
        return {"status": "dry-run"}
    figures: dict[str, Any] = {
        "old_writer": result.old_writer,
        "new_writer": result.new_writer,
        "control_plane_s": result.control_plane_seconds,
    }
    if isinstance(report, Skipped):
        print(f"RTO and lost commits not measured — {report}")
        figures["write_probe"] = report.summary()
        return figures
    problems = report.problems(max_rto_s=fo.max_rto_s, expected_writer=result.new_writer, max_lost=fo.max_lost_commits)
    figures.update({"rto_s": report.rto_s, "rto_server_s": report.rto_server_s, "lost_commits": report.lost})
    if problems:
        raise VerificationError("failover check failed: " + "; ".join(problems), problems=problems, evidence=figures)
    print(
        f"RTO {report.rto_s:.3f}s ≤ {fo.max_rto_s:g}s, {report.lost} lost commits, "
        f"writes resumed on {result.new_writer}"
    )
    return figures


def wait_old_writer_reader(run: Run, result: FailoverResult, timeout_s: float | None = None) -> Cluster:
    """Wait until the new writer is the writer and the old writer is back as an available reader (deadline: 2 min
    locally, 15 min on AWS, where the old writer reboots as a reader)."""
    cid = run.params.cluster_id
    timeout = timeout_s or (120.0 if run.params.backend == "local" else 900.0)
    if result.status == "dry-run":
        return run.backend.describe_cluster(cid)

    def probe() -> tuple[Cluster, dict[str, str]]:
        return run.backend.describe_cluster(cid), {
            i.db_instance_identifier: i.status for i in run.backend.describe_instances(cid)
        }

    def done(state: tuple[Cluster, dict[str, str]]) -> bool:
        c, statuses = state
        return (
            c.writer_id == result.new_writer
            and result.old_writer in c.reader_ids
            and statuses.get(result.old_writer) == "available"
        )

    cluster, _ = wait_for(
        f"{result.old_writer} back as a reader",
        probe,
        done,
        timeout=timeout,
        initial_delay=0.1,
        max_delay=2.0 if run.params.backend == "local" else 15.0,
        describe=lambda s: f"writer {s[0].writer_id}, {result.old_writer}: {s[1].get(result.old_writer)}",
        progress=run.backend.progress,
    )
    print(f"writer {cluster.writer_id}; {result.old_writer} is back as a reader")
    return cluster


def instance_roles(run: Run) -> Table:
    """``pg_is_in_recovery()`` on every instance, against the role the control plane reports."""
    from aurora_kit.checks._common import connect, instance_identity

    cid = run.params.cluster_id
    c = run.backend.describe_cluster(cid)
    rows = []
    problems = []
    for m in c.db_cluster_members:
        with connect(connection_info(run, m.db_instance_identifier), connect_timeout=run_connect_timeout(run)) as conn:
            ident, in_recovery = instance_identity(conn)
        rows.append(
            {
                "instance": m.db_instance_identifier,
                "control plane": "writer" if m.is_cluster_writer else "reader",
                "pg_is_in_recovery()": in_recovery,
                "identifier()": ident,
            }
        )
        if in_recovery == m.is_cluster_writer:
            problems.append(
                f"{m.db_instance_identifier}: control plane says "
                f"{'writer' if m.is_cluster_writer else 'reader'}, in recovery={in_recovery}"
            )
    if problems:
        raise VerificationError("instance roles disagree: " + "; ".join(problems), problems=problems)
    return Table(rows, "every instance's role, from the instance itself")


def failback(run: Run, result: FailoverResult, dp: DataPlane) -> Any:
    """With ``failover.failback``: a planned failover back to the old writer (probe running when possible)."""
    fo = run.section("failover")
    if not fo.failback:
        print("failback is false: the new writer stays")
        return Skipped("failback", "failover.failback: false")
    if result.status == "dry-run":
        return Skipped("failback", "dry run")
    run.require_confirm(f"failback to {result.old_writer}")
    from aurora_kit.checks import probe_failover

    cid = run.params.cluster_id
    if dp.available:
        back, report = probe_failover(
            run.backend,
            cid,
            mode="planned",
            target_instance_id=result.old_writer,
            rate=1.0 / run.section("probe").interval_s,
            max_rto_s=fo.max_rto_s,
        )
        check_failover(run, back, report)
    else:
        back = run.backend.failover(cid, target_instance_id=result.old_writer, mode="planned")
    wait_old_writer_reader(run, back)
    return back


# == 07: monitoring ============================================================================================
def alarms_table(states: Sequence[AlarmState]) -> Table:
    rows = [
        {
            "alarm": a.alarm_name,
            "metric": a.metric_name,
            "dimension": a.dimension,
            "condition": f"{a.comparison_operator} {a.threshold:g}",
            "observed": a.observed_value,
            "state": a.state_value,
            "reason": a.state_reason,
        }
        for a in states
    ]
    return Table(rows, f"{len(rows)} alarms")


def check_alarms(run: Run, states: Sequence[AlarmState]) -> dict[str, int]:
    """Every configured metric has an alarm; none is in ALARM. Returns the count per state.

    INSUFFICIENT_DATA depends on the backend: the local backend samples every metric when asked, so no data means
    the metric could not be measured (instance down, replication broken) — a failure; on aws a new alarm starts
    INSUFFICIENT_DATA until CloudWatch has evaluated a full period — reported, not a failure."""
    wanted = {a.metric for a in run.section("monitoring").alarm_specs()}
    present = {a.metric_name for a in states}
    problems = [f"no alarm on {m}" for m in sorted(wanted - present)]
    firing = [f"{a.alarm_name} is in ALARM ({a.state_reason})" for a in states if a.state_value == "ALARM"]
    problems += firing
    if run.params.backend == "local":
        problems += [
            f"{a.alarm_name} is INSUFFICIENT_DATA ({a.state_reason}): the local backend measures on demand, "
            "so the metric could not be measured"
            for a in states
            if a.state_value == "INSUFFICIENT_DATA"
        ]
    counts: dict[str, int] = {}
    for a in states:
        counts[a.state_value] = counts.get(a.state_value, 0) + 1
    if problems and not run.params.dry_run:
        raise VerificationError("monitoring check failed: " + "; ".join(problems), problems=problems, states=counts)
    pending = "INSUFFICIENT_DATA" in counts and run.params.backend == "aws"
    print(f"alarms by state: {counts}" + (" (INSUFFICIENT_DATA: CloudWatch has not evaluated yet)" if pending else ""))
    return counts


# == 99: teardown ==============================================================================================
def find_cluster(run: Run) -> Cluster | None:
    try:
        return run.backend.describe_cluster(run.params.cluster_id)
    except ClusterNotFoundError:
        print(f"cluster {run.params.cluster_id!r} does not exist: nothing to tear down")
        return None


def teardown_plan(run: Run, cluster: Cluster | None) -> Table:
    """What will be deleted, the final-snapshot choice and deletion protection. DeletionProtectionError now
    (before anything is deleted) when protection is on and ``lift_deletion_protection`` is false."""
    t = run.section("teardown")
    if cluster is None:
        return Table([], "nothing to delete")
    if cluster.deletion_protection and not t.lift_deletion_protection:
        raise DeletionProtectionError(cluster.db_cluster_identifier)
    final = (
        f"final snapshot {t.final_snapshot_id}"
        if t.final_snapshot_id
        else "NO final snapshot (skip_final_snapshot: true)"
    )
    rows = [{"delete": m.db_instance_identifier, "kind": "instance"} for m in cluster.db_cluster_members]
    rows.append({"delete": cluster.db_cluster_identifier, "kind": "cluster"})
    protection = "on — will be lifted first" if cluster.deletion_protection else "off"
    return Table(rows, f"{final}; deletion protection {protection}")


def teardown(run: Run, cluster: Cluster | None) -> Snapshot | None:
    """Delete instances then the cluster, with the explicit final-snapshot choice. Needs ``confirm`` and
    ``teardown.confirm_cluster_id`` equal to ``cluster_id`` (ConfirmationRequiredError, before any call)."""
    if cluster is None:
        return None
    t = run.section("teardown")
    run.require_confirm("deleting the cluster")
    cid = run.params.cluster_id
    if not run.params.dry_run and t.confirm_cluster_id != cid:
        raise ConfirmationRequiredError(
            f"teardown.confirm_cluster_id={t.confirm_cluster_id!r} does not name cluster_id={cid!r}: "
            "nothing was deleted",
            hint=f"type the cluster to delete: -p teardown.confirm_cluster_id={cid}",
            cluster_id=cid,
            confirm_cluster_id=t.confirm_cluster_id,
        )
    return run.backend.delete_cluster(
        cluster.db_cluster_identifier,
        final_snapshot_id=t.final_snapshot_id,
        skip_final_snapshot=t.skip_final_snapshot,
        lift_deletion_protection=t.lift_deletion_protection,
    )


def check_gone(run: Run) -> bool:
    """VerificationError if the cluster still exists (a dry run only reports)."""
    cid = run.params.cluster_id
    remaining = [c.db_cluster_identifier for c in run.backend.list_clusters() if c.db_cluster_identifier == cid]
    if remaining and not run.params.dry_run:
        raise VerificationError(f"cluster {cid!r} still exists after delete", cluster_id=cid)
    print(f"{cid} {'still exists (dry run)' if remaining else 'is gone'}")
    return not remaining


def remaining_snapshots(run: Run) -> Table:
    snaps = run.backend.describe_snapshots(run.params.cluster_id)
    rows = [
        {
            "snapshot": s.db_cluster_snapshot_identifier,
            "type": s.snapshot_type,
            "status": s.status,
            "created": s.snapshot_create_time,
        }
        for s in snaps
    ]
    return Table(rows, f"snapshots of {run.params.cluster_id} kept")


__all__ = [
    "DataPlane",
    "Skipped",
    "Table",
    "data_plane",
    "summary",
    "when",
]
