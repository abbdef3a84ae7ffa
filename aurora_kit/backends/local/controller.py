"""Process controller for one local PostgreSQL instance (after Patroni's behave ``AbstractController``).

Start with ``pg_ctl`` (the postmaster detaches, so no zombie is left behind in our process), readiness by
polling ``postmaster.pid`` through :func:`aurora_kit.polling.wait_for`, one log file per instance, and stop by
pid: fast shutdown (SIGINT), escalating to immediate (SIGQUIT) and finally SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from aurora_kit.backends.local.binaries import PgBinaries, run_tool
from aurora_kit.backends.local.config import WAL_SEGMENT_MB
from aurora_kit.errors import BackendOperationError, WaitTimeoutError
from aurora_kit.polling import wait_for


@dataclass
class PgController:
    """One PostgreSQL instance: its data directory, log file and binaries."""

    name: str
    data_dir: Path
    log_file: Path
    bins: PgBinaries

    # -- process inspection ------------------------------------------------------------------------------
    def pid_file_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return []

    def pid(self) -> int | None:
        """The live postmaster's pid, or None (no pid file, stale pid, or a zombie)."""
        lines = self.pid_file_lines()
        if not lines or not lines[0].strip().lstrip("-").isdigit():
            return None
        pid = abs(int(lines[0]))
        return pid if self.owns(pid) else None

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is a live postmaster of *this* data directory: its command line has ``-D <data dir>``
        (as ``pg_ctl`` starts it) or its working directory is the data dir (the postmaster chdirs there). A pid
        from a stale ``postmaster.pid`` may since belong to anything, another instance's postmaster included."""
        want = os.path.realpath(self.data_dir)
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            cmd = proc.cmdline()
            if not cmd or "postgres" not in os.path.basename(cmd[0]):
                return False
            for i, arg in enumerate(cmd[1:], start=1):
                given = cmd[i + 1] if arg == "-D" and i + 1 < len(cmd) else arg[2:] if arg.startswith("-D") else None
                if given and os.path.isabs(given) and os.path.realpath(given) == want:
                    return True
            return os.path.realpath(proc.cwd()) == want
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    def is_running(self) -> bool:
        return self.pid() is not None

    def pm_status(self) -> str:
        """``postmaster.pid`` status line: starting | ready | standby | stopping | '' when not running."""
        lines = self.pid_file_lines()
        if len(lines) < 8 or self.pid() is None:
            return ""
        return lines[7].strip()

    def processes(self) -> list[psutil.Process]:
        """The postmaster and its children (for CPU accounting and crash simulation)."""
        pid = self.pid()
        if pid is None:
            return []
        try:
            parent = psutil.Process(pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log file)"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, *, wait: bool = True, timeout: float = 60.0) -> None:
        if self.is_running():
            return
        run_tool(
            [self.bins.tool("pg_ctl"), "start", "-W", "-D", str(self.data_dir), "-l", str(self.log_file)],
            cwd=self.data_dir.parent,
            what=f"pg_ctl start ({self.name})",
        )
        self._started_at = time.monotonic()
        if wait:
            self.wait_ready(timeout=timeout)

    def check_not_dead(self, grace: float = 3.0) -> None:
        """Raise (with the log tail) if the postmaster is gone ``grace`` seconds after ``start()``: pg_ctl -W
        returns before the postmaster writes its pid file, so an absent process is only final after a moment."""
        if self.is_running():
            return
        started = getattr(self, "_started_at", None)
        if started is not None:
            age = time.monotonic() - started
        else:  # another controller object started it: the log file was touched by pg_ctl at start
            try:
                age = time.time() - self.log_file.stat().st_mtime
            except FileNotFoundError:
                age = float("inf")
        if age > grace:
            raise BackendOperationError(
                f"PostgreSQL instance {self.name!r} is not running (exited while starting?); log tail:\n"
                f"{self.log_tail()}"
            )

    def wait_ready(self, *, timeout: float = 60.0, progress: bool = False) -> None:
        """Wait until the postmaster accepts connections; fail fast (with the log tail) if it died."""

        def probe() -> str:
            status = self.pm_status()
            if not status:
                self.check_not_dead()
            return status

        wait_for(
            f"instance {self.name} accepting connections",
            probe,
            lambda s: s == "ready",
            timeout=timeout,
            # the probe reads postmaster.pid (microseconds): poll finely, a start takes ~0.1-0.5 s
            initial_delay=0.01,
            max_delay=0.05,
            progress=progress,
        )

    def stop(self, *, mode: str = "fast", timeout: float = 30.0) -> str | None:
        """Stop by pid: SIGINT (fast) or SIGQUIT (immediate); escalates to immediate, then SIGKILL.

        Returns the mode that actually stopped it (``"fast"``, ``"immediate"`` or ``"kill"``), None when it was
        not running: only ``"fast"`` means a shutdown checkpoint was written and every WAL record shipped."""
        pid = self.pid()
        if pid is None:
            return None
        steps = [(signal.SIGQUIT, "immediate", timeout), (signal.SIGKILL, "kill", 10.0)]
        if mode != "immediate":
            steps.insert(0, (signal.SIGINT, "fast", timeout))
        previous: str | None = None
        for sig, used, budget in steps:
            if not self.owns(pid):  # gone since (pid maybe reused): never signal another process
                return previous
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            try:
                self._wait_gone(pid, budget)
                return used
            except WaitTimeoutError:
                previous = used
                continue
        raise BackendOperationError(f"could not stop PostgreSQL instance {self.name!r} (pid {pid})")

    def kill(self) -> None:
        """Simulate a host crash: SIGKILL the postmaster and every child at once (by pid), wait until gone."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            self._wait_gone(proc.pid, 10.0)
        # the dead postmaster may linger as a zombie until reaped, and PostgreSQL's lock-file check would take
        # it for a live server: remove the stale pid file ourselves
        if procs:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> None:
        def alive() -> bool:
            # a zombie is dead (its reaper here, PID 1, collects it only every few seconds)
            try:
                return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return False

        wait_for(f"pid {pid} to exit", alive, lambda a: not a, timeout=timeout, initial_delay=0.005, max_delay=0.05)

    def reload(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    # -- data directory operations -------------------------------------------------------------------------
    def initdb(self, *, superuser: str, pwfile: Path) -> None:
        run_tool(
            [
                self.bins.tool("initdb"),
                "-D",
                str(self.data_dir),
                "--data-checksums",
                "--no-sync",  # speed; the OS page cache survives the process crashes we simulate
                f"--wal-segsize={WAL_SEGMENT_MB}",
                "-U",
                superuser,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            cwd=self.data_dir.parent,
            what=f"initdb ({self.name})",
        )

    def rewind(self, *, source_conninfo: str, passfile: Path) -> None:
        """``pg_rewind --restore-target-wal`` onto ``source_conninfo`` (the new writer). Instance must be stopped."""
        if self.pid() is None:  # a crashed postmaster's pid file (its pid maybe an unreaped zombie) is stale
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        run_tool(
            [
                self.bins.tool("pg_rewind"),
                "--target-pgdata",
                str(self.data_dir),
                "--source-server",
                source_conninfo,
                "--restore-target-wal",
                "--no-sync",
            ],
            env={"PGPASSFILE": str(passfile)},
            cwd=self.data_dir.parent,
            what=f"pg_rewind ({self.name})",
        )

    def control_data(self) -> dict[str, str]:
        out = run_tool([self.bins.tool("pg_controldata"), "-D", str(self.data_dir)], what="pg_controldata")
        pairs = (line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}
