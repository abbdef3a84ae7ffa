"""Locks under a local backend root (a mixin of :class:`.state.StateStore`): ``state.lock`` around every
read-modify-write of the state file, ``locks/<cluster>.lock`` serialising operations on one cluster across
processes (re-entrant within a thread; ``locks/<cluster>.holder`` names who holds it), and named locks not waited
for (``locks/<name>.lock``: one ``maintain`` per cluster at a time)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path


class Locks:
    root: Path
    _local: threading.local

    @contextlib.contextmanager
    def _flock(self, path: Path, mode: int) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- per-cluster operation lock ----------------------------------------------------------------------
    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """A named lock across processes, not waited for: yields whether it was taken (``locks/<name>.lock``)."""
        fd = os.open(self.root / "locks" / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True  # closing the descriptor releases the lock
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def cluster_lock(self, cluster_id: str, operation: str = "an operation") -> Iterator[None]:
        """Serialise mutating operations on one cluster across processes; re-entrant within a thread. While held,
        ``locks/<cluster>.holder`` says who holds it (operation, pid, run id, operator, since when), so a request
        refused meanwhile can name what it waits for (:meth:`holder`)."""
        held: dict[str, int] = self._local.__dict__.setdefault("held", {})
        if held.get(cluster_id):
            held[cluster_id] += 1
            try:
                yield
            finally:
                held[cluster_id] -= 1
            return
        holder = self.root / "locks" / f"{cluster_id}.holder"
        with self._flock(self.root / "locks" / f"{cluster_id}.lock", fcntl.LOCK_EX):
            held[cluster_id] = 1
            record = {
                "operation": operation,
                "pid": os.getpid(),
                "run_id": os.environ.get("AURORA_KIT_RUN_ID"),
                "operator": os.environ.get("AURORA_KIT_OPERATOR") or os.environ.get("USER"),
                "since": datetime.now().astimezone().isoformat(timespec="seconds"),
            }
            holder.write_text(json.dumps(record))
            try:
                yield
            finally:
                held[cluster_id] = 0
                holder.unlink(missing_ok=True)

    def holder(self, cluster_id: str) -> str | None:
        """Who holds the cluster's operation lock now, in one phrase ("failover by pid 4242 (run …), since …"),
        or None when nobody does (a holder file left by a process that is gone does not count)."""
        try:
            record = json.loads((self.root / "locks" / f"{cluster_id}.holder").read_text())
            os.kill(int(record["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        run = f", run {record['run_id']}" if record.get("run_id") else ""
        who = f" by {record['operator']}" if record.get("operator") else ""
        return f"{record['operation']} (pid {record['pid']}{run}{who}, since {record['since']})"

    def busy_hint(self, cluster_id: str, status: str) -> str:
        """What to do about a cluster that is ``status`` instead of available: name what holds it, if anything."""
        holder = self.holder(cluster_id)
        if holder:
            return f"{holder} holds the cluster; wait for it to finish (aurora-kit local status {cluster_id})"
        return f"wait until it is available (aurora-kit local status {cluster_id})"
