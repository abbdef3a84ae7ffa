"""01-create-cluster: the plan, the creation (or an identical cluster found unchanged), the cluster checked
against the parameters, and which instance answers on each endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aurora_kit.checks.result import Findings
from aurora_kit.display import Table, fmt
from aurora_kit.errors import ClusterNotFoundError
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import DataPlane, Skipped, check_step, connect_timeout, when
from aurora_kit.steps.common import __all__ as _common

if TYPE_CHECKING:
    from aurora_kit.backends.base import Cluster
    from aurora_kit.checks.cluster import ClusterMatchReport
    from aurora_kit.checks.result import CheckResult
    from aurora_kit.runbook import Run


def spec_table(run: Run) -> Table:
    """What will be created: one row per instance, with the cluster settings that matter for safety."""
    spec = run.spec
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
        f"{spec.cluster_id}: aurora-postgresql {spec.engine_version} · backups {spec.backup_retention_period} d "
        f"in {spec.preferred_backup_window} UTC · encrypted: {fmt(spec.storage_encrypted)} · "
        f"deletion protection: {fmt(spec.deletion_protection)} · IAM auth: {fmt(spec.iam_database_authentication)}"
    )
    return Table(rows, title)


def create(run: Run) -> Cluster:
    """Create writer and readers and wait until the cluster and every instance are available. An identical
    cluster is left unchanged (a different one with the same id stops here, nothing changed); a dry run records
    the calls instead. Says which of the three happened."""
    try:
        run.backend.describe_cluster(run.params.cluster_id)
        existed = True
    except ClusterNotFoundError:
        existed = False
    cluster = run.backend.create_cluster(run.spec)
    if run.params.dry_run:
        print(f"dry run: {len(run.backend.plan)} mutating calls recorded, none made (table below)")
    elif existed:
        print(f"{cluster.db_cluster_identifier} already exists as the parameters describe it: unchanged, no call made")
    else:
        readers = ", ".join(cluster.reader_ids) or "none"
        print(f"created {cluster.db_cluster_identifier}: writer {cluster.writer_id}, readers {readers}")
    return cluster


def check(run: Run, cluster: Cluster) -> ClusterMatchReport | Skipped:
    """The cluster against the parameters (:class:`~aurora_kit.checks.cluster.ClusterMatchReport`); a dry run
    created nothing, so there is nothing to check."""
    from aurora_kit.checks.cluster import ClusterMatchReport

    if cluster.status == "dry-run":
        return Skipped("cluster matches the parameters", "dry run: nothing was created")
    return ClusterMatchReport(cluster, run.spec)


def iam_user(run: Run, dp: DataPlane) -> CheckResult | Skipped:
    """With ``iam_auth``: create ``aws.iam_db_user`` (as the master user, with its managed secret), grant it
    ``rds_iam`` and what the runbooks need, and prove a token login (:mod:`aurora_kit.checks.iam`) — a data-plane
    step, skipped (not verified) when the endpoints cannot be reached. Without ``iam_auth`` nothing is asked for: the
    runbooks log in as the master user with its password, and this says so."""
    if not run.params.iam_auth or not run.params.aws.iam_db_user:
        reason = "iam_auth is false: the runbooks log in as the master user with its password"
        return Skipped.not_requested("IAM database user", reason)
    result: CheckResult | Skipped = when(dp, _create_iam_user, run, writes=True)
    return result


@check_step("IAM database user")
def _create_iam_user(run: Run) -> CheckResult:
    from aurora_kit.checks.iam import ensure_iam_user

    user, cid = run.params.aws.iam_db_user, run.params.cluster_id
    assert user is not None
    return ensure_iam_user(run.backend.master_connection_info(cid), run.backend.connection_info(cid), user)


@check_step("who answers on each endpoint")
def who_answers(run: Run) -> Findings:
    """Which instance answers on the cluster and reader endpoints, its role and server version; the cluster
    endpoint must reach the writer (read-write), the reader endpoint a reader (read-only) — the writer when the
    cluster has no reader, as on Aurora."""
    from aurora_kit.checks.common import connect

    cid = run.params.cluster_id
    cluster = run.backend.describe_cluster(cid)
    rows: list[list[Any]] = []
    issues: list[str] = []
    for endpoint in ("cluster", "reader"):
        info = run.backend.connection_info(cid, endpoint)
        with connect(info, connect_timeout=connect_timeout(run)) as conn:
            row = conn.execute(
                "SELECT aurora_db_instance_identifier(), pg_is_in_recovery(), current_setting('server_version')"
            ).fetchone()
        assert row is not None
        instance, read_only, version = row
        rows.append([endpoint, instance, "reader" if read_only else "writer", version])
        if endpoint == "cluster" and (read_only or instance != cluster.writer_id):
            issues.append(f"the cluster endpoint reached {instance} (read-only: {read_only}), not the writer")
        if endpoint == "reader" and cluster.reader_ids and not read_only:
            issues.append(f"the reader endpoint reached {instance}, which is not read-only")
    expect = "a reader" if cluster.reader_ids else "the writer (no reader yet)"
    return Findings(
        "who answers on each endpoint",
        {r[0]: {"instance": r[1], "role": r[2], "server_version": r[3]} for r in rows},
        issues,
        columns=["endpoint", "answered by", "role", "server version"],
        rows=rows,
        judged_against=f"cluster endpoint → writer {cluster.writer_id}, reader endpoint → {expect}",
    )


__all__ = [*_common, "check", "create", "iam_user", "spec_table", "who_answers"]
