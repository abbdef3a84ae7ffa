"""What every runbook shares: opening a run, the data plane, the confirmation gate, verdicts and the summary.

``run, dp = wf.start("06-failover", globals())`` is every runbook's opening cell: it validates the parameters
(:func:`aurora_kit.runbook.start`), turns on progress for waits, and finds out once whether the cluster's
endpoints answer from here (:class:`DataPlane`). A runbook that operates an existing cluster stops there with
:class:`~aurora_kit.errors.ClusterNotFoundError` (and the command that creates it) when the cluster does not exist;
only a dry run goes on, since it changes nothing.

Data-plane steps run through :func:`when`: when the endpoints cannot be reached (or, for writing steps, in a dry
run) the step is not run and a :class:`Skipped` stands in for its result — shown, and recorded as ``skipped
(reason)``, never as a pass. :func:`verify` shows a check's result and ends in its verdict line; a failed check
raises its typed error, so papermill marks the cell and the run fails.

Every destructive step passes :func:`confirm` first: the one gate that decides whether it may run — headless from
``dry_run`` and ``confirm`` (and for teardown the typed cluster id), in JupyterLab by a person pressing Confirm
after seeing the step's plan of mutating calls.
"""

from __future__ import annotations

import html
import socket
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aurora_kit.display import Table, show
from aurora_kit.errors import AuroraKitError, ClusterNotFoundError, ConfirmationRequiredError
from aurora_kit.outcome import Check, CheckStatus
from aurora_kit.rules import FailoverCandidate

if TYPE_CHECKING:
    from aurora_kit.backends.base import Cluster, ClusterBackend, ConnectionInfo, Instance
    from aurora_kit.runbook import Run

F = TypeVar("F", bound=Callable[..., Any])

#: runbooks that operate an existing cluster (01 creates it; 99 has nothing to do without one)
NEEDS_CLUSTER = frozenset(
    {
        "02-configure-parameters",
        "03-extensions",
        "04-verify-read-write",
        "05-backup-restore",
        "06-failover",
        "07-monitoring",
        "08-scale",
        "09-proxy",
    }
)


#: runbooks that create the cluster: the data plane is probed after the creation, not at the start
CREATES_CLUSTER = frozenset({"01-create-cluster"})


# == opening ===================================================================================================
def start(runbook: str, namespace: Mapping[str, Any]) -> tuple[Run, DataPlane]:
    """Validate the parameters, open the run, and find out whether the data plane answers (module docstring)."""
    from aurora_kit import runbook as runbook_mod
    from aurora_kit.interactive import session

    interactive = session.install() is not None  # JupyterLab: recorded like a headless run, from this cell on
    run = runbook_mod.start(runbook, namespace, interactive=interactive)
    session.attach(run)
    enable_progress(run)
    if runbook in CREATES_CLUSTER:  # nothing to reach before the cluster exists: the runbook probes after creating
        dp = DataPlane(False, "not probed yet: the cluster is created first", run.params.dry_run)
        print("data plane: probed once the cluster exists (see below)")
        return run, dp
    dp = data_plane(run, required=runbook in NEEDS_CLUSTER)
    show(dp)
    return run, dp


def parameters_form(runbook: str, namespace: MutableMapping[str, Any]) -> None:
    """In JupyterLab, the runbook's parameters in a form validated as you type; Apply writes them into the
    notebook for the opening cell (:mod:`aurora_kit.interactive.form`). Headless: nothing."""
    from aurora_kit.interactive import form, session

    session.install()  # in JupyterLab: record the run from this cell on (else nothing)
    form.show(runbook, namespace)


def enable_progress(run: Run) -> None:
    """Live progress on every wait of the run's backend (one updating line: :func:`aurora_kit.polling.wait_for`)."""
    run.backend.progress = True


# == data plane ================================================================================================
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
    hosts = str(params.get("hostaddr") or params.get("host") or "").split(",")
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


def data_plane(run: Run, cluster_id: str | None = None, *, required: bool = False, timeout: float = 3.0) -> DataPlane:
    """Can this runbook reach ``cluster_id``'s (default: the run's cluster) writer endpoint? An unreachable endpoint
    is an answer, not an error. A missing cluster raises ClusterNotFoundError when ``required`` (not in a dry run)."""
    cid = cluster_id or run.params.cluster_id
    dry = run.params.dry_run
    try:
        cluster = run.backend.describe_cluster(cid)
    except ClusterNotFoundError as exc:
        if required and not dry:
            raise ClusterNotFoundError(cid, hint=missing_cluster_hint(run)) from exc
        missing = "dry run: the cluster was not created" if dry else "it does not exist"
        return DataPlane(False, f"cluster {cid!r}: {missing}", dry)
    if not cluster.endpoint:
        return DataPlane(False, f"cluster {cid!r} has no endpoint yet (status {cluster.status})", dry)
    try:
        info = run.backend.connection_info(cid, "cluster")
    except AuroraKitError as exc:
        return DataPlane(False, f"no connection info for {cid!r}: {exc}", dry)
    targets = _endpoints_of(info.conninfo)
    shown = tuple(f"{h}:{p}" for h, p in targets)
    failures: list[str] = []
    for host, port in targets:
        why = probe_tcp(host, port, timeout)
        if why is None:
            return DataPlane(True, f"{host}:{port} accepts connections", dry, shown)
        failures.append(why)
    hint = run.backend.unreachable_hint()
    return DataPlane(False, "; ".join(failures) + (f" — {hint}" if hint else ""), dry, shown)


def endpoint_plane(info: ConnectionInfo, *, dry_run: bool, hint: str = "", timeout: float = 3.0) -> DataPlane:
    """Whether any host of ``info`` accepts a TCP connection (for endpoints besides the cluster's, e.g. a proxy)."""
    targets = _endpoints_of(info.conninfo)
    shown = tuple(f"{h}:{p}" for h, p in targets)
    failures: list[str] = []
    for host, port in targets:
        why = probe_tcp(host, port, timeout)
        if why is None:
            return DataPlane(True, f"{host}:{port} accepts connections", dry_run, shown)
        failures.append(why)
    return DataPlane(False, "; ".join(failures) + (f" — {hint}" if hint else ""), dry_run, shown)


def missing_cluster_hint(run: Run) -> str:
    """What to run next when the cluster does not exist: the commands, ready to paste."""
    import os
    import shlex

    from aurora_kit.runbook import PARAMETERS_FILE_ENV

    p = run.params
    source = os.environ.get(PARAMETERS_FILE_ENV) or "<parameters file>"
    create = f"aurora-kit run 01 -f {shlex.quote(source)} -p cluster_id={shlex.quote(p.cluster_id)}"
    if run.backend.traits.regional:
        listing = f"aws rds describe-db-clusters --region {shlex.quote(p.region)}"
    else:
        listing = "aurora-kit local list" + (f" --root {shlex.quote(p.local_root)}" if p.local_root else "")
    return f"create it first: {create}; see which clusters exist: {listing}"


def connect_timeout(run: Run) -> float:
    probe = run.params.probe
    return float(probe.connect_timeout_s) if probe is not None else 5.0


@dataclass(frozen=True)
class Skipped:
    """Stands in for a result that was not produced; says so wherever it is shown or recorded.

    A skipped *check* (``requested``, the default: it could not run from here, e.g. the data plane is not
    reachable) makes the run ``not verified``; one the parameters did not ask for (:meth:`not_requested`, e.g.
    ``restore_mode: pitr`` skips the snapshot restore) is shown and traced but does not."""

    what: str
    reason: str
    requested: bool = True

    @classmethod
    def not_requested(cls, what: str, reason: str) -> Skipped:
        return cls(what, reason, requested=False)

    def __str__(self) -> str:
        return f"SKIPPED {self.what}: {self.reason}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<p style='color:#9a6700'><b>SKIPPED</b> {html.escape(self.what)}: {html.escape(self.reason)}</p>"

    @property
    def ok(self) -> None:  # neither passed nor failed
        return None

    @property
    def status(self) -> CheckStatus:
        return CheckStatus.SKIPPED if self.requested else CheckStatus.NOT_REQUESTED

    def summary(self) -> str:
        return f"skipped ({self.reason})" if self.requested else f"not requested ({self.reason})"

    def verdict(self) -> str:
        label = "NOT VERIFIED" if self.requested else "NOT REQUESTED"
        return f"{label} {self.what}: {self.reason}"

    def plot(self, *args: Any, **kwargs: Any) -> None:
        print(f"nothing to plot — {self}")


def check_step(title: str) -> Callable[[F], F]:
    """Declare the check a data-plane step produces (its result's title), so that when the step cannot run
    (:func:`when`) the record names the same check a run that reached the data plane names."""

    def mark(step: F) -> F:
        step.check_title = title  # type: ignore[attr-defined]
        return step

    return mark


def when(dp: DataPlane, step: Callable[..., Any], *args: Any, writes: bool = False, **kwargs: Any) -> Any:
    """``step(*args, **kwargs)`` when the data plane is available (and, for ``writes=True`` steps, not a dry
    run); otherwise print why and return a :class:`Skipped` named after the check the step produces
    (:func:`check_step`), or after the step."""
    what = getattr(step, "check_title", None) or getattr(step, "__name__", str(step)).replace("_", " ")
    if not dp.available:
        skipped = Skipped(what, f"data plane not reachable: {dp.reason}")
    elif writes and dp.dry_run:
        skipped = Skipped(what, "dry run: no data-plane writes")
    else:
        return step(*args, **kwargs)
    print(skipped)
    return skipped


def verify(result: Any, *, name: str | None = None, **limits: Any) -> None:
    """The one way a runbook judges a check: show ``result`` (its table, even when the check fails), then its
    verdict line — ``PASS <check> (<limits>)``, ``FAIL <check>: <problems>`` or ``NOT VERIFIED <check>: <why>``
    for a :class:`Skipped` — which is also the check's trace in the record (:func:`aurora_kit.runbook.record_check`):
    the runner computes the run's outcome from these traces. A failed check then raises its typed error
    (``assert_ok(**limits)``), so papermill marks the cell and the run fails. ``name`` tells apart two checks of
    the same kind in one run (the failback's write probe)."""
    from aurora_kit.errors import VerificationError
    from aurora_kit.runbook import record_check

    if isinstance(result, Skipped):
        if name:
            result = Skipped(name, result.reason, result.requested)
        record_check(Check(result.what, result.status, result.reason), result.verdict())
        return
    show(result)
    name = name or str(result.title)
    try:
        result.assert_ok(**limits)
    except VerificationError as exc:
        line = result.verdict().replace(str(result.title), name, 1)
        if not line.startswith("FAIL"):  # limits given here that the result's own verdict does not know
            line = f"FAIL {name}: " + "; ".join(getattr(exc, "context", {}).get("problems") or [exc.message])
        record_check(Check(name, CheckStatus.FAILED, line), line)
        raise
    line = result.verdict()
    if name != result.title:
        line = line.replace(str(result.title), name, 1)
    record_check(Check(name, CheckStatus.PASSED, line), line)


def plot(result: Any) -> None:
    """Draw ``result``'s chart here (``result.plot()``), returning nothing, so the cell shows the chart and no
    matplotlib repr; a skipped result says there is nothing to plot."""
    if isinstance(result, Skipped) or not callable(getattr(result, "plot", None)):
        print(f"nothing to plot — {result}")
        return
    import matplotlib.pyplot as plt

    drawn = result.plot()
    figure = getattr(drawn, "figure", drawn)  # an Axes knows its figure
    show(figure)
    plt.close(figure)


def summary(**results: Any) -> dict[str, Any]:
    """Key results for ``run.record_all``: anything with a ``summary()`` (check results; skipped steps give
    ``skipped (reason)``) becomes it, the data plane ``available`` / ``skipped (reason)``, tables their rows."""
    out: dict[str, Any] = {}
    for name, value in results.items():
        if isinstance(value, DataPlane):
            out[name] = value.record
        elif callable(getattr(value, "summary", None)):
            out[name] = value.summary()
        elif isinstance(value, Table):
            out[name] = value.rows
        else:
            out[name] = value
    return out


# == the confirmation gate ======================================================================================
def confirm(
    run: Run,
    action: str,
    *,
    typed_cluster_id: str | bool | None = False,
    plan: Callable[[ClusterBackend], Any] | None = None,
) -> None:
    """The one gate before a destructive ``action``, headless and in JupyterLab alike.

    A dry run passes (it changes nothing). In JupyterLab (:mod:`aurora_kit.interactive`: a live frontend, no
    runner) a person decides: a widget shows the plan of mutating calls — ``plan(backend)`` is the step's own
    control-plane call, run here on a dry-run twin of the run's backend — and, when ``typed_cluster_id`` is
    given (teardown), asks for the cluster id to be typed; Cancel or no answer in time raises
    :class:`~aurora_kit.errors.ConfirmationDeclinedError`. Headless, ``confirm`` must be true and, when
    ``typed_cluster_id`` is given, it must name the run's cluster; ConfirmationRequiredError otherwise. Either
    way before any mutating call, and the decision leaves its trace (:mod:`aurora_kit.confirmation`: who, when,
    how, the plan shown) that the record keeps."""
    from aurora_kit.confirmation import CONFIRMED, Confirmation, record
    from aurora_kit.interactive import session

    p = run.params
    if p.dry_run:
        return
    who = f"{run.operator}@{run.host}"
    if session.can_ask(run):
        from aurora_kit.errors import ConfirmationDeclinedError
        from aurora_kit.interactive import gate

        calls = gate.planned_calls(run, plan)
        decision = gate.ask(run, action, calls, typed=typed_cluster_id is not False)
        record(decision)
        if not decision.confirmed:
            raise ConfirmationDeclinedError(
                f"{action} on {p.cluster_id!r} {decision.decision}",
                cluster_id=p.cluster_id,
                action=action,
            )
        return
    if not p.confirm:
        raise ConfirmationRequiredError(
            f"{action} on {p.cluster_id!r} needs confirm: true; nothing was changed",
            cluster_id=p.cluster_id,
            action=action,
        )
    if typed_cluster_id is not False and typed_cluster_id != p.cluster_id:
        raise ConfirmationRequiredError(
            f"the typed cluster id {typed_cluster_id!r} does not name cluster_id={p.cluster_id!r}: nothing was changed",
            hint=f"type the cluster to act on: -p teardown.confirm_cluster_id={p.cluster_id}",
            cluster_id=p.cluster_id,
            confirm_cluster_id=typed_cluster_id,
        )
    how = "parameter confirm: true" + (" and teardown.confirm_cluster_id" if typed_cluster_id is not False else "")
    typed = typed_cluster_id if isinstance(typed_cluster_id, str) else None
    record(Confirmation(action, p.cluster_id, CONFIRMED, how, who, typed_cluster_id=typed))


# == tables every runbook shows =================================================================================
def plan_table(backend: ClusterBackend) -> Table | None:
    """The mutating calls a dry run recorded, as a table (and for the runner, which prints it in the terminal);
    nothing outside a dry run (the calls were made: the cells above say what happened)."""
    rows = [
        {"#": n + 1, "service": c.service, "call": c.operation, "parameters": c.params}
        for n, c in enumerate(backend.plan)
    ]
    if backend.dry_run:
        from aurora_kit.runbook import planned_calls, record_plan

        record_plan(planned_calls(backend))
        return Table(rows, f"dry-run plan: {len(rows)} call(s) that would be made; none was made")
    return None


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


#: what every step module re-exports, so a runbook needs one import (``from aurora_kit.steps import x as wf``)
def failover_candidates(cluster: Cluster, instances: Mapping[str, Instance]) -> list[FailoverCandidate]:
    """The cluster's members as Aurora's failover and class-change rules see them (writer or not, available,
    promotion tier, class); a member whose instance is not described (being created or deleted) is unavailable."""
    out = []
    for m in cluster.db_cluster_members:
        inst = instances.get(m.db_instance_identifier)
        available = inst is not None and inst.status == "available"
        klass = inst.db_instance_class if inst is not None else ""
        out.append(FailoverCandidate(m.db_instance_identifier, m.is_cluster_writer, available, m.promotion_tier, klass))
    return out


__all__ = [
    "DataPlane",
    "Skipped",
    "Table",
    "check_step",
    "cluster_summary",
    "confirm",
    "connect_timeout",
    "data_plane",
    "endpoint_plane",
    "failover_candidates",
    "members_table",
    "parameters_form",
    "plan_table",
    "plot",
    "start",
    "summary",
    "verify",
    "when",
]
