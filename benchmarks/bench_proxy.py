"""Write gap through the proxy vs the cluster endpoint, crash and planned failovers, and the write gap of a rolling
instance-class change: the figures behind 08-scale and 09-proxy, on the local backend.

One local cluster (writer + 2 readers) with a proxy (locally PgBouncer, configured as ``09-proxy`` does: transaction
pooling, reloaded on every topology change). Every failover is measured by two write probes side by side
(:func:`aurora_kit.checks.proxy.compare_failover`): one on the cluster endpoint (psycopg on the libpq multi-host
conninfo, ``target_session_attrs=read-write``, reconnecting after an error) and one through the proxy. Then
``--class-changes`` rolling class changes (alternating ``db.r6g.large`` and ``db.r6g.xlarge``; readers one at a
time, a planned failover to a changed reader, then the old writer, as ``08-scale`` does), each under the same two
probes: its write gap is the longest pause of either over the whole change.

The write gap is the longest pause between two acknowledged writes (RTO as the client sees it); lost commits are
acknowledged ids missing from the new writer. RDS Proxy claims failovers up to 66 % shorter for its clients, because
they do not wait for the cluster endpoint's DNS record (5 s TTL) to move; locally the cluster endpoint is a libpq
multi-host conninfo that finds the new writer by itself (no DNS, no TTL), so the local proxy can only match it: the
figures show by how much it does.

    .venv/bin/python benchmarks/bench_proxy.py [--planned 10 --crash 10 --class-changes 3 --rate 100]
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from _common import figure, local_cluster, parser

from aurora_kit.checks.proxy import compare_failover
from aurora_kit.checks.write_probe import WriteProbe
from aurora_kit.rules import class_change_order
from aurora_kit.specs import ProxySpec
from aurora_kit.steps.common import failover_candidates

CLASSES = ("db.r6g.xlarge", "db.r6g.large")


def _class_change(backend: Any, cid: str, proxy_name: str, target: str, rate: float) -> dict[str, Any]:
    """One rolling class change to ``target`` under a probe on the cluster endpoint and one through the proxy."""
    cluster = backend.describe_cluster(cid)
    instances = {i.db_instance_identifier: i for i in backend.describe_instances(cid)}
    members = failover_candidates(cluster, instances)
    steps = class_change_order(members, [m.instance_id for m in members if m.instance_class != target])
    probes = {
        "cluster": WriteProbe(backend.connection_info(cid, "cluster"), rate=rate),
        "proxy": WriteProbe(backend.proxy_connection_info(proxy_name), rate=rate, prepared=False),
    }
    for probe in probes.values():
        probe.start()
    t0 = time.perf_counter()
    try:
        for step in steps:
            for probe in probes.values():
                probe.mark(f"{step.action} {step.instance_id}")
            if step.action == "modify":
                backend.modify_instance(cid, step.instance_id, instance_class=target)
            else:
                backend.failover(cid, target_instance_id=step.instance_id, mode="planned")
    finally:
        reports = {name: probe.stop() for name, probe in probes.items()}
    return {"seconds": time.perf_counter() - t0, "steps": len(steps), "reports": reports}


def _summarise(key: str, gaps: list[float]) -> None:
    ordered = sorted(gaps)
    figure(f"{key}.gap_p50_s", statistics.median(ordered), "s")
    figure(f"{key}.gap_max_s", ordered[-1], "s")


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--planned", type=int, default=10)
    p.add_argument("--crash", type=int, default=10)
    p.add_argument("--class-changes", type=int, default=3)
    p.add_argument("--rate", type=float, default=100.0, help="writes/s of each probe")
    args = p.parse_args()

    failed_runs = 0
    lost_total = 0
    gaps: dict[tuple[str, str], list[float]] = {}
    connections: dict[tuple[str, str], list[int]] = {}
    with local_cluster(2, prefix="px", root=args.root) as (backend, cluster):
        cid = cluster.db_cluster_identifier
        spec = ProxySpec(proxy_name=f"{cid}-proxy", read_only_endpoint=f"{cid}-proxy-ro", require_tls=False)
        t0 = time.perf_counter()
        proxy = backend.create_proxy(cid, spec)
        print(f"# proxy {proxy.db_proxy_name} targets AVAILABLE in {time.perf_counter() - t0:.2f}s")
        try:
            schedule = ["planned"] * args.planned + ["crash"] * args.crash
            for n, mode in enumerate(schedule, 1):
                result, report = compare_failover(backend, cid, spec.proxy_name, mode=mode, rate=args.rate)  # type: ignore[arg-type]
                line = [f"{n:2d} {mode:7s} {result.old_writer} -> {result.new_writer}:"]
                for name, probe in (("cluster", report.direct), ("proxy", report.proxied)):
                    gap = float(probe.rto_s or 0.0)
                    ok = probe.lost == 0 and probe.recovered and probe.writers[-1:] == [result.new_writer]
                    failed_runs += 0 if ok else 1
                    lost_total += probe.lost
                    gaps.setdefault((name, mode), []).append(gap)
                    connections.setdefault((name, mode), []).append(probe.connections)
                    line.append(
                        f"{name} gap {gap:.3f}s lost {probe.lost} connections {probe.connections}"
                        + ("" if ok else f" PROBLEM {probe.errors_by_kind}")
                    )
                print(" | ".join(line), flush=True)
            for n in range(args.class_changes):
                target = CLASSES[n % 2]
                change = _class_change(backend, cid, spec.proxy_name, target, args.rate)
                line = [f"class change {n + 1} to {target}: {change['steps']} steps in {change['seconds']:.1f}s"]
                for name, probe in change["reports"].items():
                    gap = float(probe.rto_s or 0.0)
                    ok = probe.lost == 0 and probe.recovered
                    failed_runs += 0 if ok else 1
                    lost_total += probe.lost
                    gaps.setdefault((name, "class_change"), []).append(gap)
                    line.append(f"{name} gap {gap:.3f}s lost {probe.lost}")
                gaps.setdefault(("whole", "class_change"), []).append(change["seconds"])
                print(" | ".join(line), flush=True)
        finally:
            backend.delete_proxy(spec.proxy_name)

    for mode in ("planned", "crash", "class_change"):
        for name in ("cluster", "proxy"):
            if (name, mode) not in gaps:
                continue
            key = f"proxy_bench.{mode}.{name}"
            figure(f"{key}.runs", len(gaps[(name, mode)]))
            _summarise(key, gaps[(name, mode)])
            if (name, mode) in connections:
                figure(f"{key}.connections_max", max(connections[(name, mode)]))
        if ("proxy", mode) in gaps:  # the same failover seen by both: how much longer the proxy's client waited
            excess = sorted(p - c for c, p in zip(gaps[("cluster", mode)], gaps[("proxy", mode)], strict=True))
            figure(f"proxy_bench.{mode}.proxy_excess_p50_s", statistics.median(excess), "s")
            figure(f"proxy_bench.{mode}.proxy_excess_max_s", excess[-1], "s")
        if mode != "class_change" and ("proxy", mode) in gaps:
            direct, proxied = statistics.median(gaps[("cluster", mode)]), statistics.median(gaps[("proxy", mode)])
            figure(f"proxy_bench.{mode}.reduction_p50", (1 - proxied / direct) if direct else 0.0)
    if ("whole", "class_change") in gaps:
        figure("proxy_bench.class_change.duration_p50_s", statistics.median(gaps[("whole", "class_change")]), "s")
    figure("proxy_bench.lost_commits_total", lost_total)
    figure("proxy_bench.failed_runs", failed_runs)
    return 0 if lost_total == 0 and failed_runs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
