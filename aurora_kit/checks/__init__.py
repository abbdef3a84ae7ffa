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
instances run their class     ``scale.check_instance_settings(...)``   :class:`~.scale.InstanceSettingsReport`
reader endpoint balances      ``scale.check_reader_balance(...)``      :class:`~.scale.ReaderBalanceReport`
proxy shortens a failover     ``proxy.compare_failover(b, cid, px)``   :class:`~.proxy.ProxyFailoverReport`
proxy multiplexes             ``proxy.check_multiplexing(info, ...)``  :class:`~.proxy.MultiplexingReport`
a session SET pins / stays    ``proxy.check_pinning(info, ...)``       :class:`~.proxy.PinningReport`
read-only endpoint → readers  ``proxy.check_read_only_endpoint(...)``  :class:`~.proxy.ReadOnlyEndpointReport`
============================  =======================================  ==========================================
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aurora_kit.checks.common import with_options
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
    from aurora_kit.checks.result import CheckResult
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

# Lazy exports (PEP 562): each name is imported from its module on first use, so a runbook that needs one check
# does not pay for the others' dependencies at kernel start (sqlalchemy for pooling, numpy for vector: ~0.5 s).
_EXPORTS: dict[str, str] = {
    "CheckResult": "aurora_kit.checks.result",
    "EndpointRoleReport": "aurora_kit.checks.endpoints",
    "ExtensionReport": "aurora_kit.checks.vector",
    "PitrReport": "aurora_kit.checks.restore",
    "PoolCheckReport": "aurora_kit.checks.pooling",
    "PrePingReport": "aurora_kit.checks.pooling",
    "ReplicaLagReport": "aurora_kit.checks.lag",
    "RestoreReport": "aurora_kit.checks.restore",
    "SEED_POOL": "aurora_kit.checks.pooling",
    "SeededDataset": "aurora_kit.checks.restore",
    "TableFingerprint": "aurora_kit.checks.restore",
    "VectorProofReport": "aurora_kit.checks.vector",
    "WriteProbe": "aurora_kit.checks.write_probe",
    "WriteProbeReport": "aurora_kit.checks.write_probe",
    "check_endpoint_roles": "aurora_kit.checks.endpoints",
    "check_endpoint_roles_at": "aurora_kit.checks.endpoints",
    "check_pool": "aurora_kit.checks.pooling",
    "check_pre_ping_recovery": "aurora_kit.checks.pooling",
    "create_vector_index": "aurora_kit.checks.vector",
    "ensure_vector_extension": "aurora_kit.checks.vector",
    "load_vectors": "aurora_kit.checks.vector",
    "make_engine": "aurora_kit.checks.pooling",
    "make_vectors": "aurora_kit.checks.vector",
    "measure_recall": "aurora_kit.checks.vector",
    "measure_replica_lag": "aurora_kit.checks.lag",
    "measure_replica_lag_at": "aurora_kit.checks.lag",
    "probe_failover": "aurora_kit.checks.write_probe",
    "prove_pgvector": "aurora_kit.checks.vector",
    "run_pool_check": "aurora_kit.checks.pooling",
    "seed_pitr_dataset": "aurora_kit.checks.restore",
    "table_fingerprints": "aurora_kit.checks.restore",
    "vector_extension_status": "aurora_kit.checks.vector",
    "verify_pitr": "aurora_kit.checks.restore",
    "verify_restore": "aurora_kit.checks.restore",
    "with_options": "aurora_kit.checks.common",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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
