"""The local backend's backup clock, WAL-archive reading (timelines, the unbroken chain, the restorable window,
pruning, leftover temp files) and data copy — on synthetic files, no server."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aurora_kit.backends.local import archive, clock, datacopy
from aurora_kit.backends.local.archive import ArchiveView, CommitIndex, restorable_window, segment_name
from aurora_kit.backends.local.state import BackupRecord
from aurora_kit.errors import InvalidParameterError

T0 = datetime(2030, 1, 1, 10, tzinfo=timezone.utc)


# -- the backup clock ------------------------------------------------------------------------------------------
def test_clock_is_the_wall_clock_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.ENV, raising=False)
    assert abs((clock.now() - clock.wall()).total_seconds()) < 5
    monkeypatch.setenv(clock.ENV, "2030-01-02T03:30:00Z")
    assert clock.now() == datetime(2030, 1, 2, 3, 30, tzinfo=timezone.utc)
    monkeypatch.setenv(clock.ENV, "+2d")
    assert abs((clock.now() - clock.wall() - timedelta(days=2)).total_seconds()) < 5
    # an explicit --now wins over the variable
    assert clock.now("2031-05-05T00:00:00+02:00") == datetime(2031, 5, 4, 22, tzinfo=timezone.utc)
    assert clock.now(T0) == T0
    assert abs((clock.now("-90m") - clock.wall() + timedelta(minutes=90)).total_seconds()) < 5


@pytest.mark.parametrize("bad", ["tomorrow", "2030-01-02T03:30:00", "+2w", "3d", ""])
def test_clock_settings_are_validated(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.ENV, bad or "  x  ")
    with pytest.raises(InvalidParameterError) as info:
        clock.now()
    assert info.value.field == clock.ENV
    with pytest.raises(InvalidParameterError) as info:
        clock.now(bad or "x")
    assert info.value.field == "now"


# -- the archive -----------------------------------------------------------------------------------------------
SWITCH = 0x18  # timeline 1 ended (timeline 2 began) inside segment 0x18


def _archive(tmp_path: Path, segments: list[tuple[int, int]], histories: dict[int, str] | None = None) -> Path:
    arch = tmp_path / "archive"
    arch.mkdir(exist_ok=True)
    for tli, segno in segments:
        (arch / segment_name(tli, segno)).write_bytes(b"x")
    for tli, text in (histories or {}).items():
        (arch / f"{tli:08X}.history").write_text(text)
    return arch


def _two_timelines(tmp_path: Path) -> Path:
    """TL1 0x10..0x1A (0x19, 0x1A: written by the crashed writer after the branch point), TL2 0x18..0x1C."""
    tl1 = [(1, s) for s in range(0x10, 0x1B)]
    tl2 = [(2, s) for s in range(SWITCH, 0x1D)]
    return _archive(tmp_path, tl1 + tl2, {2: f"1\t0/{SWITCH:X}00098\tno recovery target specified\n"})


def test_segment_names_and_lsns() -> None:
    assert segment_name(1, 0x10) == "000000010000000000000010"
    assert segment_name(3, 4096 + 2) == "000000030000000100000002"  # 1 MB segments: 4096 per xlogid
    assert archive.parse_segment("000000030000000100000002") == (3, 4098)
    assert archive.parse_segment("00000002.history") is None
    assert archive.lsn_segno(archive.parse_lsn("0/1800098")) == SWITCH


def test_recovery_reads_each_segment_from_the_newest_timeline_that_began_by_then(tmp_path: Path) -> None:
    view = ArchiveView.read(_two_timelines(tmp_path))
    assert view.ancestry == ((2, SWITCH), (1, 0))
    assert [view.expected_tli(s) for s in (0x10, 0x17, SWITCH, 0x1C)] == [1, 1, 2, 2]
    assert view.reach(1, 0x10) == 0x1C  # 0x10..0x17 on TL1, then TL2 — TL1's 0x19/0x1A never read
    assert view.last_segno == 0x1C
    assert view.dead_branches() == [segment_name(1, 0x19), segment_name(1, 0x1A)]
    assert view.reach(3, 0x10) is None  # a backup of a timeline outside the history


def test_a_missing_segment_ends_the_chain(tmp_path: Path) -> None:
    arch = _two_timelines(tmp_path)
    (arch / segment_name(2, 0x1A)).unlink()
    view = ArchiveView.read(arch)
    assert view.reach(1, 0x10) == 0x19  # TL1's own 0x1A (dead branch) does not stand in for TL2's
    assert view.reach(2, 0x1B) == 0x1C
    assert view.reach(2, 0x1A) is None


def test_dead_branches_wait_for_the_latest_history(tmp_path: Path) -> None:
    arch = _two_timelines(tmp_path)
    (arch / segment_name(3, 0x1D)).write_bytes(b"x")  # timeline 3 began, its history is not archived yet
    view = ArchiveView.read(arch)
    assert not view.history_known
    assert view.dead_branches() == []  # nothing removed on a guess


def _backup(bid: str, segno: int, end: datetime, tli: int = 1) -> BackupRecord:
    lsn = f"0/{segno:X}00028 (file {segment_name(tli, segno)})"
    return BackupRecord(bid, Path("/nowhere") / bid, end - timedelta(seconds=1), end, lsn, taken_at=end)


def _index(tmp_path: Path, commits: dict[int, datetime | None], tli_of: dict[int, int]) -> CommitIndex:
    """A commit-time cache filled in advance: the window needs no pg_waldump (the segments are dummies)."""
    cache = tmp_path / "wal-index.json"
    names = {segment_name(tli_of.get(s, 1), s): (t.isoformat() if t else None) for s, t in commits.items()}
    cache.write_text(json.dumps(names))
    return CommitIndex(cache, "/no/pg_waldump")


def test_the_restorable_window_never_spans_a_missing_segment(tmp_path: Path) -> None:
    arch = _two_timelines(tmp_path)
    commits = {s: T0 + timedelta(minutes=s - 0x10) for s in range(0x10, 0x1D)}
    commits[0x1C] = None  # the last segment holds no commit: the window ends at the one before
    tli_of = {s: 2 for s in range(SWITCH, 0x1D)}
    b1, b2 = (
        _backup("b1", 0x10, T0 + timedelta(seconds=30)),
        _backup("b2", 0x1B, T0 + timedelta(minutes=10, seconds=30), 2),
    )
    full = restorable_window(ArchiveView.read(arch), [b2, b1], _index(tmp_path, commits, tli_of))
    assert (full.earliest, full.bases, full.missing, full.at_end) == (b1.end_time, (b1, b2), None, True)
    assert full.latest == commits[0x1B] - timedelta(microseconds=1)  # just before the last commit

    # a segment missing between the backups: the window starts at the newer backup
    (arch / segment_name(2, 0x1A)).unlink()
    gap = restorable_window(ArchiveView.read(arch), [b1, b2], _index(tmp_path, commits, tli_of))
    assert (gap.earliest, gap.bases, gap.latest) == (b2.end_time, (b2,), full.latest)

    # missing after the newest backup's start: that backup is unusable, the window ends before the gap
    (arch / segment_name(2, 0x1A)).write_bytes(b"x")
    (arch / segment_name(2, 0x1B)).unlink()
    cut = restorable_window(ArchiveView.read(arch), [b1, b2], _index(tmp_path, commits, tli_of))
    assert (cut.earliest, cut.bases, cut.reach) == (b1.end_time, (b1,), 0x1A)
    assert cut.latest == commits[0x1A] - timedelta(microseconds=1)
    assert (cut.missing, cut.at_end) == (segment_name(2, 0x1B), False)


def test_no_commit_after_the_backup_means_no_window_yet(tmp_path: Path) -> None:
    arch = _archive(tmp_path, [(1, 0x10), (1, 0x11)])
    b = _backup("b", 0x10, T0)
    before = {0x10: T0 - timedelta(seconds=1), 0x11: None}
    win = restorable_window(ArchiveView.read(arch), [b], _index(tmp_path, before, {}))
    assert (win.earliest, win.latest) == (T0, None)
    assert restorable_window(ArchiveView.read(arch), [], _index(tmp_path, {}, {})).earliest is None


def test_prune_keeps_history_and_everything_from_the_oldest_backup(tmp_path: Path) -> None:
    arch = _two_timelines(tmp_path)
    (arch / (segment_name(1, 0x11) + ".00000028.backup")).write_text("label")
    (arch / (segment_name(1, 0x18) + ".partial")).write_bytes(b"x")
    removed = archive.prune(arch, 0x12)
    assert sorted(removed) == [segment_name(1, 0x10), segment_name(1, 0x11), segment_name(1, 0x11) + ".00000028.backup"]
    assert (arch / "00000002.history").exists()
    assert (arch / (segment_name(1, 0x18) + ".partial")).exists()


def test_temp_copies_of_killed_archive_commands_are_swept(tmp_path: Path) -> None:
    arch = _archive(tmp_path, [(1, 0x10)])
    dead = arch / f".{segment_name(1, 0x11)}.tmp.{2**22 + 12345}"  # above pid_max's default: never alive
    live = arch / f".{segment_name(1, 0x12)}.tmp.{os.getpid()}"
    dead.write_bytes(b"half")
    live.write_bytes(b"in progress")
    assert archive.sweep_temp_files(arch) == [dead.name]
    assert live.exists()
    assert (arch / segment_name(1, 0x10)).exists()


def test_link_chain_takes_the_segments_recovery_reads(tmp_path: Path) -> None:
    view = ArchiveView.read(_two_timelines(tmp_path))
    dest = tmp_path / "clone"
    dest.mkdir()
    assert archive.link_chain(view, 0x16, 0x1A, dest) == 5
    expected = [segment_name(1, 0x16), segment_name(1, 0x17)] + [segment_name(2, s) for s in (SWITCH, 0x19, 0x1A)]
    assert sorted(os.listdir(dest)) == sorted([*expected, "00000002.history"])
    assert os.stat(dest / expected[0]).st_ino == os.stat(view.path / expected[0]).st_ino  # shared, not copied


# -- copying data directories ------------------------------------------------------------------------------------
def test_copy_tree_copies_never_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datacopy, "CHUNK_BYTES", 4096)  # several chunks per file, copied by several threads
    src = tmp_path / "src"
    (src / "base" / "5").mkdir(parents=True)
    big = os.urandom(4096 * 5 + 123)
    (src / "base" / "5" / "16384").write_bytes(big)
    (src / "PG_VERSION").write_text("16\n")
    (src / "empty").write_bytes(b"")
    os.chmod(src / "PG_VERSION", 0o600)
    os.symlink("base", src / "link")
    dest = tmp_path / "dest"
    assert datacopy.copy_tree(src, dest) in ("parallel", "reflink")
    assert (dest / "base" / "5" / "16384").read_bytes() == big
    assert (dest / "empty").read_bytes() == b""
    assert os.readlink(dest / "link") == "base"
    assert os.stat(dest / "PG_VERSION").st_mode & 0o777 == 0o600
    assert os.stat(dest / "base" / "5" / "16384").st_ino != os.stat(src / "base" / "5" / "16384").st_ino
    assert os.stat(src / "base" / "5" / "16384").st_nlink == 1
    with pytest.raises(Exception, match="refusing to overwrite"):
        datacopy.copy_tree(src, dest)
