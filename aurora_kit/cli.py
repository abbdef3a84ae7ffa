"""``aurora-kit`` command line: each command group lives in ``aurora_kit/commands/<group>.py`` with a
``register(subparsers)`` function that adds its parser and sets ``func`` (returning the exit code).

Exit codes (every command): 0 ok · 1 a run failed (or ``audit verify`` found tampering) · 2 refused before running
(invalid parameters or arguments, unknown runbook, an unusable local root: nothing started) · 3 a run completed but
checks were not verified (``aurora-kit run --allow-unverified`` accepts them). See :mod:`aurora_kit.outcome`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from aurora_kit.errors import AuroraKitError
from aurora_kit.outcome import EXIT_INTERRUPTED, EXIT_REFUSED

# command groups, in help order; a module missing here means that group is not built yet
COMMAND_MODULES = ("local", "run", "audit", "emulate", "iam_policy")


def build_parser() -> argparse.ArgumentParser:
    import aurora_kit

    parser = argparse.ArgumentParser(
        prog="aurora-kit",
        description="Operate Aurora PostgreSQL (+ pgvector) with runbooks that measure what they claim; "
        "rehearse them on a local Aurora-shaped PostgreSQL cluster.",
        epilog="exit codes: 0 ok (passed, dry run, or unverified checks accepted) · 1 failed · 2 refused before "
        "running · 3 not verified (checks skipped) · 130 interrupted. "
        "Start with: aurora-kit run 01 -f parameters/local.yaml",
    )
    parser.add_argument("--version", action="version", version=f"aurora-kit {aurora_kit.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"aurora_kit.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"aurora_kit.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # no command: show what there is to do
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except AuroraKitError as exc:
        print(f"aurora-kit: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:  # Ctrl-C: say what it leaves instead of a traceback
        print(
            "aurora-kit: interrupted: a runbook under way stopped where it was — its record is left unsealed "
            "(`aurora-kit audit list` shows it) and nothing it changed was undone: check the cluster's state "
            "(its runbooks' describe steps, or `aurora-kit local status`) before running again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
