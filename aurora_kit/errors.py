"""One error hierarchy for aurora_kit.

Every failure an operator acts on has its own class; each carries the identifiers involved
and says what to do next. Driver and SDK errors are wrapped with ``raise ... from exc``.

::

    AuroraKitError
    ├── InvalidParameterError          bad input, rejected before anything is mutated
    ├── ClusterNotFoundError
    ├── ClusterAlreadyExistsError
    ├── InstanceNotFoundError
    ├── SnapshotNotFoundError
    ├── SnapshotAlreadyExistsError
    ├── ProxyNotFoundError
    ├── InvalidStateError              the resource exists but is in the wrong state for the request
    │   ├── DeletionProtectionError
    │   ├── FailoverNotPossibleError
    │   ├── FailoverFailedError        a started failover the platform reports failed (RDS-EVENT-0069/0070)
    │   ├── ConfirmationRequiredError  a destructive step without confirm: true (or the typed cluster id)
    │   │   └── ConfirmationDeclinedError  in JupyterLab: Cancel pressed, or nobody confirmed in time
    │   └── RunSealedError             the run ended and its record is sealed: start a new run
    ├── RestoreWindowError             requested restore time outside the restorable window
    ├── PendingRebootError             a change is waiting for a reboot the caller did not allow
    ├── WaitTimeoutError               a wait ran past its deadline
    ├── BackendOperationError          a backend call or local tool failed
    ├── UnsupportedOperationError      the backend cannot do this (says which one can)
    └── VerificationError              a check of the running cluster failed (data lost, lag too high...)
"""

from __future__ import annotations

from typing import Any


class AuroraKitError(Exception):
    """Root of every error aurora_kit raises on purpose."""

    #: what the operator should do next; subclasses override, instances may replace it
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        #: identifiers involved (cluster_id, instance_id, parameter, value...)
        self.context = context
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.message
        if self.hint:
            text += f" — {self.hint}"
        return text


class InvalidParameterError(AuroraKitError, ValueError):
    """A parameter has a bad value; names the field and the value. Raised before any mutation."""

    hint = "fix the value and run again; nothing was changed"

    def __init__(self, field: str, value: Any, reason: str, *, hint: str | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={value!r}: {reason}", hint=hint, field=field, value=value)


class ClusterNotFoundError(AuroraKitError, LookupError):
    hint = "check the cluster identifier (list clusters to see what exists)"

    def __init__(self, cluster_id: str, *, hint: str | None = None) -> None:
        self.cluster_id = cluster_id
        super().__init__(f"DB cluster {cluster_id!r} not found", hint=hint, cluster_id=cluster_id)


class ClusterAlreadyExistsError(AuroraKitError):
    hint = "choose another identifier, or describe the existing cluster"

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        super().__init__(f"DB cluster {cluster_id!r} already exists", cluster_id=cluster_id)


class InstanceNotFoundError(AuroraKitError, LookupError):
    hint = "check the instance identifier against the cluster's members"

    def __init__(self, instance_id: str, cluster_id: str | None = None) -> None:
        self.instance_id = instance_id
        self.cluster_id = cluster_id
        where = f" in cluster {cluster_id!r}" if cluster_id else ""
        super().__init__(
            f"DB instance {instance_id!r} not found{where}", instance_id=instance_id, cluster_id=cluster_id
        )


class SnapshotNotFoundError(AuroraKitError, LookupError):
    hint = "list the cluster's snapshots to see what exists"

    def __init__(self, snapshot_id: str) -> None:
        self.snapshot_id = snapshot_id
        super().__init__(f"DB cluster snapshot {snapshot_id!r} not found", snapshot_id=snapshot_id)


class SnapshotAlreadyExistsError(AuroraKitError):
    hint = "choose another snapshot identifier"

    def __init__(self, snapshot_id: str) -> None:
        self.snapshot_id = snapshot_id
        super().__init__(f"DB cluster snapshot {snapshot_id!r} already exists", snapshot_id=snapshot_id)


class ProxyNotFoundError(AuroraKitError, LookupError):
    hint = "check the proxy name (09-proxy creates it; the local backend lists it in `aurora-kit local status`)"

    def __init__(self, proxy_name: str) -> None:
        self.proxy_name = proxy_name
        super().__init__(f"DB proxy {proxy_name!r} not found", proxy_name=proxy_name)


class InvalidStateError(AuroraKitError):
    """The resource exists but its state does not allow the request."""

    hint = "wait until the resource is available, or fix its state first"


class DeletionProtectionError(InvalidStateError):
    hint = (
        "nothing was deleted; if you really mean to delete it, lift the protection explicitly: "
        "-p teardown.lift_deletion_protection=true (99-teardown), --force (aurora-kit local down)"
    )

    def __init__(self, cluster_id: str, *, hint: str | None = None) -> None:
        self.cluster_id = cluster_id
        super().__init__(f"DB cluster {cluster_id!r} has deletion protection enabled", hint=hint, cluster_id=cluster_id)


class OneLineInNotebooks:
    """Mixin for errors that are an expected stop, not a bug: a notebook shows them as one line (their class and
    message, which says what to do), not as a traceback through aurora_kit's internals. IPython asks an exception
    for ``_render_traceback_()`` before formatting a traceback; the error output keeps ``ename``/``evalue``."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


class ConfirmationRequiredError(OneLineInNotebooks, InvalidStateError):
    """A destructive step (failover, reboot, teardown) refused before any mutating call: ``confirm`` is false,
    or the per-action confirmation (``teardown.confirm_cluster_id``) does not name the cluster."""

    hint = "rerun with -p confirm=true once you have read the plan (or -p dry_run=true to see it)"


class ConfirmationDeclinedError(ConfirmationRequiredError):
    """In JupyterLab, the operator pressed Cancel at a destructive step's confirmation, or nobody confirmed before
    the confirmation timed out: nothing was changed."""

    hint = "nothing was changed; run the runbook again from its opening cell to be asked again"


class RunSealedError(OneLineInNotebooks, InvalidStateError):
    """The run ended (its last cell ran, a cell failed, or the kernel was interrupted) and its audit record is
    sealed: the run's backend is closed to further calls, so nothing happens outside a record."""

    hint = "run the runbook's opening cell (run, dp = wf.start(...)) again to start a new run with its own record"


class FailoverNotPossibleError(InvalidStateError):
    hint = "a failover needs at least one available reader; add a reader or pick an available target"


class FailoverFailedError(InvalidStateError):
    """A failover was started and the platform reports it failed (Aurora: RDS-EVENT-0069, 0070 when the old writer
    is promoted again); the message quotes what it reported."""

    hint = "check the health of the cluster's instances (DescribeEvents, the instances' logs) before trying again"


class RestoreWindowError(AuroraKitError):
    hint = "pick a time between EarliestRestorableTime and LatestRestorableTime, or use the latest restorable time"


class PendingRebootError(AuroraKitError):
    hint = "reboot the listed instances (readers first, then the writer) to apply the change"


class WaitTimeoutError(AuroraKitError, TimeoutError):
    """A wait ran past its deadline; names what was awaited and the last state seen."""

    hint = "check the resource's events/logs; raise the timeout if the operation is merely slow"

    def __init__(self, what: str, timeout_s: float, last_state: Any) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.last_state = last_state
        super().__init__(
            f"timed out after {timeout_s:.1f}s waiting for {what}; last state seen: {last_state!r}",
            what=what,
            last_state=last_state,
        )


class BackendOperationError(AuroraKitError):
    """A backend call (AWS API, local PostgreSQL tool) failed."""

    hint = "see the underlying error; nothing further was attempted"


class UnsupportedOperationError(AuroraKitError, NotImplementedError):
    hint = "this backend cannot do that; see the runbook for the alternative"


class VerificationError(AuroraKitError, AssertionError):
    """A check of the running cluster failed: the evidence contradicts what the runbook claims."""

    hint = "read the measurement in the record; do not proceed with the change"
