"""Run every benchmark on the local backend, one after another, and print all their figures in one table.

    .venv/bin/python benchmarks/run_all.py            # the issues' sizes (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py --quick    # small sizes: a smoke run of every script (~2 minutes)

Each script prints ``FIGURE name = value unit`` lines and exits non-zero when a target is missed; this exits
non-zero if any script did.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# script -> (full-size arguments, quick arguments)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "bench_local_cluster.py": (["--runs", "5"], ["--runs", "2"]),
    "bench_replica_lag.py": (["--samples", "1000"], ["--samples", "100"]),
    "bench_failover.py": (["--planned", "10", "--crash", "10"], ["--planned", "2", "--crash", "2"]),
    "bench_proxy.py": (
        ["--planned", "10", "--crash", "10", "--class-changes", "3"],
        ["--planned", "2", "--crash", "2", "--class-changes", "1"],
    ),
    "bench_wrapper.py": (["--planned", "10", "--crash", "10"], ["--planned", "2", "--crash", "2"]),
    "bench_hnsw.py": (["--rows", "100000", "--dim", "128"], ["--rows", "10000", "--dim", "32", "--queries", "50"]),
    "bench_pitr.py": (["--size-gib", "1.0"], ["--size-gib", "0.05", "--after-mib", "8", "--chunk-rows", "50000"]),
    "bench_fleet.py": (["--clusters", "8", "--parallel", "2", "4", "8"], ["--clusters", "2"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: check every script runs")
    parser.add_argument("--only", nargs="*", default=None, help="script names to run (default: all)")
    args = parser.parse_args()

    figures: list[tuple[str, str]] = []
    failed: list[str] = []
    for script, (full, quick) in BENCHMARKS.items():
        if args.only and script not in args.only and script.removesuffix(".py") not in args.only:
            continue
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"\n### {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(proc.stdout, end="", flush=True)
        figures += [(script, line) for line in proc.stdout.splitlines() if line.startswith("FIGURE ")]
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"### {script}: {status} in {time.perf_counter() - started:.0f}s", flush=True)
        if proc.returncode != 0:
            failed.append(script)

    print("\n## figures")
    for script, line in figures:
        print(f"{script:<24} {line.removeprefix('FIGURE ')}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
