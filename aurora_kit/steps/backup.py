"""05-backup-restore: automated backups and the restorable window, a manual snapshot, a restore from it and/or a
point-in-time restore to T, each verified (row counts + checksums; exactness at T), then the test restores cleaned
up."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aurora_kit.backends.base import Cluster
from aurora_kit.display import Table
from aurora_kit.polling import wait_for
from aurora_kit.specs import InstanceSpec
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import Skipped, check_step, members_table
from aurora_kit.steps.common import __all__ as _common

if TYPE_CHECKING:
    from aurora_kit.backends.base import Snapshot
    from aurora_kit.checks import PitrReport, RestoreReport, SeededDataset, TableFingerprint
    from aurora_kit.checks.cluster import BackupsReport
    from aurora_kit.runbook import Run


def validate(run: Run) -> Table:
    """Everything this runbook can check before its first change: the clusters it will create do not exist yet,
    the snapshot id is free, and a given restore time lies between the cluster's earliest restorable time and now
    (on Aurora LatestRestorableTime trails; the restore waits for it). Refuses with the typed error otherwise —
    before the snapshot, so a bad request leaves nothing behind."""
    from aurora_kit.errors import ClusterAlreadyExistsError, ClusterNotFoundError, SnapshotAlreadyExistsError
    from aurora_kit.rules import check_restore_window

    cid = run.params.cluster_id
    source = run.backend.describe_cluster(cid)
    rows: list[dict[str, Any]] = []
    for mode, new_id in restore_ids(run).items():
        try:
            run.backend.describe_cluster(new_id)
        except ClusterNotFoundError:
            rows.append({"check": f"{mode} restore into", "value": new_id, "result": "free"})
            continue
        raise ClusterAlreadyExistsError(new_id)
    snap = snapshot_id(run)
    if any(s.db_cluster_snapshot_identifier == snap for s in run.backend.describe_snapshots(cid)):
        raise SnapshotAlreadyExistsError(snap)
    rows.append({"check": "snapshot id", "value": snap, "result": "free"})
    given = run.section("backup_restore").restore_time
    if given is not None and "pitr" in restore_ids(run):
        earliest = source.earliest_restorable_time or source.cluster_create_time
        now = datetime.now(timezone.utc)
        check_restore_window(given, earliest, now, cluster_id=cid)
        rows.append({"check": "restore time", "value": given, "result": f"within [{earliest}, now]"})
    return Table(rows, "checked before any change")


def check_backups(run: Run) -> BackupsReport:
    """Retention and the restorable window of the cluster now (:class:`~aurora_kit.checks.cluster.BackupsReport`)."""
    from aurora_kit.checks.cluster import BackupsReport

    return BackupsReport.of(run.backend.describe_cluster(run.params.cluster_id), run.params.backup_retention_period)


def seed(run: Run) -> SeededDataset:
    """Known rows on either side of a cut-off T (each batch its own commit) for the PITR exactness check."""
    from aurora_kit.checks import seed_pitr_dataset

    return seed_pitr_dataset(
        run.backend.connection_info(run.params.cluster_id, "cluster"),
        batches_before=3,
        batches_after=3,
        rows_per_batch=100,
        gap_s=0.2,
    )


def fingerprints(run: Run) -> dict[str, TableFingerprint]:
    """Row count + content checksum of every user table on the writer (taken right before the snapshot)."""
    from aurora_kit.checks import table_fingerprints

    return dict(table_fingerprints(run.backend.connection_info(run.params.cluster_id, "cluster")))


def fingerprint_table(fps: Mapping[str, TableFingerprint]) -> Table:
    return Table([{"table": n, "rows": f.rows, "checksum": f.checksum} for n, f in fps.items()], "source tables")


def snapshot_table(snap: Snapshot) -> Table:
    """The snapshot as a one-row table."""
    row = {
        "snapshot": snap.db_cluster_snapshot_identifier,
        "of": snap.db_cluster_identifier,
        "type": snap.snapshot_type,
        "status": snap.status,
        "engine": snap.engine_version,
        "created": snap.snapshot_create_time,
        "encrypted": snap.storage_encrypted,
    }
    return Table([row], f"snapshot {snap.db_cluster_snapshot_identifier}")


def restored_table(run: Run, restored: Cluster | Skipped) -> Table | Skipped:
    """A restored cluster's endpoints and members (or why there is none)."""
    if isinstance(restored, Skipped):
        return restored
    return members_table(run, restored)


def window_table(cluster: Cluster, target: datetime | None) -> Table:
    """The restorable window of the source and the point-in-time target T."""
    row = {
        "earliest restorable": cluster.earliest_restorable_time,
        "latest restorable": cluster.latest_restorable_time,
        "restore to (T)": target if target is not None else "latest restorable time",
    }
    return Table([row], f"{cluster.db_cluster_identifier}: restorable window")


def snapshot_id(run: Run) -> str:
    """``backup_restore.snapshot_id``, else ``<cluster_id>-<run start, UTC>``."""
    given = run.section("backup_restore").snapshot_id
    return given or f"{run.params.cluster_id}-{run.started_at:%Y%m%d-%H%M%S}"


def snapshot(run: Run) -> Snapshot:
    """A manual cluster snapshot, tagged with the run's tags."""
    return run.backend.create_snapshot(run.params.cluster_id, snapshot_id(run), tags=run.params.tags)


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


def restore_snapshot(run: Run, snap: Snapshot) -> Cluster | Skipped:
    """Restore ``snap`` into a new cluster with ``restore_instances`` instances (restore_mode snapshot/both)."""
    ids = restore_ids(run)
    if "snapshot" not in ids:
        print("restore_mode is pitr: no restore from the snapshot")
        return Skipped.not_requested("restore from snapshot", "restore_mode: pitr")
    new_id = ids["snapshot"]
    return run.backend.restore_from_snapshot(
        snap.db_cluster_snapshot_identifier, new_id, instances=_restore_instances(run, new_id)
    )


def restore_target(run: Run, seeded: Any) -> datetime | None:
    """PITR target: ``backup_restore.restore_time``, else the seeded cut-off T, else None (latest restorable)."""
    given = run.section("backup_restore").restore_time
    if given is not None:
        return given
    if isinstance(seeded, Skipped):
        return None
    return seeded.cutoff


def wait_restorable(run: Run, target: datetime | None) -> Cluster:
    """Wait until ``LatestRestorableTime`` ≥ ``target`` — on Aurora it trails by up to ~5 minutes; a backend that
    makes "now" restorable on demand needs no wait."""
    cid = run.params.cluster_id
    traits = run.backend.traits
    if target is None or "pitr" not in restore_ids(run) or run.params.dry_run:
        return run.backend.describe_cluster(cid)
    if traits.restorable_on_demand:
        print(f"{run.backend.name} backend: the restore itself makes everything up to now restorable; no wait")
        return run.backend.describe_cluster(cid)

    def ok(c: Cluster) -> bool:
        return c.latest_restorable_time is not None and c.latest_restorable_time >= target

    return wait_for(
        f"latest restorable time ≥ {target.isoformat(timespec='milliseconds')}",
        lambda: run.backend.describe_cluster(cid),
        ok,
        timeout=traits.restorable_wait_s,
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
        return Skipped.not_requested("point-in-time restore", "restore_mode: snapshot")
    new_id = ids["pitr"]
    return run.backend.restore_to_point_in_time(
        run.params.cluster_id,
        new_id,
        restore_time=target,
        use_latest_restorable_time=target is None,
        instances=_restore_instances(run, new_id),
    )


SNAPSHOT_CHECK = "restore verification"
PITR_CHECK = "point-in-time restore exactness"


@check_step(SNAPSHOT_CHECK)
def verify_snapshot_restore(
    run: Run, expected: Mapping[str, TableFingerprint], restored: Any
) -> RestoreReport | Skipped:
    """Row counts + checksums of every table in the restored cluster vs those taken before the snapshot."""
    from aurora_kit.checks import verify_restore

    if isinstance(restored, Skipped):
        return Skipped(SNAPSHOT_CHECK, restored.reason, restored.requested)
    if restored.status == "dry-run":
        return Skipped(SNAPSHOT_CHECK, "dry run: nothing was restored")
    info = run.backend.connection_info(restored.db_cluster_identifier, "cluster")
    return verify_restore(dict(expected), info)


@check_step(PITR_CHECK)
def verify_pitr(run: Run, seeded: Any, restored: Any, target: datetime | None) -> PitrReport | Skipped:
    """Exactness at T: every row committed by T present and unchanged, none written after T."""
    from aurora_kit.checks import verify_pitr as _verify_pitr

    if isinstance(restored, Skipped):
        return Skipped(PITR_CHECK, restored.reason, restored.requested)
    if restored.status == "dry-run":
        return Skipped(PITR_CHECK, "dry run: nothing was restored")
    if isinstance(seeded, Skipped):
        return Skipped(PITR_CHECK, "no seeded dataset (data plane skipped)")
    if target != seeded.cutoff:
        return Skipped(PITR_CHECK, f"restore_time {target} is not the seeded cut-off; exactness is only known at T")
    return _verify_pitr(seeded, run.backend.connection_info(restored.db_cluster_identifier, "cluster"))


def delete_restores(run: Run, *restored: Any, snap: Snapshot | None = None) -> list[str]:
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
    if snap is not None and s.snapshot_id is None and snap.status != "dry-run":
        run.backend.delete_snapshot(snap.db_cluster_snapshot_identifier)
        deleted.append(f"snapshot {snap.db_cluster_snapshot_identifier}")
    print(f"deleted: {', '.join(deleted) or 'nothing (dry run)'}")
    return deleted


__all__ = [
    *_common,
    "check_backups",
    "validate",
    "delete_restores",
    "fingerprint_table",
    "fingerprints",
    "restore_ids",
    "restored_table",
    "snapshot_table",
    "window_table",
    "restore_pitr",
    "restore_snapshot",
    "restore_target",
    "seed",
    "snapshot",
    "snapshot_id",
    "verify_pitr",
    "verify_snapshot_restore",
    "wait_restorable",
]
