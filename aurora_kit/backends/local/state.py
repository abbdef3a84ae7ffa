"""On-disk state of the local backend: one JSON file + a lock, shared by every process (CLI, kernels, tests).

Layout under the root dir::

    state.json                 clusters, instances, snapshots, alarms (written atomically: temp file + rename)
    state.lock                 flock(2) taken around every read-modify-write of state.json
    locks/<cluster>.lock       one operation at a time per cluster (re-entrant within a thread)
    clusters/<cluster>/        data dirs, WAL archive, base backups, parameter group, master password
    snapshots/<snapshot>/      manual/final snapshots (kept after the cluster is deleted, as on Aurora)
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

State = dict[str, Any]

_EMPTY: State = {"version": 1, "clusters": {}, "snapshots": {}}


class StateStore:
    """JSON state with a file lock. ``read()`` returns a snapshot; ``update()`` is a locked read-modify-write."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "state.json"
        self.lock_path = root / "state.lock"
        (root / "locks").mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    @contextlib.contextmanager
    def _flock(self, path: Path, mode: int) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self) -> State:
        try:
            with self.path.open() as fh:
                data: State = json.load(fh)
        except FileNotFoundError:
            return copy.deepcopy(_EMPTY)
        return data

    def read(self) -> State:
        pending = getattr(self._local, "pending", None)
        if pending is not None:  # inside update() in this thread: flock would deadlock on our own lock
            return copy.deepcopy(pending)
        with self._flock(self.lock_path, fcntl.LOCK_SH):
            return self._load()

    @contextlib.contextmanager
    def update(self) -> Iterator[State]:
        """``with store.update() as state: ...`` — changes are written atomically when the block exits cleanly."""
        if getattr(self._local, "pending", None) is not None:
            raise RuntimeError("StateStore.update() is not re-entrant")
        with self._flock(self.lock_path, fcntl.LOCK_EX):
            state = self._load()
            self._local.pending = state
            try:
                yield state
            finally:
                self._local.pending = None
            self._write(state)

    def _write(self, state: State) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".state.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(state, fh, indent=1, sort_keys=True, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def cluster_lock(self, cluster_id: str) -> Iterator[None]:
        """Serialise mutating operations on one cluster across processes; re-entrant within a thread."""
        held: dict[str, int] = self._local.__dict__.setdefault("held", {})
        if held.get(cluster_id):
            held[cluster_id] += 1
            try:
                yield
            finally:
                held[cluster_id] -= 1
            return
        with self._flock(self.root / "locks" / f"{cluster_id}.lock", fcntl.LOCK_EX):
            held[cluster_id] = 1
            try:
                yield
            finally:
                held[cluster_id] = 0
