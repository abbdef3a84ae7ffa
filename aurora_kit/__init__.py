"""aurora_kit: runbooks and verification for Amazon Aurora PostgreSQL (+ pgvector), with a local twin.

The names below are imported on first use, so ``import aurora_kit.outcome`` (what a report on records or an
Airflow task needs) does not load pydantic, boto3 or the notebook stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aurora_kit.backends import get_backend
    from aurora_kit.errors import AuroraKitError
    from aurora_kit.runbook import record_result, record_results, register_secret
    from aurora_kit.specs import AlarmSpec, ClusterSpec, InstanceSpec

__version__ = "0.1.0"

_LAZY = {
    "AlarmSpec": "aurora_kit.specs",
    "AuroraKitError": "aurora_kit.errors",
    "ClusterSpec": "aurora_kit.specs",
    "InstanceSpec": "aurora_kit.specs",
    "get_backend": "aurora_kit.backends",
    "record_result": "aurora_kit.runbook",
    "record_results": "aurora_kit.runbook",
    "register_secret": "aurora_kit.runbook",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aurora_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AlarmSpec",
    "AuroraKitError",
    "ClusterSpec",
    "InstanceSpec",
    "__version__",
    "get_backend",
    "record_result",
    "record_results",
    "register_secret",
]
