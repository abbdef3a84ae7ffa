"""aurora_kit: runbooks and verification for Amazon Aurora PostgreSQL (+ pgvector), with a local twin."""

from __future__ import annotations

from aurora_kit.backends import get_backend
from aurora_kit.errors import AuroraKitError
from aurora_kit.runbook import record_result, record_results, register_secret
from aurora_kit.specs import AlarmSpec, ClusterSpec, InstanceSpec

__version__ = "0.1.0"

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
