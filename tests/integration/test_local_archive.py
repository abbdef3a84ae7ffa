"""The WAL archive script (never overwrites, durable, quoted paths) and root dirs unsafe for shell/conninfo."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aurora_kit.backends.local.config import archive_script
from aurora_kit.errors import InvalidParameterError

pytestmark = pytest.mark.integration

SEGMENT = "000000010000000000000007"


def _script(tmp_path: Path) -> tuple[Path, Path]:
    # a directory name a shell would split or expand if the script did not quote it
    archive = tmp_path / "arch ive $HOME `x`"
    archive.mkdir()
    script = tmp_path / "archive_wal.sh"
    script.write_text(archive_script(archive))
    script.chmod(0o700)
    return script, archive


def _archive(script: Path, source: Path, name: str = SEGMENT) -> int:
    return subprocess.run([str(script), str(source), name], capture_output=True, check=False).returncode


def test_archive_script_archives_a_new_segment(tmp_path: Path) -> None:
    script, archive = _script(tmp_path)
    wal = tmp_path / "wal"
    wal.write_bytes(b"A" * 8192)
    assert _archive(script, wal) == 0
    assert (archive / SEGMENT).read_bytes() == b"A" * 8192
    assert sorted(p.name for p in archive.iterdir()) == [SEGMENT]  # no temp file left behind


def test_archive_script_accepts_an_identical_rearchive_and_refuses_a_different_file(tmp_path: Path) -> None:
    script, archive = _script(tmp_path)
    (archive / SEGMENT).write_bytes(b"A" * 8192)
    same = tmp_path / "same"
    same.write_bytes(b"A" * 8192)
    other = tmp_path / "other"
    other.write_bytes(b"B" * 8192)
    assert _archive(script, same) == 0  # PostgreSQL re-archives after a crash
    assert _archive(script, other) != 0
    assert (archive / SEGMENT).read_bytes() == b"A" * 8192  # never overwritten
    assert sorted(p.name for p in archive.iterdir()) == [SEGMENT]


def test_archive_script_never_overwrites_when_the_file_appears_during_the_copy(tmp_path: Path) -> None:
    """The existence check and the final link are separate steps: a file created between them must survive."""
    script, archive = _script(tmp_path)
    wal = tmp_path / "wal"
    wal.write_bytes(b"B" * 8192)
    # simulate the race: a 'cp' on PATH that first lets another archiver win, then copies
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_cp = bin_dir / "cp"
    fake_cp.write_text(f'#!/bin/sh\nprintf AAAA > {shlex.quote(str(archive / SEGMENT))}\nexec /bin/cp "$@"\n')
    fake_cp.chmod(0o755)
    proc = subprocess.run(
        [str(script), str(wal), SEGMENT],
        capture_output=True,
        check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    assert (archive / SEGMENT).read_bytes() == b"AAAA"
    assert sorted(p.name for p in archive.iterdir()) == [SEGMENT]


@pytest.mark.parametrize("bad", ["with space", "quote'", "dollar$x", "back`tick", "new\nline"])
def test_root_dirs_unsafe_for_shell_or_conninfo_are_refused(tmp_path: Path, bad: str) -> None:
    from aurora_kit.backends.local import LocalBackend

    with pytest.raises(InvalidParameterError) as excinfo:
        LocalBackend(root_dir=tmp_path / bad)
    assert excinfo.value.field == "root_dir"
    assert not (tmp_path / bad).exists()


# -- every node archives (archive_mode=always): an old timeline's segment at its end --------------------------------
SEG_BYTES = 1 << 20
SWITCH_SEGMENT = "000000010000000000000066"  # timeline 1 ended at 0/6600098, inside this segment
HISTORY = "1\t0/6600098\tno recovery target specified\n"


def _segment(path: Path, prefix: bytes, tail: bytes) -> Path:
    """A 1 MB segment file: ``prefix`` up to the switch point's offset (0x98), then ``tail`` repeated."""
    body = prefix[:0x98].ljust(0x98, b"P")
    path.write_bytes(body + (tail * SEG_BYTES)[: SEG_BYTES - len(body)])
    return path


def test_nodes_tails_of_an_ended_timeline_are_accepted_when_they_agree_up_to_its_end(tmp_path: Path) -> None:
    """A reader that followed the timeline switch archives the old timeline's last segment under its full name,
    each node with its own bytes past the switch point: the second copy is accepted (and the first kept) only
    when a later timeline's history says the old one ended in it and both agree up to that point."""
    script, archive = _script(tmp_path)
    node = tmp_path / "pg_wal"
    node.mkdir()
    first = _segment(archive / SWITCH_SEGMENT, b"", b"A")
    other_tail = _segment(node / SWITCH_SEGMENT, b"", b"B")
    assert _archive(script, other_tail, SWITCH_SEGMENT) != 0  # no history yet: a different file is refused
    (node / "00000002.history").write_text(HISTORY)  # the history as the node fetched it (not archived yet)
    assert _archive(script, other_tail, SWITCH_SEGMENT) == 0
    (archive / "00000002.history").write_text(HISTORY)
    (node / "00000002.history").unlink()
    assert _archive(script, other_tail, SWITCH_SEGMENT) == 0  # the archived history says the same
    assert first.read_bytes()[-1:] == b"A"  # never overwritten
    other_prefix = _segment(node / "x", b"Q", b"B")
    assert _archive(script, other_prefix, SWITCH_SEGMENT) != 0  # different WAL before the switch point: refused
    before = _segment(archive / "000000010000000000000065", b"", b"A")
    assert _archive(script, _segment(node / "y", b"", b"B"), before.name) != 0  # not past timeline 1's end
    dead = _segment(node / "000000010000000000000067", b"", b"C")
    assert _archive(script, dead, dead.name) == 0  # wholly past the end (a dead branch): accepted, not stored
    assert not (archive / dead.name).exists()
    assert sorted(p.name for p in archive.iterdir()) == [
        "000000010000000000000065",
        SWITCH_SEGMENT,
        "00000002.history",
    ]


def test_one_node_copies_the_others_wait_for_its_copy(tmp_path: Path) -> None:
    """Every node archives every segment: a node finding another's claim waits for that copy and compares it
    instead of copying again; a claim whose copier is gone (a crashed node) is taken over."""
    script, archive = _script(tmp_path)
    wal = tmp_path / "wal"
    wal.write_bytes(b"A" * 8192)
    claim = archive / f".{SEGMENT}.claim"
    holder = subprocess.Popen(["sleep", "30"])
    try:
        claim.mkdir()
        (claim / "pid").write_text(f"{holder.pid}\n")
        waiting = subprocess.Popen([str(script), str(wal), SEGMENT])
        time.sleep(0.3)
        assert waiting.poll() is None  # waits while the copier lives
        (archive / SEGMENT).write_bytes(b"A" * 8192)  # the copier's result
        assert waiting.wait(timeout=10) == 0
        assert claim.exists()  # not its claim: left alone
    finally:
        holder.kill()
        holder.wait()
    shutil.rmtree(claim)
    (archive / SEGMENT).unlink()
    dead = subprocess.Popen(["true"])
    dead.wait()
    claim.mkdir()
    (claim / "pid").write_text(f"{dead.pid}\n")  # its copier died mid-copy
    assert _archive(script, wal) == 0
    assert (archive / SEGMENT).read_bytes() == b"A" * 8192
    assert sorted(p.name for p in archive.iterdir()) == [SEGMENT]  # the dead claim is gone, no temp file left


def test_the_sweep_removes_only_what_dead_archive_commands_left(tmp_path: Path) -> None:
    from aurora_kit.backends.local.archive import sweep_temp_files

    _, archive = _script(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (archive / f".{SEGMENT}.tmp.{dead.pid}").write_bytes(b"half a segment")
    (archive / f".{SEGMENT}.tmp.{os.getpid()}").write_bytes(b"a live copy")
    for name, pid in (("000000010000000000000008", dead.pid), ("000000010000000000000009", os.getpid())):
        (archive / f".{name}.claim").mkdir()
        (archive / f".{name}.claim" / "pid").write_text(str(pid))
    (archive / ".00000001000000000000000A.claim").mkdir()  # no pid yet: a copier that just started
    removed = sweep_temp_files(archive)
    assert sorted(removed) == sorted([f".{SEGMENT}.tmp.{dead.pid}", ".000000010000000000000008.claim"])
    assert sweep_temp_files(archive, claim_grace_s=0) == [".00000001000000000000000A.claim"]


def test_an_archive_that_cannot_be_written_fails_the_attempt_at_once(tmp_path: Path) -> None:
    """No claim can be made (the archive path is not a directory one can create entries in; as root, a file in
    its place): the command fails at once and PostgreSQL retries later; it never waits for ever (a fast shutdown
    waits for the archiver's last attempt)."""
    script, archive = _script(tmp_path)
    wal = tmp_path / "wal"
    wal.write_bytes(b"A" * 8192)
    archive.rmdir()
    archive.write_text("not a directory")
    started = time.monotonic()
    assert _archive(script, wal) != 0
    assert time.monotonic() - started < 5
