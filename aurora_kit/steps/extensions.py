"""03-extensions: install or upgrade pgvector on the writer, then prove the HNSW index by recall@k and speed-up
against exact search."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import __all__ as _common
from aurora_kit.steps.common import check_step

if TYPE_CHECKING:
    from aurora_kit.checks.vector import ExtensionReport, VectorProofReport
    from aurora_kit.runbook import Run


@check_step("pgvector extension")
def install_pgvector(run: Run) -> ExtensionReport:
    """``CREATE EXTENSION vector`` / ``ALTER EXTENSION vector UPDATE`` to the server's default version on the
    writer, as the master user (on Aurora ``rds_superuser`` creates extensions; the IAM user cannot); in a dry run
    only the status is read."""
    from aurora_kit.checks import vector

    info = run.backend.master_connection_info(run.params.cluster_id, "cluster")  # extensions: the master user's
    if run.params.dry_run:
        print("dry run: extension status only, nothing installed")
        return vector.vector_extension_status(info)
    return vector.ensure_vector_extension(info)


@check_step("pgvector index proof")
def prove_pgvector(run: Run) -> VectorProofReport:
    """Synthetic dataset → HNSW index → recall@k / QPS / speed-up against exact search (sizes from ``pgvector``)."""
    from aurora_kit.checks import vector

    s = run.section("pgvector")
    return vector.prove_pgvector(
        run.backend.connection_info(run.params.cluster_id, "cluster"),
        rows=s.rows,
        dim=s.dim,
        k=s.k,
        queries=s.queries,
        m=s.hnsw_m,
        ef_construction=s.hnsw_ef_construction,
        sweep=tuple(s.ef_search),
        min_recall=s.min_recall,
        ensure_extension=False,
    )


__all__ = [*_common, "install_pgvector", "prove_pgvector"]
