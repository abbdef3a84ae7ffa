"""Data-plane verification: measurements that run unchanged on both backends through endpoints alone.

Each check returns a result object that renders as a table in a notebook (``_repr_html_``), gives plain JSON
figures for the audit record (``summary()``), can be plotted where a picture says more (``plot()``), and raises
:class:`~aurora_kit.errors.VerificationError` with the evidence from ``assert_ok()`` when the claim fails.

============================  =======================================  ==========================================
claim                         run                                      result
============================  =======================================  ==========================================
endpoints route by role       ``check_endpoint_roles(backend, cid)``   :class:`EndpointRoleReport`
readers keep up               ``measure_replica_lag(backend, cid)``    :class:`ReplicaLagReport`
failover loses no commit      ``with WriteProbe(info): failover()``    :class:`WriteProbeReport`
the seed's pool behaves       ``check_pool(backend, cid, endpoint)``   :class:`PoolCheckReport`
pre-ping survives failover    ``check_pre_ping_recovery(info, act)``   :class:`PrePingReport`
a restore has the data        ``verify_restore(src, restored)``        :class:`RestoreReport`
PITR is exact at T            ``seed_pitr_dataset`` → ``verify_pitr``  :class:`PitrReport`
pgvector index is used, good  ``prove_pgvector(info)``                 :class:`VectorProofReport`
============================  =======================================  ==========================================
"""

from __future__ import annotations

from aurora_kit.checks._common import with_options
from aurora_kit.checks._display import CheckResult
from aurora_kit.checks.endpoints import EndpointRoleReport, check_endpoint_roles, check_endpoint_roles_at
from aurora_kit.checks.lag import ReplicaLagReport, measure_replica_lag, measure_replica_lag_at
from aurora_kit.checks.pooling import (
    SEED_POOL,
    PoolCheckReport,
    PrePingReport,
    check_pool,
    check_pre_ping_recovery,
    make_engine,
    run_pool_check,
)
from aurora_kit.checks.restore import (
    PitrReport,
    RestoreReport,
    SeededDataset,
    TableFingerprint,
    seed_pitr_dataset,
    table_fingerprints,
    verify_pitr,
    verify_restore,
)
from aurora_kit.checks.vector import (
    ExtensionReport,
    VectorProofReport,
    create_vector_index,
    ensure_vector_extension,
    load_vectors,
    make_vectors,
    measure_recall,
    prove_pgvector,
    vector_extension_status,
)
from aurora_kit.checks.write_probe import WriteProbe, WriteProbeReport, probe_failover

__all__ = [
    "SEED_POOL",
    "CheckResult",
    "EndpointRoleReport",
    "ExtensionReport",
    "PitrReport",
    "PoolCheckReport",
    "PrePingReport",
    "ReplicaLagReport",
    "RestoreReport",
    "SeededDataset",
    "TableFingerprint",
    "VectorProofReport",
    "WriteProbe",
    "WriteProbeReport",
    "check_endpoint_roles",
    "check_endpoint_roles_at",
    "check_pool",
    "check_pre_ping_recovery",
    "create_vector_index",
    "ensure_vector_extension",
    "load_vectors",
    "make_engine",
    "make_vectors",
    "measure_recall",
    "measure_replica_lag",
    "measure_replica_lag_at",
    "probe_failover",
    "prove_pgvector",
    "run_pool_check",
    "seed_pitr_dataset",
    "table_fingerprints",
    "vector_extension_status",
    "verify_pitr",
    "verify_restore",
    "with_options",
]
