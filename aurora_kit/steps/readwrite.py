"""04-verify-read-write: endpoint roles, every instance's role (readers refuse writes), a write read back through
the reader endpoint, replica lag, and the pool under concurrency."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import __all__ as _common
from aurora_kit.steps.common import check_step, connect_timeout

if TYPE_CHECKING:
    from aurora_kit.checks.endpoints import EndpointRoleReport, InstanceRolesReport
    from aurora_kit.checks.lag import ReplicaLagReport
    from aurora_kit.checks.pooling import PoolCheckReport
    from aurora_kit.checks.roundtrip import RoundTripReport
    from aurora_kit.runbook import Run


@check_step("endpoint roles")
def endpoint_roles(run: Run) -> EndpointRoleReport:
    """Cluster endpoint → writer, reader endpoint → readers (a write refused with 25006), spread over readers."""
    from aurora_kit.checks import check_endpoint_roles

    return check_endpoint_roles(run.backend, run.params.cluster_id, connections=20)


@check_step("every instance's role, from the instance itself")
def instance_roles(run: Run) -> InstanceRolesReport:
    """Every instance directly: its role agrees with the control plane; every reader refuses a write (25006)."""
    from aurora_kit.checks.endpoints import check_instance_roles

    return check_instance_roles(run.backend, run.params.cluster_id, connect_timeout=connect_timeout(run))


@check_step("write on the writer, read back on the reader endpoint")
def round_trip(run: Run) -> RoundTripReport:
    """``probe.rows`` rows written on the writer, read back identical through the reader endpoint (deadline
    ``probe.max_replica_lag_s`` × 10, at least 5 s)."""
    from aurora_kit.checks.roundtrip import write_read_back

    p = run.section("probe")
    cid = run.params.cluster_id
    return write_read_back(
        run.backend.connection_info(cid, "cluster"),
        run.backend.connection_info(cid, "reader"),
        rows=p.rows,
        deadline_s=max(5.0, 10 * p.max_replica_lag_s),
        connect_timeout=p.connect_timeout_s,
    )


@check_step("replica lag")
def replica_lag(run: Run) -> ReplicaLagReport:
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


@check_step("connection pool check")
def pool(run: Run) -> PoolCheckReport:
    """The seed's pool (10 + 20 overflow, pre-ping) under 20 concurrent workers for ``probe.duration_s``."""
    from aurora_kit.checks import check_pool

    return check_pool(
        run.backend, run.params.cluster_id, "cluster", workers=20, duration_s=run.section("probe").duration_s
    )


__all__ = [*_common, "endpoint_roles", "instance_roles", "pool", "replica_lag", "round_trip"]
