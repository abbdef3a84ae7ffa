"""``aurora-kit`` command line: each command group lives in ``aurora_kit/commands/<group>.py`` with a
``register(subparsers)`` function that adds its parser and sets ``func`` (returning the exit code)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from aurora_kit.errors import AuroraKitError

# command groups, in help order; a module missing here means that group is not built yet
COMMAND_MODULES = ("local", "run", "audit", "emulate", "iam_policy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurora-kit",
        description="Operate Aurora PostgreSQL (+ pgvector) with runbooks that measure what they claim; "
        "rehearse them on a local Aurora-shaped PostgreSQL cluster.",
    )
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
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AuroraKitError as exc:
        print(f"aurora-kit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
