"""``aurora-kit run RUNBOOK|--all -f parameters/X.yaml [-p key=value ...] [--audit-dir DIR]``.

Each run ends in one outcome (see :mod:`aurora_kit.outcome`): the exit code is 0 when every run passed (or was a
dry run), 1 when one failed, 3 when one completed with checks not verified (``--allow-unverified`` accepts them:
exit 0, and the record says so), 2 when nothing ran (invalid parameters, unknown runbook, unusable local root).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aurora_kit import audit, params, report, runner
from aurora_kit.commands import run_fleet
from aurora_kit.engine import temporary_environ
from aurora_kit.errors import AuroraKitError
from aurora_kit.runbook import operator


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run runbooks headless (papermill) and keep an audit record of each run",
        description=(
            "Validate the parameters, then execute the runbook(s) with papermill. Each run leaves a record "
            "(executed notebook with its outcome banner, HTML, summary.json) in the audit folder and ends in one "
            "outcome: passed, failed, not verified (a check was skipped, e.g. the endpoints are not reachable from "
            "here) or dry run. --all runs 01…09, 99 in order and stops at the first run that failed or was not "
            "verified."
        ),
        epilog="exit codes: 0 passed / dry run / unverified accepted · 1 failed · 2 refused before running · "
        "3 not verified",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("runbook", nargs="?", help="06, 06-failover, or a path to a notebook")
    target.add_argument("--all", action="store_true", help="every runbook, in order")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--parameters", metavar="FILE", help="parameters/<env>.yaml")
    run_fleet.add_arguments(parser, source)
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key (section.key=value for sections), typed by the parameter model; repeatable",
    )
    parser.add_argument("--audit-dir", type=Path, default=None, help="default: $AURORA_KIT_AUDIT_DIR or ./audit")
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept checks that could not run from here (e.g. a control-plane-only run from outside the VPC): "
        "such a run stays 'not verified' in its record, which says this flag was used, but exits 0 and --all "
        "goes on",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="with several runbooks, run them all even after one failed or was not verified",
    )
    parser.add_argument(
        "--audit-sink",
        default=None,
        metavar="FILE|syslog",
        help="append each sealed record's head hash to this append-only file (or syslog): an anchor outside the "
        "audit folder that `aurora-kit audit verify --sink FILE` checks (default: $AURORA_KIT_AUDIT_SINK)",
    )
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
    """Run, or — when the request is refused before any kernel starts — seal a record of the refusal and raise."""
    sink = {audit.SINK_ENV: args.audit_sink} if args.audit_sink else {}
    with temporary_environ(**sink):
        try:
            return _run(args)
        except AuroraKitError as exc:
            _record_refusal(args, exc)
            raise


def _record_refusal(args: argparse.Namespace, exc: AuroraKitError) -> None:
    """Who asked for what, when, and why it was refused; nothing is recorded where the audit folder itself is the
    problem."""
    try:
        root = audit.audit_root(args.audit_dir)
    except AuroraKitError:
        return
    request = {
        "runbook": "--all" if args.all else args.runbook,
        "parameters_file": None if args.parameters is None else str(args.parameters),
        "fleet": None if getattr(args, "fleet", None) is None else str(args.fleet),
        "overrides": list(args.param),
    }
    runbook = None if args.all else Path(str(args.runbook)).stem
    record = audit.record_refusal(root, runbook=runbook, reason=str(exc), request=request, operator=operator())
    print(f"aurora-kit run: refused; the refusal is recorded in {record.dir}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    if args.fleet:
        return run_fleet.run(args)
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
        keep_going=args.keep_going,
        allow_unverified=args.allow_unverified,
        parameters_file=str(args.parameters),
        overrides=list(args.param),
        kernel_name=args.kernel,
        execution_timeout=args.timeout,
        progress_bar=args.progress,
    )
    rejected = [r for r in results if r.outcome is not None and not r.accepted]
    if rejected:  # stderr too: what a cron mail or a CI log shows first
        first = rejected[0]
        print(f"aurora-kit run: {first.runbook} {first.status}; see {first.record_dir}", file=sys.stderr)
    return report.exit_code(results)
