"""PITR restore of ~1 GiB on the local backend vs ``cp -a`` of the same data directory (ratio), with the
restore checked for exactness (rows ≤ T present, rows > T absent, checksums equal).

    .venv/bin/python benchmarks/bench_pitr.py [--size-gib 1.0]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from _common import figure, local_cluster, parser

from aurora_kit.checks import seed_pitr_dataset, table_fingerprints, verify_pitr
from aurora_kit.specs import InstanceSpec


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--size-gib", type=float, default=1.0)
    p.add_argument("--chunk-rows", type=int, default=500_000)
    args = p.parse_args()
    target = int(args.size_gib * 2**30)
    with local_cluster(0, prefix="pitr", root=args.root) as (backend, cluster):
        cid = cluster.db_cluster_identifier
        src = backend.connection_info(cid, "cluster")
        t0 = time.perf_counter()
        with psycopg.connect(src.conninfo, autocommit=True, **src.kwargs()) as conn:
            conn.execute("CREATE TABLE bench_big (id bigint PRIMARY KEY, pad text NOT NULL)")
            start = 1
            size = 0
            while size < target:
                conn.execute(
                    "INSERT INTO bench_big SELECT g, repeat(md5(g::text), 6) FROM generate_series(%s::bigint, %s) g",
                    [start, start + args.chunk_rows - 1],
                )
                start += args.chunk_rows
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                size = int(row[0]) if row else 0
            conn.execute("CHECKPOINT")
            data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        figure("pitr.load_s", time.perf_counter() - t0, "s")
        figure("pitr.database_bytes", size)
        dataset = seed_pitr_dataset(src, batches_before=5, batches_after=5, rows_per_batch=200, gap_s=1.0)
        expected_big = table_fingerprints(src, ["bench_big"])["public.bench_big"]

        new_id = f"{cid}-r"
        t0 = time.perf_counter()
        backend.restore_to_point_in_time(
            cid, new_id, restore_time=dataset.cutoff, instances=[InstanceSpec(instance_id=f"{new_id}-1")]
        )
        restore_s = time.perf_counter() - t0
        dst = backend.connection_info(new_id, "cluster")
        report = verify_pitr(dataset, dst)
        got_big = table_fingerprints(dst, ["bench_big"])["public.bench_big"]
        print(report)
        print(f"bench_big: source {expected_big}, restored {got_big}")

        with tempfile.TemporaryDirectory(prefix="aurora_kit_cp_", dir="/tmp") as tmp:
            dest = Path(tmp) / "copy"
            t0 = time.perf_counter()
            subprocess.run(["cp", "-a", data_dir, str(dest)], check=True)
            cp_s = time.perf_counter() - t0
            subprocess.run(["sync"], check=True)
            cp_sync_s = time.perf_counter() - t0
            du = subprocess.run(["du", "-sb", str(dest)], check=True, capture_output=True, text=True)
            copied = int(du.stdout.split()[0])
        figure("pitr.data_dir_bytes", copied)
        figure("pitr.restore_s", restore_s, "s")
        figure("pitr.cp_a_s", cp_s, "s")
        figure("pitr.cp_a_plus_sync_s", cp_sync_s, "s")
        figure("pitr.ratio_restore_over_cp", restore_s / cp_s, "x")
        figure("pitr.ratio_restore_over_cp_sync", restore_s / cp_sync_s, "x")
        figure("pitr.exact", report.ok)
        figure("pitr.big_table_matches", expected_big.matches(got_big))
        return 0 if report.ok and expected_big.matches(got_big) else 1


if __name__ == "__main__":
    sys.exit(main())
