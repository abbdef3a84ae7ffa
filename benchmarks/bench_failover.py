"""Failover RTO and lost commits on the local backend: ≥ 10 planned + 10 crash failovers, each under a 100/s
write probe through the cluster endpoint (acknowledged commits read back from the new writer).

    .venv/bin/python benchmarks/bench_failover.py [--planned 10 --crash 10 --rate 100]
"""

from __future__ import annotations

import statistics
import sys
import time

from _common import figure, local_cluster, parser

from aurora_kit.checks import check_endpoint_roles, probe_failover


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--planned", type=int, default=10)
    p.add_argument("--crash", type=int, default=10)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--readers", type=int, default=2)
    args = p.parse_args()
    results: dict[str, list[dict[str, float]]] = {"planned": [], "crash": []}
    failed_runs = 0
    with local_cluster(args.readers, prefix="fo", root=args.root) as (backend, cluster):
        cid = cluster.db_cluster_identifier
        schedule = ["planned"] * args.planned + ["crash"] * args.crash
        for n, mode in enumerate(schedule, 1):
            t0 = time.perf_counter()
            result, report = probe_failover(backend, cid, mode=mode, rate=args.rate)  # type: ignore[arg-type]
            wall = time.perf_counter() - t0
            s = report.summary()
            roles = check_endpoint_roles(backend, cid, connections=10)
            ok = report.ok and roles.ok
            failed_runs += 0 if ok else 1
            results[mode].append(
                {
                    "rto_s": float(s["rto_s"] or 0.0),
                    "rto_server_s": float(s["rto_server_s"] or 0.0),
                    "control_plane_s": result.control_plane_seconds,
                    "lost": float(s["lost"]),
                    "acked": float(s["acknowledged"]),
                    "in_doubt": float(s["in_doubt"]),
                }
            )
            print(
                f"{n:2d} {mode:7s} {result.old_writer} -> {result.new_writer}: RTO {s['rto_s']:.3f}s "
                f"(server {s['rto_server_s']:.3f}s), control plane {result.control_plane_seconds:.2f}s, "
                f"acked {s['acknowledged']}, lost {s['lost']}, in doubt {s['in_doubt']}, "
                f"errors {s['errors_by_kind']}, roles {'ok' if roles.ok else roles.problems()}, wall {wall:.1f}s"
                + ("" if ok else f"  PROBLEMS: {report.problems() + roles.problems()}")
            )
    total_lost = 0
    for mode, rows in results.items():
        if not rows:
            continue
        rtos = sorted(r["rto_s"] for r in rows)
        lost = int(sum(r["lost"] for r in rows))
        total_lost += lost
        figure(f"failover.{mode}.runs", len(rows))
        figure(f"failover.{mode}.rto_median_s", statistics.median(rtos), "s")
        figure(f"failover.{mode}.rto_min_s", rtos[0], "s")
        figure(f"failover.{mode}.rto_max_s", rtos[-1], "s")
        figure(f"failover.{mode}.control_plane_median_s", statistics.median(r["control_plane_s"] for r in rows), "s")
        figure(f"failover.{mode}.acked_total", int(sum(r["acked"] for r in rows)))
        figure(f"failover.{mode}.lost_commits_total", lost)
    figure("failover.lost_commits_total", total_lost)
    figure("failover.failed_runs", failed_runs)
    return 0 if total_lost == 0 and failed_runs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
