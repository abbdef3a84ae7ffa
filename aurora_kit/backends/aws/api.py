"""The I/O layer of the ``aws`` backend: boto3 clients, the one call path (:meth:`AwsApi._call`: records instead
of calling in a dry run, turns botocore errors into typed ones), paginated reads, raw describes and the waits.

Every wait goes through :func:`aurora_kit.polling.wait_for` with :class:`PollSettings` (boto3's own waiters poll
every 30 s, and the cluster waiter returns before the instances are up), and stops at once on a status that does
not clear by itself (``failed``, ``incompatible-parameters``...). The operations are built on it in
:mod:`.backend`, :mod:`.parameters` and :mod:`.snapshots`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar, overload

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from aurora_kit.backends.aws import decisions as d
from aurora_kit.backends.aws.plan import format_plan, is_mutating
from aurora_kit.backends.aws.translate import (
    to_instance,
    translate_client_error,
)
from aurora_kit.backends.base import (
    ClusterBackend,
    Instance,
)
from aurora_kit.errors import (
    BackendOperationError,
    ClusterNotFoundError,
    InstanceNotFoundError,
    InvalidParameterError,
    SnapshotNotFoundError,
)
from aurora_kit.polling import wait_for
from aurora_kit.specs import InstanceSpec

T = TypeVar("T")
RDS = "rds"

#: statuses a wait must not sit through: they do not clear by themselves (an operator has to act), so a wait
#: stops at once with InvalidStateError naming the resource and the state instead of running to its deadline
CLUSTER_TERMINAL = frozenset(
    {
        "failed",
        "incompatible-parameters",
        "incompatible-network",
        "incompatible-restore",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "migration-failed",
    }
)
INSTANCE_TERMINAL = frozenset(
    {
        "failed",
        "incompatible-parameters",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-restore",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "insufficient-capacity",
        "restore-error",
        "storage-full",
    }
)
SNAPSHOT_TERMINAL = frozenset({"failed", "error"})


@dataclass(frozen=True)
class PollProfile:
    """How one kind of operation is polled: first delay, longest delay, deadline (seconds)."""

    initial_delay: float
    max_delay: float
    timeout: float


#: each operation's profile, after its duration on Aurora: a failover completes in well under a minute (polled at
#: least every 2 s, given up after 5 min — a failed one is reported by its event at once); a reboot or a parameter
#: change in about a minute; creates, restores, snapshots and deletes take 10-30 min (polled up to every 30 s).
#: Every profile starts at 1 s and backs off (×1.5), so short operations are seen done soon after they are.
PROFILES: dict[str, PollProfile] = {
    "failover": PollProfile(1.0, 2.0, 300.0),
    "reboot": PollProfile(1.0, 5.0, 900.0),
    "secret": PollProfile(1.0, 5.0, 300.0),
    "modify": PollProfile(1.0, 10.0, 900.0),
    "parameters": PollProfile(1.0, 10.0, 900.0),
    "create": PollProfile(1.0, 30.0, 3600.0),
    "restore": PollProfile(1.0, 30.0, 5400.0),
    "snapshot": PollProfile(1.0, 30.0, 3600.0),
    "delete": PollProfile(1.0, 30.0, 3600.0),
}


@dataclass(frozen=True)
class PollSettings:
    """Caps on every poll profile (:data:`PROFILES`): an operation polls with its own profile, never slower than
    these. The defaults leave the profiles as they are; tests pass tiny ones."""

    initial_delay: float = 5.0
    max_delay: float = 30.0
    backoff: float = 1.5
    timeout: float = 5400.0
    short_timeout: float = 900.0  # cap of the short operations' deadlines (modify, parameters, reboot, secret)

    def profile(self, operation: str) -> PollProfile:
        """``operation``'s profile (:data:`PROFILES`), capped by these settings."""
        own = PROFILES[operation]
        short = operation in ("modify", "parameters", "reboot", "secret")
        return PollProfile(
            min(own.initial_delay, self.initial_delay),
            min(own.max_delay, self.max_delay),
            min(own.timeout, self.short_timeout if short else self.timeout),
        )


class AwsApi(ClusterBackend):
    """Plumbing shared by the aws operation modules (see the module docstring); :class:`AwsBackend` is the class to
    use."""

    _clients: dict[str, Any]
    _session: boto3.Session | None
    _profile: str | None
    region: str | None
    poll: PollSettings
    _engine_defaults: dict[str, dict[str, dict[str, Any]]]

    # -- plumbing ---------------------------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """The boto3 client for ``service`` (created lazily, standard retry mode)."""
        if service not in self._clients:
            if self._session is None:
                self._session = boto3.Session(profile_name=self._profile, region_name=self.region)
            region = self.region or self._session.region_name
            if not region:
                raise InvalidParameterError("region", None, "no AWS region: pass region= or set AWS_DEFAULT_REGION")
            self._clients[service] = self._session.client(
                service,  # type: ignore[call-overload]
                region_name=region,
                config=Config(retries={"mode": "standard", "max_attempts": 8}, user_agent_extra="aurora_kit"),
            )
        return self._clients[service]

    def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """Make one AWS call (or record it, for a mutating call in a dry run); typed errors on failure."""
        if self.dry_run and is_mutating(operation):
            self._record(service, operation, **params)
            return {}
        with _translating(operation, params):
            return dict(getattr(self.client(service), _snake(operation))(**params))

    def _pages(self, service: str, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every page of a paginated read; ``key`` is the list to collect, dotted when nested
        (``EngineDefaults.Parameters``)."""
        out: list[dict[str, Any]] = []
        with _translating(operation, params):
            for page in self.client(service).get_paginator(_snake(operation)).paginate(**params):
                node: Any = page
                for part in key.split("."):
                    node = (node or {}).get(part)
                out.extend(node or [])
        return out

    def _wait(
        self,
        what: str,
        probe: Callable[[], T],
        done: Callable[[T], bool],
        *,
        operation: str,
        describe: Callable[[T], str] = repr,
        fail_if: Callable[[T], str | None] | None = None,
    ) -> T:
        """Poll with ``operation``'s profile (:meth:`PollSettings.profile`)."""
        profile = self.poll.profile(operation)
        since = datetime.now(timezone.utc)
        return wait_for(
            what,
            probe,
            done,
            timeout=profile.timeout,
            initial_delay=profile.initial_delay,
            max_delay=profile.max_delay,
            backoff=self.poll.backoff,
            describe=describe,
            progress=self.progress,
            fail_if=fail_if,
            events=lambda: self._recent_events(since, what),
        )

    def _recent_events(self, since: datetime, what: str) -> list[str]:
        """RDS events since ``since`` about the resources named in ``what`` (a wait's live progress line only:
        needs ``rds:DescribeEvents``; the wait goes on without events when that fails)."""
        names = {w.strip("(),") for w in what.split()}
        rows = self.client(RDS).describe_events(StartTime=since).get("Events") or []

        def about(source: str) -> bool:
            return source in names or any(source.startswith(f"{n}-") for n in names if n)

        return [
            f"{e['Date']:%H:%M:%S} {e.get('SourceIdentifier')}: {e.get('Message')}"
            for e in rows
            if about(str(e.get("SourceIdentifier", "")))
        ][-3:]

    def format_plan(self) -> str:
        """The dry-run plan, readable (see :func:`aurora_kit.backends.aws.plan.format_plan`)."""
        return format_plan(self.plan)

    # -- raw reads -------------------------------------------------------------------------------------------
    def _find_cluster(self, cluster_id: str) -> dict[str, Any] | None:
        try:
            return self._cluster(cluster_id)
        except ClusterNotFoundError:
            return None

    def _cluster(self, cluster_id: str) -> dict[str, Any]:
        """DescribeDBClusters for one id; ClusterNotFoundError (AWS code in context) if it does not exist."""
        clusters = self._call(RDS, "DescribeDBClusters", DBClusterIdentifier=cluster_id)["DBClusters"]
        if not clusters:
            raise ClusterNotFoundError(cluster_id)
        return dict(clusters[0])

    def _instances(self, cluster_id: str) -> dict[str, dict[str, Any]]:
        rows = self._pages(
            RDS, "DescribeDBInstances", "DBInstances", Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}]
        )
        return {
            r["DBInstanceIdentifier"].lower(): r
            for r in rows
            if str(r.get("DBClusterIdentifier", "")).lower() == cluster_id.lower()
        }

    def _find_instance(self, instance_id: str) -> dict[str, Any] | None:
        try:
            rows = self._call(RDS, "DescribeDBInstances", DBInstanceIdentifier=instance_id)["DBInstances"]
        except InstanceNotFoundError:
            return None
        return dict(rows[0]) if rows else None

    def _find_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        try:
            rows = self._call(RDS, "DescribeDBClusterSnapshots", DBClusterSnapshotIdentifier=snapshot_id)
        except SnapshotNotFoundError:
            return None
        snaps = rows.get("DBClusterSnapshots") or []
        return dict(snaps[0]) if snaps else None

    def _member(self, cluster: Mapping[str, Any], instance_id: str) -> dict[str, Any]:
        for m in cluster.get("DBClusterMembers") or []:
            if m["DBInstanceIdentifier"].lower() == instance_id.lower():
                return dict(m)
        raise InstanceNotFoundError(instance_id, cluster.get("DBClusterIdentifier"))

    # -- waits ------------------------------------------------------------------------------------------------
    def _cluster_state(self, cluster_id: str) -> tuple[dict[str, Any] | None, dict[str, str]]:
        cluster = self._find_cluster(cluster_id)
        statuses = {i: r.get("DBInstanceStatus", "?") for i, r in self._instances(cluster_id).items()}
        return cluster, statuses

    def _wait_cluster_ready(
        self, cluster_id: str, expect_instances: Sequence[str] = (), *, operation: str = "create"
    ) -> dict[str, Any]:
        """Cluster ``available`` AND every instance (at least ``expect_instances``) ``available``."""

        def done(state: tuple[dict[str, Any] | None, dict[str, str]]) -> bool:
            cluster, statuses = state
            return (
                cluster is not None
                and cluster.get("Status") == "available"
                and all(statuses.get(i) == "available" for i in expect_instances)
                and all(s == "available" for s in statuses.values())
            )

        cluster, _ = self._wait(
            f"cluster {cluster_id} and its instances available",
            lambda: self._cluster_state(cluster_id),
            done,
            operation=operation,
            describe=_describe_state,
            fail_if=_state_terminal,
        )
        assert cluster is not None
        return cluster

    def _create_instances(
        self, cluster_id: str, instances: Sequence[InstanceSpec], tags: Mapping[str, str], *, has_writer: bool
    ) -> None:
        """CreateDBInstance for each; without a writer yet, the first is created alone and awaited until the cluster
        reports it as the writer: Aurora makes whichever instance comes up first the writer, so readers created at
        the same time could take that role."""
        for n, inst in enumerate(instances):
            self._call(RDS, "CreateDBInstance", **d.create_instance_params(cluster_id, inst, tags))
            if n == 0 and not has_writer and len(instances) > 1 and not self.dry_run:
                self._wait_writer(cluster_id, inst.instance_id)

    def _wait_writer(self, cluster_id: str, instance_id: str) -> None:
        """Until ``instance_id`` is ``available`` and the cluster's members name it the writer."""

        def done(state: tuple[dict[str, Any] | None, dict[str, str]]) -> bool:
            cluster, statuses = state
            members = (cluster or {}).get("DBClusterMembers") or []
            writer = any(m["DBInstanceIdentifier"].lower() == instance_id and m.get("IsClusterWriter") for m in members)
            return writer and statuses.get(instance_id) == "available"

        self._wait(
            f"{instance_id} up as the writer of {cluster_id}",
            lambda: self._cluster_state(cluster_id),
            done,
            operation="create",
            describe=_describe_state,
            fail_if=_state_terminal,
        )

    def _wait_cluster_status(self, cluster_id: str, status: str, *, operation: str = "create") -> dict[str, Any]:
        cluster = self._wait(
            f"cluster {cluster_id} {status}",
            lambda: self._find_cluster(cluster_id),
            lambda c: c is not None and c.get("Status") == status,
            operation=operation,
            describe=lambda c: "not found" if c is None else str(c.get("Status")),
            fail_if=_cluster_terminal,
        )
        assert cluster is not None
        return cluster

    def _wait_modified(self, cluster_id: str, expected: Mapping[str, Any]) -> dict[str, Any]:
        """After ModifyDBCluster(ApplyImmediately): available, PendingModifiedValues empty, values visible."""

        def done(c: dict[str, Any] | None) -> bool:
            return (
                c is not None
                and c.get("Status") == "available"
                and not c.get("PendingModifiedValues")
                and all(c.get(k) == v for k, v in expected.items())
            )

        cluster = self._wait(
            f"cluster {cluster_id} modification applied ({', '.join(expected) or 'no fields'})",
            lambda: self._find_cluster(cluster_id),
            done,
            operation="modify",
            describe=lambda c: (
                "not found" if c is None else f"{c.get('Status')} pending={c.get('PendingModifiedValues') or {}}"
            ),
            fail_if=_cluster_terminal,
        )
        assert cluster is not None
        return cluster

    def _wait_instance_gone(self, instance_id: str) -> None:
        self._wait(
            f"instance {instance_id} deleted",
            lambda: self._find_instance(instance_id),
            lambda r: r is None,
            operation="delete",
            describe=lambda r: "deleted" if r is None else str(r.get("DBInstanceStatus")),
        )

    def _wait_secret_active(self, cluster_id: str) -> dict[str, Any]:
        cluster = self._wait(
            f"master user secret of {cluster_id} active",
            lambda: self._cluster(cluster_id),
            lambda c: (c.get("MasterUserSecret") or {}).get("SecretStatus") == "active",
            operation="secret",
            describe=lambda c: str((c.get("MasterUserSecret") or {}).get("SecretStatus", "no MasterUserSecret")),
        )
        return cluster

    def _wait_snapshot_available(self, snapshot_id: str) -> dict[str, Any]:
        snap = self._wait(
            f"snapshot {snapshot_id} available",
            lambda: self._find_snapshot(snapshot_id),
            lambda s: s is not None and s.get("Status") == "available",
            operation="snapshot",
            describe=lambda s: "not found" if s is None else f"{s.get('Status')} {s.get('PercentProgress', '')}%",
            fail_if=lambda s: (
                f"snapshot {snapshot_id} is {s.get('Status')}"
                if s is not None and s.get("Status") in SNAPSHOT_TERMINAL
                else None
            ),
        )
        assert snap is not None
        return snap

    def _wait_instance_rebooted(
        self, cluster_id: str, instance_id: str, reboot_response: Mapping[str, Any], *, require_in_sync: bool
    ) -> Instance:
        """Done when the instance is ``available`` again (and ``in-sync`` if ``require_in_sync``) AFTER having been
        seen down: a poll right after RebootDBInstance may still return the stale ``available``. The first "down"
        sighting is RebootDBInstance's own answer (``DBInstanceStatus: rebooting``), else a later poll."""
        answered = str((reboot_response.get("DBInstance") or {}).get("DBInstanceStatus", "available"))
        seen_down = answered != "available"

        def probe() -> tuple[dict[str, Any], dict[str, Any] | None]:
            cluster = self._cluster(cluster_id)
            return cluster, self._find_instance(instance_id)

        def done(state: tuple[dict[str, Any], dict[str, Any] | None]) -> bool:
            nonlocal seen_down
            cluster, inst = state
            if inst is None or inst.get("DBInstanceStatus") != "available":
                seen_down = True
                return False
            status = self._member(cluster, instance_id).get("DBClusterParameterGroupStatus")
            return seen_down and (not require_in_sync or status == "in-sync")

        def describe(state: tuple[dict[str, Any], dict[str, Any] | None]) -> str:
            cluster, inst = state
            member: dict[str, Any] = next(
                (m for m in cluster.get("DBClusterMembers") or [] if m["DBInstanceIdentifier"].lower() == instance_id),
                {},
            )
            status = (inst or {}).get("DBInstanceStatus", "missing")
            return f"{status} params={member.get('DBClusterParameterGroupStatus')} seen_down={seen_down}"

        cluster, inst = self._wait(
            f"instance {instance_id} rebooted",
            probe,
            done,
            operation="reboot",
            describe=describe,
            fail_if=lambda state: _instance_terminal(instance_id, (state[1] or {}).get("DBInstanceStatus")),
        )
        assert inst is not None
        return to_instance(inst, cluster)


# -- helpers ----------------------------------------------------------------------------------------------
@overload
def _lower(identifier: str) -> str: ...
@overload
def _lower(identifier: None) -> None: ...
def _lower(identifier: str | None) -> str | None:
    """RDS stores identifiers in lowercase ("Orders" is "orders"): every id the caller passes is lowercased once,
    at the public method, so lookups and comparisons with what RDS returns match."""
    return None if identifier is None else identifier.lower()


def _snake(operation: str) -> str:
    from botocore import xform_name

    return str(xform_name(operation))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _describe_state(state: tuple[dict[str, Any] | None, dict[str, str]]) -> str:
    cluster, statuses = state
    if cluster is None:
        return "cluster not found"
    writer = next(
        (m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers") or [] if m.get("IsClusterWriter")), None
    )
    inst = ", ".join(f"{i}:{s}" for i, s in sorted(statuses.items())) or "no instances"
    return f"cluster {cluster.get('Status')} writer={writer} [{inst}]"


@contextmanager
def _translating(operation: str, params: Mapping[str, Any] | None = None) -> Iterator[None]:
    """botocore failures inside the block become aurora_kit errors: ClientError by its AWS code (see
    :func:`~aurora_kit.backends.aws.translate.translate_client_error`), transport / parsing failures as
    BackendOperationError (code = the botocore exception name)."""
    try:
        yield
    except ClientError as exc:
        raise translate_client_error(exc, operation, params or {}) from exc
    except (BotoCoreError, ResponseParserError) as exc:  # no credentials, endpoint down, garbled answer
        raise BackendOperationError(
            f"{operation} failed before AWS answered: {type(exc).__name__}: {exc}",
            hint="check credentials, region and AWS_ENDPOINT_URL; nothing further was attempted",
            operation=operation,
            code=type(exc).__name__,
        ) from exc


def _cluster_terminal(cluster: Mapping[str, Any] | None) -> str | None:
    if cluster is not None and cluster.get("Status") in CLUSTER_TERMINAL:
        return f"cluster {cluster.get('DBClusterIdentifier')} is {cluster.get('Status')}"
    return None


def _instance_terminal(instance_id: str, status: str | None) -> str | None:
    return f"instance {instance_id} is {status}" if status in INSTANCE_TERMINAL else None


def _state_terminal(state: tuple[dict[str, Any] | None, dict[str, str]]) -> str | None:
    """fail_if for (cluster, {instance: status}) waits: the first terminal cluster or instance status."""
    cluster, statuses = state
    reasons = [_cluster_terminal(cluster), *(_instance_terminal(i, s) for i, s in sorted(statuses.items()))]
    return next((r for r in reasons if r), None)
