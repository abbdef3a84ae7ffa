"""The fleet summary: every cluster's outcome, duration and key figures, with a link to its record — as a table in
the terminal, ``fleet.json`` and ``fleet.html`` under ``<audit dir>/fleets/<fleet run id>/``.

Each row carries the record's run id and the hash of its entry in the audit index, so the summary is tied to the
hash chain: ``aurora-kit audit verify`` proves the records, and each row's ``entry_hash`` names which.
"""

from __future__ import annotations

import html
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from aurora_kit.audit import FLEETS_DIR
from aurora_kit.display import duration, text_table
from aurora_kit.figures import one_line
from aurora_kit.outcome import NOT_RUN, Outcome

if TYPE_CHECKING:
    from aurora_kit.fleet.model import Fleet, Member
    from aurora_kit.fleet.plan import ClusterRun, FleetPlan, FleetRun

_ANSI = {Outcome.PASSED: "32", Outcome.FAILED: "31", Outcome.NOT_VERIFIED: "33", Outcome.DRY_RUN: "34"}
_EXIT_MEANING = {0: "ok", 1: "a run failed", 3: "checks not verified (--allow-unverified accepts them)"}


def _label(run: ClusterRun) -> str:
    ro = run.result.outcome
    return ro.label if ro is not None else "-"


def _detail(run: ClusterRun) -> str:
    r = run.result
    ro = r.outcome
    if ro is None:
        return f"{NOT_RUN} ({r.error})" if r.error else NOT_RUN
    if ro.outcome is Outcome.FAILED:
        f = r.failure or {}
        if r.error:
            return r.error
        if f:
            return f"cell #{f.get('code_cell_number')}: {f.get('ename')}: {f.get('evalue')}"
        return ro.reason
    figures = one_line(r.runbook, r.key_figures, limit=3)
    if ro.outcome is Outcome.NOT_VERIFIED:
        return f"not verified: {', '.join(ro.unverified)}" + (f" · {figures}" if figures else "")
    if ro.outcome is Outcome.DRY_RUN:
        return "dry run: nothing changed, nothing verified"
    return figures or ro.reason


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def row(run: ClusterRun, audit_dir: Path) -> dict[str, Any]:
    """One cluster's entry of ``fleet.json``."""
    r = run.result
    ro = r.outcome
    p = run.member.parameters
    return {
        "name": run.member.name,
        "cluster_id": p.cluster_id,
        "backend": p.backend,
        "region": p.region,
        "profile": p.aws.profile,
        "source": run.member.source,
        "canary": run.canary,
        "outcome": r.status,
        "label": _label(run),
        "exit_code": r.exit_code if ro is not None else None,
        "accepted": r.accepted if ro is not None else None,
        "reason": ro.reason if ro is not None else r.error,
        "unverified": list(ro.unverified) if ro is not None else [],
        "error": r.error,
        "duration_s": r.duration_s,
        "wall_s": run.wall_s,
        "key_figures": r.key_figures,
        "run_id": r.run_id,
        "record": os.path.relpath(r.record_dir, audit_dir) if r.record_dir else None,
        "entry_hash": run.entry_hash,
    }


def to_json(fleet_run: FleetRun, audit_dir: Path) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in fleet_run.runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    p = fleet_run.plan
    return {
        "fleet_run_id": fleet_run.fleet_run_id,
        "fleet": fleet_run.fleet.name,
        "fleet_file": str(fleet_run.fleet.path),
        "parameters_file": str(fleet_run.fleet.base),
        "overrides": list(fleet_run.fleet.overrides),
        "runbook": fleet_run.runbook,
        "started_at": fleet_run.started_at.isoformat(),
        "ended_at": fleet_run.ended_at.isoformat(),
        "wall_s": fleet_run.wall_s,
        "runbook_time_s": round(sum(r.result.duration_s or 0 for r in fleet_run.runs), 3),
        "max_parallel": p.max_parallel,
        "run_timeout_s": p.run_timeout_s,
        "destructive": p.destructive,
        "canary": p.canary.name if p.canary else None,
        "stop_on_failure": p.stop_on_failure,
        "stopped": fleet_run.stopped,
        "counts": counts,
        "exit_code": fleet_run.exit_code,
        "clusters": [row(r, audit_dir) for r in fleet_run.runs],
    }


def table(fleet_run: FleetRun) -> str:
    rows = [
        [
            r.member.name + (" (canary)" if r.canary else ""),
            _label(r),
            duration(r.result.duration_s) if r.result.duration_s is not None else "",
            _cut(_detail(r), 100),
            r.result.run_id or "",
        ]
        for r in fleet_run.runs
    ]
    return text_table(["cluster", "outcome", "duration", "key figures / why", "record"], rows)


def _html(doc: dict[str, Any]) -> str:
    e = html.escape
    colours = {o.value: o.colour for o in Outcome}
    body = []
    for c in doc["clusters"]:
        colour = colours.get(c["outcome"], "#57606a")
        link = (
            f"<a href='../../{e(c['record'])}/{e(doc['runbook'])}.html'>{e(c['run_id'])}</a>"
            f" · <a href='../../{e(c['record'])}/summary.json'>summary.json</a>"
            if c["record"]
            else "no record"
        )
        figures = one_line(doc["runbook"], c["key_figures"] or {}, limit=4)
        why = c["reason"] or ""
        body.append(
            "<tr>"
            f"<td>{e(c['name'])}{' <em>(canary)</em>' if c['canary'] else ''}</td>"
            f"<td>{e(c['cluster_id'])}</td>"
            f"<td><span data-outcome='{e(c['outcome'])}' style='color:{colour};font-weight:bold'>"
            f"{e(c['label'])}</span></td>"
            f"<td>{e(duration(c['duration_s'])) if c['duration_s'] is not None else ''}</td>"
            f"<td>{e(figures)}</td><td>{e(why)}</td><td>{link}</td>"
            "</tr>"
        )
    counts = ", ".join(f"{n} {s}" for s, n in doc["counts"].items())
    stopped = f"<p><strong>Stopped:</strong> {e(doc['stopped'])}</p>" if doc["stopped"] else ""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>fleet {e(doc['fleet'])} · {e(doc['runbook'])}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 10px;text-align:left;vertical-align:top}"
        "tr:nth-child(even){background:#f6f8fa}</style></head><body>"
        f"<h1>Fleet {e(doc['fleet'])}: {e(doc['runbook'])}</h1>"
        f"<p>{e(counts)} · exit {doc['exit_code']} · wall {e(duration(doc['wall_s']))} "
        f"(runbook time {e(duration(doc['runbook_time_s']))}) · {doc['max_parallel']} at a time · "
        f"started {e(doc['started_at'])} · fleet run <code>{e(doc['fleet_run_id'])}</code></p>{stopped}"
        "<table><thead><tr><th>cluster</th><th>cluster id</th><th>outcome</th><th>duration</th>"
        "<th>key figures</th><th>why</th><th>record</th></tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table><p>Verify the records: <code>aurora-kit audit verify --audit-dir &lt;audit dir&gt;</code>"
        " — each row's record is an entry of the hash chain (<code>entry_hash</code> in fleet.json).</p>"
        "</body></html>\n"
    )


def write(fleet_run: FleetRun, audit_dir: Path) -> Path:
    """``fleet.json`` and ``fleet.html`` under ``<audit dir>/fleets/<fleet run id>/``; returns that folder."""
    folder = audit_dir / FLEETS_DIR / fleet_run.fleet_run_id
    folder.mkdir(parents=True, exist_ok=True)
    doc = to_json(fleet_run, audit_dir)
    (folder / "fleet.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "fleet.html").write_text(_html(doc), encoding="utf-8")
    return folder


class FleetTerminal:
    """What ``aurora-kit run --fleet`` prints: a line when a cluster's run starts and ends, then the table."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def starting(self, fleet: Fleet, runbook: str, plan: FleetPlan, audit_dir: Path) -> None:
        self._print(f"aurora-kit run: {runbook} over fleet {fleet.name} ({plan.describe()}), records in {audit_dir}")

    def started(self, member: Member) -> None:
        self._print(f"  {'…':<13} {member.name:<26} started")

    def finished(self, run: ClusterRun) -> None:
        ro = run.result.outcome
        label = f"{_label(run):<13}"
        if self.tty and ro is not None:
            label = f"\033[1;{_ANSI[ro.outcome]}m{label}\033[0m"
        took = duration(run.result.duration_s) if run.result.duration_s is not None else ""
        self._print(f"  {label} {run.member.name:<26} {took:>8}   {_detail(run)}")

    def closing(self, fleet_run: FleetRun, audit_dir: Path) -> None:
        doc = to_json(fleet_run, audit_dir)
        self._print()
        self._print(table(fleet_run))
        counts = ", ".join(f"{n} {s}" for s, n in doc["counts"].items())
        code = fleet_run.exit_code
        stopped = f"; stopped after {fleet_run.stopped}" if fleet_run.stopped else ""
        self._print(
            f"aurora-kit run: {counts} in {duration(fleet_run.wall_s)} wall "
            f"({duration(doc['runbook_time_s'])} of runbook time){stopped}; exit {code}: {_EXIT_MEANING.get(code, '')}"
        )
        if fleet_run.summary_dir is not None:
            self._print(f"fleet summary: {fleet_run.summary_dir / 'fleet.html'} (and fleet.json)")
        self._print(f"verify the records with: aurora-kit audit verify --audit-dir {shlex.quote(str(audit_dir))}")
