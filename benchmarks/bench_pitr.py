"""Point-in-time restore of a ~1 GiB cluster on the local backend vs ``cp -a`` of the same data directory.

The day as it happens: create a cluster, load ~1 GiB, let the day's automated backup happen through the mechanism
users get (``LocalBackend.maintain`` with the backup clock at the next backup window, what ``aurora-kit local
maintain`` runs from cron), keep writing (``--after-mib`` more into the big table, then a time-stamped dataset
around a cut-off T), restore to T. The restore starts from that backup and replays only the WAL after it.

    FIGURE pitr.ratio_restore_over_cp = restore wall time ÷ cp -a of the source's data directory (target ≤ 1.5
                                        at --size-gib ≥ 1; smaller runs are smoke runs, fixed costs dominate)

measured in the same run (three restores and three ``cp -a`` interleaved, the medians count), with exactness at T
verified: rows committed by T present, rows after T absent, checksums of the seeded table and of the 1 GiB table
equal. For comparison, the old worst case (what every restore did before automated backups: replay everything
since the creation backup): a restore to a time after the load but before the day's backup.

    .venv/bin/python benchmarks/bench_pitr.py [--size-gib 1.0] [--after-mib 64] [--readers 0]
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from _common import figure, local_cluster, parser

from aurora_kit.checks import seed_pitr_dataset, table_fingerprints, verify_pitr
from aurora_kit.rules import backup_window_start
from aurora_kit.specs import InstanceSpec

TARGET_RATIO = 1.5
RUNS = 3
REDO = re.compile(r"redo done at .* elapsed: ([0-9.]+) s")


def _grow(conn: psycopg.Connection[Any], first_id: int, target_bytes: int, chunk_rows: int) -> int:
    """Insert rows into bench_big until the database is ``target_bytes``; returns the next id."""
    size = 0
    while size < target_bytes:
        conn.execute(
            "INSERT INTO bench_big SELECT g, repeat(md5(g::text), 6) FROM generate_series(%s::bigint, %s) g",
            [first_id, first_id + chunk_rows - 1],
        )
        first_id += chunk_rows
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        size = int(row[0]) if row else 0
    return first_id


def _cp_a(data_dir: str, attempts: int = 3) -> tuple[float, float, int]:
    """``cp -a`` of ``data_dir`` (a live server's: a file PostgreSQL renames or removes meanwhile fails it, then it
    runs again): (seconds, seconds including a sync, bytes copied)."""
    for attempt in range(1, attempts + 1):
        with tempfile.TemporaryDirectory(prefix="aurora_kit_cp_", dir="/tmp") as tmp:
            dest = Path(tmp) / "copy"
            subprocess.run(["sync"], check=True)
            t0 = time.perf_counter()
            proc = subprocess.run(["cp", "-a", data_dir, str(dest)], capture_output=True, text=True, check=False)
            cp_s = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"# cp -a attempt {attempt} raced the server ({proc.stderr.strip()[:200]}); again")
                continue
            subprocess.run(["sync"], check=True)
            cp_sync_s = time.perf_counter() - t0
            du = subprocess.run(["du", "-sb", str(dest)], check=True, capture_output=True, text=True)
            return cp_s, cp_sync_s, int(du.stdout.split()[0])
    raise RuntimeError(f"cp -a of {data_dir} failed {attempts} times")


def _archiver_caught_up(info: Any, timeout: float = 900.0) -> None:
    """Wait until the writer's archiver has archived every completed segment (a bulk load leaves a backlog)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        conn.execute("SELECT pg_switch_wal()")
        while True:
            row = conn.execute(
                "SELECT last_archived_wal >= pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver"
            ).fetchone()
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the archiver did not catch up")
            time.sleep(0.2)


def _restore(backend: Any, cid: str, new_id: str, target: Any) -> tuple[float, float | None]:
    """Restore to ``target`` with a writer: (wall seconds, seconds PostgreSQL spent replaying WAL, from its log)."""
    subprocess.run(["sync"], check=True)  # no dirty pages of the load left for the restore to wait on
    t0 = time.perf_counter()
    backend.restore_to_point_in_time(
        cid, new_id, restore_time=target, instances=[InstanceSpec(instance_id=f"{new_id}-1")]
    )
    wall = time.perf_counter() - t0
    log = backend.nodes.paths(new_id).log_file(f"{new_id}-1").read_text(errors="replace")
    replay = REDO.search(log)
    return wall, float(replay.group(1)) if replay else None


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--size-gib", type=float, default=1.0)
    p.add_argument("--after-mib", type=float, default=64.0, help="written into the big table after the backup")
    p.add_argument("--chunk-rows", type=int, default=500_000)
    p.add_argument("--readers", type=int, default=0, help="readers (the automated backup is taken from one)")
    p.add_argument("--skip-worst-case", action="store_true", help="no restore from the creation backup")
    args = p.parse_args()
    ok = True
    with local_cluster(args.readers, prefix="pitr", root=args.root) as (backend, cluster):
        cid = cluster.db_cluster_identifier
        src = backend.connection_info(cid, "cluster")
        t0 = time.perf_counter()
        with psycopg.connect(src.conninfo, autocommit=True, **src.kwargs()) as conn:
            conn.execute("CREATE TABLE bench_big (id bigint PRIMARY KEY, pad text NOT NULL)")
            next_id = _grow(conn, 1, int(args.size_gib * 2**30), args.chunk_rows)
            row = conn.execute(
                "SELECT pg_database_size(current_database()), current_setting('data_directory')"
            ).fetchone()
            assert row is not None
            size, data_dir = int(row[0]), str(row[1])
        figure("pitr.load_s", time.perf_counter() - t0, "s")
        figure("pitr.database_bytes", size)
        # a cut-off right after the load: restorable only from the creation backup (the old worst case)
        early = seed_pitr_dataset(src, table="pitr_early", batches_before=3, batches_after=3, rows_per_batch=200)
        big_early = table_fingerprints(src, ["bench_big"])["public.bench_big"]

        # the day's automated backup, as cron's `aurora-kit local maintain` takes it: the clock at the next window
        status = backend.backup_status(cid)
        window_opens = backup_window_start(status.window, status.next_due + timedelta(minutes=1))
        t0 = time.perf_counter()
        (report,) = backend.maintain(cid, now=window_opens + timedelta(minutes=5))
        figure("pitr.automated_backup_s", time.perf_counter() - t0, "s")
        print(f"# maintain: {report.line()}")
        if report.taken is None:
            print("# no automated backup was taken: the benchmark measures nothing it claims", file=sys.stderr)
            return 1
        backup = backend.store.cluster(cid).last_backup
        figure("pitr.backup_bytes", backup.size_bytes)
        figure("pitr.backup_source", backup.source)

        # keep writing, then the seeded cut-off T
        with psycopg.connect(src.conninfo, autocommit=True, **src.kwargs()) as conn:
            start_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
            _grow(conn, next_id, size + int(args.after_mib * 2**20), max(1000, args.chunk_rows // 8))
        dataset = seed_pitr_dataset(src, table="pitr_late", batches_before=5, batches_after=5, rows_per_batch=200)
        with psycopg.connect(src.conninfo, autocommit=True, **src.kwargs()) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", [start_lsn]).fetchone()
            figure("pitr.wal_after_backup_bytes", int(row[0]) if row else 0)
        big_final = table_fingerprints(src, ["bench_big"])["public.bench_big"]
        t0 = time.perf_counter()
        _archiver_caught_up(src)  # the source at rest for the copies: the load's archive backlog is done
        figure("pitr.archive_catch_up_s", time.perf_counter() - t0, "s")

        # restores and copies interleaved (the median of each counts: this machine's I/O is noisy); every restore
        # is checked for exactness at T, the first one against the 1 GiB table's checksum too
        copies, restores, replays, exact_all = [], [], [], True
        got_big = None
        for n in range(1, RUNS + 1):
            copies.append(_cp_a(data_dir))
            new_id = f"{cid}-r{n}"
            restore_s, replay_s = _restore(backend, cid, new_id, dataset.cutoff)
            restores.append(restore_s)
            replays.append(replay_s)
            dst = backend.connection_info(new_id, "cluster")
            exact = verify_pitr(dataset, dst)
            exact_all = exact_all and exact.ok
            if got_big is None:
                print(exact)
                got_big = table_fingerprints(dst, ["bench_big"])["public.bench_big"]
                print(f"# bench_big at T: source {big_final}, restored {got_big}")
            backend.delete_cluster(new_id, final_snapshot_id=None, skip_final_snapshot=True)
        assert got_big is not None
        restore_s = statistics.median(restores)
        cp_s = statistics.median(c[0] for c in copies)
        cp_sync_s = statistics.median(c[1] for c in copies)
        figure("pitr.data_dir_bytes", copies[0][2])
        figure("pitr.restore_s", restore_s, "s")
        figure("pitr.restore_runs_s", " ".join(f"{r:.3f}" for r in restores))
        figure("pitr.restore_replay_runs_s", " ".join("?" if r is None else f"{r:.3f}" for r in replays))
        figure("pitr.cp_a_s", cp_s, "s")
        figure("pitr.cp_a_runs_s", " ".join(f"{c[0]:.3f}" for c in copies))
        figure("pitr.cp_a_plus_sync_s", cp_sync_s, "s")
        figure("pitr.ratio_restore_over_cp", restore_s / cp_s, "x")
        figure("pitr.ratio_restore_over_cp_sync", restore_s / cp_sync_s, "x")
        figure("pitr.exact", exact_all)
        figure("pitr.big_table_matches", big_final.matches(got_big))
        ok = exact_all and big_final.matches(got_big)
        if args.size_gib < 1.0:
            print(f"# --size-gib {args.size_gib} < 1: a smoke run, the {TARGET_RATIO}x target is not judged")
        elif restore_s / cp_s > TARGET_RATIO:
            print(f"# target missed: {restore_s / cp_s:.2f}x > {TARGET_RATIO}x", file=sys.stderr)
            ok = False

        if not args.skip_worst_case:
            worst_id = f"{cid}-w"
            worst_s, worst_replay_s = _restore(backend, cid, worst_id, early.cutoff)
            dst = backend.connection_info(worst_id, "cluster")
            worst_exact = verify_pitr(early, dst)
            worst_big = table_fingerprints(dst, ["bench_big"])["public.bench_big"]
            backend.delete_cluster(worst_id, final_snapshot_id=None, skip_final_snapshot=True)
            figure("pitr.worst_case_restore_s", worst_s, "s")
            figure("pitr.worst_case_replay_s", worst_replay_s if worst_replay_s is not None else "?", "s")
            figure("pitr.worst_case_ratio_over_cp", worst_s / cp_s, "x")
            figure("pitr.worst_case_exact", worst_exact.ok and big_early.matches(worst_big))
            ok = ok and worst_exact.ok and big_early.matches(worst_big)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
