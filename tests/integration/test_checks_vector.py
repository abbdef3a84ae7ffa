"""pgvector proof against a real local cluster: extension, index use, recall vs exact — and that it can fail."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from _checks_display import assert_displays

from aurora_kit.backends.base import Cluster
from aurora_kit.checks import (
    ensure_vector_extension,
    measure_recall,
    prove_pgvector,
    vector_extension_status,
    with_options,
)
from aurora_kit.checks.vector import create_vector_index, load_vectors, make_vectors
from aurora_kit.errors import InvalidParameterError, VerificationError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def writer(local_backend: Any, local_cluster: Cluster) -> Any:
    return local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")


def test_extension_created_then_unchanged_and_versions_reported(writer: Any) -> None:
    first = ensure_vector_extension(writer)
    assert first.installed is not None
    assert first.installed == first.default_version
    assert first.installed in first.available_versions
    assert first.action in ("created", "unchanged")
    again = ensure_vector_extension(writer, version=first.installed)
    assert again.action == "unchanged"
    assert again.ok
    status = vector_extension_status(writer)
    assert status.installed == first.installed
    assert "pgvector extension" in status._repr_html_()


def test_extension_version_not_offered_is_rejected_before_any_change(writer: Any) -> None:
    with pytest.raises(InvalidParameterError, match="offers"):
        ensure_vector_extension(writer, version="0.0.1")
    with pytest.raises(InvalidParameterError):
        ensure_vector_extension(writer, version="latest; DROP TABLE x")


def test_hnsw_proof_index_used_and_recall_against_exact(
    writer: Any, local_backend: Any, local_cluster: Cluster
) -> None:
    report = prove_pgvector(writer, rows=4000, dim=16, queries=30, sweep=(10, 40), table="ck_vec_hnsw")
    assert report.index_used, report.plan
    assert "Index Scan using ck_vec_hnsw_hnsw_l2_idx" in report.plan
    assert report.exact_indexes_used == []
    assert "Seq Scan" in report.exact_plan
    assert report.rows == 4000
    assert report.dim == 16
    assert [p.value for p in report.points] == [10, 40]
    assert all(0.0 <= p.recall <= 1.0 for p in report.points)
    report.assert_ok(min_recall=0.9)
    assert_displays(report)
    assert report.summary()["index_used_in_explain"] is True
    assert "recall@10" in report._repr_html_()
    # the same table measured on a reader: the index replicated and answers there too
    reader = local_backend.connection_info(local_cluster.db_cluster_identifier, "reader")
    on_reader = measure_recall(
        reader, "ck_vec_hnsw", make_vectors(10, 16, seed=7), index_name=report.index_name, sweep=(40,)
    )
    assert on_reader.index_used


def test_ivfflat_proof(writer: Any) -> None:
    report = prove_pgvector(writer, rows=4000, dim=8, queries=20, kind="ivfflat", sweep=(1, 4), table="ck_vec_ivf")
    assert report.index_used, report.plan
    assert report.index_kind == "ivfflat"
    assert report.points[-1].recall >= report.points[0].recall


def test_low_recall_is_reported_and_raises(writer: Any) -> None:
    # ef_search=1 returns one candidate per query: recall@10 must collapse to about 0.1
    report = prove_pgvector(writer, rows=4000, dim=16, queries=20, sweep=(1,), table="ck_vec_low")
    assert report.points[0].recall < 0.5
    assert not report.ok
    assert_displays(report)
    with pytest.raises(VerificationError, match="recall@10"):
        report.assert_ok()


def test_dropped_index_fails_the_explain_check(writer: Any) -> None:
    data = make_vectors(4020, 8, seed=3)
    load_vectors(writer, "ck_vec_noidx", data[:4000])
    name, _ = create_vector_index(writer, "ck_vec_noidx")
    with psycopg.connect(writer.conninfo, autocommit=True, **writer.kwargs()) as conn:
        conn.execute(f"DROP INDEX {name}")
    report = measure_recall(writer, "ck_vec_noidx", data[4000:], index_name=name, sweep=(40,))
    assert not report.index_used
    assert "Seq Scan" in report.plan
    with pytest.raises(VerificationError, match="does not use index"):
        report.raise_for_index_unused()
    with pytest.raises(VerificationError):
        report.assert_ok(min_recall=0.0)


def test_extension_update_path_runs_alter_extension_update(writer: Any) -> None:
    """Only the newest pgvector is installable here, so an older installed version is simulated by rewinding
    ``pg_extension.extversion`` (pgvector's 0.8.x update scripts are no-ops) in a scratch database; the update
    itself is the server's real ``ALTER EXTENSION vector UPDATE`` along the shipped script chain."""
    with psycopg.connect(writer.conninfo, autocommit=True, **writer.kwargs()) as conn:
        conn.execute("DROP DATABASE IF EXISTS ck_vec_ext")
        conn.execute("CREATE DATABASE ck_vec_ext")
    scratch = with_options(writer, dbname="ck_vec_ext")
    try:
        created = ensure_vector_extension(scratch)
        assert created.action == "created"
        assert created.installed_before is None
        with psycopg.connect(scratch.conninfo, autocommit=True, **scratch.kwargs()) as conn:
            conn.execute("UPDATE pg_extension SET extversion = '0.8.0' WHERE extname = 'vector'")
        with pytest.raises(InvalidParameterError):
            ensure_vector_extension(scratch, version="0.7.9")  # no update path from 0.8.0
        partial = ensure_vector_extension(scratch, version="0.8.3")
        assert (partial.installed_before, partial.installed, partial.action) == ("0.8.0", "0.8.3", "updated")
        full = ensure_vector_extension(scratch)
        assert (full.installed_before, full.installed, full.action) == ("0.8.3", created.installed, "updated")
        assert full.ok
    finally:
        with psycopg.connect(writer.conninfo, autocommit=True, **writer.kwargs()) as conn:
            conn.execute("DROP DATABASE IF EXISTS ck_vec_ext WITH (FORCE)")
