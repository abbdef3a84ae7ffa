"""The backend contract: the same behaviour, asserted the same way, on the ``local`` backend (real PostgreSQL) and
the ``aws`` backend (moto in-process, with the RDS gaps it lacks filled by ``moto_rds_gaps``).

Each test takes ``contract`` — one backend plus how to make a cluster on it — and may not look at which backend it
got: a behaviour that differs between the two is either a bug or a documented trait (``backend.traits``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from aurora_kit.backends.base import ClusterBackend
from aurora_kit.errors import (
    DeletionProtectionError,
    InvalidParameterError,
    RestoreWindowError,
    SnapshotAlreadyExistsError,
)
from aurora_kit.specs import ClusterSpec, InstanceSpec

_ids = itertools.count(1)


@dataclass
class Contract:
    backend: ClusterBackend
    dry: ClusterBackend  # the same backend (same state) with dry_run=True
    zones: list[str | None]
    made: list[str] = field(default_factory=list)

    def spec(self, readers: int = 1, **overrides: Any) -> ClusterSpec:
        cid = f"ct{next(_ids)}"
        overrides.setdefault("deletion_protection", False)
        overrides.setdefault("backup_retention_period", 1)
        return ClusterSpec.with_readers(cid, readers, availability_zones=self.zones, **overrides)

    def create(self, spec: ClusterSpec) -> str:
        self.made.append(spec.cluster_id)
        self.backend.create_cluster(spec)
        return spec.cluster_id


@pytest.fixture(params=[pytest.param("local", marks=pytest.mark.integration), "aws"])
def contract(request: pytest.FixtureRequest) -> Iterator[Contract]:
    with contextlib.ExitStack() as stack:
        c = _contract(request, stack)
        yield c
        existing = {x.db_cluster_identifier for x in c.backend.list_clusters()}
        for cid in c.made:
            if cid in existing:
                c.backend.delete_cluster(
                    cid, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True
                )


def _contract(request: pytest.FixtureRequest, stack: contextlib.ExitStack) -> Contract:
    if request.param == "local":
        from aurora_kit.backends.local import LocalBackend

        real = request.getfixturevalue("local_backend")
        c = Contract(real, LocalBackend(root_dir=real.root, dry_run=True), [None])
    else:
        from moto import mock_aws

        from aurora_kit.backends.aws import AwsBackend, PollSettings

        request.getfixturevalue("aws_credentials")
        stack.enter_context(mock_aws())
        request.getfixturevalue("moto_rds_gaps")
        session = request.getfixturevalue("boto_session")
        clients = {s: session.client(s) for s in ("rds", "secretsmanager", "cloudwatch")}
        fast = PollSettings(initial_delay=0.001, max_delay=0.01, timeout=10, short_timeout=10)
        opts: dict[str, Any] = {"region": "us-east-1", "clients": clients, "poll": fast, "ca_bundle": "/ca.pem"}
        c = Contract(AwsBackend(**opts), AwsBackend(dry_run=True, **opts), ["us-east-1a", "us-east-1b"])
    return c


def test_create_then_describe(contract: Contract) -> None:
    spec = contract.spec(readers=1, backup_retention_period=3, preferred_backup_window="02:00-02:30")
    cid = contract.create(spec)
    cluster = contract.backend.describe_cluster(cid)
    assert cluster.status == "available"
    assert cluster.writer_id == spec.instances[0].instance_id
    assert cluster.reader_ids == [spec.instances[1].instance_id]
    assert cluster.endpoint
    assert cluster.reader_endpoint
    assert (cluster.backup_retention_period, cluster.preferred_backup_window) == (3, "02:00-02:30")
    statuses = {i.db_instance_identifier: i.status for i in contract.backend.describe_instances(cid)}
    assert statuses == dict.fromkeys([i.instance_id for i in spec.instances], "available")
    again = contract.backend.create_cluster(spec)  # identical: returned unchanged
    assert again.db_cluster_identifier == cid


def test_parameters_dynamic_now_static_pending_reboot(contract: Contract) -> None:
    cid = contract.create(contract.spec(readers=1))
    dynamic = contract.backend.apply_parameters(cid, {"log_min_duration_statement": "250"})
    assert [(c.parameter_name, c.apply_method) for c in dynamic.changes] == [
        ("log_min_duration_statement", "immediate")
    ]
    assert dynamic.pending_reboot_instances == []
    static = contract.backend.apply_parameters(cid, {"max_connections": "150"})
    assert [c.apply_method for c in static.changes] == ["pending-reboot"]
    members = [m.db_instance_identifier for m in contract.backend.describe_cluster(cid).db_cluster_members]
    assert sorted(static.pending_reboot_instances) == sorted(members)
    rebooted = contract.backend.reboot_pending(cid)
    writer = contract.backend.describe_cluster(cid).writer_id
    assert [i.db_instance_identifier for i in rebooted][-1] == writer  # readers first, the writer last
    after = contract.backend.describe_cluster(cid).db_cluster_members
    assert {m.db_cluster_parameter_group_status for m in after} == {"in-sync"}
    assert contract.backend.get_parameters(cid, ["max_connections"]) == {"max_connections": "150"}


def test_snapshot_create_list_refuse_duplicate_delete(contract: Contract) -> None:
    cid = contract.create(contract.spec(readers=0))
    snap = contract.backend.create_snapshot(cid, f"{cid}-snap", tags={"purpose": "contract"})
    assert (snap.status, snap.snapshot_type) == ("available", "manual")
    assert f"{cid}-snap" in [s.db_cluster_snapshot_identifier for s in contract.backend.describe_snapshots(cid)]
    with pytest.raises(SnapshotAlreadyExistsError):
        contract.backend.create_snapshot(cid, f"{cid}-snap")
    contract.backend.delete_snapshot(f"{cid}-snap")
    assert f"{cid}-snap" not in [s.db_cluster_snapshot_identifier for s in contract.backend.describe_snapshots(cid)]


@pytest.mark.parametrize("when", ["before the cluster existed", "in the future"])
def test_pitr_outside_the_window_is_refused_creating_nothing(contract: Contract, when: str) -> None:
    cid = contract.create(contract.spec(readers=0))
    now = datetime.now(timezone.utc)
    target = now - timedelta(days=3) if when.startswith("before") else now + timedelta(hours=1)
    before = {c.db_cluster_identifier for c in contract.backend.list_clusters()}
    with pytest.raises(RestoreWindowError):
        contract.backend.restore_to_point_in_time(cid, f"{cid}-pitr", restore_time=target)
    assert {c.db_cluster_identifier for c in contract.backend.list_clusters()} == before


def test_failover_without_a_target_follows_the_rule(contract: Contract) -> None:
    """Promotion tier first (tier 1 beats tier 2 although its name sorts later)."""
    spec = contract.spec(readers=0)
    zones = contract.zones
    instances = [
        InstanceSpec(instance_id=f"{spec.cluster_id}-w", promotion_tier=0, availability_zone=zones[0]),
        InstanceSpec(instance_id=f"{spec.cluster_id}-a", promotion_tier=2, availability_zone=zones[-1]),
        InstanceSpec(instance_id=f"{spec.cluster_id}-b", promotion_tier=1, availability_zone=zones[0]),
    ]
    cid = contract.create(spec.model_copy(update={"instances": instances}))
    result = contract.backend.failover(cid)
    assert (result.old_writer, result.new_writer) == (f"{cid}-w", f"{cid}-b")
    assert contract.backend.describe_cluster(cid).writer_id == f"{cid}-b"


def test_teardown_needs_an_explicit_choice_and_respects_protection(contract: Contract) -> None:
    cid = contract.create(contract.spec(readers=0, deletion_protection=True))
    with pytest.raises(InvalidParameterError, match="exactly one"):
        contract.backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=False)
    with pytest.raises(DeletionProtectionError):
        contract.backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True)
    assert contract.backend.describe_cluster(cid).status == "available"


def test_a_dry_run_plans_the_same_calls_and_makes_none(contract: Contract) -> None:
    spec = contract.spec(readers=1)
    projected = contract.dry.create_cluster(spec)
    assert projected.status == "dry-run"
    operations = [c.operation for c in contract.dry.plan]
    assert "CreateDBCluster" in operations
    assert operations.count("CreateDBInstance") == 2
    assert spec.cluster_id not in {c.db_cluster_identifier for c in contract.backend.list_clusters()}
