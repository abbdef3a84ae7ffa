"""Running one runbook over a fleet: ``aurora-kit run 04 --fleet fleet.yaml``.

Before the first run: the fleet file is loaded and validated as a whole (:func:`aurora_kit.fleet.load_fleet`),
what the runbook creates is checked unique across the fleet, the runbook's ``parameters`` cell is checked, and each
distinct backend (root, account, region) is opened once. Then every cluster's run goes to a worker process of its
own (:mod:`aurora_kit.fleet.worker`), at most ``max_parallel`` at a time:

- read-only runbooks: ``max_parallel`` from the command line, else the fleet file (default 4); every cluster runs,
  whatever the others' outcomes (``--stop-on-failure`` stops starting new runs after one is not accepted);
- destructive runbooks (:data:`~aurora_kit.fleet.model.DESTRUCTIVE_RUNBOOKS`: rolling reboot, failover, teardown):
  the canary (the fleet file's ``canary:``, else the first cluster) runs alone first; then the others one at a
  time unless ``--max-parallel`` says otherwise; the first run not accepted stops the fleet (no new run starts;
  those already running finish) unless ``--keep-going``. A canary not accepted always stops the fleet.

Each run has a time limit (``--run-timeout``, else the fleet file's ``run_timeout_s``, default 2 h): past it the
run's kernel is interrupted and its record sealed failed (:mod:`aurora_kit.deadline`). Ctrl-C stops every running
run the same way, and starts no other. Records stay one per cluster and run (their ``batch_id`` is the fleet run's
id); the fleet summary (:mod:`aurora_kit.fleet.summary`) lists each cluster's outcome and key figures and links its
record. The exit code is the worst outcome: 1 failed, else 3 not verified, else 0.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from aurora_kit import audit
from aurora_kit.fleet.model import Fleet, Member
from aurora_kit.fleet.plan import ClusterRun, FleetRun, plan
from aurora_kit.outcome import NOT_RUN, decide, of_summary
from aurora_kit.report import RunResult

#: how long past its own deadline a worker may take (interrupt grace + sealing) before the fleet kills it
WORKER_MARGIN_S = 120.0


def new_fleet_run_id(fleet: Fleet, runbook: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-fleet-{fleet.name}-{runbook}-{secrets.token_hex(3)}"


def preflight(fleet: Fleet, notebook: Path) -> None:
    """Everything checked before the first run: what the runbook creates is unique across the fleet, its
    ``parameters`` cell defines every injected key, and each distinct backend opens."""
    from aurora_kit import runner
    from aurora_kit.params import RUNBOOKS, injected_for

    fleet.check_for(notebook.stem)
    for member in fleet.members:
        runner.check_parameters_cell(notebook, list(injected_for(notebook.stem, member.parameters.injected())))
    if notebook.stem in RUNBOOKS:
        opened: set[tuple[Any, ...]] = set()
        for member in fleet.members:
            if member.namespace() not in opened:
                runner.preflight(member.parameters.injected())
                opened.add(member.namespace())


def write_parameters(fleet: Fleet, folder: Path, *, only: Sequence[str] | None = None) -> dict[str, Path]:
    """Each cluster's parameters as the fleet gave them, one standalone parameters file each (what its record names
    as its ``parameters_file``: ``aurora-kit run 01 -f <that file>`` repeats one cluster's run)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for member in fleet.members:
        if only is not None and member.name not in only:
            continue
        path = folder / f"{member.name}.yaml"
        head = f"# {member.name}: {member.source}, base {fleet.base}" + (
            f", with -p {' -p '.join(fleet.overrides)}" if fleet.overrides else ""
        )
        body = yaml.safe_dump(member.parameters.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        path.write_text(head + "\n" + body, encoding="utf-8")
        out[member.name] = path
    return out


class _Worker:
    """One worker process running one cluster's run."""

    def __init__(self, job: dict[str, Any], tmp: Path) -> None:
        self.job = job
        self.result_path = tmp / f"{job['name']}.result.json"
        self.job["result"] = str(self.result_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = b""

    def run(self, kill_after_s: float) -> tuple[dict[str, Any] | None, str, float]:
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aurora_kit.fleet.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the fleet, which stops each run so it still seals its record
        )
        try:
            _, self.stderr = self.proc.communicate(json.dumps(self.job).encode(), timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its kernel exits on its own once its parent is gone
            _, self.stderr = self.proc.communicate()
        wall = time.perf_counter() - started
        if self.result_path.exists():
            return json.loads(self.result_path.read_text(encoding="utf-8")), "", wall
        from aurora_kit.redaction import redact_patterns

        tail = redact_patterns(self.stderr.decode(errors="replace").strip())[-600:]
        why = f"the worker process ended with exit code {self.proc.returncode} before sealing a record"
        return None, why + (f": {tail}" if tail else ""), wall

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


def _result_of(found: dict[str, Any] | None, error: str, runbook: str, audit_dir: Path) -> tuple[RunResult, str | None]:
    if found is None:
        outcome = decide((), failed=True, dry_run=False, failure=error)
        return RunResult(runbook, outcome.outcome.value, error=error, outcome=outcome), None
    record = Path(found["record_dir"])
    summary = json.loads((record / audit.SUMMARY).read_text(encoding="utf-8"))
    entry = next((e for e in reversed(audit.read_index(audit_dir)) if e.get("run_id") == found["run_id"]), None)
    outcome = of_summary(summary)
    result = RunResult(
        runbook=summary.get("runbook", runbook),
        status=outcome.outcome.value,
        run_id=found["run_id"],
        record_dir=record,
        failure=summary.get("failure"),
        error=summary.get("error"),
        duration_s=summary.get("duration_s"),
        results=summary.get("results"),
        outcome=outcome,
        key_figures=summary.get("key_figures") or {},
    )
    return result, (entry or {}).get("hash")


def run_fleet(
    fleet: Fleet,
    notebook: Path,
    *,
    audit_dir: Path,
    max_parallel: int | None = None,
    run_timeout_s: float | None = None,
    keep_going: bool = False,
    stop_on_failure: bool = False,
    allow_unverified: bool = False,
    kernel_name: str | None = None,
    execution_timeout: int | None = None,
    grace_s: float = 30.0,
    out: TextIO | None = None,
    on_finished: Callable[[ClusterRun], None] | None = None,
) -> FleetRun:
    """Run ``notebook`` over ``fleet`` (see the module docstring); writes the fleet summary and returns the runs."""
    from aurora_kit.fleet import summary as fleet_summary

    runbook = notebook.stem
    preflight(fleet, notebook)
    the_plan = plan(
        fleet,
        runbook,
        max_parallel=max_parallel,
        run_timeout_s=run_timeout_s,
        keep_going=keep_going,
        stop_on_failure=stop_on_failure,
    )
    terminal = fleet_summary.FleetTerminal(out)
    fleet_run_id = new_fleet_run_id(fleet, runbook)
    started = datetime.now(timezone.utc)
    terminal.starting(fleet, runbook, the_plan, audit_dir)
    runs: dict[str, ClusterRun] = {}
    workers: dict[str, _Worker] = {}
    stopped: str | None = None
    lock = threading.Lock()

    parameter_files = write_parameters(fleet, audit_dir / audit.FLEETS_DIR / fleet_run_id / "parameters")

    def job(member: Member) -> dict[str, Any]:
        return {
            "name": member.name,
            "notebook": str(notebook),
            "parameters": member.parameters.injected(),
            "audit_dir": str(audit_dir),
            "batch_id": fleet_run_id,
            "run_timeout_s": the_plan.run_timeout_s,
            "grace_s": grace_s,
            "allow_unverified": allow_unverified,
            "parameters_file": str(parameter_files[member.name]),
            "overrides": list(fleet.overrides),
            "kernel_name": kernel_name,
            "execution_timeout": execution_timeout,
        }

    def one(member: Member, tmp: Path) -> ClusterRun:
        worker = _Worker(job(member), tmp)
        with lock:
            workers[member.name] = worker
        found, error, wall = worker.run(the_plan.run_timeout_s + grace_s + WORKER_MARGIN_S)
        result, entry_hash = _result_of(found, error, runbook, audit_dir)
        return ClusterRun(member, result, round(wall, 3), entry_hash, member is the_plan.canary)

    def settle(run: ClusterRun) -> None:
        nonlocal stopped
        runs[run.member.name] = run
        terminal.finished(run)
        if on_finished is not None:
            on_finished(run)
        if not run.result.accepted and stopped is None:
            if run.canary:
                stopped = f"the canary {run.member.name} {run.status}"
            elif the_plan.stop_on_failure:
                stopped = f"{run.member.name} {run.status}"

    queue = list(the_plan.order)
    with (
        tempfile.TemporaryDirectory(prefix="aurora-kit-fleet-") as tmp,
        ThreadPoolExecutor(max_workers=the_plan.max_parallel, thread_name_prefix="aurora-kit-fleet") as pool,
    ):
        running: dict[Future[ClusterRun], Member] = {}
        try:
            while queue or running:
                canary_pending = the_plan.canary is not None and the_plan.canary.name not in runs
                while queue and stopped is None and len(running) < the_plan.max_parallel:
                    if canary_pending and running:  # the canary runs alone
                        break
                    member = queue.pop(0)
                    terminal.started(member)
                    running[pool.submit(one, member, Path(tmp))] = member
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    settle(future.result())
        except KeyboardInterrupt:
            stopped = "interrupted (Ctrl-C): each running run was stopped and sealed"
            with lock:
                for worker in workers.values():
                    worker.stop()
            for future in list(running):
                settle(future.result())
    canary_run = runs.get(the_plan.canary.name) if the_plan.canary is not None else None
    canary_failed = canary_run is not None and not canary_run.result.accepted
    for member in queue:
        hint = "; --keep-going runs the rest" if the_plan.destructive and not canary_failed else ""
        why = f"stopped after {stopped}{hint}"
        runs[member.name] = ClusterRun(member, RunResult(runbook, NOT_RUN, error=why), canary=False)
    ended = datetime.now(timezone.utc)
    ordered = [runs[m.name] for m in the_plan.order]
    result = FleetRun(fleet_run_id, fleet, runbook, the_plan, ordered, started, ended, stopped)
    result.summary_dir = fleet_summary.write(result, audit_dir)
    terminal.closing(result, audit_dir)
    return result
