"""``aurora-kit run RUNBOOK --fleet fleet.yaml [--max-parallel N] [--run-timeout S] [-p key=value ...]``: one runbook
over every cluster of a fleet file (:mod:`aurora_kit.fleet`). Registered by :mod:`aurora_kit.commands.run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aurora_kit import audit, runner


def add_arguments(parser: argparse.ArgumentParser, source: argparse._MutuallyExclusiveGroup) -> None:
    """``--fleet`` goes in ``source`` (one of -f or --fleet); the fleet's own options in a group of their own."""
    source.add_argument(
        "--fleet", metavar="FILE", help="fleet.yaml: one runbook over many clusters (instead of -f; see below)"
    )
    group = parser.add_argument_group("fleets (--fleet)")
    group.add_argument(
        "--max-parallel",
        type=int,
        default=None,
        metavar="N",
        help="runs at once (default: the fleet file's max_parallel, 4; destructive runbooks: 1, after the canary)",
    )
    group.add_argument(
        "--run-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="one run's time limit; past it its kernel is interrupted and the run fails (default: the fleet "
        "file's run_timeout_s, 7200)",
    )
    group.add_argument(
        "--stop-on-failure",
        action="store_true",
        help="read-only runbooks: start no new run once one was not accepted (destructive runbooks always stop "
        "unless --keep-going)",
    )


def run(args: argparse.Namespace) -> int:
    from aurora_kit.errors import InvalidParameterError
    from aurora_kit.fleet import load_fleet
    from aurora_kit.fleet.run import run_fleet

    if args.all:
        raise InvalidParameterError("--all", True, "a fleet run takes one runbook (run the fleet once per runbook)")
    if args.print_parameters_cell:
        raise InvalidParameterError("--print-parameters-cell", True, "takes -f, not --fleet")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise InvalidParameterError("--max-parallel", args.max_parallel, "at least 1")
    if args.run_timeout is not None and args.run_timeout <= 0:
        raise InvalidParameterError("--run-timeout", args.run_timeout, "a positive number of seconds")
    fleet = load_fleet(args.fleet, args.param)  # the whole fleet is validated before any run starts
    notebook = runner.resolve(args.runbook, args.runbooks_dir)
    result = run_fleet(
        fleet,
        notebook,
        audit_dir=audit.audit_root(args.audit_dir),
        max_parallel=args.max_parallel,
        run_timeout_s=args.run_timeout,
        keep_going=args.keep_going,
        stop_on_failure=args.stop_on_failure,
        allow_unverified=args.allow_unverified,
        kernel_name=args.kernel,
        execution_timeout=args.timeout,
    )
    bad = [r for r in result.runs if r.result.outcome is not None and not r.result.accepted]
    if bad:  # stderr too: what a cron mail or a CI log shows first
        names = ", ".join(f"{r.member.name} {r.status}" for r in bad)
        where = result.summary_dir / "fleet.html" if result.summary_dir else Path(".")
        print(f"aurora-kit run: {names}; see {where}", file=sys.stderr)
    return result.exit_code
