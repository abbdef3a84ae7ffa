"""Continuous backup on real processes: no WAL gap across crash failovers, an honest restorable window, automated
backups on the schedule with retention that expires (the backup clock), and what deleting a cluster does to them.

Heavy by nature (a 64 MB load, crash failovers, restores): each test restores only what it has to prove."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from plugins.local_cluster import ContinuousWriter

from aurora_kit.backends.local import clock
from aurora_kit.checks import table_fingerprints
from aurora_kit.errors import InvalidStateError, RestoreWindowError
from aurora_kit.specs import InstanceSpec

pytestmark = pytest.mark.integration


def _conn(backend: Any, cluster_id: str) -> psycopg.Connection[Any]:
    info = backend.connection_info(cluster_id, "cluster")
    return psycopg.connect(info.conninfo, autocommit=True, **info.kwargs())


def _now(backend: Any, cluster_id: str) -> datetime:
    with _conn(backend, cluster_id) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


@contextmanager
def _restored(backend: Any, source: str, new_id: str, **target: Any) -> Iterator[str]:
    backend.restore_to_point_in_time(source, new_id, instances=[InstanceSpec(instance_id=f"{new_id}-1")], **target)
    try:
        yield new_id
    finally:
        backend.delete_cluster(new_id, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True)


def _pause_archiver(backend: Any, cluster_id: str, instance_id: str) -> psutil.Process:
    """SIGSTOP the instance's archiver: from here it archives nothing (as a writer whose archiver lags behind a
    bulk load); the crash that follows kills it like every other process of that instance."""
    ctl = backend.nodes.controller(cluster_id, instance_id)
    archiver = next(p for p in ctl.processes() if "archiver" in " ".join(p.cmdline()))
    archiver.send_signal(signal.SIGSTOP)
    return archiver


def _wait_segments(backend: Any, cluster_id: str, count: int, timeout: float = 30.0) -> None:
    """Wait until the writer has moved ``count`` WAL segments on (the writes fill them)."""
    query = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"
    with _conn(backend, cluster_id) as conn:
        start = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
        deadline = time.monotonic() + timeout
        while int(conn.execute(query).fetchone()[0]) // 2**20 < start // 2**20 + count:  # type: ignore[index]
            assert time.monotonic() < deadline, f"the writes did not fill {count} segments in {timeout} s"
            time.sleep(0.05)


def _archive_names(backend: Any, cluster_id: str) -> list[str]:
    return sorted(os.listdir(backend.nodes.paths(cluster_id).archive))


def _stale_temp_files(backend: Any, cluster_id: str) -> list[str]:
    """Temp copies in the archive whose archive command is gone (a live archiver's copy in progress is fine)."""
    names = _archive_names(backend, cluster_id)
    return [n for n in names if ".tmp." in n and not psutil.pid_exists(int(n.rsplit(".", 1)[1]))]


def _state_and_dirs(backend: Any) -> tuple[Any, list[str]]:
    return backend.store.read(), sorted(os.listdir(backend.root / "clusters"))


# -- no gap across crash failovers -----------------------------------------------------------------------------
def test_a_crash_right_after_a_bulk_load_loses_no_wal_and_restores_are_exact(
    local_backend: Any, local_cluster_factory: Any
) -> None:
    """The issue's reproduction: ≥ 64 MB acknowledged while the writer's archiver is behind (paused: it archives
    nothing of the load), then the writer is SIGKILLed. The readers archive what they received, so the archive
    has every segment; restores to a time before, inside and after the failover are all exact."""
    cid = local_cluster_factory(2, prefix="gap").db_cluster_identifier
    writer = local_backend.store.cluster(cid).writer_id
    with _conn(local_backend, cid) as conn:
        conn.execute("CREATE TABLE bulk (id bigint PRIMARY KEY, pad text NOT NULL)")
        paused = _pause_archiver(local_backend, cid, writer)
        (start,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone() or (None,)
        conn.execute("INSERT INTO bulk SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 330000) g")
        row = conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn, clock_timestamp()", (start,)).fetchone()
        assert row is not None
        loaded, before = row
        assert loaded >= 64 * 2**20, f"only {loaded} bytes of WAL"
    expected = table_fingerprints(local_backend.connection_info(cid, "cluster"), ["bulk"])
    time.sleep(0.05)
    result = local_backend.failover(cid, mode="crash")
    assert not paused.is_running() or paused.status() == psutil.STATUS_ZOMBIE
    inside = result.started_at + (result.completed_at - result.started_at) / 2
    with _conn(local_backend, cid) as conn:
        conn.execute("CREATE TABLE after_failover (id int PRIMARY KEY)")
        conn.execute("INSERT INTO after_failover SELECT generate_series(1, 100)")
        time.sleep(0.02)
        after = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        time.sleep(0.02)
        conn.execute("INSERT INTO after_failover SELECT generate_series(101, 200)")

    assert not _stale_temp_files(local_backend, cid), "a temp copy of the killed archive command was left behind"
    status = local_backend.backup_status(cid)
    assert status.missing_segment is None
    cluster = local_backend.describe_cluster(cid)
    assert cluster.earliest_restorable_time is not None
    assert cluster.earliest_restorable_time < before

    for name, target, after_rows in (("b", before, None), ("i", inside, None), ("a", after, 100)):
        with _restored(local_backend, cid, f"{cid}-{name}", restore_time=target) as new_id:
            info = local_backend.connection_info(new_id, "cluster")
            got = table_fingerprints(info, ["bulk"])
            assert got["public.bulk"].matches(expected["public.bulk"]), name
            with _conn(local_backend, new_id) as conn:
                if after_rows is None:
                    assert conn.execute("SELECT to_regclass('after_failover')").fetchone() == (None,), name
                else:
                    ids = conn.execute("SELECT min(id), max(id), count(*) FROM after_failover").fetchone()
                    assert ids == (1, after_rows, after_rows), name


def test_repeated_crash_failovers_under_steady_writes_keep_the_chain_whole(
    local_backend: Any, local_cluster_factory: Any
) -> None:
    """Steady ~MB/s writes through three crash failovers, the writer's archiver behind each time: the chain stays
    unbroken and a restore to the latest restorable time holds every acknowledged commit."""
    cid = local_cluster_factory(2, prefix="steady").db_cluster_identifier
    with _conn(local_backend, cid) as conn:  # every insert carries 4 kB: ~1-2 MB/s of WAL on a small machine
        conn.execute(
            "CREATE TABLE steady (id bigint PRIMARY KEY, at timestamptz DEFAULT now(), "
            "pad text DEFAULT repeat('x', 4000))"
        )
        conn.execute("ALTER TABLE steady ALTER COLUMN pad SET STORAGE EXTERNAL")  # stored as is: 4 kB of WAL
    with ContinuousWriter(local_backend, cid, table="steady") as writer:
        for _ in range(3):
            writer.wait_acks(50, timeout=30)
            _pause_archiver(local_backend, cid, local_backend.store.cluster(cid).writer_id)
            _wait_segments(local_backend, cid, 2)  # completed segments the crashed writer never archives
            local_backend.failover(cid, mode="crash")
        writer.wait_acks(50, timeout=30)
    acked = {i for i, _ in writer.acked}
    assert not writer.missing(local_backend, cid)
    assert local_backend.backup_status(cid).missing_segment is None
    assert not _stale_temp_files(local_backend, cid)
    with (
        _restored(local_backend, cid, f"{cid}-latest", use_latest_restorable_time=True) as new_id,
        _conn(local_backend, new_id) as conn,
    ):
        restored = {r[0] for r in conn.execute("SELECT id FROM steady").fetchall()}
    assert acked <= restored, f"acknowledged commits missing from the restore: {sorted(acked - restored)[:10]}"


# -- the window is honest --------------------------------------------------------------------------------------
def test_a_missing_segment_shrinks_the_window_and_a_restore_past_it_creates_nothing(
    local_backend: Any, local_cluster_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = local_cluster_factory(0, prefix="hole").db_cluster_identifier
    archive = local_backend.nodes.paths(cid).archive
    segments = []
    with _conn(local_backend, cid) as conn:
        conn.execute("CREATE TABLE t (id int)")
        for i in range(4):  # four segments, each with a commit
            conn.execute("INSERT INTO t VALUES (%s)", (i,))
            segments.append(conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0])  # type: ignore[index]
            conn.execute("SELECT pg_switch_wal()")
        late = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO t VALUES (99)")
        last = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]  # type: ignore[index]
    deadline = time.monotonic() + 30
    while not all((archive / s).exists() for s in [*segments, last]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    whole = local_backend.describe_cluster(cid)
    assert whole.latest_restorable_time is not None
    assert whole.latest_restorable_time > late

    (archive / segments[2]).unlink()  # lost: the chain from the only backup ends before it
    cut = local_backend.describe_cluster(cid)
    assert cut.earliest_restorable_time == whole.earliest_restorable_time
    assert cut.latest_restorable_time is not None
    assert cut.latest_restorable_time < late  # never spans the gap
    assert local_backend.backup_status(cid).missing_segment == segments[2]
    before = _state_and_dirs(local_backend)
    with pytest.raises(RestoreWindowError):
        local_backend.restore_to_point_in_time(cid, f"{cid}-x", restore_time=late)
    assert _state_and_dirs(local_backend) == before  # refused before anything was created
    # "latest" is the honest latest: just before the last commit ahead of the gap (row 1's; the stop record)
    with (
        _restored(local_backend, cid, f"{cid}-l", use_latest_restorable_time=True) as new_id,
        _conn(local_backend, new_id) as conn,
    ):
        assert conn.execute("SELECT array_agg(id) FROM t").fetchone() == ([0],)

    # the next automated backup starts a new unbroken chain: the window begins at it
    monkeypatch.setenv(clock.ENV, "+1d")
    report = local_backend.maintain(cid)[0]
    assert report.taken is not None
    healed = local_backend.describe_cluster(cid)
    assert healed.earliest_restorable_time is not None
    assert healed.latest_restorable_time is not None
    assert healed.earliest_restorable_time > late
    assert healed.latest_restorable_time > healed.earliest_restorable_time
    assert local_backend.backup_status(cid).missing_segment is None


# -- automated backups: schedule, retention, catch-up ----------------------------------------------------------
def test_automated_backups_follow_the_window_and_expire_with_the_retention_period(
    local_backend: Any, local_cluster_factory: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Days of schedule in seconds with the backup clock: due once the window opens, one a day, taken from the
    reader, caught up by the next mutating call, expired after the retention period (and its WAL with it), and a
    restore before the new earliest restorable time refused."""
    from aurora_kit.cli import main

    monkeypatch.setenv(clock.ENV, "2030-01-01T10:00:00Z")
    cluster = local_cluster_factory(1, prefix="sched", backup_retention_period=1, preferred_backup_window="03:00-04:00")
    cid, reader = cluster.db_cluster_identifier, cluster.reader_ids[0]
    auto = local_backend.describe_snapshots(cid, snapshot_type="automated")
    assert [s.db_cluster_snapshot_identifier for s in auto] == [f"rds:{cid}-2030-01-01-10-00"]
    with _conn(local_backend, cid) as conn:
        conn.execute("CREATE TABLE s (id int)")
        conn.execute("INSERT INTO s VALUES (1)")
    old_target = _now(local_backend, cid)  # restorable only from the creation backup

    assert local_backend.maintain(cid, now="2030-01-02T02:59:00Z")[0].taken is None  # the window is not open yet
    pending = local_backend.backup_status(cid, now="2030-01-02T02:59:00Z")
    assert (pending.due_now, pending.next_due.isoformat()) == (False, "2030-01-02T03:00:00+00:00")
    first = local_backend.maintain(cid, now="2030-01-02T03:05:00Z")[0]
    assert first.taken == f"rds:{cid}-2030-01-02-03-05"
    assert local_backend.maintain(cid, now="2030-01-02T03:40:00Z")[0].taken is None  # one a day
    b1 = local_backend.store.cluster(cid).last_backup
    assert b1 is not None
    assert b1.source == reader  # taken from the streaming reader
    with _conn(local_backend, cid) as conn:
        conn.execute("INSERT INTO s VALUES (2)")

    # a day later the next mutating call catches up: backup taken, the creation backup expires with its WAL
    b0_path = local_backend.store.cluster(cid).backups[0].path
    oldest_segment = min(n for n in _archive_names(local_backend, cid) if len(n) == 24)
    monkeypatch.setenv(clock.ENV, "2030-01-03T03:10:00Z")
    local_backend.modify_cluster(cid, deletion_protection=False)
    ids = [s.db_cluster_snapshot_identifier for s in local_backend.describe_snapshots(cid, snapshot_type="automated")]
    assert ids == [f"rds:{cid}-2030-01-02-03-05", f"rds:{cid}-2030-01-03-03-10"]
    assert not b0_path.exists()
    assert oldest_segment not in _archive_names(local_backend, cid)  # WAL only the expired backup needed
    assert min(n for n in _archive_names(local_backend, cid) if len(n) == 24) == b1.start_segment
    described = local_backend.describe_cluster(cid)
    assert described.earliest_restorable_time == b1.end_time  # moved forward
    assert old_target < b1.end_time
    before = _state_and_dirs(local_backend)
    with pytest.raises(RestoreWindowError):
        local_backend.restore_to_point_in_time(cid, f"{cid}-old", restore_time=old_target)
    assert _state_and_dirs(local_backend) == before
    with pytest.raises(InvalidStateError, match="automated snapshot"):
        local_backend.delete_snapshot(ids[0])

    with _restored(local_backend, cid, f"{cid}-r", use_latest_restorable_time=True) as new_id:
        with _conn(local_backend, new_id) as conn:
            assert conn.execute("SELECT array_agg(id ORDER BY id) FROM s").fetchone() == ([1, 2],)
        # the restored cluster's first automated backup is the base it was restored from: no second copy
        restored_backups = local_backend.store.cluster(new_id).backups
        assert len(restored_backups) == 1
        assert restored_backups[0].start_wal == local_backend.store.cluster(cid).last_backup.start_wal
        assert local_backend.describe_cluster(new_id).latest_restorable_time is not None

    # what an operator sees (the clock is still 2030-01-03T03:10Z)
    root = ["local", "--root", str(local_backend.root)]
    assert main([*root, "maintain", cid, "--now", "2030-01-03T03:20:00Z"]) == 0
    assert f"{cid}: nothing due" in capsys.readouterr().out
    assert main([*root, "status", cid]) == 0
    shown = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in capsys.readouterr().out.splitlines() if "  " in line)
    assert shown["backup schedule"] == "daily in 03:00-04:00 UTC, retention 1 day(s)"
    assert shown["automated backups"] == "2"
    assert shown["last backup"].startswith(f"rds:{cid}-2030-01-03-03-10 (taken 2030-01-03 03:10:00 UTC, from {reader}")
    assert shown["next backup due"] == "2030-01-04 03:00:00 UTC"
    assert shown["earliest restorable"] == f"{b1.end_time:%Y-%m-%d %H:%M:%S} UTC"
    assert shown["latest restorable"] != "-"
    assert shown["WAL archive"].endswith("chain unbroken")


def test_deleting_a_cluster_removes_its_automated_backups_unless_retained(
    local_backend: Any, local_cluster_factory: Any
) -> None:
    gone = local_cluster_factory(0, prefix="del").db_cluster_identifier
    local_backend.delete_cluster(gone, final_snapshot_id=None, skip_final_snapshot=True)
    assert local_backend.describe_snapshots(gone) == []
    assert not [r for r in local_backend.store.load().retained.values() if r.cluster.cluster_id == gone]

    kept = local_cluster_factory(0, prefix="keep", backup_retention_period=1).db_cluster_identifier
    with _conn(local_backend, kept) as conn:
        conn.execute("CREATE TABLE k AS SELECT generate_series(1, 10) AS id")
    local_backend.delete_cluster(kept, final_snapshot_id=None, skip_final_snapshot=True, delete_automated_backups=False)
    assert kept not in {c.db_cluster_identifier for c in local_backend.list_clusters()}
    (retained,) = local_backend.describe_snapshots(kept)
    assert retained.snapshot_type == "automated"
    # restorable after the deletion, to the moment it was deleted (everything was archived first)
    with (
        _restored(local_backend, kept, f"{kept}-r", use_latest_restorable_time=True) as new_id,
        _conn(local_backend, new_id) as conn,
    ):
        assert conn.execute("SELECT count(*) FROM k").fetchone() == (10,)
    # and they expire with the retention period
    reports = local_backend.maintain(now="+3d")
    assert any(r.cluster_id.startswith(f"{kept} (retained") and r.expired for r in reports)
    assert local_backend.describe_snapshots(kept) == []
    assert not list((Path(local_backend.root) / "retained").iterdir())
