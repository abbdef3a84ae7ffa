"""The ``aws`` backend (boto3 → Amazon Aurora PostgreSQL). ``get_backend("aws", region=...)`` builds it.

- :mod:`.backend`    :class:`AwsBackend`, the thin boto3 translation of the ClusterBackend interface
- :mod:`.decisions`  plain, unit-testable decisions (apply method, preload merge, drift, failover target...)
- :mod:`.alarms`     which CloudWatch alarms an AlarmSpec becomes (role-following replica lag)
- :mod:`.endpoints`  where the data plane connects (endpoint overrides: hostaddr, the RDS name kept for TLS)
- :mod:`.api`        the I/O layer: the one call path, waits with per-operation poll profiles
- :mod:`.parameters`, :mod:`.snapshots`, :mod:`.failover`, :mod:`.monitoring`  the operations, as mixins
- :mod:`.plan`       dry-run helpers: which operations mutate, :func:`format_plan` for notebooks
- :mod:`.translate`  ClientError → typed errors, RDS responses → base.py data classes
"""

from __future__ import annotations

from aurora_kit.backends.aws.backend import AwsBackend, PollSettings
from aurora_kit.backends.aws.decisions import ClusterDriftError, Drift
from aurora_kit.backends.aws.plan import format_plan

__all__ = ["AwsBackend", "ClusterDriftError", "Drift", "PollSettings", "format_plan"]
