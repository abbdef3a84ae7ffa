"""``aurora-kit audit list | show RUN | verify | head`` over the audit folder's hash-chained index.

``--audit-dir DIR`` may come before or after the action (``aurora-kit audit verify --audit-dir DIR``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aurora_kit import audit
from aurora_kit.banner import headline, label, when, where
from aurora_kit.display import duration, text_table
from aurora_kit.figures import one_line

AUDIT_DIR_HELP = "default: $AURORA_KIT_AUDIT_DIR or ./audit"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="list, show and verify run records", description=__doc__
    )
    parser.add_argument("--audit-dir", type=Path, default=None, help=AUDIT_DIR_HELP)
    # the same option after the action: SUPPRESS keeps the group's value unless it is given there
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--audit-dir", type=Path, default=argparse.SUPPRESS, help=AUDIT_DIR_HELP)
    sub = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    sub.add_parser(
        "list", parents=[after], help="one line per run, oldest first: outcome, duration, cluster, key figures"
    ).set_defaults(func=list_records)
    show = sub.add_parser(
        "show", parents=[after], help="the summary of one run: 'latest', a runbook (06, 06-failover) or a run id"
    )
    show.add_argument("run", metavar="RUN", help="latest | a runbook (its latest run) | a run id (a unique prefix)")
    show.add_argument("--json", action="store_true", help="print the raw summary.json")
    show.set_defaults(func=show_record)
    check = sub.add_parser(
        "verify", parents=[after], help="recompute the hash chain and every file hash; exit 1 on tampering"
    )
    check.add_argument(
        "--expect-head", default=None, help="a head hash noted earlier (outside this folder): it must be in the chain"
    )
    check.add_argument(
        "--sink", default=None, metavar="FILE", help="the append-only file the runs noted their heads in (--audit-sink)"
    )
    check.set_defaults(func=verify)
    sub.add_parser(
        "head", parents=[after], help="the head hash of the chain now: note it outside the folder (ticket, log)"
    ).set_defaults(func=show_head)


def _summary(root: Path, entry: dict[str, Any]) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads((root / entry["dir"] / audit.SUMMARY).read_text(encoding="utf-8"))
        return loaded
    except (OSError, ValueError):
        return {}


def list_records(args: argparse.Namespace) -> int:
    root = audit.audit_root(args.audit_dir)
    entries = audit.read_index(root)
    unsealed = audit.unsealed(root)
    if not entries and not unsealed:
        print(f"no records in {root}")
        return 0
    rows = []
    for e in entries:
        s = _summary(root, e)
        if s.get("kind") == "refusal":
            rows.append([when(e.get("started_at")), e.get("runbook"), "REFUSED", "—", "—", s.get("reason", ""),
                         e.get("operator") or "", e.get("run_id")])  # fmt: skip
            continue
        cluster, backend = where(s)
        figures = one_line(str(e.get("runbook")), s.get("key_figures") or {}, limit=2)
        if not figures and s.get("unverified"):
            figures = "not verified: " + ", ".join(s["unverified"])
        elif not figures and s.get("failure"):
            figures = f"{s['failure'].get('ename')} in cell #{s['failure'].get('code_cell_number')}"
        rows.append(
            [
                when(e.get("started_at")),
                e.get("runbook"),
                label(s) if s else e.get("outcome"),
                duration(s.get("duration_s")),
                f"{cluster} ({backend})",
                figures or "—",
                e.get("operator") or "",
                e.get("run_id"),
            ]
        )
    for name in unsealed:
        rows.append(["—", name, "unsealed", "—", "—", "run interrupted before its record was sealed", "", name])
    headers = ["started", "runbook", "outcome", "duration", "cluster", "key figures", "operator", "run id"]
    print(text_table(headers, rows))
    return 0


def show_record(args: argparse.Namespace) -> int:
    root = audit.audit_root(args.audit_dir)
    found = audit.find(root, args.run)
    summary = found["summary"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if summary.get("kind") == "refusal":
        for k in ("run_id", "runbook", "operator", "host", "started_at", "reason"):
            print(f"{k:>10}: {summary.get(k)}")
        print(f"{'request':>10}: {json.dumps(summary.get('request'))}")
        return 0
    cluster, backend = where(summary)
    git = summary.get("git") or {}
    rows = [
        ("run id", summary["run_id"]),
        ("runbook", summary["runbook"]),
        ("outcome", f"{label(summary)} ({summary['outcome']}, exit {summary.get('exit_code', '—')})"),
        ("why", headline(summary) or "—"),
        ("figures", one_line(summary["runbook"], summary.get("key_figures") or {}) or "—"),
        ("cluster", f"{cluster} · backend {backend}"),
        ("operator", f"{summary['operator']}@{summary['host']}"),
        ("started", when(summary["started_at"])),
        ("ended", when(summary.get("ended_at"))),
        ("duration", duration(summary.get("duration_s"))),
        ("git", f"{git.get('revision')}{' (dirty)' if git.get('dirty') else ''}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (summary.get("versions") or {}).items())),
        ("record", str(root / found["entry"]["dir"])),
    ]
    for k, v in rows:
        print(f"{k:>9}: {v}")
    for check in summary.get("checks") or []:
        print(f"    check: {check.get('status'):<13} {check.get('detail') or check.get('name')}")
    if summary.get("error"):
        print(f"    error: {summary['error']}")
    for name, value in (summary.get("results") or {}).items():
        print(f"   result: {name} = {json.dumps(value)}")
    return 0


def verify(args: argparse.Namespace) -> int:
    root = audit.audit_root(args.audit_dir)
    result = audit.verify(root, expect_head=args.expect_head, sink=args.sink)
    for problem in result.problems:
        print(f"TAMPERED: {problem}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"{result.entries} record(s) checked in {root}; head {result.head}")
    if result.ok:
        print("audit chain intact")
        return 0
    if result.first_suspect:
        print(f"first suspect record: {result.first_suspect}")
    return 1


def show_head(args: argparse.Namespace) -> int:
    root = audit.audit_root(args.audit_dir)
    digest, entries, last = audit.head(root)
    print(f"{digest}  ({entries} record(s) in {root}{', last ' + last if last else ''})")
    return 0
