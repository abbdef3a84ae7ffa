"""pgvector HNSW at 100k × 128 on the local backend: recall@10 vs exact and the speed-up (targets ≥ 0.95, ≥ 10×).

.venv/bin/python benchmarks/bench_hnsw.py [--rows 100000 --dim 128 --queries 200]
"""

from __future__ import annotations

import sys
import time

from _common import figure, local_cluster, parser

from aurora_kit.checks import prove_pgvector


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    args = p.parse_args()
    with local_cluster(0, prefix="hnsw", root=args.root) as (backend, cluster):
        info = backend.connection_info(cluster.db_cluster_identifier, "cluster")
        t0 = time.perf_counter()
        report = prove_pgvector(
            info,
            rows=args.rows,
            dim=args.dim,
            queries=args.queries,
            k=args.k,
            m=args.m,
            ef_construction=args.ef_construction,
            sweep=(10, 20, 40, 80, 160, 320),
            table="bench_hnsw",
            min_recall=0.95,
            min_speedup=10.0,
        )
        print(report)
        headers, rows = report.detail_table()
        print("  ".join(f"{h:>14}" for h in headers))
        for row in rows:
            print("  ".join(f"{c:>14.3f}" if isinstance(c, float) else f"{c!s:>14}" for c in row))
        best = report.best_point()
        figure("hnsw.rows", report.rows)
        figure("hnsw.dim", report.dim)
        figure("hnsw.load_s", report.load_s or 0.0, "s")
        figure("hnsw.build_s", report.build_s or 0.0, "s")
        figure("hnsw.exact_p50_ms", report.exact_p50_ms, "ms")
        figure("hnsw.exact_qps", report.exact_qps, "q/s")
        figure("hnsw.index_used_in_explain", report.index_used)
        if best is not None:
            figure("hnsw.operating_point", f"{best.setting}={best.value}")
            figure("hnsw.recall_at_10", best.recall)
            figure("hnsw.index_p50_ms", best.p50_ms, "ms")
            figure("hnsw.index_qps", best.qps, "q/s")
            figure("hnsw.speedup_vs_exact", best.speedup, "x")
        figure("hnsw.total_s", time.perf_counter() - t0, "s")
        figure("hnsw.targets_met", report.ok)
        return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
