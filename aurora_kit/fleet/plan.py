"""The fleet's rules as a plan (which cluster first, how many at once, when to stop) and what a fleet run returns:
pure data, no process and no backend — :mod:`aurora_kit.fleet.run` executes a plan, :mod:`aurora_kit.fleet.summary`
reports it, and the Airflow DAG factory builds its dependencies from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aurora_kit.fleet.model import DESTRUCTIVE_RUNBOOKS, Fleet, Member
from aurora_kit.outcome import NOT_RUN
from aurora_kit.report import RunResult


@dataclass
class ClusterRun:
    """One cluster's run as the fleet saw it: the runner's result (from the sealed record) or why it did not run."""

    member: Member
    result: RunResult
    wall_s: float | None = None  # worker process start → exit (the run, plus the process and the sealing)
    entry_hash: str | None = None  # the record's index entry: ties the fleet summary to the audit chain
    canary: bool = False

    @property
    def status(self) -> str:
        return self.result.status


@dataclass
class FleetPlan:
    """How the fleet runs: the order (canary first), how many at once, whether to stop at a failure."""

    order: list[Member]
    max_parallel: int
    destructive: bool
    canary: Member | None
    stop_on_failure: bool
    run_timeout_s: float

    def describe(self) -> str:
        at_once = "one at a time" if self.max_parallel == 1 else f"{self.max_parallel} at a time"
        parts = [f"{len(self.order)} clusters", at_once, f"time limit {self.run_timeout_s:g} s per run"]
        if self.canary is not None:
            parts.insert(1, f"canary {self.canary.name} first")
        if self.stop_on_failure:
            parts.append("stops at the first run not accepted")
        return ", ".join(parts)


def plan(
    fleet: Fleet,
    runbook: str,
    *,
    max_parallel: int | None = None,
    run_timeout_s: float | None = None,
    keep_going: bool = False,
    stop_on_failure: bool = False,
) -> FleetPlan:
    """The rules of :mod:`aurora_kit.fleet.run` (concurrency, canary, stop) as a plan: pure, no process, no backend."""
    destructive = runbook in DESTRUCTIVE_RUNBOOKS
    members = list(fleet.members)
    canary = fleet.canary_member if destructive else None
    if canary is not None:
        members.remove(canary)
        members.insert(0, canary)
    parallel = max_parallel if max_parallel is not None else (1 if destructive else fleet.max_parallel)
    if parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, got {parallel}")
    return FleetPlan(
        order=members,
        max_parallel=min(parallel, len(members)),
        destructive=destructive,
        canary=canary,
        stop_on_failure=(destructive and not keep_going) or stop_on_failure,
        run_timeout_s=run_timeout_s if run_timeout_s is not None else fleet.run_timeout_s,
    )


@dataclass
class FleetRun:
    """What :func:`run_fleet` returns: every cluster's run in plan order, and the run as a whole."""

    fleet_run_id: str
    fleet: Fleet
    runbook: str
    plan: FleetPlan
    runs: list[ClusterRun]
    started_at: datetime
    ended_at: datetime
    stopped: str | None = None
    summary_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_s(self) -> float:
        return round((self.ended_at - self.started_at).total_seconds(), 3)

    @property
    def exit_code(self) -> int:
        from aurora_kit.report import exit_code

        return exit_code([r.result for r in self.runs if r.status != NOT_RUN] or [r.result for r in self.runs])
