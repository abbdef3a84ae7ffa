"""The WAL archive of a local cluster: what is in it, which WAL chain a restore can replay, and up to when.

File names, as PostgreSQL writes them: ``TTTTTTTTXXXXXXXXYYYYYYYY`` (a segment: timeline, then the segment number in
two halves), ``TTTTTTTT.history`` (a timeline's ancestry: which timeline it branched from, where),
``<segment>.partial`` (the last, unfinished segment of a timeline, archived by the node promoted from it) and
``<segment>.<offset>.backup`` (a base backup's label).

Every node archives (``archive_mode=always``, see :mod:`.config`): a segment the writer completed but had not archived
when it crashed is archived by the readers that received it. The archive is therefore the union of the nodes' WAL.

**The chain a restore replays.** Recovery that follows the latest timeline reads segment ``n`` from the newest
timeline in that timeline's history which began at or before ``n`` (:meth:`ArchiveView.expected_tli`). From a base
backup's start segment, the *reach* is the last segment of the unbroken run of such files; a missing one ends it.
A file of a timeline past the point where that timeline ended (a dead branch: WAL the crashed writer wrote that no
reader received) is never read.

**The restorable window** (:func:`restorable_window`) never spans a missing segment. EarliestRestorableTime is the
end of the oldest automated backup whose chain reaches as far as the newest backup's does; LatestRestorableTime is
just before the last commit (or abort) record in that chain — recovery to T stops at the first commit after T,
so it must find one. Commit times come from ``pg_waldump``, read once per archived segment (segments never change
once archived) and cached in ``wal-index.json`` beside the archive.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from aurora_kit.backends.local.binaries import chown, run_tool
from aurora_kit.backends.local.config import WAL_SEGMENT_MB
from aurora_kit.backends.local.state import BackupRecord
from aurora_kit.errors import BackendOperationError

SEGMENT_BYTES = WAL_SEGMENT_MB << 20
_PER_ID = 0x1_0000_0000 // SEGMENT_BYTES  # segments per "xlogid" (the middle 8 hex digits)

_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")
_SUFFIXED = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.(?:partial|[0-9A-F]{8}\.backup)$")
_TEMP = re.compile(r"^\.(.+)\.tmp\.(\d+)$")
_CLAIM = re.compile(r"^\.(.+)\.claim$")
_XACT = re.compile(r"desc: (?:COMMIT|ABORT)\S*\s+(?:\d+:\s+)?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC")


# -- names -----------------------------------------------------------------------------------------------------
def segment_name(tli: int, segno: int) -> str:
    return f"{tli:08X}{segno // _PER_ID:08X}{segno % _PER_ID:08X}"


def parse_segment(name: str) -> tuple[int, int] | None:
    """(timeline, segment number) of a segment file name, None for anything else."""
    m = _SEGMENT.match(name)
    if not m:
        return None
    return int(m.group(1), 16), int(m.group(2), 16) * _PER_ID + int(m.group(3), 16)


def parse_lsn(text: str) -> int:
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def lsn_segno(lsn: int) -> int:
    return lsn // SEGMENT_BYTES


def parse_history(text: str) -> list[tuple[int, int]]:
    """``(parent timeline, switch point LSN)`` lines of a ``.history`` file, oldest first."""
    out: list[tuple[int, int]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit() and "/" in fields[1]:
            out.append((int(fields[0]), parse_lsn(fields[1])))
    return out


# -- what is archived ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveView:
    """The archive's segments and the latest timeline's ancestry, read once (a directory listing + history files)."""

    path: Path
    segments: frozenset[tuple[int, int]]
    #: (timeline, first segment) of the latest timeline and each ancestor, newest first
    ancestry: tuple[tuple[int, int], ...]
    #: the latest timeline's history file is archived (or there is one timeline): dead branches are known
    history_known: bool

    @classmethod
    def read(cls, archive: Path) -> ArchiveView:
        segments: set[tuple[int, int]] = set()
        histories: dict[int, Path] = {}
        try:
            names = os.listdir(archive)
        except FileNotFoundError:
            names = []
        for name in names:
            seg = parse_segment(name)
            if seg is not None:
                segments.add(seg)
            elif (h := _HISTORY.match(name)) is not None:
                histories[int(h.group(1), 16)] = archive / name
        latest = max([*histories, *(t for t, _ in segments)], default=1)
        ancestry: list[tuple[int, int]] = []
        known = latest == 1 or latest in histories
        if latest in histories:
            lines = parse_history(histories[latest].read_text())
            begins = [0] + [lsn_segno(lsn) for _, lsn in lines]
            ancestry = [(tli, begins[i]) for i, (tli, _) in enumerate(lines)]
            ancestry.append((latest, begins[-1]))
        else:
            ancestry = [(latest, 0)]
        return cls(archive, frozenset(segments), tuple(reversed(ancestry)), known)

    def expected_tli(self, segno: int) -> int:
        """The timeline recovery reads segment ``segno`` from (the newest one that began at or before it)."""
        for tli, begin in self.ancestry:
            if begin <= segno:
                return tli
        return self.ancestry[-1][0]

    def name(self, segno: int) -> str:
        return segment_name(self.expected_tli(segno), segno)

    def present(self, segno: int) -> bool:
        return (self.expected_tli(segno), segno) in self.segments

    @property
    def last_segno(self) -> int | None:
        """The newest segment archived on the timeline recovery would read it from."""
        present = [s for t, s in self.segments if self.expected_tli(s) == t]
        return max(present, default=None)

    def reach(self, tli: int, segno: int) -> int | None:
        """Last segment of the unbroken run from ``segno`` (a base backup's start on timeline ``tli``); None when the
        start itself is missing or ``tli`` is not in the latest timeline's history (a dead branch's backup)."""
        if tli not in {t for t, _ in self.ancestry} or not self.present(segno):
            return None
        while self.present(segno + 1):
            segno += 1
        return segno

    def dead_branches(self) -> list[str]:
        """Archived segments no recovery following the latest timeline can use: of timelines outside its history,
        or past the segment where their timeline ended. Empty while the latest timeline's history is not archived
        (its ancestry is not known yet)."""
        if not self.history_known:
            return []
        tlis = [t for t, _ in self.ancestry]
        dead = []
        for tli, segno in self.segments:
            if tli not in tlis:
                dead.append(segment_name(tli, segno))
                continue
            i = tlis.index(tli)
            if i > 0 and segno > self.ancestry[i - 1][1]:  # the child began in segment ancestry[i - 1][1]
                dead.append(segment_name(tli, segno))
        return sorted(dead)


def backup_start(backup: BackupRecord) -> tuple[int, int] | None:
    """(timeline, segment number) a base backup's WAL starts at."""
    seg = parse_segment(backup.start_segment)
    return seg


# -- commit times ----------------------------------------------------------------------------------------------
#: segments one pg_waldump run reads at most (it decodes every record; a bulk load's segments hold no commit)
BATCH = 64
#: pg_waldump errors that mean the WAL could not be read at all (any other error: the end of what it could decode)
_UNREADABLE = ("could not locate", "could not open", "could not read", "permission denied", "no start wal location")
_STOPPED_AT = re.compile(r"error in WAL record at ([0-9A-F]+/[0-9A-F]+)")
_NOT_FOUND = re.compile(r'could not find file "([0-9A-F]{24})"')
_LSN = re.compile(r"lsn: ([0-9A-F]+/[0-9A-F]+)")


class CommitIndex:
    """The last commit/abort time of each archived segment (``pg_waldump``), cached in ``cache_file``: archived
    segments never change, so each is read once."""

    def __init__(self, cache_file: Path, waldump: str) -> None:
        self.cache_file = cache_file
        self.waldump = waldump
        try:
            self._cache: dict[str, str | None] = json.loads(cache_file.read_text())
        except (FileNotFoundError, ValueError):
            self._cache = {}
        self._dirty = False

    def latest_commit(self, view: ArchiveView, last: int, first: int) -> datetime | None:
        """The latest commit/abort time in segments ``last`` down to ``first`` (as recovery reads them), None when
        there is none. Uncached segments are read in runs of up to :data:`BATCH` on one timeline, newest first."""
        segno = last
        while segno >= first:
            name = view.name(segno)
            if name not in self._cache:
                tli, low = view.expected_tli(segno), segno
                while low > first and segno - low + 1 < BATCH and view.expected_tli(low - 1) == tli:
                    if view.name(low - 1) in self._cache:
                        break
                    low -= 1
                self._scan(view.path, tli, low, segno)
            value = self._cache.get(name)
            if value:
                return datetime.fromisoformat(value)
            segno -= 1
        return None

    def _scan(self, archive: Path, tli: int, first: int, last: int) -> None:
        """Read segments ``first``..``last`` of timeline ``tli`` with one pg_waldump; cache what it got through
        (it stops with an error where the WAL it can decode ends: past the last segment, or earlier)."""
        proc = run_tool(
            [
                self.waldump,
                "--rmgr=Transaction",
                f"--path={archive}",
                f"--timeline={tli}",
                segment_name(tli, first),
                segment_name(tli, last),
            ],
            env={"TZ": "UTC", "PGTZ": "UTC"},
            check=False,
            what=f"pg_waldump {segment_name(tli, first)}..{segment_name(tli, last)}",
        )
        err = proc.stderr.lower()
        if proc.returncode != 0 and any(m in err for m in _UNREADABLE):
            raise BackendOperationError(
                f"pg_waldump could not read the archive {archive}: {proc.stderr.strip()[-500:]}"
            )
        through = last
        if proc.returncode != 0:
            stopped, missing = _STOPPED_AT.search(proc.stderr), _NOT_FOUND.search(proc.stderr)
            if stopped is not None:
                through = min(last, lsn_segno(parse_lsn(stopped.group(1))))
            elif missing is not None and (seg := parse_segment(missing.group(1))) is not None:
                through = min(last, seg[1] - 1)
        found: dict[int, datetime] = {}
        for line in proc.stdout.splitlines():
            lsn, xact = _LSN.search(line), _XACT.search(line)
            if lsn is None or xact is None:
                continue
            segno = lsn_segno(parse_lsn(lsn.group(1)))
            stamp = datetime.fromisoformat(xact.group(1)).replace(tzinfo=timezone.utc)
            found[segno] = max(stamp, found.get(segno, stamp))
        for segno in range(first, through + 1):
            latest = found.get(segno)
            self._cache[segment_name(tli, segno)] = latest.isoformat() if latest else None
            self._dirty = True

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            if name in self._cache:
                del self._cache[name]
                self._dirty = True

    def save(self) -> None:
        """Write the cache (atomically; a failure to write only costs a re-scan later)."""
        if not self._dirty:
            return
        tmp = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self._cache, sort_keys=True))
            os.replace(tmp, self.cache_file)
            self._dirty = False


# -- the restorable window -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """What a point-in-time restore can reach from the archive and the automated backups."""

    earliest: datetime | None
    latest: datetime | None
    #: backups whose chain reaches the end of the window (a restore in the window starts from one), oldest first
    bases: tuple[BackupRecord, ...]
    #: last segment of the unbroken chain
    reach: int | None
    #: the first missing segment, when WAL is archived past it (the window ends before it for good)
    missing: str | None
    #: the chain reaches the newest archived segment: archiving more WAL (a forced switch) extends the window
    at_end: bool


def restorable_window(view: ArchiveView, backups: Sequence[BackupRecord], index: CommitIndex) -> Window:
    """The one restorable window the archive and ``backups`` support, never spanning a missing segment."""
    usable: list[tuple[BackupRecord, int]] = []
    for b in sorted(backups, key=lambda b: b.end_time):
        start = backup_start(b)
        reach = view.reach(*start) if start else None
        if reach is not None:
            usable.append((b, reach))
    last = view.last_segno
    if not usable:
        return Window(None, None, (), None, None, at_end=False)
    reach = max(r for _, r in usable)
    bases = tuple(b for b, r in usable if r == reach)
    earliest = bases[0].end_time
    missing = view.name(reach + 1) if last is not None and last > reach else None
    first = backup_start(bases[0])
    assert first is not None
    stamp = index.latest_commit(view, reach, first[1])
    index.save()
    latest = stamp - timedelta(microseconds=1) if stamp is not None and stamp > earliest else None
    return Window(earliest, latest, bases, reach, missing, at_end=missing is None)


# -- maintenance -----------------------------------------------------------------------------------------------
def prune(archive: Path, keep_from: int) -> list[str]:
    """Remove segments (and their ``.partial`` / ``.backup`` files) before segment ``keep_from``, any timeline;
    timeline history files stay (tiny, and every later timeline's ancestry needs them). Returns what went."""
    removed: list[str] = []
    for name in sorted(os.listdir(archive)):
        m = _SEGMENT.match(name) or _SUFFIXED.match(name)
        if m is None:
            continue
        segno = int(m.group(2), 16) * _PER_ID + int(m.group(3), 16)
        if segno < keep_from:
            with contextlib.suppress(FileNotFoundError):
                (archive / name).unlink()
            removed.append(name)
    return removed


def remove(archive: Path, names: Iterable[str]) -> list[str]:
    removed = []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (archive / name).unlink()
            removed.append(name)
    return removed


def sweep_temp_files(archive: Path, *, claim_grace_s: float = 60.0) -> list[str]:
    """Remove what killed archive commands left (a crashed node takes its archiver's child with it): temporary
    copies ``.<name>.tmp.<pid>`` and copy claims ``.<name>.claim/`` whose process is gone (a claim that never got
    its pid: after ``claim_grace_s``). A live archiver's files are left alone."""
    removed: list[str] = []
    try:
        names = os.listdir(archive)
    except FileNotFoundError:
        return removed
    for name in names:
        path = archive / name
        if (m := _TEMP.match(name)) is not None:
            if psutil.pid_exists(int(m.group(2))):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(name)
        elif _CLAIM.match(name) is not None:
            try:
                owner = (path / "pid").read_text().strip()
            except OSError:
                owner = ""
            if owner.isdigit() and psutil.pid_exists(int(owner)):
                continue
            with contextlib.suppress(FileNotFoundError):
                if not owner and time.time() - path.stat().st_mtime < claim_grace_s:
                    continue
                shutil.rmtree(path)
                removed.append(name)
    return removed


def history_files(archive: Path) -> list[str]:
    return sorted(f for f in os.listdir(archive) if _HISTORY.match(f))


def link_chain(view: ArchiveView, first: int, last: int, dest: Path) -> int:
    """Hard-link (copy across filesystems) segments ``first``..``last`` as recovery reads them, plus every timeline
    history file, from ``view``'s archive into ``dest``; the links keep that WAL whatever the source prunes later.
    Archived files are never written again, so sharing them is safe. Returns the number of segments."""
    names = [view.name(n) for n in range(first, last + 1)] + history_files(view.path)
    for name in names:
        src, target = view.path / name, dest / name
        try:
            os.link(src, target)
        except FileExistsError:
            continue
        except OSError:
            shutil.copy2(src, target)
            chown(target)
    return last - first + 1
