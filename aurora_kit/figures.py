"""The key figures of each runbook: the few numbers a DBA looks for first (RTO and lost commits after a failover,
recall and speed-up of the vector index...), picked from the results the runbook recorded.

They are computed by the runner when a record is sealed and stored raw in ``summary.json`` (``key_figures``); the
record's banner, the terminal line after each run and ``audit list`` show them rounded for people
(:func:`aurora_kit.display.quantity`). A figure the run did not produce (a dry run, a skipped check) is absent.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aurora_kit.display import fmt, quantity

Results = Mapping[str, Any]


def at(path: str) -> Callable[[Results], Any]:
    """The value at ``a.b.c`` in the recorded results; None when any step is missing or was skipped."""

    def get(results: Results) -> Any:
        node: Any = results
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    return get


def count(path: str) -> Callable[[Results], Any]:
    """The length of the list at ``path``."""

    def get(results: Results) -> Any:
        value = at(path)(results)
        return len(value) if isinstance(value, (list, tuple)) else None

    return get


@dataclass(frozen=True)
class Figure:
    key: str  # the key in summary.json's key_figures
    label: str  # what a person reads
    get: Callable[[Results], Any]
    unit: str = ""  # see aurora_kit.display.quantity


def _pitr_exact(results: Results) -> Any:
    pitr = at("pitr_restore")(results)
    if not isinstance(pitr, Mapping) or "missing_count" not in pitr:
        return None
    same = pitr.get("expected_checksum") == pitr.get("restored_checksum")
    return same and not (pitr.get("missing_count") or pitr.get("rows_after_cutoff") or pitr.get("extra_count"))


def _tables_identical(results: Results) -> Any:
    compared, matching = (
        at("snapshot_restore.tables_compared")(results),
        at("snapshot_restore.tables_matching")(results),
    )
    return None if compared is None else f"{matching}/{compared}"


def _firing(results: Results) -> Any:
    states = at("alarms.states")(results)
    return states.get("ALARM", 0) if isinstance(states, Mapping) else None


def _alarm_count(results: Results) -> Any:
    states = at("alarms.states")(results)
    return sum(states.values()) if isinstance(states, Mapping) else None


def _deleted(results: Results) -> Any:
    exists = at("gone.exists")(results)
    return None if exists is None else not exists


def _final_snapshot(results: Results) -> Any:
    if at("gone")(results) is None:
        return None
    return at("final_snapshot.DBClusterSnapshotIdentifier")(results) or "none"


#: the key figures of each runbook, in the order they are shown
KEY_FIGURES: dict[str, tuple[Figure, ...]] = {
    "01-create-cluster": (
        Figure("writer", "writer", at("cluster.writer")),
        Figure("readers", "readers", at("cluster.readers")),
        Figure("status", "status", at("cluster.status")),
    ),
    "02-configure-parameters": (
        Figure("parameters_changed", "parameters changed", count("changes"), "count"),
        Figure("rebooted", "rebooted", at("reboot.rebooted")),
        Figure("pending_reboot", "still pending reboot", at("reboot.still_pending")),
    ),
    "03-extensions": (
        Figure("recall", "recall@k", at("pgvector_proof.best_recall"), "ratio"),
        Figure("speedup", "speed-up vs exact", at("pgvector_proof.best_speedup"), "x"),
        Figure("pgvector", "pgvector", at("extension.installed")),
    ),
    "04-verify-read-write": (
        Figure("lag_p99_ms", "replica lag p99", at("lag.worst_p99_ms"), "ms"),
        Figure("read_back_s", "write visible on readers after", at("round_trip.visible_after_s"), "s"),
        Figure("pool_qps", "pool queries/s", at("pool.throughput_qps"), "count"),
    ),
    "05-backup-restore": (
        Figure("pitr_exact", "point-in-time restore exact", _pitr_exact),
        Figure("snapshot_tables_identical", "snapshot restore: tables identical", _tables_identical),
        Figure("restore_time", "restored to", at("restore_time"), "time"),
    ),
    "06-failover": (
        Figure("rto_s", "RTO", at("failover.rto_s"), "s"),
        Figure("lost_commits", "lost commits", at("failover.lost_commits"), "count"),
        Figure("new_writer", "new writer", at("failover.new_writer")),
    ),
    "07-monitoring": (
        Figure("alarms", "alarms", _alarm_count, "count"),
        Figure("firing", "firing", _firing, "count"),
    ),
    "08-scale": (
        Figure("class_change_gap_s", "class change write gap", at("scale.class_change_gap_s"), "s"),
        Figure("class_change_lost_commits", "lost commits", at("scale.class_change_lost_commits"), "count"),
        Figure("readers_added", "readers added", at("scale.added")),
        Figure("autoscaling_added", "auto scaling added", at("scale.autoscaling_added")),
    ),
    "09-proxy": (
        Figure("proxy_gap_s", "write gap via proxy", at("proxy.planned.proxy_gap_s"), "s"),
        Figure("cluster_endpoint_gap_s", "via cluster endpoint", at("proxy.planned.cluster_endpoint_gap_s"), "s"),
        Figure("multiplexing", "multiplexing", at("proxy.multiplexing_ratio"), "x"),
    ),
    "99-teardown": (
        Figure("deleted", "cluster deleted", _deleted),
        Figure("final_snapshot", "final snapshot", _final_snapshot),
    ),
}


def key_figures(runbook: str, results: Results) -> dict[str, Any]:
    """The raw key figures of ``runbook`` found in its recorded ``results`` (absent ones left out)."""
    out: dict[str, Any] = {}
    for figure in KEY_FIGURES.get(runbook, ()):
        value = figure.get(results)
        if value is not None:
            out[figure.key] = value
    return out


def shown(runbook: str, figures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value for people) of each key figure present, in :data:`KEY_FIGURES` order."""
    known = {f.key: f for f in KEY_FIGURES.get(runbook, ())}
    rows = [(known[k].label, quantity(figures[k], known[k].unit)) for k in known if k in figures]
    rows += [(k, fmt(v)) for k, v in figures.items() if k not in known]
    return rows


def one_line(runbook: str, figures: Mapping[str, Any], *, limit: int | None = None) -> str:
    """``RTO 0.140 s · lost commits 0 · new writer ak-local-3`` (the first ``limit`` figures)."""
    rows: Sequence[tuple[str, str]] = shown(runbook, figures)
    if limit is not None:
        rows = rows[:limit]
    return " · ".join(f"{label} {value}" for label, value in rows)
