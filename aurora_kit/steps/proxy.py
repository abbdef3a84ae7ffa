"""09-proxy: an RDS Proxy for the cluster (local: PgBouncer, configured from the same settings), its targets
available and its read-only endpoint, then what it must prove on both backends — connection multiplexing, session
pinning, the read-only endpoint landing on readers — and failovers measured side by side through the proxy and the
cluster endpoint (a write outage: needs ``confirm``). Deleted at the end when ``proxy.delete_proxy``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aurora_kit.display import Table
from aurora_kit.errors import InvalidParameterError
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import DataPlane, Skipped, check_step, confirm, connect_timeout, endpoint_plane, verify
from aurora_kit.steps.common import __all__ as _common

if TYPE_CHECKING:
    from aurora_kit.backends.base import ClusterBackend, FailoverMode
    from aurora_kit.backends.capacity import Proxy
    from aurora_kit.checks.proxy import (
        MultiplexingReport,
        PinningReport,
        ProxyFailoverReport,
        ReadOnlyEndpointReport,
    )
    from aurora_kit.runbook import Run


def plan(run: Run) -> Table:
    """The proxy this run creates: its settings as RDS Proxy names them, and what the local backend maps them to.
    Refuses before anything is created what the run could only fail at later: failovers to measure on a cluster
    without a reader."""
    p = run.section("proxy")
    cluster = run.backend.describe_cluster(run.params.cluster_id)
    if p.failover_modes and not cluster.reader_ids:
        raise InvalidParameterError(
            "proxy.failover_modes",
            list(p.failover_modes),
            f"cluster {cluster.db_cluster_identifier!r} has no reader to fail over to: add one (08-scale) or set "
            "proxy.failover_modes: []",
        )
    rows = [
        {"setting": "DBProxyName", "value": p.proxy_name},
        {"setting": "EngineFamily", "value": "POSTGRESQL"},
        {"setting": "RequireTLS", "value": p.require_tls},
        {"setting": "IdleClientTimeout", "value": f"{p.idle_client_timeout_s} s"},
        {"setting": "MaxConnectionsPercent", "value": f"{p.max_connections_percent} %"},
        {"setting": "MaxIdleConnectionsPercent", "value": f"{p.max_idle_connections_percent} %"},
        {"setting": "ConnectionBorrowTimeout", "value": f"{p.connection_borrow_timeout_s} s"},
        {"setting": "IAMAuth", "value": "REQUIRED" if p.iam_auth else "DISABLED"},
        {"setting": "read-only endpoint", "value": p.read_only_endpoint or "none"},
        {"setting": "failovers measured", "value": ", ".join(p.failover_modes) or "none"},
    ]
    pins = run.backend.traits.proxy_pins_sessions
    note = "" if pins else " — local: PgBouncer (transaction pooling; no session pinning, see the README)"
    return Table(rows, f"proxy for {run.params.cluster_id}{note}")


def create(run: Run) -> Proxy:
    """Create the proxy (or find it unchanged), the cluster registered as its target, the read-only endpoint;
    returns once every target is AVAILABLE."""
    p = run.section("proxy")
    return run.backend.create_proxy(run.params.cluster_id, p.spec(list(run.params.aws.vpc_security_group_ids)))


def targets_table(proxy: Proxy) -> Table:
    """The proxy's endpoints and targets with their role and health."""
    rows: list[dict[str, Any]] = [
        {"kind": "endpoint", "name": e.db_proxy_endpoint_name, "role": e.target_role, "state": e.status,
         "address": e.endpoint} for e in proxy.endpoints
    ]  # fmt: skip
    rows += [
        {"kind": t.type, "name": t.rds_resource_id, "role": t.role, "state": t.target_health,
         "address": f"{t.endpoint}:{t.port}" if t.endpoint else ""} for t in proxy.targets
    ]  # fmt: skip
    pool = f", pool {proxy.pool_size} server connections" if proxy.pool_size else ""
    return Table(rows, f"{proxy.db_proxy_name}: {proxy.status}{pool}")


@check_step("proxy targets available")
def targets(run: Run, proxy: Proxy) -> Any:
    """Every target AVAILABLE and every endpoint available (the proxy's control-plane view)."""
    from aurora_kit.checks.result import Findings

    if proxy.status == "dry-run":
        return Skipped("proxy targets available", "dry run: no proxy created")
    issues = [f"target {t.rds_resource_id}: {t.target_health} {t.target_health_reason}".strip()
              for t in proxy.targets if t.target_health != "AVAILABLE"]  # fmt: skip
    issues += [f"endpoint {e.db_proxy_endpoint_name}: {e.status}" for e in proxy.endpoints if e.status != "available"]
    if not proxy.targets:
        issues.append("no target registered")
    return Findings(
        "proxy targets available",
        {"targets": {t.rds_resource_id: t.target_health for t in proxy.targets}, "status": proxy.status},
        issues,
        judged_against=f"{len(proxy.targets)} targets AVAILABLE, {len(proxy.endpoints)} endpoints available",
    )


def proxy_plane(run: Run, proxy: Proxy) -> DataPlane:
    """Whether the proxy's endpoints answer from here (a proxy lives in the VPC: from outside, its checks are
    skipped, loudly)."""
    if proxy.status == "dry-run":
        return DataPlane(False, "dry run: no proxy created", True)
    info = run.backend.proxy_connection_info(proxy.db_proxy_name)
    return endpoint_plane(info, dry_run=run.params.dry_run, hint=run.backend.unreachable_hint())


@check_step("connection multiplexing")
def multiplexing(run: Run, proxy: Proxy) -> MultiplexingReport:
    """``proxy.multiplexing_clients`` client connections held open through the proxy, each running transactions at
    once: how few server sessions served them."""
    from aurora_kit.checks.proxy import check_multiplexing

    return check_multiplexing(
        run.backend.proxy_connection_info(proxy.db_proxy_name),
        clients=run.section("proxy").multiplexing_clients,
        pool_size=proxy.pool_size,
        max_connections_percent=proxy.max_connections_percent,
        connect_timeout=connect_timeout(run),
    )


@check_step("session pinning")
def pinning(run: Run, proxy: Proxy) -> PinningReport:
    """A session-level SET through the proxy: pinned where the proxy pins (RDS Proxy), its transaction only where
    it cannot (PgBouncer); never seen by another client."""
    from aurora_kit.checks.proxy import check_pinning

    return check_pinning(
        run.backend.proxy_connection_info(proxy.db_proxy_name),
        pins_expected=run.backend.traits.proxy_pins_sessions,
        connect_timeout=connect_timeout(run),
    )


@check_step("read-only proxy endpoint")
def read_only_endpoint(run: Run, proxy: Proxy) -> ReadOnlyEndpointReport | Skipped:
    """Connections through the read-only endpoint land on readers only and refuse writes."""
    from aurora_kit.checks.proxy import check_read_only_endpoint

    name = run.section("proxy").read_only_endpoint
    if name is None:
        return Skipped.not_requested("read-only proxy endpoint", "proxy.read_only_endpoint is null")
    readers = run.backend.describe_cluster(run.params.cluster_id).reader_ids
    return check_read_only_endpoint(
        run.backend.proxy_connection_info(proxy.db_proxy_name, name), readers, connect_timeout=connect_timeout(run)
    )


def failovers(run: Run, proxy: Proxy, pdp: DataPlane) -> list[ProxyFailoverReport | Skipped]:
    """Each of ``proxy.failover_modes``: a failover with a write probe through the proxy and one on the cluster
    endpoint, side by side (needs ``confirm``: a write outage). A crash failover only where the backend can crash
    the writer (local); without the data plane the failover is not run (nothing would be measured)."""
    from aurora_kit.checks.proxy import compare_failover

    p = run.section("proxy")
    out: list[ProxyFailoverReport | Skipped] = []
    for mode in p.failover_modes:
        name = f"failover through the proxy ({mode})"
        if mode == "crash" and not run.backend.traits.crash_failover:
            out.append(Skipped.not_requested(name, "this backend cannot crash the writer (Aurora has no API for it)"))
            continue
        if not pdp.available or run.params.dry_run:
            why = "dry run" if run.params.dry_run else f"proxy not reachable: {pdp.reason}"
            out.append(Skipped(name, f"{why}; no failover made"))
            print(out[-1])
            continue
        confirm(
            run,
            f"{mode} failover measured through the proxy",
            plan=_failover_plan(run.params.cluster_id, mode),
        )
        _result, report = compare_failover(
            run.backend,
            run.params.cluster_id,
            proxy.db_proxy_name,
            mode=mode,
            rate=1.0 / run.section("probe").interval_s,
            max_lost=0,
            slack_s=p.max_gap_excess_s,
        )
        _wait_all_available(run)
        out.append(report)
    if not p.failover_modes:
        out.append(Skipped.not_requested("failover through the proxy", "proxy.failover_modes is empty"))
    return out


def _failover_plan(cluster_id: str, mode: FailoverMode) -> Callable[[ClusterBackend], object]:
    """The failover as the confirmation widget's plan shows it (made on a dry-run twin)."""
    return lambda backend: backend.failover(cluster_id, mode=mode)


def verify_failovers(reports: list[ProxyFailoverReport | Skipped]) -> None:
    """Each failover's verdict (its own check: ``failover through the proxy (<mode>)``)."""
    for report in reports:
        if isinstance(report, Skipped):
            verify(report)
        else:
            verify(report, name=f"failover through the proxy ({report.mode})")


def _wait_all_available(run: Run) -> None:
    from aurora_kit.polling import wait_for

    wait_for(
        "every instance available after the failover",
        lambda: [i.status for i in run.backend.describe_instances(run.params.cluster_id)],
        lambda statuses: all(s == "available" for s in statuses),
        timeout=run.backend.traits.rejoin_timeout_s,
        initial_delay=0.05,
        max_delay=run.backend.traits.poll_max_delay_s,
        progress=run.backend.progress,
    )


def delete(run: Run, proxy: Proxy) -> str:
    """Delete the proxy (its endpoints, the role it created) when ``proxy.delete_proxy`` (needs ``confirm``); else
    keep it."""
    p = run.section("proxy")
    if not p.delete_proxy:
        return f"kept {proxy.db_proxy_name}"
    if proxy.status == "dry-run":
        return "dry run: nothing to delete"
    confirm(
        run,
        f"deleting proxy {proxy.db_proxy_name} (its clients lose their endpoint)",
        plan=lambda backend: backend.delete_proxy(proxy.db_proxy_name),
    )
    run.backend.delete_proxy(proxy.db_proxy_name)
    return f"deleted {proxy.db_proxy_name}"


def figures(failover_reports: list[ProxyFailoverReport | Skipped], multiplexed: Any) -> dict[str, Any]:
    """Key figures: each failover's write gap through the proxy and on the cluster endpoint, the multiplexing
    ratio."""
    out: dict[str, Any] = {}
    for report in failover_reports:
        if isinstance(report, Skipped):
            out[report.what] = report.summary()
            continue
        s = report.summary()
        out[report.mode] = {k: s[k] for k in ("proxy_gap_s", "cluster_endpoint_gap_s", "reduction")}
    if multiplexed is not None and not isinstance(multiplexed, Skipped):
        out["multiplexing_ratio"] = round(multiplexed.ratio, 2)
    return out


__all__ = [
    *_common,
    "create",
    "delete",
    "failovers",
    "figures",
    "multiplexing",
    "pinning",
    "plan",
    "proxy_plane",
    "read_only_endpoint",
    "targets",
    "targets_table",
    "verify_failovers",
]
