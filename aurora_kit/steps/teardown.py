"""99-teardown: what will be deleted, the explicit final-snapshot choice, deletion protection, the deletion (needs
``confirm`` and the cluster id typed again), then proof that the cluster is gone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aurora_kit.checks.result import Findings
from aurora_kit.display import Table
from aurora_kit.errors import ClusterNotFoundError, DeletionProtectionError, InvalidParameterError
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import __all__ as _common
from aurora_kit.steps.common import confirm

if TYPE_CHECKING:
    from aurora_kit.backends.base import Cluster, ClusterBackend, Snapshot
    from aurora_kit.runbook import Run


def find_cluster(run: Run) -> Cluster | None:
    try:
        return run.backend.describe_cluster(run.params.cluster_id)
    except ClusterNotFoundError:
        print(f"cluster {run.params.cluster_id!r} does not exist: nothing to tear down")
        return None


def plan(run: Run, cluster: Cluster | None) -> Table:
    """What will be deleted, the final-snapshot choice and deletion protection. DeletionProtectionError now
    (before anything is deleted) when protection is on and ``lift_deletion_protection`` is false."""
    t = run.section("teardown")
    if cluster is None:
        return Table([], "nothing to delete")
    if cluster.deletion_protection and not t.lift_deletion_protection:
        raise DeletionProtectionError(cluster.db_cluster_identifier)
    if not t.delete_automated_backups and not run.backend.traits.retains_automated_backups:
        raise InvalidParameterError(
            "teardown.delete_automated_backups",
            False,
            f"the {run.backend.name} backend's automated backups go with the cluster; take a final snapshot instead",
        )
    final = (
        f"final snapshot {t.final_snapshot_id}"
        if t.final_snapshot_id
        else "NO final snapshot (skip_final_snapshot: true)"
    )
    rows = [{"delete": m.db_instance_identifier, "kind": "instance"} for m in cluster.db_cluster_members]
    rows.append({"delete": cluster.db_cluster_identifier, "kind": "cluster"})
    protection = "on — will be lifted first" if cluster.deletion_protection else "off"
    backups = "deleted with it" if t.delete_automated_backups else "automated backups kept for their retention period"
    return Table(rows, f"{final}; deletion protection {protection}; automated backups: {backups}")


def teardown(run: Run, cluster: Cluster | None) -> Snapshot | None:
    """Delete instances then the cluster, with the explicit final-snapshot choice. Needs ``confirm`` and
    ``teardown.confirm_cluster_id`` equal to ``cluster_id`` (ConfirmationRequiredError, before any call)."""
    if cluster is None:
        return None
    t = run.section("teardown")
    cid = cluster.db_cluster_identifier
    choice: dict[str, bool] = {} if t.delete_automated_backups else {"delete_automated_backups": False}

    def delete(backend: ClusterBackend) -> Snapshot | None:
        return backend.delete_cluster(
            cid,
            final_snapshot_id=t.final_snapshot_id,
            skip_final_snapshot=t.skip_final_snapshot,
            lift_deletion_protection=t.lift_deletion_protection,
            **choice,
        )

    plan(run, cluster)  # every refusal again, before anything is deleted
    confirm(run, "deleting the cluster", typed_cluster_id=t.confirm_cluster_id, plan=delete)
    return delete(run.backend)


def gone(run: Run) -> Findings:
    """The cluster no longer exists (a dry run deleted nothing: it reports, not fails)."""
    cid = run.params.cluster_id
    remaining = any(c.db_cluster_identifier == cid for c in run.backend.list_clusters())
    issues = [f"cluster {cid!r} still exists after delete"] if remaining and not run.params.dry_run else []
    state = "still exists (dry run)" if remaining else "is gone"
    return Findings(f"{cid} deleted", {"cluster_id": cid, "exists": remaining}, issues, judged_against=f"{cid} {state}")


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


__all__ = [*_common, "find_cluster", "gone", "plan", "remaining_snapshots", "teardown"]
