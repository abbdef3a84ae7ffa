"""RDS-shaped results (:class:`Cluster`, :class:`Instance`, :class:`Snapshot`) from records and probes; no I/O.

Live facts (is the process up, is it in recovery, does a setting wait for a restart) come in as a :class:`Probe`
taken by :meth:`.nodes.Nodes.probe`; dry-run projections are built from the request alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from aurora_kit.backends.base import Cluster, ClusterMember, Instance, Snapshot
from aurora_kit.backends.capacity import ServerlessScalingConfiguration
from aurora_kit.backends.local.addressing import LEGACY_ADDRESS
from aurora_kit.backends.local.state import ClusterRecord, SnapshotRecord
from aurora_kit.specs import InstanceSpec

LOCAL_AZ = "local-1a"
ENGINE = "aurora-postgresql"
HOST = LEGACY_ADDRESS  # where clusters created before per-instance addresses listen
DRY_RUN = "dry-run"

T = TypeVar("T", Cluster, Instance, Snapshot)


@dataclass(frozen=True)
class Probe:
    """One instance as its process shows it; ``is_writer`` falls back to the record when it cannot be asked."""

    running: bool
    ready: bool  # postmaster.pid says "ready"
    is_writer: bool
    pending_restart: bool


def instance(cl: ClusterRecord, instance_id: str, probe: Probe) -> Instance:
    inst = cl.instance(instance_id)
    status = inst.status
    if status == "available" and not probe.running:
        status = "failed"
    elif status == "available" and not probe.ready:
        status = "starting"
    return Instance(
        db_instance_identifier=instance_id,
        db_cluster_identifier=cl.cluster_id,
        status=status,
        db_instance_class=inst.instance_class,
        is_cluster_writer=probe.is_writer,
        endpoint_address=inst.address,
        endpoint_port=inst.port,
        availability_zone=inst.availability_zone,
        promotion_tier=inst.promotion_tier,
        engine_version=cl.engine_version,
        db_cluster_parameter_group_status="pending-reboot" if probe.pending_restart else "in-sync",
    )


def cluster(
    cl: ClusterRecord,
    instances: list[Instance],
    *,
    earliest_restorable_time: datetime | None,
    latest_restorable_time: datetime | None,
    secret: Path,
) -> Cluster:
    """``instances`` in :attr:`ClusterRecord.ordered` order (writer first); the restorable window as the archive
    supports it (:func:`.archive.restorable_window`)."""
    at = {i.db_instance_identifier: f"{i.endpoint_address}:{i.endpoint_port}" for i in instances}
    writer, readers = cl.writer_id, cl.reader_ids
    return Cluster(
        db_cluster_identifier=cl.cluster_id,
        status=cl.status,
        engine=ENGINE,
        engine_version=cl.engine_version,
        endpoint=",".join(at[i] for i in cl.ordered),
        reader_endpoint=",".join(at[i] for i in (readers or ([writer] if writer else []))),
        port=cl.instances[writer].port if writer else 0,
        master_username=cl.master_username,
        database_name=cl.database_name,
        db_cluster_members=[
            ClusterMember(
                i.db_instance_identifier, i.is_cluster_writer, i.db_cluster_parameter_group_status, i.promotion_tier
            )
            for i in instances
        ],
        backup_retention_period=cl.backup_retention_period,
        preferred_backup_window=cl.preferred_backup_window,
        storage_encrypted=cl.storage_encrypted,
        deletion_protection=cl.deletion_protection,
        iam_database_authentication_enabled=cl.iam_database_authentication,
        db_cluster_parameter_group=f"{cl.cluster_id}-params",
        availability_zones=[LOCAL_AZ],
        earliest_restorable_time=earliest_restorable_time,
        latest_restorable_time=latest_restorable_time,
        cluster_create_time=cl.created,
        master_user_secret_arn=f"file://{secret}",
        tags=dict(cl.tags),
        serverless_v2_scaling_configuration=_serverless(cl.capacity.get("serverless")),
    )


def _serverless(scaling: Any) -> ServerlessScalingConfiguration | None:
    if not scaling:
        return None
    return ServerlessScalingConfiguration(float(scaling["min_capacity"]), float(scaling["max_capacity"]))


def snapshot(rec: SnapshotRecord) -> Snapshot:
    return Snapshot(
        db_cluster_snapshot_identifier=rec.snapshot_id,
        db_cluster_identifier=rec.cluster_id,
        status=rec.status,
        snapshot_type=rec.snapshot_type,
        engine_version=rec.engine_version,
        snapshot_create_time=rec.created,
        allocated_storage=rec.allocated_storage,
        storage_encrypted=False,
        tags=dict(rec.tags),
    )


# -- dry run ---------------------------------------------------------------------------------------------------
def dry(result: T, **changes: Any) -> T:
    """``result`` as a dry run projects it: status ``dry-run``, plus ``changes``."""
    return dataclasses.replace(result, **{**changes, "status": DRY_RUN})


def projected_instance(cl: ClusterRecord, spec: InstanceSpec) -> Instance:
    return Instance(
        db_instance_identifier=spec.instance_id,
        db_cluster_identifier=cl.cluster_id,
        status=DRY_RUN,
        db_instance_class=spec.instance_class,
        is_cluster_writer=cl.writer_id is None,
        endpoint_address=HOST,
        endpoint_port=0,
        availability_zone=spec.availability_zone or LOCAL_AZ,
        promotion_tier=spec.promotion_tier,
        engine_version=cl.engine_version,
    )


def projected_restore(new_cluster_id: str, template: ClusterRecord | SnapshotRecord) -> Cluster:
    return Cluster(
        db_cluster_identifier=new_cluster_id,
        status=DRY_RUN,
        engine=ENGINE,
        engine_version=template.engine_version,
        endpoint="",
        reader_endpoint="",
        port=0,
        master_username=template.master_username,
        database_name=template.database_name,
        db_cluster_members=[],
        backup_retention_period=1,
        preferred_backup_window="03:00-04:00",
        storage_encrypted=False,
        deletion_protection=False,
    )


def projected_snapshot(cl: ClusterRecord, snapshot_id: str) -> Snapshot:
    return Snapshot(
        db_cluster_snapshot_identifier=snapshot_id,
        db_cluster_identifier=cl.cluster_id,
        status=DRY_RUN,
        snapshot_type="manual",
        engine_version=cl.engine_version,
    )
