"""What scaling must prove, measured through the endpoints (both backends):

- **the reader endpoint balances over the current readers**: new connections land on every reader, the ones just
  added included, and never on a reader just removed;
- **each instance runs its class's memory settings**: ``max_connections`` and ``shared_buffers`` as its class gives
  them on this backend (the cluster parameter group overriding, as on Aurora), and it restarted for the change;
- **the policy acts**: under a load the rehearsal generates, a target-tracking policy adds a reader, and removes
  the one it added once the load is gone (the local backend evaluates its policies when asked).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from aurora_kit.backends.base import ClusterBackend, ConnectionInfo
from aurora_kit.backends.capacity import ScalingActivity
from aurora_kit.checks.common import connect, instance_identity, sqlstate_of
from aurora_kit.checks.result import CheckResult
from aurora_kit.display import quantity


# == the reader endpoint ========================================================================================
@dataclass(repr=False)
class ReaderBalanceReport(CheckResult):
    """Where new connections to the reader endpoint landed."""

    title = "reader endpoint balance"

    answers: dict[str, int]
    expected: list[str]  # every current reader
    absent: list[str]  # instances that must not answer (just removed)
    connections: int
    seconds: float
    errors: dict[str, int] = field(default_factory=dict)

    def problems(self) -> list[str]:
        out = []
        missing = sorted(set(self.expected) - set(self.answers))
        if missing:
            out.append(f"{', '.join(missing)} never answered on the reader endpoint in {self.connections} connections")
        stray = sorted(set(self.answers) - set(self.expected))
        if stray:
            out.append(f"answers from {', '.join(stray)}, not a current reader")
        gone = sorted(set(self.answers) & set(self.absent))
        if gone:
            out.append(f"{', '.join(gone)} (removed) still answered")
        if self.errors:
            out.append(f"connections failed: {self.errors}")
        return out

    def limits(self) -> str:
        spread = ", ".join(f"{k} ×{v}" for k, v in sorted(self.answers.items()))
        return f"every reader answered within {self.connections} connections ({spread})"

    def summary(self) -> dict[str, Any]:
        return {
            "answers": dict(self.answers),
            "expected": list(self.expected),
            "absent": list(self.absent),
            "connections": self.connections,
            "seconds": round(self.seconds, 3),
            "errors": dict(self.errors),
        }


def check_reader_balance(
    info: ConnectionInfo,
    expected: list[str],
    *,
    absent: list[str] | None = None,
    max_connections: int = 60,
    timeout_s: float = 30.0,
    pause_s: float = 0.0,
    connect_timeout: float = 5.0,
) -> ReaderBalanceReport:
    """New connections to the reader endpoint (``pause_s`` apart: Aurora's reader endpoint balances by DNS, whose
    TTL is 1 s) until every reader in ``expected`` answered, ``max_connections`` were made or ``timeout_s`` passed."""
    answers: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    started = time.monotonic()
    made = 0
    while made < max_connections and time.monotonic() - started < timeout_s:
        made += 1
        try:
            with connect(info, connect_timeout=connect_timeout) as conn:
                ident, _ = instance_identity(conn)
                answers[ident] += 1
        except psycopg.Error as exc:
            errors[sqlstate_of(exc)] += 1
        if set(expected) <= set(answers) and made >= 2 * max(1, len(expected)):
            break
        if pause_s:
            time.sleep(pause_s)
    return ReaderBalanceReport(
        dict(answers), sorted(expected), sorted(absent or []), made, time.monotonic() - started, dict(errors)
    )


# == memory settings ============================================================================================
#: what each instance is checked for, as pg_settings reports it (shared_buffers in its unit, 8 kB pages)
SETTINGS_SQL = (
    "SELECT name, setting::bigint * CASE unit WHEN '8kB' THEN 8 WHEN 'kB' THEN 1 WHEN 'MB' THEN 1024 ELSE 1 END "
    "FROM pg_settings WHERE name IN ('max_connections', 'shared_buffers')"
)


@dataclass(repr=False)
class InstanceSettingsReport(CheckResult):
    """Each instance's class and the memory settings it runs with, against what its class gives it."""

    title = "instance class settings"

    rows: list[dict[str, Any]]  # instance, class, expected, actual, started_at, judged

    def problems(self) -> list[str]:
        out = []
        for row in self.rows:
            if row.get("error"):
                out.append(f"{row['instance']}: {row['error']}")
                continue
            for name, want in (row.get("expected") or {}).items():
                have = (row.get("actual") or {}).get(name)
                tolerance = row.get("tolerance", 0.0)
                if have is None or abs(have - want) > tolerance * want:
                    out.append(f"{row['instance']} ({row['class']}): {name} {have}, its class gives {want}")
            if row.get("restart_required") and not row.get("restarted"):
                out.append(f"{row['instance']} did not restart for its new class")
        return out

    def limits(self) -> str:
        judged = sum(1 for r in self.rows if r.get("expected"))
        return f"{judged} of {len(self.rows)} instances run their class's max_connections and shared_buffers"

    def summary(self) -> dict[str, Any]:
        return {"instances": {r["instance"]: {k: v for k, v in r.items() if k != "instance"} for r in self.rows}}

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [("instances", len(self.rows)), ("judged", sum(1 for r in self.rows if r.get("expected")))]

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        headers = ["instance", "class", "max_connections", "shared_buffers", "expected from", "restarted"]
        body = []
        for r in self.rows:
            actual, want = r.get("actual") or {}, r.get("expected") or {}

            def pair(name: str, unit: str, actual: Mapping[str, Any] = actual, want: Mapping[str, Any] = want) -> str:
                have = actual.get(name)
                shown = "?" if have is None else (quantity(have * 1024, "bytes") if unit else str(have))
                if name in want and want[name] != have:
                    return f"{shown} (class: {quantity(want[name] * 1024, 'bytes') if unit else want[name]})"
                return shown

            body.append([r["instance"], r["class"], pair("max_connections", ""), pair("shared_buffers", "kB"),
                         r.get("source", ""), r.get("restarted", "")])  # fmt: skip
        return headers, body


def check_instance_settings(
    backend: ClusterBackend,
    cluster_id: str,
    expected: Callable[[str, str], tuple[dict[str, int], float, str]],
    *,
    changed_since: datetime | None = None,
    changed: list[str] | None = None,
    connect_timeout: float = 5.0,
) -> InstanceSettingsReport:
    """Every instance's ``max_connections`` and ``shared_buffers`` (kB) read on the instance, against
    ``expected(instance_id, instance_class)`` → (settings, relative tolerance, where they come from); instances in
    ``changed`` must have started after ``changed_since``."""
    rows = []
    for inst in backend.describe_instances(cluster_id):
        iid = inst.db_instance_identifier
        want, tolerance, source = expected(iid, inst.db_instance_class)
        row: dict[str, Any] = {
            "instance": iid,
            "class": inst.db_instance_class,
            "expected": want,
            "tolerance": tolerance,
            "source": source,
        }
        try:
            with connect(backend.connection_info(cluster_id, iid), connect_timeout=connect_timeout) as conn:
                row["actual"] = {str(n): int(v) for n, v in conn.execute(SETTINGS_SQL).fetchall()}
                started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        except psycopg.Error as exc:
            row["error"] = f"not reachable: {sqlstate_of(exc)}"
            rows.append(row)
            continue
        if changed and iid in changed and changed_since is not None and started is not None:
            row["restart_required"] = True
            row["restarted"] = started[0] >= changed_since
        rows.append(row)
    return InstanceSettingsReport(rows)


# == the scaling policy, rehearsed =============================================================================
@dataclass(repr=False)
class ScalingRehearsalReport(CheckResult):
    """A target-tracking policy under a generated load (scale-out), then without it (scale-in)."""

    title = "auto scaling rehearsal"

    policy: str
    metric: str
    target: float
    load_connections: int
    readers_before: list[str]
    under_load: ScalingActivity | None
    readers_loaded: list[str]
    after_load: ScalingActivity | None
    readers_after: list[str]
    min_capacity: int
    max_capacity: int
    scale_in_expected: bool
    samples: list[dict[str, Any]] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        added = self.under_load.added if self.under_load else []
        if not added:
            out.append(f"under a load of {self.load_connections} connections the policy added no reader")
        elif self.under_load and self.under_load.status_code != "Successful":
            out.append(f"scale-out {self.under_load.status_code}: {self.under_load.status_message}")
        if len(self.readers_loaded) > self.max_capacity:
            out.append(f"{len(self.readers_loaded)} readers exceed the max capacity {self.max_capacity}")
        if self.scale_in_expected:
            removed = self.after_load.removed if self.after_load else []
            if added and sorted(removed) != sorted(set(added) & set(removed)):
                out.append(f"scale-in removed {removed}, not only readers the policy added")
            if added and not removed:
                out.append("without the load the policy removed no reader it had added")
        if len(self.readers_after) < self.min_capacity:
            out.append(f"{len(self.readers_after)} readers are below the min capacity {self.min_capacity}")
        return out

    def limits(self) -> str:
        added = ", ".join(self.under_load.added) if self.under_load else "none"
        removed = ", ".join(self.after_load.removed) if self.after_load and self.after_load.removed else "none"
        return (
            f"{self.metric} target {self.target:g}: +{added} under {self.load_connections} connections, −{removed} "
            f"without them; readers {len(self.readers_before)} → {len(self.readers_loaded)} → "
            f"{len(self.readers_after)} within [{self.min_capacity}, {self.max_capacity}]"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "metric": self.metric,
            "target": self.target,
            "load_connections": self.load_connections,
            "readers_before": self.readers_before,
            "readers_under_load": self.readers_loaded,
            "readers_after": self.readers_after,
            "added": self.under_load.added if self.under_load else [],
            "removed": self.after_load.removed if self.after_load else [],
            "metric_under_load": self.under_load.metric_value if self.under_load else None,
            "metric_after_load": self.after_load.metric_value if self.after_load else None,
            "samples": self.samples,
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        s = self.summary()
        return [
            ("policy", f"{self.policy}: {self.metric} target {self.target:g}"),
            ("load", f"{self.load_connections} connections on the reader endpoint"),
            ("under load", f"{s['metric_under_load']} → added {', '.join(s['added']) or 'none'}"),
            ("without load", f"{s['metric_after_load']} → removed {', '.join(s['removed']) or 'none'}"),
            ("readers", f"{len(self.readers_before)} → {len(self.readers_loaded)} → {len(self.readers_after)}"),
        ]
