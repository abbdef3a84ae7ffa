"""Replica lag on the local backend (writer + 2 sync-quorum readers): p50/p95/p99/max per reader, idle and under a
background write load.

    .venv/bin/python benchmarks/bench_replica_lag.py [--samples 1000 --load-writers 2]
"""

from __future__ import annotations

import sys
import threading

import psycopg
from _common import figure, local_cluster, parser

from aurora_kit.checks import measure_replica_lag


def _load(info: object, stop: threading.Event, counter: list[int]) -> None:
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:  # type: ignore[attr-defined]
        while not stop.is_set():
            conn.execute("INSERT INTO bench_load (pad) SELECT repeat('x', 200) FROM generate_series(1, 20)")
            counter[0] += 20


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--interval", type=float, default=0.005)
    p.add_argument("--load-writers", type=int, default=2)
    args = p.parse_args()
    worst = 0.0
    with local_cluster(2, prefix="lag", root=args.root) as (backend, cluster):
        cid = cluster.db_cluster_identifier
        for phase in ("idle", "loaded"):
            stop = threading.Event()
            counter = [0]
            threads = []
            if phase == "loaded":
                info = backend.connection_info(cid, "cluster")
                with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS bench_load (id bigserial PRIMARY KEY, pad text)")
                threads = [
                    threading.Thread(target=_load, args=(info, stop, counter), daemon=True)
                    for _ in range(args.load_writers)
                ]
                for t in threads:
                    t.start()
            report = measure_replica_lag(backend, cid, samples=args.samples, interval_s=args.interval, timeout_s=10)
            stop.set()
            for t in threads:
                t.join()
            print(f"## {phase}" + (f" ({counter[0]} rows inserted by {args.load_writers} writers)" if threads else ""))
            print(report)
            for name, reader in report.readers.items():
                s = reader.stats()
                for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
                    figure(f"lag.{phase}.{name}.{key}", float(s[key] or 0.0), "ms")
                figure(f"lag.{phase}.{name}.not_visible", reader.not_visible)
                worst = max(worst, float(s["p99_ms"] or 0.0))
            if not report.ok:
                print("problems:", report.problems())
    figure("lag.worst_p99_ms", worst, "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
