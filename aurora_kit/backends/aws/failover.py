"""Failover on Aurora: ``FailoverDBCluster`` to the target the rule picks, then a wait with the failover's own poll
profile (at least every 2 s, at most 5 minutes) that watches the members and the cluster's events: Aurora reports a
failed failover with RDS-EVENT-0069 (and 0070 when it promotes the old writer again), and the wait stops at once with
that message. The result carries the control-plane time and its error bound (the interval of the poll that saw the
failover done).

Unplanned failover (``mode="crash"``) is refused with UnsupportedOperationError: Aurora has no control-plane API that
crashes the writer. ``FailoverDBCluster`` is a planned failover (it is also what AWS FIS's
``aws:rds:failover-db-cluster`` action calls), so reporting it as a crash would mislabel the measurement. The error
points to the honest alternatives: ``SELECT aurora_inject_crash('instance')`` on the writer (Aurora PostgreSQL
fault-injection function) or an AWS FIS experiment.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aurora_kit.backends.aws import decisions as d
from aurora_kit.backends.aws.api import RDS, AwsApi, _describe_state, _lower, _now, _state_terminal
from aurora_kit.backends.base import FailoverMode, FailoverResult
from aurora_kit.errors import (
    FailoverFailedError,
    InvalidParameterError,
    InvalidStateError,
    UnsupportedOperationError,
)

#: what a failover wait polls: (cluster, {instance: status}) and the cluster's events since the call
_FailoverState = tuple[tuple[dict[str, Any] | None, dict[str, str]], list[dict[str, Any]]]


class FailoverOps(AwsApi):
    """The failover of :class:`~aurora_kit.backends.aws.AwsBackend`."""

    def failover(
        self, cluster_id: str, *, target_instance_id: str | None = None, mode: FailoverMode = "planned"
    ) -> FailoverResult:
        """FailoverDBCluster to ``target_instance_id`` (default: the reader the rule picks). Done when the target's
        IsClusterWriter is true and cluster and target are ``available``; FailoverFailedError at once when
        DescribeEvents reports the failover failed. ``mode="crash"``: UnsupportedOperationError (module docstring)."""
        cluster_id = _lower(cluster_id)
        target_instance_id = _lower(target_instance_id)
        cluster = self._cluster(cluster_id)
        if mode == "crash":
            raise UnsupportedOperationError(
                "Aurora has no API that crashes the writer; FailoverDBCluster is a planned failover",
                hint=(
                    "for an unplanned failure run `SELECT aurora_inject_crash('instance');` on the writer, or an "
                    "AWS FIS experiment (aws:rds:failover-db-cluster is planned too); or use mode='planned'"
                ),
                cluster_id=cluster_id,
                mode=mode,
            )
        if mode != "planned":
            raise InvalidParameterError("mode", mode, "must be 'planned' or 'crash'")
        old_writer, target = d.choose_failover_target(cluster, self._instances(cluster_id), target_instance_id)
        started = _now()
        self._call(RDS, "FailoverDBCluster", DBClusterIdentifier=cluster_id, TargetDBInstanceIdentifier=target)
        if self.dry_run:
            return FailoverResult(cluster_id, mode, old_writer, target, started, started, status="dry-run")

        probed: list[datetime] = []

        def probe() -> _FailoverState:
            probed.append(_now())
            state = self._cluster_state(cluster_id)
            events = self._pages(
                RDS, "DescribeEvents", "Events",
                SourceIdentifier=cluster_id, SourceType="db-cluster", StartTime=started - timedelta(seconds=5),
            )  # fmt: skip
            return state, events

        def done(state: _FailoverState) -> bool:
            (c, st), _ = state
            return d.failover_done(c, st, target)

        def failed(state: _FailoverState) -> str | None:
            (c, st), events = state
            return d.failover_failure(events, started) or _state_terminal((c, st))

        try:
            self._wait(
                f"failover of {cluster_id} to {target}",
                probe,
                done,
                operation="failover",
                describe=lambda state: _describe_state(state[0]),
                fail_if=failed,
            )
        except InvalidStateError as exc:
            raise FailoverFailedError(
                f"failover of {cluster_id!r} to {target!r} failed: {exc.message.split(': ', 1)[-1]}",
                cluster_id=cluster_id,
                target_instance_id=target,
                writer=old_writer,
            ) from exc
        bound = (probed[-1] - probed[-2]).total_seconds() if len(probed) > 1 else (probed[-1] - started).total_seconds()
        return FailoverResult(
            cluster_id, mode, old_writer, target, started, probed[-1], control_plane_error_s=round(bound, 3)
        )
