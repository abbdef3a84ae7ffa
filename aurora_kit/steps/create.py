"""01-create-cluster: the plan, the creation (or an identical cluster found unchanged), the cluster checked
against the parameters, and which instance answers on each endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aurora_kit.display import Table
from aurora_kit.errors import ClusterNotFoundError
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import Skipped, connect_timeout
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
        f"{spec.cluster_id}: aurora-postgresql {spec.engine_version}, backups {spec.backup_retention_period} d "
        f"in {spec.preferred_backup_window} UTC, encrypted={spec.storage_encrypted}, "
        f"deletion protection={spec.deletion_protection}, IAM auth={spec.iam_database_authentication}"
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
        print(f"created {cluster.db_cluster_identifier}: writer {cluster.writer_id}, readers {cluster.reader_ids}")
    return cluster


def check(run: Run, cluster: Cluster) -> ClusterMatchReport | Skipped:
    """The cluster against the parameters (:class:`~aurora_kit.checks.cluster.ClusterMatchReport`); a dry run
    created nothing, so there is nothing to check."""
    from aurora_kit.checks.cluster import ClusterMatchReport

    if cluster.status == "dry-run":
        return Skipped("cluster matches the parameters", "dry run: nothing was created")
    return ClusterMatchReport(cluster, run.spec)


def iam_user(run: Run) -> CheckResult:
    """With ``iam_auth``: create ``aws.iam_db_user`` (as the master user, with its managed secret), grant it
    ``rds_iam`` and what the runbooks need, and prove a token login (:mod:`aurora_kit.checks.iam`). Without: the
    runbooks log in as the master user with its password, and this says so."""
    from aurora_kit.checks.iam import ensure_iam_user
    from aurora_kit.checks.result import Findings

    user, cid = run.params.aws.iam_db_user, run.params.cluster_id
    if not run.params.iam_auth or not user:
        return Findings(
            "IAM database user",
            {"iam_auth": False},
            judged_against="iam_auth is false: the runbooks log in as the master user with its password",
        )
    return ensure_iam_user(run.backend.master_connection_info(cid), run.backend.connection_info(cid), user)


def who_answers(run: Run) -> Table:
    """Which instance answers on the cluster and reader endpoints, its role and server version."""
    from aurora_kit.checks.common import connect

    rows: list[dict[str, Any]] = []
    for endpoint in ("cluster", "reader"):
        info = run.backend.connection_info(run.params.cluster_id, endpoint)
        with connect(info, connect_timeout=connect_timeout(run)) as conn:
            row = conn.execute(
                "SELECT aurora_db_instance_identifier(), pg_is_in_recovery(), current_setting('server_version')"
            ).fetchone()
        assert row is not None
        rows.append({"endpoint": endpoint, "answered by": row[0], "read-only": row[1], "server version": row[2]})
    return Table(rows, "who answers on each endpoint")


__all__ = [*_common, "check", "create", "iam_user", "spec_table", "who_answers"]
