"""``aurora-kit run RUNBOOK|--all -f parameters/X.yaml [-p key=value ...] [--audit-dir DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aurora_kit import audit, params, runner


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run runbooks headless (papermill) and keep an audit record of each run",
        description=(
            "Validate the parameters, then execute the runbook(s) with papermill. Each run leaves a record "
            "(executed notebook, HTML, summary.json) in the audit folder. --all runs 01…07, 99 in order and stops "
            "at the first failure."
        ),
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("runbook", nargs="?", help="06, 06-failover, or a path to a notebook")
    target.add_argument("--all", action="store_true", help="every runbook, in order")
    parser.add_argument("-f", "--parameters", required=True, metavar="FILE", help="parameters/<env>.yaml")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key (section.key=value for sections), typed by the parameter model; repeatable",
    )
    parser.add_argument("--audit-dir", type=Path, default=None, help="default: $AURORA_KIT_AUDIT_DIR or ./audit")
    parser.add_argument("--runbooks-dir", type=Path, default=runner.RUNBOOKS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    parser.add_argument("--timeout", type=int, default=None, help="per-cell execution timeout, seconds")
    parser.add_argument("--progress", action="store_true", help="show papermill's per-cell progress bar")
    parser.add_argument(
        "--print-parameters-cell",
        action="store_true",
        help="print the parameters cell the runbook needs for this file (for runbook authors) and exit",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = params.load(args.parameters, args.param)  # before any kernel starts
    if args.print_parameters_cell:
        name = Path(args.runbook or "").stem
        match = next((r for r in params.RUNBOOKS if r == name or r.split("-", 1)[0] == name), None)
        print(params.parameters_cell(loaded, match), end="")
        return 0
    notebooks = runner.resolve_all(args.runbooks_dir) if args.all else [runner.resolve(args.runbook, args.runbooks_dir)]
    root = audit.audit_root(args.audit_dir)
    print(f"aurora-kit run: {len(notebooks)} runbook(s), parameters {args.parameters}, records in {root}")
    results = runner.run_many(
        notebooks,
        loaded.injected(),
        audit_dir=root,
        kernel_name=args.kernel,
        execution_timeout=args.timeout,
        progress_bar=args.progress,
    )
    failed = [r for r in results if r.status != "succeeded"]
    counts = {s: sum(r.status == s for r in results) for s in ("succeeded", "failed", "not run")}
    total = sum(r.duration_s or 0 for r in results)
    print(
        f"aurora-kit run: {counts['succeeded']} succeeded, {counts['failed']} failed, {counts['not run']} not run "
        f"in {total:.1f}s; verify records with: aurora-kit audit verify"
        + (f" --audit-dir {args.audit_dir}" if args.audit_dir else "")
    )
    if failed:
        first = failed[0]
        print(f"aurora-kit run: {first.runbook} failed; see {first.record_dir}", file=sys.stderr)
        return 1
    return 0
