"""Copying a data directory or base backup the fastest safe way the filesystem offers.

* **reflink** (btrfs, XFS with reflink, bcachefs...): ``cp -a --reflink=always`` shares the blocks copy-on-write, in
  a fraction of the time of a copy; probed once per filesystem (a tiny file copied with ``--reflink=always``).
* otherwise (ext4, overlayfs, tmpfs...) a **parallel copy** on a few threads with ``copy_file_range(2)`` (in-kernel,
  no user-space buffer): files over :data:`CHUNK_BYTES` (relation segments, up to 1 GB) in chunks side by side,
  the many small ones each as one job; mode, ownership and modification time kept.

Never hard links: PostgreSQL writes its files in place, and a link would let the copy write into the original.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aurora_kit.errors import BackendOperationError

CHUNK_BYTES = 64 << 20
#: threads of a parallel copy: the copy is I/O-bound, a few more threads than cores keep the disk busy
WORKERS = max(2, min(4, (os.cpu_count() or 2)))


@functools.lru_cache(maxsize=16)
def reflink_supported(directory: Path) -> bool:
    """Whether the filesystem holding ``directory`` shares blocks on copy (``cp --reflink=always`` works)."""
    try:
        with tempfile.TemporaryDirectory(prefix=".reflink-probe-", dir=directory) as tmp:
            src = Path(tmp) / "a"
            src.write_bytes(b"x" * 4096)
            proc = subprocess.run(
                ["cp", "--reflink=always", str(src), str(Path(tmp) / "b")], capture_output=True, check=False
            )
            return proc.returncode == 0
    except OSError:
        return False


def copy_tree(source: Path, dest: Path) -> str:
    """Copy ``source`` (a directory) to ``dest`` (must not exist) keeping modes, owners and times; returns the
    method used (``reflink`` | ``parallel``)."""
    if dest.exists():
        raise BackendOperationError(f"refusing to overwrite {dest}")
    if reflink_supported(dest.parent):
        proc = subprocess.run(
            ["cp", "-a", "--reflink=always", str(source), str(dest)], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return "reflink"
        shutil.rmtree(dest, ignore_errors=True)
    try:
        _parallel_copy(source, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return "parallel"


def _parallel_copy(source: Path, dest: Path) -> None:
    """Directories first (here), then every file on the thread pool: a small file is one job (create, copy, owner,
    mode, time), a large one is cut into chunks copied side by side and finished once they are all done."""
    small: list[tuple[str, str, os.stat_result]] = []
    large: list[tuple[str, str, os.stat_result]] = []
    dirs: list[tuple[str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        target_dir = str(dest) if rel == "." else os.path.join(dest, rel)
        os.mkdir(target_dir, 0o700)
        dirs.append((target_dir, os.stat(dirpath)))
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            target = os.path.join(target_dir, name)
            lst = os.lstat(path)
            if stat.S_ISLNK(lst.st_mode):
                os.symlink(os.readlink(path), target)
                os.lchown(target, lst.st_uid, lst.st_gid)
                if name in dirnames:
                    dirnames.remove(name)  # keep the link only
            elif stat.S_ISREG(lst.st_mode):
                (large if lst.st_size > CHUNK_BYTES else small).append((path, target, lst))
    chunks: list[tuple[str, str, int, int]] = []
    for path, target, st in large:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, st.st_size)
        finally:
            os.close(fd)
        chunks += [(path, target, off, min(CHUNK_BYTES, st.st_size - off)) for off in range(0, st.st_size, CHUNK_BYTES)]
    chunks.sort(key=lambda c: -c[3])  # big chunks first: the threads finish together
    batches = [small[i::WORKERS] for i in range(WORKERS)]  # small files in a few long jobs: little overhead each
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        # list(): re-raise the first failure
        list(pool.map(_copy_chunk, chunks))
        list(pool.map(_copy_smalls, batches))
    for _, target, st in large:
        _finish(target, st)
    for target_dir, st in reversed(dirs):
        _finish(target_dir, st)


def _finish(target: str, st: os.stat_result) -> None:
    os.chown(target, st.st_uid, st.st_gid)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_smalls(jobs: list[tuple[str, str, os.stat_result]]) -> None:
    owner = (os.getuid(), os.getgid())
    for path, target, st in jobs:
        mode = stat.S_IMODE(st.st_mode)
        src = os.open(path, os.O_RDONLY)
        try:
            dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            try:
                if st.st_size:
                    _copy_range(path, src, dst, 0, st.st_size)
                if (st.st_uid, st.st_gid) != owner:
                    os.fchown(dst, st.st_uid, st.st_gid)
                if mode & ~0o600:  # created with the umask applied: anything beyond rw for the owner is set again
                    os.fchmod(dst, mode)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)


def _copy_chunk(chunk: tuple[str, str, int, int]) -> None:
    path, target, offset, length = chunk
    with open(path, "rb") as src, open(target, "r+b") as dst:
        _copy_range(path, src.fileno(), dst.fileno(), offset, length)


def _copy_range(path: str, src: int, dst: int, offset: int, length: int) -> None:
    pos, left = offset, length
    while left > 0:
        try:
            done = os.copy_file_range(src, dst, left, pos, pos)
        except OSError:  # not supported between these files: a plain read/write of the rest
            done = _copy_plain(src, dst, left, pos)
        if done == 0:
            raise BackendOperationError(f"{path} shrank while being copied")
        pos += done
        left -= done


def _copy_plain(src: int, dst: int, length: int, offset: int) -> int:
    data = os.pread(src, min(length, 8 << 20), offset)
    return os.pwrite(dst, data, offset) if data else 0


def copy_files(pairs: list[tuple[Path, Path]]) -> None:
    """Copy each ``(source, target)`` file on the thread pool, owner and mode kept, replacing what is at
    ``target`` (never writing through it: the old file is unlinked first)."""
    jobs = []
    for source, target in pairs:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        jobs.append((str(source), str(target), os.stat(source)))
    batches = [jobs[i::WORKERS] for i in range(WORKERS)]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(_copy_smalls, batches))
