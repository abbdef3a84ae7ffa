"""A fleet on one machine: N local clusters verified with 04, in parallel (``aurora-kit run 04 --fleet``) vs one
after another — the plain CLI once per cluster (the baseline) and the fleet with ``--max-parallel 1`` — and the
fleet's own overhead per cluster: what a worker adds to each run outside its kernel (process start to exit, minus
the record's duration) beyond what the plain CLI spends outside its kernel, plus the fleet's fixed cost (loading
and validating the fleet, preflight, the summary: the one-at-a-time wall minus the workers' walls) divided by N.
Measured that way, run by run, rather than as a difference of two totals that the kernels' own variance swamps on
a shared machine.

    .venv/bin/python benchmarks/bench_fleet.py --clusters 8            # ~4 min on 2 cores
    .venv/bin/python benchmarks/bench_fleet.py --clusters 8 --parallel 2 4 8

Every run must pass (exit 1 otherwise). Wall times include kernel starts and sealing, as a DBA waits for them.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _common import figure, parser

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "aurora_kit.cli"]


def _run(argv: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-3000:])
    return wall, done.returncode


def _fleet_doc(audit_dir: Path) -> dict[str, object]:
    folder = sorted((audit_dir / "fleets").iterdir())[-1]
    doc: dict[str, object] = json.loads((folder / "fleet.json").read_text())
    return doc


def _summaries(audit_dir: Path) -> list[dict[str, Any]]:
    """The records' summaries, in the index's order."""
    index = [json.loads(x) for x in (audit_dir / "index.jsonl").read_text().splitlines() if x.strip()]
    return [json.loads((audit_dir / e["dir"] / "summary.json").read_text()) for e in index]


def main() -> int:
    p = parser(__doc__.split("\n")[0] if __doc__ else "")
    p.add_argument("--clusters", type=int, default=8)
    p.add_argument("--readers", type=int, default=1)
    p.add_argument("--parallel", type=int, nargs="*", default=None, help="--max-parallel values (default: N)")
    args = p.parse_args()
    n = args.clusters
    parallels = args.parallel or [n]

    from aurora_kit.backends.local import LocalBackend
    from aurora_kit.fleet import load_fleet
    from aurora_kit.fleet.run import write_parameters
    from aurora_kit.specs import ClusterSpec

    work = Path(tempfile.mkdtemp(prefix="aurora_kit_bench_fleet_", dir="/tmp"))
    work.chmod(0o755)
    root = Path(args.root) if args.root else work / "root"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    backend = LocalBackend(root_dir=root)
    ids = [f"bf-{i}" for i in range(1, n + 1)]
    failed = 0
    try:
        t0 = time.perf_counter()
        for cid in ids:
            backend.create_cluster(ClusterSpec.with_readers(cid, args.readers, deletion_protection=False))
        print(f"# {n} clusters (writer + {args.readers} reader(s)) created in {time.perf_counter() - t0:.1f}s")
        fleet_file = work / "fleet.yaml"
        fleet_file.write_text(
            yaml.safe_dump(
                {
                    "parameters": str(ROOT / "parameters" / "local.yaml"),
                    "defaults": {"local_root": str(root), "readers": args.readers},
                    "clusters": [{"cluster_id": c} for c in ids],
                }
            )
        )
        singles = write_parameters(load_fleet(fleet_file), work / "singles")

        # baseline: the plain CLI once per cluster, one after another
        audit_dir = work / "audit-cli"
        cli_walls = []
        for cid in ids:
            wall, code = _run(["run", "04", "-f", str(singles[cid]), "--audit-dir", str(audit_dir)])
            cli_walls.append(wall)
            failed += code != 0
        cli_total = sum(cli_walls)
        figure(f"fleet_{n}x04_cli_one_after_another_wall_s", cli_total, "s")
        cli_durations = [float(r["duration_s"]) for r in _summaries(audit_dir)]
        cli_outside = statistics.mean(w - d for w, d in zip(cli_walls, cli_durations, strict=True))
        figure("cli_outside_the_kernel_per_run_s", cli_outside, "s")  # process start, imports, preflight, sealing

        results: dict[int, float] = {}
        for parallel in [1, *[x for x in parallels if x != 1]]:
            audit_dir = work / f"audit-fleet-{parallel}"
            argv = ["run", "04", "--fleet", str(fleet_file), "--max-parallel", str(parallel)]
            wall, code = _run([*argv, "--audit-dir", str(audit_dir)])
            failed += code != 0
            doc = _fleet_doc(audit_dir)
            results[parallel] = wall
            clusters: list[dict[str, Any]] = doc["clusters"]  # type: ignore[assignment]
            if parallel == 1:  # one at a time: what the fleet adds to each run, and once per fleet
                outside = statistics.mean(float(c["wall_s"]) - float(c["duration_s"]) for c in clusters)
                fixed = wall - sum(float(c["wall_s"]) for c in clusters)
                figure("fleet_worker_outside_the_kernel_per_run_s", outside, "s")
                figure("fleet_fixed_cost_s", fixed, "s")  # start, load + validate, preflight, summary
                figure("fleet_overhead_per_cluster_s", outside - cli_outside + fixed / n, "s")
            figure(f"fleet_{n}x04_max_parallel_{parallel}_wall_s", wall, "s")
            figure(f"fleet_{n}x04_max_parallel_{parallel}_runbook_time_s", float(str(doc["runbook_time_s"])), "s")
            print(f"#   max_parallel {parallel}: {doc['counts']}")
        best = min(results.values())
        figure(f"fleet_{n}x04_speedup_vs_one_after_another", cli_total / best, "x")
    finally:
        for c in backend.list_clusters():
            backend.delete_cluster(
                c.db_cluster_identifier, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True
            )
        backend.close()
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"# {failed} invocation(s) did not exit 0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
