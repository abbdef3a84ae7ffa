"""``aurora-kit iam-policy [RUNBOOK] [-f parameters/X.yaml]``: the least-privilege IAM policy (JSON) a runbook needs
on the aws backend — every runbook's without RUNBOOK — generated from the AWS calls it makes (recorded on the emulated
AWS). With ``-f``, secrets, IAM tokens and the KMS key are scoped to that file's Region, IAM database user and key."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "iam-policy", help="the least-privilege IAM policy a runbook needs on AWS (JSON)", description=__doc__
    )
    parser.add_argument("runbook", nargs="?", help="01, 06-failover... (default: every runbook)")
    parser.add_argument("-f", "--parameters", default=None, metavar="FILE", help="scope to this parameters file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aurora_kit import iam, params

    loaded = params.load(args.parameters) if args.parameters else None
    print(json.dumps(iam.policy(args.runbook, loaded), indent=2))
    return 0
