"""``aurora-kit audit list | show RUN_ID | verify`` over the audit folder's hash-chained index."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aurora_kit import audit


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="list, show and verify run records", description=__doc__
    )
    parser.add_argument("--audit-dir", type=Path, default=None, help="default: $AURORA_KIT_AUDIT_DIR or ./audit")
    sub = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="one line per run, oldest first").set_defaults(func=list_records)
    show = sub.add_parser("show", help="the summary of one run (a unique run id prefix is enough)")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="print the raw summary.json")
    show.set_defaults(func=show_record)
    check = sub.add_parser("verify", help="recompute the hash chain and every file hash; exit 1 on tampering")
    check.add_argument("--expect-head", default=None, help="the head hash noted earlier (detects a rewritten tail)")
    check.set_defaults(func=verify)


def list_records(args: argparse.Namespace) -> int:
    root = audit.audit_root(args.audit_dir)
    entries = audit.read_index(root)
    unsealed = audit.unsealed(root)
    if not entries and not unsealed:
        print(f"no records in {root}")
        return 0
    for e in entries:
        print(f"{e['run_id']:<52} {e['outcome']:<10} {e.get('operator') or ''}")
    for name in unsealed:
        print(f"{name:<52} unsealed   (run interrupted before its record was sealed)")
    return 0


def show_record(args: argparse.Namespace) -> int:
    root = audit.audit_root(args.audit_dir)
    found = audit.find(root, args.run_id)
    summary = found["summary"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    rows = [
        ("run id", summary["run_id"]),
        ("runbook", summary["runbook"]),
        ("outcome", summary["outcome"]),
        ("operator", f"{summary['operator']}@{summary['host']}"),
        ("started", summary["started_at"]),
        ("duration", f"{summary['duration_s']} s"),
        ("git", f"{summary['git'].get('revision')}{' (dirty)' if summary['git'].get('dirty') else ''}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in summary["versions"].items())),
        ("backend", f"{summary['parameters'].get('backend')} / {summary['parameters'].get('cluster_id')}"),
        ("record", str(root / found["entry"]["dir"])),
    ]
    for k, v in rows:
        print(f"{k:>9}: {v}")
    if summary.get("failure"):
        f = summary["failure"]
        print(f"  failure: cell #{f['code_cell_number']} (index {f['cell_index']}): {f['ename']}: {f['evalue']}")
    if summary.get("error"):
        print(f"    error: {summary['error']}")
    for name, value in (summary.get("results") or {}).items():
        print(f"   result: {name} = {json.dumps(value)}")
    return 0


def verify(args: argparse.Namespace) -> int:
    root = audit.audit_root(args.audit_dir)
    result = audit.verify(root, expect_head=args.expect_head)
    for problem in result.problems:
        print(f"TAMPERED: {problem}")
    print(f"{result.entries} record(s) checked in {root}; head {result.head}")
    if result.ok:
        print("audit chain intact")
        return 0
    return 1
