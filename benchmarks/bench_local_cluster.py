"""Local backend figures: cluster create time (writer + 2 readers), and planned / crash failover RTO seen by a
client writing continuously through the cluster endpoint, with the number of acknowledged commits lost.

RTO = the largest gap between two consecutive acknowledged inserts (last one before the outage, first one after).
Lost = acknowledged ids missing on the new writer afterwards. Run as root or as a normal user:

    .venv/bin/python benchmarks/bench_local_cluster.py [--runs 5] [--root /tmp/somewhere]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from _common import figure

from aurora_kit.backends.local import LocalBackend
from aurora_kit.specs import ClusterSpec


class Writer(threading.Thread):
    """Insert 1, 2, 3... through the cluster endpoint as fast as possible; reconnect after any error."""

    def __init__(self, backend: LocalBackend, cluster_id: str) -> None:
        super().__init__(daemon=True)
        self.info = backend.connection_info(cluster_id, "cluster")
        self.acked: list[tuple[int, float]] = []
        self.errors = 0
        self.stopping = threading.Event()
        with psycopg.connect(self.info.conninfo, autocommit=True, **self.info.kwargs()) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (id bigint PRIMARY KEY)")
            row = conn.execute("SELECT COALESCE(max(id), 0) FROM bench_probe").fetchone()
        self.next_id = int(row[0]) + 1 if row else 1

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.info.conninfo, autocommit=True, **self.info.kwargs())
                conn.execute("INSERT INTO bench_probe VALUES (%s)", (self.next_id,))
                self.acked.append((self.next_id, time.monotonic()))
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            self.next_id += 1
        if conn is not None:
            conn.close()

    def wait_acks(self, count: int, timeout: float = 30.0) -> None:
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"writer stalled ({self.errors} errors)")
            time.sleep(0.005)

    def gap(self) -> float:
        times = [t for _, t in self.acked]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def lost(self) -> int:
        with psycopg.connect(self.info.conninfo, autocommit=True, **self.info.kwargs()) as conn:
            present = {r[0] for r in conn.execute("SELECT id FROM bench_probe").fetchall()}
        return sum(1 for i, _ in self.acked if i not in present)


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):6.3f} s   max {max(values):6.3f} s   (n={len(values)})"


# the targets: client-seen RTO medians, and no acknowledged commit lost
TARGET_RTO_S = {"planned": 1.0, "crash": 3.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--root", type=Path, default=None, help="default: a fresh temporary dir under /tmp")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="aurora_kit_bench_", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    backend = LocalBackend(root_dir=root)
    created: list[str] = []
    try:
        create_times: list[float] = []
        for n in range(args.runs):
            cid = f"bench-{os.getpid()}-{n}"
            started = time.monotonic()
            backend.create_cluster(ClusterSpec.with_readers(cid, 2, deletion_protection=False))
            create_times.append(time.monotonic() - started)
            created.append(cid)
            if n:  # keep the first cluster for the failovers
                backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True)
                created.remove(cid)
        cid = created[0]
        results: dict[str, dict[str, list[float]]] = {}
        steps: dict[str, dict[str, list[float]]] = {}
        for mode in ("planned", "crash"):
            rto: list[float] = []
            control: list[float] = []
            lost: list[float] = []
            phases: dict[str, list[float]] = {}
            for _ in range(args.runs):
                writer = Writer(backend, cid)
                writer.start()
                writer.wait_acks(200)
                result = backend.failover(cid, mode=mode)  # type: ignore[arg-type]
                writer.wait_acks(200)
                writer.stopping.set()
                writer.join(timeout=30)
                rto.append(writer.gap())
                control.append(result.control_plane_seconds)
                lost.append(writer.lost())
                for name, at in backend.last_failover_phases.marks:
                    phases.setdefault(name, []).append(at)
            results[mode] = {"rto": rto, "control": control, "lost": lost}
            steps[mode] = phases
        cpus = os.cpu_count()
        load = os.getloadavg()[0]
        print(
            f"aurora_kit local backend — PostgreSQL {backend.describe_cluster(cid).engine_version}, "
            f"{cpus} CPUs, load avg {load:.2f}"
        )
        print(f"create cluster (writer + 2 readers):  {summary(create_times)}")
        for mode, r in results.items():
            print(f"{mode:>7} failover, client RTO:       {summary(r['rto'])}")
            print(f"{mode:>7} failover, whole operation:  {summary(r['control'])}  (incl. old writer rejoining)")
            print(f"{mode:>7} failover, lost commits:     {int(sum(r['lost']))} acknowledged commits lost")
            timeline = ", ".join(f"{name} {statistics.median(at):.3f}" for name, at in steps[mode].items())
            print(f"{'':>7} steps (median s from start): {timeline}")
        figure("create_cluster_median_s", statistics.median(create_times), "s")
        missed: list[str] = []
        for mode, r in results.items():
            median_rto = statistics.median(r["rto"])
            lost_total = int(sum(r["lost"]))
            figure(f"{mode}_rto_median_s", median_rto, "s")
            figure(f"{mode}_lost_commits", lost_total)
            if median_rto > TARGET_RTO_S[mode] or lost_total:
                missed.append(f"{mode}: RTO median {median_rto:.3f}s (target {TARGET_RTO_S[mode]}s), lost {lost_total}")
        if missed:
            print("TARGET MISSED: " + "; ".join(missed))
            return 1
    finally:
        for cid in created:
            backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True)
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
