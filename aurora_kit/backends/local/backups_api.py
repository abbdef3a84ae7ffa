"""LocalBackend's automated-backup calls, as a mixin over :mod:`.automated`: ``maintain`` (what ``aurora-kit local
maintain`` runs from cron or a systemd timer), ``backup_status`` (what ``local status`` shows) and the catch-up
after each mutating call. Dry runs go through the backend's one switch, ``_mutate`` (:mod:`.backend`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from aurora_kit.backends.local import automated, clock
from aurora_kit.backends.local.automated import BackupStatus, MaintainReport
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import StateStore

T = TypeVar("T")
#: one call a dry run records: (operation, parameters), named as the RDS API names it
Call = tuple[str, dict[str, Any]]


class AutomatedBackupsMixin:
    nodes: Nodes
    store: StateStore

    def _mutate(self, calls: Sequence[Call], run: Callable[[], T], projected: Callable[[], T]) -> T:
        raise NotImplementedError  # LocalBackend's one dry-run switch

    def _catch_up(self, cluster_id: str) -> None:
        """After a mutating call on the cluster, the automated backups catch up (:func:`.automated.catch_up`);
        never failing the call that triggered it: a problem is warned about (and recorded for ``local status``)."""
        problem = automated.catch_up(self.nodes, cluster_id)
        if problem:
            warnings.warn(problem, stacklevel=3)

    def maintain(self, cluster_id: str | None = None, *, now: str | datetime | None = None) -> list[MaintainReport]:
        """Automated-backup housekeeping (``aurora-kit local maintain``, for cron / a systemd timer): for each
        cluster (or ``cluster_id``), sweep leftover archive temp files, take the backup that is due, expire what
        the retention period no longer needs; retained backups of deleted clusters expire too. ``now``: the
        backup clock (:func:`.clock.now`: ISO time or offset like ``+1d``; default ``$AURORA_KIT_CLOCK``, else
        the wall clock)."""
        moment = clock.now(now)
        ids = [cluster_id] if cluster_id is not None else sorted(self.store.load().clusters)
        if cluster_id is not None:
            self.store.cluster(cluster_id)  # ClusterNotFoundError
        calls = [("MaintainAutomatedBackups", {"DBClusterIdentifier": cid, "Now": moment.isoformat()}) for cid in ids]

        def run() -> list[MaintainReport]:
            return automated.maintain(self.nodes, ids, moment, retained=cluster_id is None)

        return self._mutate(calls, run, lambda: [])

    def backup_status(self, cluster_id: str, *, now: str | datetime | None = None) -> BackupStatus:
        """Schedule, last backup, next due, restorable window and archive size of one cluster (read-only)."""
        return automated.status(self.nodes, cluster_id, clock.now(now))
