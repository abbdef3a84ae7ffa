"""Restore verification against a real point-in-time restore of a local cluster, and tampered restores."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from _checks_display import assert_displays

from aurora_kit.backends.base import Cluster
from aurora_kit.checks import seed_pitr_dataset, table_fingerprints, verify_pitr, verify_restore
from aurora_kit.errors import InvalidParameterError, VerificationError
from aurora_kit.specs import InstanceSpec

pytestmark = pytest.mark.integration


def _sql(info: Any, query: str, params: Any = None) -> None:
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        conn.execute(query, params)


@pytest.fixture
def restored_ids(local_backend: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for cid in made:
        local_backend.delete_cluster(
            cid, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True
        )


def test_pitr_is_exact_and_tampering_is_detected(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster], restored_ids: list[str]
) -> None:
    source = local_cluster_factory(readers=0, prefix="pitrsrc")
    cid = source.db_cluster_identifier
    src = local_backend.connection_info(cid, "cluster")
    _sql(src, "CREATE TABLE ck_other (k int PRIMARY KEY, v text)")
    _sql(src, "INSERT INTO ck_other SELECT g, md5(g::text) FROM generate_series(1, 50) g")
    dataset = seed_pitr_dataset(src, batches_before=3, batches_after=3, rows_per_batch=100, gap_s=1.0)
    assert dataset.before.rows == 300
    assert dataset.after.rows == 300
    assert dataset.last_commit_before < dataset.cutoff < dataset.first_write_after
    # the source itself still has the rows written after T: checking it against T must fail
    assert verify_pitr(dataset, src).rows_after_cutoff == 300

    new_id = f"{cid}-pitr"
    restored_ids.append(new_id)
    local_backend.restore_to_point_in_time(
        cid, new_id, restore_time=dataset.cutoff, instances=[InstanceSpec(instance_id=f"{new_id}-1")]
    )
    dst = local_backend.connection_info(new_id, "cluster")

    report = verify_pitr(dataset, dst)
    assert report.problems() == []
    assert report.restored is not None
    assert report.restored.rows == 300
    assert report.restored.checksum == dataset.before.checksum
    report.assert_ok()
    assert_displays(report)

    # table by table, the source "as of T" (rows carry their write time) equals the restore
    as_of_t = verify_restore(src, dst, ["aurora_kit_pitr_seed"], time_column="written_at", as_of=dataset.cutoff)
    as_of_t.assert_ok()
    # the unfiltered source has 300 more rows than the restore: a plain comparison must say so
    now = verify_restore(src, dst, ["aurora_kit_pitr_seed", "ck_other"])
    assert [(t.table, t.status) for t in now.mismatched] == [("public.aurora_kit_pitr_seed", "row count differs")]
    assert_displays(now)
    with pytest.raises(VerificationError, match="row count differs"):
        now.assert_ok()

    before_tamper = table_fingerprints(dst)
    # a restore missing a row
    _sql(dst, "DELETE FROM aurora_kit_pitr_seed WHERE id = 5")
    missing = verify_pitr(dataset, dst)
    assert missing.missing_ids == [5]
    assert missing.extra_count == 0
    with pytest.raises(VerificationError, match="1 rows committed before T are missing"):
        missing.assert_ok()
    # ... with an extra row (dated before T, so only the id gives it away)
    _sql(
        dst,
        "INSERT INTO aurora_kit_pitr_seed VALUES (100000, 'before', 0, 'intruder', %s)",
        [dataset.cutoff - timedelta(seconds=5)],
    )
    extra = verify_pitr(dataset, dst)
    assert extra.extra_ids == [100000]
    assert extra.rows_after_cutoff == 0
    # ... and with the same row count but one value changed: only the checksum can tell
    _sql(dst, "DELETE FROM aurora_kit_pitr_seed WHERE id = 100000")
    _sql(
        dst,
        "INSERT INTO aurora_kit_pitr_seed SELECT 5, phase, batch, payload, written_at FROM aurora_kit_pitr_seed "
        "WHERE id = 6",
    )
    _sql(dst, "UPDATE aurora_kit_pitr_seed SET payload = payload || '!' WHERE id = 7")
    altered = verify_pitr(dataset, dst)
    assert altered.missing_count == 0
    assert altered.extra_count == 0
    assert altered.restored is not None
    assert altered.restored.rows == 300
    with pytest.raises(VerificationError, match="content differs"):
        altered.assert_ok()
    after_tamper = verify_restore(before_tamper, dst)
    assert [t.status for t in after_tamper.mismatched] == ["content differs"]
    # a table missing from the restore is reported, not skipped
    _sql(dst, "DROP TABLE ck_other")
    gone = verify_restore(before_tamper, dst)
    assert ("public.ck_other", "missing in restore") in [(t.table, t.status) for t in gone.mismatched]


def test_fingerprint_argument_errors(local_backend: Any, local_cluster: Cluster) -> None:
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    with pytest.raises(InvalidParameterError):
        table_fingerprints(info, ["no_such_table_anywhere"])
    with pytest.raises(InvalidParameterError):
        table_fingerprints(info, time_column="written_at")


def test_seeding_again_describes_only_the_new_dataset(local_backend: Any, local_cluster: Cluster) -> None:
    """A second seed of the same table (a rerun of the PITR runbook) must not leave rows the new fingerprints and
    id ranges disagree about: the source with its "after" rows removed is exactly what a restore to T holds."""
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    table = "ck_pitr_reseed"
    seed_pitr_dataset(info, table=table, batches_before=2, batches_after=1, rows_per_batch=10, gap_s=0.2)
    dataset = seed_pitr_dataset(info, table=table, batches_before=2, batches_after=1, rows_per_batch=10, gap_s=0.2)
    assert dataset.before.rows == 20
    assert dataset.before_ids == (1, 20)
    assert dataset.after_ids == (21, 30)
    _sql(info, f"DELETE FROM {table} WHERE written_at > %s", [dataset.cutoff])
    report = verify_pitr(dataset, info)
    assert report.problems() == []
    assert report.extra_count == 0
    _sql(info, f"DROP TABLE {table}")
    with pytest.raises(TypeError):
        seed_pitr_dataset(info, table=table, replace=False)  # type: ignore[call-arg]
