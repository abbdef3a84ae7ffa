"""Dry-run support: which AWS operations mutate, and a readable rendering of a recorded plan for notebooks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aurora_kit.backends.base import PlannedCall

#: read-only AWS operation prefixes; everything else is treated as mutating (safe default for dry runs)
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Generate")


def is_mutating(operation: str) -> bool:
    """``CreateDBCluster`` → True, ``DescribeDBClusters`` → False. Unknown verbs count as mutating."""
    return not operation.startswith(READ_ONLY_PREFIXES)


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, sort_keys=False)
    return repr(value)


def format_plan(plan: Iterable[PlannedCall], *, title: str = "Planned calls (dry run, nothing was changed)") -> str:
    """One numbered block per call, one parameter per line::

    Planned calls (dry run, nothing was changed):
      1. rds.CreateDBCluster
           DBClusterIdentifier = 'orders'
           ManageMasterUserPassword = True
    """
    calls = list(plan)
    if not calls:
        return f"{title}: none"
    lines = [f"{title}:"]
    width = len(str(len(calls)))
    for n, call in enumerate(calls, 1):
        lines.append(f"  {n:>{width}}. {call.service}.{call.operation}")
        lines.extend(f"       {key} = {_value(value)}" for key, value in call.params.items())
    return "\n".join(lines)


def plan_as_records(plan: Iterable[PlannedCall]) -> list[dict[str, Any]]:
    """The plan as JSON-friendly dicts (for audit records and DataFrames); params are already redacted."""
    return [{"service": c.service, "operation": c.operation, "params": c.params} for c in plan]
