"""A time limit for one whole run: when it passes, the run's kernel is interrupted so the run still ends with a
sealed record — failed, saying it timed out — instead of hanging a fleet (or an Airflow worker) forever.

papermill only bounds a single cell (``execution_timeout``); a run is many cells and several waits. A
:class:`Deadline` watches from a thread of the process that runs the notebook:

1. at the deadline (or at :meth:`Deadline.stop`, e.g. on SIGTERM), every Jupyter kernel this process started
   since the deadline began gets SIGINT: the running cell raises ``KeyboardInterrupt``, papermill marks it failed
   and stops, and the runner seals the record (``aurora_kit.runner.run_notebook(run_timeout_s=...)`` puts the
   reason first in the record's error);
2. a kernel still alive ``grace_s`` later (stuck in C code, ignoring SIGINT) is killed: nbclient reports a dead
   kernel, and the record is still sealed, failed.

The cluster may be left mid-operation (a failover half way): the record's failing cell shows where. Standard
library + psutil only.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterable
from types import TracebackType

import psutil  # type: ignore[import-untyped]

#: how long an interrupted kernel gets to stop before it is killed
DEFAULT_GRACE_S = 30.0


def _is_kernel(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "ipykernel" in cmdline  # python -m ipykernel_launcher -f .../kernel-<id>.json


def kernels(pids_before: Iterable[int] = ()) -> list[psutil.Process]:
    """Jupyter kernels this process started (direct children), except those in ``pids_before``."""
    before = set(pids_before)
    try:
        children = psutil.Process(os.getpid()).children(recursive=False)
    except psutil.Error:
        return []
    return [p for p in children if p.pid not in before and _is_kernel(p)]


class Deadline:
    """``with Deadline(600) as d: <run the notebook>``; afterwards ``d.reason`` says why it was cut short (None if
    it was not). ``seconds=None`` watches nothing (but :meth:`stop` still works)."""

    def __init__(self, seconds: float | None, *, grace_s: float = DEFAULT_GRACE_S, poll_s: float = 0.5) -> None:
        if seconds is not None and seconds <= 0:
            raise ValueError(f"a run timeout must be positive, got {seconds}")
        self.seconds = seconds
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.reason: str | None = None
        self.killed: list[int] = []
        self._stop = threading.Event()  # the deadline passed or stop() was called
        self._done = threading.Event()  # the block ended
        self._wake = threading.Event()  # either of the two: the watcher wakes at once
        self._before: set[int] = set()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Deadline:
        self._before = {p.pid for p in kernels()}
        self._thread = threading.Thread(target=self._watch, name="aurora-kit-deadline", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._done.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stop(self, reason: str) -> None:
        """Cut the run short now (a signal handler may call this: it only sets an event)."""
        if self.reason is None:
            self.reason = reason
        self._stop.set()
        self._wake.set()

    @property
    def expired(self) -> bool:
        return self.reason is not None

    def note(self, error: str | None) -> str | None:
        """The error a record states: the reason first, then what the interruption produced (if anything)."""
        if self.reason is None:
            return error
        return f"{self.reason} ({error})" if error else self.reason

    def _watch(self) -> None:
        started = time.monotonic()
        while not self._done.is_set():
            left = None if self.seconds is None else self.seconds - (time.monotonic() - started)
            if left is not None and left <= 0:
                self.stop(f"timed out after {self.seconds:g} s: the run's time limit interrupted its kernel")
            if self._stop.is_set() or self._done.is_set():
                break
            self._wake.wait(left)  # until the deadline, stop() or the end of the block
        if self._done.is_set():
            return
        interrupted: set[int] = set()
        cut = time.monotonic()
        while not self._done.wait(self.poll_s):  # kernels started late (or restarted) are interrupted too
            for proc in kernels(self._before):
                try:
                    if proc.pid not in interrupted:
                        proc.send_signal(signal.SIGINT)
                        interrupted.add(proc.pid)
                    elif time.monotonic() - cut >= self.grace_s:
                        proc.kill()
                        self.killed.append(proc.pid)
                except psutil.Error:
                    continue
