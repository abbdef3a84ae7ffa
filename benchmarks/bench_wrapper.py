"""Write gap through the AWS Advanced Python Wrapper vs a plain psycopg client, crash and planned failovers.

Three clients write side by side through every failover of one local cluster (writer + 2 readers), so each
failover is measured by all three at once:

* ``plain``: psycopg 3 on the multi-host cluster endpoint (``target_session_attrs=read-write``), reconnecting after
  an error (:class:`~aurora_kit.checks.write_probe.WriteProbe`, as ``bench_failover.py``);
* ``wrapper-defaults`` and ``wrapper-recommended``: one ``AwsWrapperConnection`` each, unmodified, from the
  cluster's recipe (``aws_wrapper_recipe``), with the wrapper's defaults and with its documented aggressive failover
  profile (:data:`aurora_kit.checks.wrapper_probe.PROFILES`); each gets its own ``cluster_id`` so the two do not
  share one topology monitor.

Each failover starts with fresh wrapper state (a new ``cluster_id`` per run, resources released after it): after it
verified a writer the wrapper ignores topology refresh requests for 10 s and refreshes fast for 30 s, so failovers
a few seconds apart (which Aurora does not do) would measure that window, not a failover. The old writer's rejoin
is part of each failover call, so the next failover starts from a healthy cluster, as in ``bench_failover.py``.

The write gap is the longest pause between two acknowledged writes (RTO as the client sees it); lost commits are
acknowledged ids missing from the new writer. A wrapper run counts as failed unless it raised exactly one
``FailoverSuccessError`` and its next write landed on the new writer.

    .venv/bin/python benchmarks/bench_wrapper.py [--planned 10 --crash 10 --rate 50]
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import sys
import time
from typing import Any

from _common import figure, local_cluster, parser

from aurora_kit.checks import check_endpoint_roles
from aurora_kit.checks.wrapper_probe import WrapperWriteProbe
from aurora_kit.checks.write_probe import WriteProbe

CLIENTS = ("plain", "wrapper-defaults", "wrapper-recommended")


def _probes(backend: Any, cid: str, rate: float, run: int) -> dict[str, WriteProbe]:
    recipe = backend.aws_wrapper_recipe(cid)
    probes: dict[str, WriteProbe] = {"plain": WriteProbe(backend.connection_info(cid, "cluster"), rate=rate)}
    for profile in ("defaults", "recommended"):
        own = dataclasses.replace(recipe, properties={**recipe.properties, "cluster_id": f"{cid}-{profile}-{run}"})
        probes[f"wrapper-{profile}"] = WrapperWriteProbe(own, profile=profile, rate=rate)
    return probes


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--planned", type=int, default=10)
    p.add_argument("--crash", type=int, default=10)
    p.add_argument("--rate", type=float, default=50.0, help="writes/s of each client")
    p.add_argument("--readers", type=int, default=2)
    args = p.parse_args()
    import aws_advanced_python_wrapper

    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    failed_runs = 0
    with local_cluster(args.readers, prefix="wr", root=args.root) as (backend, cluster):
        cid = cluster.db_cluster_identifier
        recipe = backend.aws_wrapper_recipe(cid)
        if not recipe.names_resolve:
            print(f"# the cluster's names do not resolve here (run as root): {recipe.hosts_lines}")
            return 2
        try:
            schedule = ["planned"] * args.planned + ["crash"] * args.crash
            for n, mode in enumerate(schedule, 1):
                t0 = time.perf_counter()
                probes = _probes(backend, cid, args.rate, n)
                with contextlib.ExitStack() as stack:
                    for probe in probes.values():
                        stack.enter_context(probe)
                    result = backend.failover(cid, mode=mode)  # type: ignore[arg-type]
                roles = check_endpoint_roles(backend, cid, connections=10)
                line = [f"{n:2d} {mode:7s} {result.old_writer} -> {result.new_writer}:"]
                for client, probe in probes.items():
                    report = probe.report
                    assert report is not None
                    ok = report.lost == 0 and report.recovered and report.writers[-1:] == [result.new_writer]
                    successes = getattr(probe, "failover_successes", None)
                    if successes is not None:
                        ok = ok and successes == 1 and probe.failover_writers == [result.new_writer]  # type: ignore[attr-defined]
                    failed_runs += 0 if ok else 1
                    rows.setdefault((client, mode), []).append(
                        {
                            "gap_s": float(report.rto_s or 0.0),
                            "lost": float(report.lost),
                            "acked": float(len(report.acks)),
                            "failover_errors": float(successes or 0),
                        }
                    )
                    line.append(
                        f"{client} gap {report.rto_s or 0:.3f}s lost {report.lost}"
                        + ("" if successes is None else f" FailoverSuccessError x{successes}")
                        + ("" if ok else f" PROBLEM {report.errors_by_kind}")
                    )
                failed_runs += 0 if roles.ok else 1
                aws_advanced_python_wrapper.release_resources()  # this run's monitors: the next starts afresh
                print(
                    " | ".join(line)
                    + f" | roles {'ok' if roles.ok else roles.problems()} | wall {time.perf_counter() - t0:.1f}s"
                )
        finally:
            aws_advanced_python_wrapper.release_resources()

    total_lost = 0
    for (client, mode), values in rows.items():
        gaps = sorted(v["gap_s"] for v in values)
        lost = int(sum(v["lost"] for v in values))
        total_lost += lost
        key = f"wrapper_bench.{client}.{mode}"
        figure(f"{key}.runs", len(values))
        figure(f"{key}.gap_p50_s", statistics.median(gaps), "s")
        figure(f"{key}.gap_max_s", gaps[-1], "s")
        figure(f"{key}.acked_total", int(sum(v["acked"] for v in values)))
        figure(f"{key}.lost_commits_total", lost)
        if client != "plain":
            figure(f"{key}.failover_success_errors_total", int(sum(v["failover_errors"] for v in values)))
    figure("wrapper_bench.lost_commits_total", total_lost)
    figure("wrapper_bench.failed_runs", failed_runs)
    return 0 if total_lost == 0 and failed_runs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
