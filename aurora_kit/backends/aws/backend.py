"""The ``aws`` backend: a thin boto3 translation of :class:`~aurora_kit.backends.base.ClusterBackend`.

Decisions (apply methods, drift, failover target, reboot order, restore window...) live in
:mod:`aurora_kit.backends.aws.decisions`; this module reads RDS state, asks those functions, and makes the calls.
Every call goes through :meth:`AwsBackend._call`, which records instead of calling when ``dry_run`` is set and
wraps botocore's ``ClientError`` into :mod:`aurora_kit.errors` (AWS code kept in ``error.context["code"]``).
Every wait goes through :func:`aurora_kit.polling.wait_for` (boto3's waiters poll every 30 s, and the cluster
waiter returns before the instances are up).

Unplanned failover (``mode="crash"``) is refused with UnsupportedOperationError: Aurora has no control-plane
API that crashes the writer. ``FailoverDBCluster`` is a planned failover (it is also what AWS FIS's
``aws:rds:failover-db-cluster`` action calls), so reporting it as a crash would mislabel the measurement. The
error points to the honest alternatives: ``SELECT aurora_inject_crash('instance')`` on the writer (Aurora
PostgreSQL fault-injection function) or an AWS FIS experiment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar, overload

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from psycopg.conninfo import make_conninfo

from aurora_kit.backends.aws import decisions as d
from aurora_kit.backends.aws.plan import format_plan, is_mutating
from aurora_kit.backends.aws.translate import (
    to_alarm_state,
    to_cluster,
    to_instance,
    to_members,
    to_snapshot,
    translate_client_error,
)
from aurora_kit.backends.base import (
    AlarmState,
    BackendTraits,
    Cluster,
    ClusterBackend,
    ConnectionInfo,
    FailoverMode,
    FailoverResult,
    Instance,
    ParameterChange,
    ParameterChangeResult,
    Snapshot,
)
from aurora_kit.errors import (
    BackendOperationError,
    ClusterAlreadyExistsError,
    ClusterNotFoundError,
    DeletionProtectionError,
    InstanceNotFoundError,
    InvalidParameterError,
    InvalidStateError,
    SnapshotAlreadyExistsError,
    SnapshotNotFoundError,
    UnsupportedOperationError,
)
from aurora_kit.polling import wait_for
from aurora_kit.rules import check_final_snapshot_choice, check_restore_window, reboot_order
from aurora_kit.specs import AlarmSpec, ClusterSpec, InstanceSpec

if TYPE_CHECKING:
    from aurora_kit.params import RunbookParameters

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
class PollSettings:
    """How waits poll AWS. Real AWS: start at 2 s, back off to 30 s. Tests inject tiny delays."""

    initial_delay: float = 2.0
    max_delay: float = 30.0
    backoff: float = 1.5
    timeout: float = 3600.0  # create / restore / delete / failover
    short_timeout: float = 900.0  # parameter status settle, secret active, modify


class AwsBackend(ClusterBackend):
    """Aurora PostgreSQL through boto3.

    :param region: AWS region (else the profile's / ``AWS_DEFAULT_REGION``).
    :param profile: named profile for a new ``boto3.Session``; or pass ``session``.
    :param clients: injected boto3 clients by service (``rds``, ``secretsmanager``, ``cloudwatch``) — tests.
    :param ca_bundle: path of the RDS CA bundle, used as ``sslrootcert`` with ``sslmode=verify-full``.
    :param iam_auth: connect with an IAM auth token (``generate_db_auth_token``, 15 min) instead of the
        managed master secret; ``iam_user`` is the database user granted ``rds_iam`` (default: master user).
    :param endpoint_overrides: ``{"<rds hostname>": "host:port"}`` to point data-plane connections elsewhere
        (moto's endpoints are fake); IAM tokens are still signed for the real hostname.
    :param poll: :class:`PollSettings` (or a mapping of its fields).

    ``AWS_ENDPOINT_URL`` (e.g. a moto server) is honoured by botocore itself.
    """

    name = "aws"
    traits = BackendTraits(
        restorable_on_demand=False,
        alarms_sampled_on_demand=False,
        crash_failover=False,
        rejoin_timeout_s=900.0,
        poll_max_delay_s=15.0,
        restorable_wait_s=900.0,
        regional=True,
    )

    @classmethod
    def check_parameters(cls, params: RunbookParameters) -> None:
        if not params.aws.ca_bundle:
            raise InvalidParameterError(
                "aws.ca_bundle", params.aws.ca_bundle, "required with backend: aws (TLS uses sslmode=verify-full)"
            )
        if len(set(params.availability_zones)) < 2 and params.readers > 0:
            raise InvalidParameterError(
                "availability_zones", params.availability_zones, "spread the instances over at least 2 zones"
            )
        bad_az = [z for z in params.availability_zones if not z.startswith(params.region)]
        if bad_az:
            raise InvalidParameterError("availability_zones", bad_az[0], f"not a zone of region {params.region!r}")

    @classmethod
    def options_from(cls, params: RunbookParameters) -> dict[str, Any]:
        options: dict[str, Any] = {"dry_run": params.dry_run, "region": params.region, "iam_auth": params.iam_auth}
        if params.aws.profile:
            options["profile"] = params.aws.profile
        if params.aws.ca_bundle:
            options["ca_bundle"] = params.aws.ca_bundle
        return options

    def unreachable_hint(self) -> str:
        if os.environ.get("AWS_ENDPOINT_URL"):
            return "AWS_ENDPOINT_URL is set (a moto server's endpoints are fake hostnames)"
        return "run from inside the cluster's VPC (or through a tunnel/bastion) to reach the endpoints"

    def __init__(
        self,
        *,
        region: str | None = None,
        profile: str | None = None,
        session: boto3.Session | None = None,
        clients: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        progress: bool = False,
        ca_bundle: str | None = None,
        iam_auth: bool = False,
        iam_user: str | None = None,
        sslmode: str = "verify-full",
        endpoint_overrides: Mapping[str, str] | None = None,
        poll: PollSettings | Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(dry_run=dry_run, progress=progress)
        self._clients: dict[str, Any] = dict(clients or {})
        self._session = session
        self._profile = profile
        self.region = region
        self.ca_bundle = ca_bundle
        self.iam_auth = iam_auth
        self.iam_user = iam_user
        self.sslmode = sslmode
        self.endpoint_overrides = dict(endpoint_overrides or {})
        for host, target in self.endpoint_overrides.items():
            _split_host_port(host, target)
        self.poll = poll if isinstance(poll, PollSettings) else PollSettings(**dict(poll or {}))
        self._engine_defaults: dict[str, dict[str, dict[str, Any]]] = {}

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
        describe: Callable[[T], str] = repr,
        timeout: float | None = None,
        fail_if: Callable[[T], str | None] | None = None,
    ) -> T:
        return wait_for(
            what,
            probe,
            done,
            timeout=self.poll.timeout if timeout is None else timeout,
            initial_delay=self.poll.initial_delay,
            max_delay=self.poll.max_delay,
            backoff=self.poll.backoff,
            describe=describe,
            progress=self.progress,
            fail_if=fail_if,
        )

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

    def _wait_cluster_ready(self, cluster_id: str, expect_instances: Sequence[str] = ()) -> dict[str, Any]:
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
            describe=_describe_state,
            fail_if=_state_terminal,
        )
        assert cluster is not None
        return cluster

    def _wait_cluster_status(self, cluster_id: str, status: str) -> dict[str, Any]:
        cluster = self._wait(
            f"cluster {cluster_id} {status}",
            lambda: self._find_cluster(cluster_id),
            lambda c: c is not None and c.get("Status") == status,
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
            describe=lambda c: (
                "not found" if c is None else f"{c.get('Status')} pending={c.get('PendingModifiedValues') or {}}"
            ),
            timeout=self.poll.short_timeout,
            fail_if=_cluster_terminal,
        )
        assert cluster is not None
        return cluster

    def _wait_instance_gone(self, instance_id: str) -> None:
        self._wait(
            f"instance {instance_id} deleted",
            lambda: self._find_instance(instance_id),
            lambda r: r is None,
            describe=lambda r: "deleted" if r is None else str(r.get("DBInstanceStatus")),
        )

    def _wait_secret_active(self, cluster_id: str) -> dict[str, Any]:
        cluster = self._wait(
            f"master user secret of {cluster_id} active",
            lambda: self._cluster(cluster_id),
            lambda c: (c.get("MasterUserSecret") or {}).get("SecretStatus") == "active",
            describe=lambda c: str((c.get("MasterUserSecret") or {}).get("SecretStatus", "no MasterUserSecret")),
            timeout=self.poll.short_timeout,
        )
        return cluster

    def _wait_snapshot_available(self, snapshot_id: str) -> dict[str, Any]:
        snap = self._wait(
            f"snapshot {snapshot_id} available",
            lambda: self._find_snapshot(snapshot_id),
            lambda s: s is not None and s.get("Status") == "available",
            describe=lambda s: "not found" if s is None else f"{s.get('Status')} {s.get('PercentProgress', '')}%",
            fail_if=lambda s: (
                f"snapshot {snapshot_id} is {s.get('Status')}"
                if s is not None and s.get("Status") in SNAPSHOT_TERMINAL
                else None
            ),
        )
        assert snap is not None
        return snap

    # -- clusters ---------------------------------------------------------------------------------------------
    def create_cluster(self, spec: ClusterSpec, *, wait: bool = True) -> Cluster:
        """Create cluster + instances with secure defaults (see decisions.create_cluster_params).

        Idempotent: an existing identical cluster is returned with no mutating call (waited for if ``wait``);
        an existing cluster that differs raises :class:`~aurora_kit.backends.aws.decisions.ClusterDriftError`
        (a ClusterAlreadyExistsError) listing every ``field: wanted vs actual``, and nothing is changed.
        Resumable: when an interrupted create left only some of the spec's instances and nothing else differs,
        the missing instances are created (see decisions.resume_create)."""
        group = spec.db_cluster_parameter_group_name or d.default_parameter_group_name(spec.cluster_id)
        existing = self._find_cluster(spec.cluster_id)
        if existing is not None:
            drift, missing = d.resume_create(spec, existing, self._instances(spec.cluster_id), group)
            if drift:
                raise d.ClusterDriftError(spec.cluster_id, drift)
            if missing:
                if not self.dry_run:
                    self._wait_cluster_status(spec.cluster_id, "available")
                for inst in missing:
                    self._call(RDS, "CreateDBInstance", **d.create_instance_params(spec.cluster_id, inst, spec.tags))
                if self.dry_run:
                    return _projected_cluster(spec, group)
                if not wait:
                    return to_cluster(self._cluster(spec.cluster_id))
                self._wait_cluster_ready(spec.cluster_id, [i.instance_id for i in spec.instances])
                return to_cluster(self._wait_secret_active(spec.cluster_id))
            if wait and not self.dry_run:
                existing = self._wait_cluster_ready(spec.cluster_id, [i.instance_id for i in spec.instances])
            return to_cluster(existing)

        self._ensure_parameter_group(group, d.parameter_group_family(spec.engine_version), spec.cluster_id)
        created = self._call(RDS, "CreateDBCluster", **d.create_cluster_params(spec, group)).get("DBCluster")
        if not self.dry_run:
            # CreateDBInstance needs the cluster to exist; AWS accepts it while "creating", but waiting for
            # "available" first is what RDS documents for restores and avoids ordering surprises.
            self._wait_cluster_status(spec.cluster_id, "available")
        for inst in spec.instances:  # first = writer: Aurora makes the first instance created the writer
            self._call(RDS, "CreateDBInstance", **d.create_instance_params(spec.cluster_id, inst, spec.tags))
        if self.dry_run:
            return _projected_cluster(spec, group)
        if not wait:
            return to_cluster(created or self._cluster(spec.cluster_id))
        self._wait_cluster_ready(spec.cluster_id, [i.instance_id for i in spec.instances])
        return to_cluster(self._wait_secret_active(spec.cluster_id))

    def _ensure_parameter_group(self, name: str, family: str, cluster_id: str) -> None:
        if name.startswith("default."):
            return
        try:
            groups = self._call(RDS, "DescribeDBClusterParameterGroups", DBClusterParameterGroupName=name)[
                "DBClusterParameterGroups"
            ]
        except InvalidParameterError as exc:
            if exc.context.get("code") not in ("DBParameterGroupNotFound", "DBClusterParameterGroupNotFound"):
                raise
            groups = []
        if groups:
            actual = groups[0].get("DBParameterGroupFamily")
            if actual and actual != family:
                raise InvalidParameterError(
                    "db_cluster_parameter_group_name", name, f"exists with family {actual}, the engine needs {family}"
                )
            return
        self._call(
            RDS,
            "CreateDBClusterParameterGroup",
            DBClusterParameterGroupName=name,
            DBParameterGroupFamily=family,
            Description=f"aurora_kit cluster parameters for {cluster_id}",
            Tags=[{"Key": "aurora-kit:cluster", "Value": cluster_id}],
        )

    def describe_cluster(self, cluster_id: str) -> Cluster:
        cluster_id = _lower(cluster_id)
        return to_cluster(self._cluster(cluster_id))

    def list_clusters(self) -> list[Cluster]:
        rows = self._pages(RDS, "DescribeDBClusters", "DBClusters")
        return [to_cluster(r) for r in rows if r.get("Engine") == d.ENGINE]

    def describe_instances(self, cluster_id: str) -> list[Instance]:
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        instances = self._instances(cluster_id)
        order = [m["DBInstanceIdentifier"].lower() for m in cluster.get("DBClusterMembers") or []]
        ids = [i for i in order if i in instances] + sorted(set(instances) - set(order))
        return [to_instance(instances[i], cluster) for i in ids]

    def modify_cluster(
        self,
        cluster_id: str,
        *,
        deletion_protection: bool | None = None,
        backup_retention_period: int | None = None,
        preferred_backup_window: str | None = None,
    ) -> Cluster:
        """ModifyDBCluster with ApplyImmediately for the fields that change; waits until applied."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        params = d.modify_cluster_params(
            cluster,
            deletion_protection=deletion_protection,
            backup_retention_period=backup_retention_period,
            preferred_backup_window=preferred_backup_window,
        )
        if not params:
            return to_cluster(cluster)
        self._call(RDS, "ModifyDBCluster", **params)
        changed = {k: v for k, v in params.items() if k not in ("DBClusterIdentifier", "ApplyImmediately")}
        if self.dry_run:
            return dataclasses.replace(to_cluster({**cluster, **changed}), status="dry-run")
        return to_cluster(self._wait_modified(cluster_id, changed))

    def delete_cluster(
        self,
        cluster_id: str,
        *,
        final_snapshot_id: str | None,
        skip_final_snapshot: bool = False,
        lift_deletion_protection: bool = False,
        wait: bool = True,
    ) -> Snapshot | None:
        cluster_id = _lower(cluster_id)
        final_snapshot_id = _lower(final_snapshot_id)
        check_final_snapshot_choice(final_snapshot_id, skip_final_snapshot)
        cluster = self._cluster(cluster_id)
        if final_snapshot_id is not None and self._find_snapshot(final_snapshot_id) is not None:
            raise SnapshotAlreadyExistsError(final_snapshot_id)
        if cluster.get("DeletionProtection"):
            if not lift_deletion_protection:
                raise DeletionProtectionError(cluster_id)
            self._call(
                RDS, "ModifyDBCluster", DBClusterIdentifier=cluster_id, DeletionProtection=False, ApplyImmediately=True
            )
            if not self.dry_run:
                self._wait_modified(cluster_id, {"DeletionProtection": False})
        members = [m["DBInstanceIdentifier"].lower() for m in cluster.get("DBClusterMembers") or []]
        writer = [
            m["DBInstanceIdentifier"].lower() for m in cluster.get("DBClusterMembers") or [] if m.get("IsClusterWriter")
        ]
        statuses = {i: r.get("DBInstanceStatus") for i, r in self._instances(cluster_id).items()}
        # every DeleteDBInstance is sent at once (Aurora orders the teardown itself); readers are listed before
        # the writer only so the plan reads naturally. Then wait until all are gone: DeleteDBCluster is refused
        # while the cluster still has instances.
        for instance_id in [m for m in members if m not in writer] + writer:
            if statuses.get(instance_id) == "deleting":  # a previous, interrupted run already asked
                continue
            self._call(RDS, "DeleteDBInstance", DBInstanceIdentifier=instance_id)
        if not self.dry_run:
            for instance_id in members:  # the cluster cannot be deleted while it has instances
                self._wait_instance_gone(instance_id)
        params: dict[str, Any] = {"DBClusterIdentifier": cluster_id}
        if skip_final_snapshot:
            params["SkipFinalSnapshot"] = True
        else:
            params["SkipFinalSnapshot"] = False
            params["FinalDBSnapshotIdentifier"] = final_snapshot_id
        self._call(RDS, "DeleteDBCluster", **params)
        if self.dry_run:
            if final_snapshot_id is None:
                return None
            return Snapshot(final_snapshot_id, cluster_id, "dry-run", "manual", cluster.get("EngineVersion", ""))
        if not wait:
            return None
        self._wait(
            f"cluster {cluster_id} deleted",
            lambda: self._find_cluster(cluster_id),
            lambda c: c is None,
            describe=lambda c: "deleted" if c is None else str(c.get("Status")),
        )
        if final_snapshot_id is None:
            return None
        return to_snapshot(self._wait_snapshot_available(final_snapshot_id))

    def stop_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster:
        """StopDBCluster (Aurora restarts a stopped cluster by itself after 7 days); idempotent."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        if cluster.get("Status") == "stopped":
            return to_cluster(cluster)
        if cluster.get("Status") != "stopping":
            self._call(RDS, "StopDBCluster", DBClusterIdentifier=cluster_id)
        if self.dry_run:
            return dataclasses.replace(to_cluster(cluster), status="dry-run")
        return to_cluster(self._wait_cluster_status(cluster_id, "stopped") if wait else self._cluster(cluster_id))

    def start_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster:
        """StartDBCluster; waits for the cluster and every instance; idempotent."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        if cluster.get("Status") == "available":
            return to_cluster(cluster)
        if cluster.get("Status") != "starting":
            self._call(RDS, "StartDBCluster", DBClusterIdentifier=cluster_id)
        if self.dry_run:
            return dataclasses.replace(to_cluster(cluster), status="dry-run")
        return to_cluster(self._wait_cluster_ready(cluster_id) if wait else self._cluster(cluster_id))

    # -- instances --------------------------------------------------------------------------------------------
    def create_instance(self, cluster_id: str, spec: InstanceSpec, *, wait: bool = True) -> Instance:
        """Add an instance (the writer if the cluster has none). Idempotent for an existing member."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        existing = self._find_instance(spec.instance_id)
        if existing is not None:
            if str(existing.get("DBClusterIdentifier", "")).lower() != cluster_id:
                raise InvalidStateError(
                    f"DB instance {spec.instance_id!r} already exists in cluster "
                    f"{existing.get('DBClusterIdentifier')!r}",
                    instance_id=spec.instance_id,
                    cluster_id=cluster_id,
                )
            if wait and not self.dry_run:
                cluster = self._wait_cluster_ready(cluster_id, [spec.instance_id])
                existing = self._find_instance(spec.instance_id) or existing
            return to_instance(existing, cluster)
        self._call(
            RDS, "CreateDBInstance", **d.create_instance_params(cluster_id, spec, d.tag_dict(cluster.get("TagList")))
        )
        if self.dry_run:
            return Instance(
                spec.instance_id,
                cluster_id,
                "dry-run",
                spec.instance_class,
                is_cluster_writer=not cluster.get("DBClusterMembers"),
                endpoint_address="",
                endpoint_port=0,
                availability_zone=spec.availability_zone,
                promotion_tier=spec.promotion_tier,
            )
        if wait:
            cluster = self._wait_cluster_ready(cluster_id, [spec.instance_id])
        instance = self._find_instance(spec.instance_id)
        if instance is None:
            raise BackendOperationError(f"instance {spec.instance_id!r} vanished after CreateDBInstance")
        return to_instance(instance, cluster)

    def delete_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> None:
        cluster_id = _lower(cluster_id)
        instance_id = _lower(instance_id)
        cluster = self._cluster(cluster_id)
        self._member(cluster, instance_id)
        self._call(RDS, "DeleteDBInstance", DBInstanceIdentifier=instance_id)
        if wait and not self.dry_run:
            self._wait_instance_gone(instance_id)

    def reboot_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> Instance:
        cluster_id = _lower(cluster_id)
        instance_id = _lower(instance_id)
        cluster = self._cluster(cluster_id)
        self._member(cluster, instance_id)
        response = self._call(RDS, "RebootDBInstance", DBInstanceIdentifier=instance_id)
        if self.dry_run:
            inst = self._find_instance(instance_id) or {"DBInstanceIdentifier": instance_id}
            return dataclasses.replace(to_instance(inst, cluster), status="dry-run")
        if not wait:
            return to_instance(response.get("DBInstance") or self._find_instance(instance_id) or {}, cluster)
        return self._wait_instance_rebooted(cluster_id, instance_id, response, require_in_sync=False)

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
            describe=describe,
            fail_if=lambda state: _instance_terminal(instance_id, (state[1] or {}).get("DBInstanceStatus")),
        )
        assert inst is not None
        return to_instance(inst, cluster)

    # -- parameters -------------------------------------------------------------------------------------------
    def _group_of(self, cluster: Mapping[str, Any]) -> str:
        group = cluster.get("DBClusterParameterGroup")
        if not group:
            raise InvalidStateError(
                f"cluster {cluster.get('DBClusterIdentifier')!r} reports no cluster parameter group",
                cluster_id=cluster.get("DBClusterIdentifier"),
            )
        return str(group)

    def _group_parameters(self, group: str) -> dict[str, dict[str, Any]]:
        rows = self._pages(RDS, "DescribeDBClusterParameters", "Parameters", DBClusterParameterGroupName=group)
        return {r["ParameterName"]: r for r in rows}

    def _engine_default_parameters(self, family: str) -> dict[str, dict[str, Any]]:
        """DescribeEngineDefaultClusterParameters (paginated under EngineDefaults), cached per family once read.
        A failure raises a typed error and caches nothing (the next call asks AWS again)."""
        if family not in self._engine_defaults:
            rows = self._pages(
                RDS,
                "DescribeEngineDefaultClusterParameters",
                "EngineDefaults.Parameters",
                DBParameterGroupFamily=family,
            )
            self._engine_defaults[family] = {r["ParameterName"]: r for r in rows}
        return self._engine_defaults[family]

    def get_parameters(self, cluster_id: str, names: list[str]) -> dict[str, str | None]:
        cluster_id = _lower(cluster_id)
        group = self._group_of(self._cluster(cluster_id))
        params = self._group_parameters(group)
        return {n: (params[n].get("ParameterValue") if n in params else None) for n in names}

    def apply_parameters(
        self,
        cluster_id: str,
        parameters: Mapping[str, str],
        *,
        apply_method: d.ApplyMethodRequest = "auto",
    ) -> ParameterChangeResult:
        """ModifyDBClusterParameterGroup: dynamic → ``immediate``, static → ``pending-reboot`` (``apply_method``
        may force ``pending-reboot``; forcing ``immediate`` on a static parameter is refused before any call).
        ``shared_preload_libraries`` is merged with what is loaded now / the engine default."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        group = self._group_of(cluster)
        if group.startswith("default."):
            raise InvalidStateError(
                f"cluster {cluster_id!r} uses the default parameter group {group!r}, which cannot be modified",
                hint="create a custom cluster parameter group and attach it (create_cluster does this by default)",
                cluster_id=cluster_id,
            )
        family = d.parameter_group_family(str(cluster.get("EngineVersion", "")))
        planned = d.plan_parameter_changes(
            parameters,
            self._group_parameters(group),
            apply_method=apply_method,
            engine_defaults=self._engine_default_parameters(family),
        )
        changes = [ParameterChange(p.name, p.old_value, p.new_value, p.apply_type, p.apply_method) for p in planned]
        if not planned:
            return ParameterChangeResult(cluster_id, [], self._pending_reboot(cluster), status="no-change")
        for batch in d.batches(planned):
            self._call(
                RDS,
                "ModifyDBClusterParameterGroup",
                DBClusterParameterGroupName=group,
                Parameters=[
                    {"ParameterName": p.name, "ParameterValue": p.new_value, "ApplyMethod": p.apply_method}
                    for p in batch
                ],
            )
        if self.dry_run:
            static = [c for c in changes if c.apply_method == "pending-reboot"]
            pending = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers") or []] if static else []
            return ParameterChangeResult(cluster_id, changes, pending, status="dry-run")
        cluster = self._wait_parameters_settled(cluster_id, group, planned)
        return ParameterChangeResult(cluster_id, changes, self._pending_reboot(cluster))

    def _wait_parameters_settled(
        self, cluster_id: str, group: str, planned: Sequence[d.PlannedParameter]
    ) -> dict[str, Any]:
        """Right after ModifyDBClusterParameterGroup the members may still say ``in-sync`` (they have not started
        ``applying``), so "nothing is applying" proves nothing. Wait first until the group reports every new
        ParameterValue, then until every member reaches the state the change leads to: ``pending-reboot`` when any
        change waits for a reboot, else no longer ``applying``."""
        wanted = {p.name: p.new_value for p in planned}
        self._wait(
            f"parameter group {group} showing the new values",
            lambda: self._group_parameters(group),
            lambda params: all((params.get(n) or {}).get("ParameterValue") == v for n, v in wanted.items()),
            describe=lambda params: ", ".join(f"{n}={(params.get(n) or {}).get('ParameterValue')!r}" for n in wanted),
            timeout=self.poll.short_timeout,
        )
        if any(p.apply_method == "pending-reboot" for p in planned):
            what, settled = "pending-reboot", lambda status: status == "pending-reboot"
        else:  # a member left pending-reboot by an earlier change stays so: only "applying" is unsettled
            what, settled = "done applying", lambda status: status != "applying"
        return self._wait(
            f"members of {cluster_id} {what}",
            lambda: self._cluster(cluster_id),
            lambda c: all(settled(m.get("DBClusterParameterGroupStatus")) for m in c.get("DBClusterMembers") or []),
            describe=lambda c: ", ".join(
                f"{m['DBInstanceIdentifier']}:{m.get('DBClusterParameterGroupStatus')}"
                for m in c.get("DBClusterMembers") or []
            ),
            timeout=self.poll.short_timeout,
            fail_if=_cluster_terminal,
        )

    @staticmethod
    def _pending_reboot(cluster: Mapping[str, Any]) -> list[str]:
        return [
            m["DBInstanceIdentifier"]
            for m in cluster.get("DBClusterMembers") or []
            if m.get("DBClusterParameterGroupStatus") == "pending-reboot"
        ]

    def reboot_pending(self, cluster_id: str) -> list[Instance]:
        """Reboot every pending-reboot member, readers first then the writer; each must come back
        ``available`` and ``in-sync`` before the next is rebooted."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        order = reboot_order(to_members(cluster))
        rebooted: list[Instance] = []
        for instance_id in order:
            response = self._call(RDS, "RebootDBInstance", DBInstanceIdentifier=instance_id)
            if self.dry_run:
                inst = self._find_instance(instance_id) or {"DBInstanceIdentifier": instance_id}
                rebooted.append(dataclasses.replace(to_instance(inst, cluster), status="dry-run"))
                continue
            rebooted.append(self._wait_instance_rebooted(cluster_id, instance_id, response, require_in_sync=True))
        return rebooted

    # -- snapshots and restores -------------------------------------------------------------------------------
    def create_snapshot(
        self, cluster_id: str, snapshot_id: str, *, tags: Mapping[str, str] | None = None, wait: bool = True
    ) -> Snapshot:
        """Manual cluster snapshot, tagged with the caller's tags plus ``aurora-kit:cluster``."""
        cluster_id = _lower(cluster_id)
        snapshot_id = _lower(snapshot_id)
        cluster = self._cluster(cluster_id)
        if self._find_snapshot(snapshot_id) is not None:
            raise SnapshotAlreadyExistsError(snapshot_id)
        all_tags = {"aurora-kit:cluster": cluster_id, **dict(tags or {})}
        response = self._call(
            RDS,
            "CreateDBClusterSnapshot",
            DBClusterIdentifier=cluster_id,
            DBClusterSnapshotIdentifier=snapshot_id,
            Tags=d.tag_list(all_tags),
        )
        if self.dry_run:
            return Snapshot(
                snapshot_id,
                cluster_id,
                "dry-run",
                "manual",
                str(cluster.get("EngineVersion", "")),
                storage_encrypted=bool(cluster.get("StorageEncrypted")),
                tags=all_tags,
            )
        if wait:
            return to_snapshot(self._wait_snapshot_available(snapshot_id))
        return to_snapshot(response["DBClusterSnapshot"])

    def describe_snapshots(self, cluster_id: str | None = None) -> list[Snapshot]:
        cluster_id = _lower(cluster_id)
        params: dict[str, Any] = {"DBClusterIdentifier": cluster_id} if cluster_id else {}
        rows = self._pages(RDS, "DescribeDBClusterSnapshots", "DBClusterSnapshots", **params)
        return [to_snapshot(r) for r in rows if r.get("Engine", d.ENGINE) == d.ENGINE]

    def delete_snapshot(self, snapshot_id: str) -> None:
        snapshot_id = _lower(snapshot_id)
        self._call(RDS, "DescribeDBClusterSnapshots", DBClusterSnapshotIdentifier=snapshot_id)  # NotFound → typed
        self._call(RDS, "DeleteDBClusterSnapshot", DBClusterSnapshotIdentifier=snapshot_id)
        if not self.dry_run:
            self._wait(
                f"snapshot {snapshot_id} deleted",
                lambda: self._find_snapshot(snapshot_id),
                lambda s: s is None,
                describe=lambda s: "deleted" if s is None else str(s.get("Status")),
            )

    def restore_from_snapshot(
        self,
        snapshot_id: str,
        new_cluster_id: str,
        *,
        instances: list[InstanceSpec] | None = None,
        wait: bool = True,
        db_cluster_parameter_group_name: str | None = None,
        db_subnet_group_name: str | None = None,
        vpc_security_group_ids: Sequence[str] | None = None,
    ) -> Cluster:
        """RestoreDBClusterFromSnapshot with parameter group, subnet group, security groups, IAM auth, log
        exports, deletion protection... passed EXPLICITLY (from the arguments, else the source cluster if it
        still exists); then a managed master secret if the restore has none, then the instances."""
        snapshot_id = _lower(snapshot_id)
        new_cluster_id = _lower(new_cluster_id)
        snapshot = self._find_snapshot(snapshot_id)
        if snapshot is None:
            raise SnapshotNotFoundError(snapshot_id)
        if self._find_cluster(new_cluster_id) is not None:
            raise ClusterAlreadyExistsError(new_cluster_id)
        source = self._find_cluster(str(snapshot.get("DBClusterIdentifier", "")))
        settings = d.restore_settings(
            source,
            parameter_group=db_cluster_parameter_group_name,
            subnet_group=db_subnet_group_name,
            security_group_ids=vpc_security_group_ids,
        )
        if source is None:
            _warn_defaults(settings, new_cluster_id)
        params = {
            "DBClusterIdentifier": new_cluster_id,
            "SnapshotIdentifier": snapshot_id,
            "Engine": snapshot.get("Engine", d.ENGINE),
            "EngineVersion": snapshot.get("EngineVersion"),
            **settings,
            "Tags": d.tag_list({"aurora-kit:restored-from-snapshot": snapshot_id}),
        }
        params = {k: v for k, v in params.items() if v is not None}
        response = self._call(RDS, "RestoreDBClusterFromSnapshot", **params)
        return self._finish_restore(
            new_cluster_id, response, instances or [], wait, settings, str(params["EngineVersion"] or "")
        )

    def restore_to_point_in_time(
        self,
        source_cluster_id: str,
        new_cluster_id: str,
        *,
        restore_time: datetime | None = None,
        use_latest_restorable_time: bool = False,
        instances: list[InstanceSpec] | None = None,
        wait: bool = True,
        db_cluster_parameter_group_name: str | None = None,
        db_subnet_group_name: str | None = None,
        vpc_security_group_ids: Sequence[str] | None = None,
    ) -> Cluster:
        """RestoreDBClusterToPointInTime (full copy) with settings passed explicitly, as for snapshots.
        RestoreWindowError before any call when ``restore_time`` is outside the source's restorable window."""
        source_cluster_id = _lower(source_cluster_id)
        new_cluster_id = _lower(new_cluster_id)
        if (restore_time is None) == (not use_latest_restorable_time):
            raise InvalidParameterError(
                "restore_time", restore_time, "give exactly one of restore_time or use_latest_restorable_time=True"
            )
        source = self._cluster(source_cluster_id)
        params: dict[str, Any] = {
            "DBClusterIdentifier": new_cluster_id,
            "SourceDBClusterIdentifier": source_cluster_id,
            "RestoreType": "full-copy",
        }
        if restore_time is not None:
            params["RestoreToTime"] = check_restore_window(
                restore_time,
                source.get("EarliestRestorableTime"),
                source.get("LatestRestorableTime"),
                cluster_id=source_cluster_id,
            )
        else:
            params["UseLatestRestorableTime"] = True
        if self._find_cluster(new_cluster_id) is not None:
            raise ClusterAlreadyExistsError(new_cluster_id)
        settings = d.restore_settings(
            source,
            parameter_group=db_cluster_parameter_group_name,
            subnet_group=db_subnet_group_name,
            security_group_ids=vpc_security_group_ids,
        )
        params.update(settings)
        params["Tags"] = d.tag_list({"aurora-kit:restored-from-cluster": source_cluster_id})
        response = self._call(RDS, "RestoreDBClusterToPointInTime", **params)
        return self._finish_restore(
            new_cluster_id, response, instances or [], wait, settings, str(source.get("EngineVersion", ""))
        )

    def _finish_restore(
        self,
        cluster_id: str,
        response: Mapping[str, Any],
        instances: list[InstanceSpec],
        wait: bool,
        settings: Mapping[str, Any],
        engine_version: str,
    ) -> Cluster:
        """After RestoreDBCluster*: hand the master password to Secrets Manager if the restore has no managed
        secret (whatever ``wait`` says: the restored cluster must not keep an unknown plain password), then create
        the instances, then (``wait``) wait for all of it. ModifyDBCluster needs the cluster ``available``, so
        when the restore's answer shows no secret we wait for ``available`` and decide on what it reports then.
        A dry run cannot know what the restore will report: it records the ModifyDBCluster as planned."""
        secret_params = {"DBClusterIdentifier": cluster_id, "ManageMasterUserPassword": True, "ApplyImmediately": True}
        if self.dry_run:
            self._call(RDS, "ModifyDBCluster", **secret_params)
            for inst in instances:
                self._call(RDS, "CreateDBInstance", **d.create_instance_params(cluster_id, inst))
            return Cluster(
                db_cluster_identifier=cluster_id,
                status="dry-run",
                engine=d.ENGINE,
                engine_version=engine_version,
                endpoint="",
                reader_endpoint="",
                port=5432,
                master_username="",
                database_name="",
                db_cluster_members=[],
                backup_retention_period=int(settings.get("BackupRetentionPeriod", 0)),
                preferred_backup_window=str(settings.get("PreferredBackupWindow", "")),
                storage_encrypted=True,
                deletion_protection=bool(settings.get("DeletionProtection")),
                iam_database_authentication_enabled=bool(settings.get("EnableIAMDatabaseAuthentication")),
                db_cluster_parameter_group=settings.get("DBClusterParameterGroupName"),
            )
        restored: Mapping[str, Any] = response.get("DBCluster") or {}
        if not restored.get("MasterUserSecret") or instances:
            # ModifyDBCluster needs "available"; CreateDBInstance after a restore too (RDS documents the order)
            restored = self._wait_cluster_status(cluster_id, "available")
        if not restored.get("MasterUserSecret"):
            self._call(RDS, "ModifyDBCluster", **secret_params)
        for inst in instances:
            self._call(RDS, "CreateDBInstance", **d.create_instance_params(cluster_id, inst))
        if not wait:
            return to_cluster(self._cluster(cluster_id))
        self._wait_cluster_ready(cluster_id, [i.instance_id for i in instances])
        return to_cluster(self._wait_secret_active(cluster_id))

    # -- failover ---------------------------------------------------------------------------------------------
    def failover(
        self, cluster_id: str, *, target_instance_id: str | None = None, mode: FailoverMode = "planned"
    ) -> FailoverResult:
        """FailoverDBCluster to ``target_instance_id`` (default: best available reader by promotion tier).
        Done when the target's IsClusterWriter is true and cluster and target are ``available``.

        ``mode="crash"`` raises UnsupportedOperationError (see the module docstring for why)."""
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

        def done(state: tuple[dict[str, Any] | None, dict[str, str]]) -> bool:
            c, st = state
            if c is None or c.get("Status") != "available" or st.get(target) != "available":
                return False
            return any(
                m["DBInstanceIdentifier"].lower() == target and m.get("IsClusterWriter") for m in c["DBClusterMembers"]
            )

        self._wait(
            f"failover of {cluster_id} to {target}",
            lambda: self._cluster_state(cluster_id),
            done,
            describe=_describe_state,
            fail_if=_state_terminal,
        )
        return FailoverResult(cluster_id, mode, old_writer, target, started, _now())

    # -- data plane -------------------------------------------------------------------------------------------
    def connection_info(self, cluster_id: str, endpoint: str = "cluster") -> ConnectionInfo:
        """conninfo for the cluster (writer) endpoint, the reader endpoint or one instance, with
        ``sslmode=verify-full`` + ``sslrootcert=<ca_bundle>``. The password (managed secret, or an IAM token
        when ``iam_auth``) is in ``ConnectionInfo.password`` only, never in conninfo."""
        cluster_id = _lower(cluster_id)
        endpoint = _lower(endpoint)
        cluster = self._cluster(cluster_id)
        port = int(cluster.get("Port") or 5432)
        if endpoint == "cluster":
            host = str(cluster.get("Endpoint") or "")
        elif endpoint == "reader":
            host = str(cluster.get("ReaderEndpoint") or "")
        else:
            self._member(cluster, endpoint)
            inst = self._find_instance(endpoint) or {}
            host = str((inst.get("Endpoint") or {}).get("Address", ""))
            port = int((inst.get("Endpoint") or {}).get("Port") or port)
        if not host:
            raise InvalidStateError(
                f"endpoint {endpoint!r} of {cluster_id!r} has no address yet (status {cluster.get('Status')!r})",
                cluster_id=cluster_id,
                endpoint=endpoint,
            )
        user = (self.iam_user if self.iam_auth and self.iam_user else None) or str(cluster.get("MasterUsername"))
        dbname = str(cluster.get("DatabaseName") or "postgres")
        if self.iam_auth:
            if not cluster.get("IAMDatabaseAuthenticationEnabled"):
                raise InvalidStateError(
                    f"IAM database authentication is disabled on {cluster_id!r}",
                    hint="enable EnableIAMDatabaseAuthentication or construct the backend with iam_auth=False",
                    cluster_id=cluster_id,
                )
            rds = self.client(RDS)
            password = rds.generate_db_auth_token(
                DBHostname=host, Port=port, DBUsername=user, Region=rds.meta.region_name
            )
        else:
            password = self._master_password(cluster)
        conn_host, conn_port = _split_host_port(host, self.endpoint_overrides.get(host, f"{host}:{port}"))
        params: dict[str, Any] = {
            "host": conn_host,
            "port": conn_port,
            "dbname": dbname,
            "user": user,
            "sslmode": self.sslmode,
        }
        if self.ca_bundle:
            params["sslrootcert"] = self.ca_bundle
        return ConnectionInfo(
            make_conninfo("", **params), user=user, dbname=dbname, password=password, endpoint=endpoint
        )

    def _master_password(self, cluster: Mapping[str, Any]) -> str:
        cluster_id = str(cluster.get("DBClusterIdentifier"))
        secret = cluster.get("MasterUserSecret") or {}
        if not secret.get("SecretArn"):
            raise InvalidStateError(
                f"cluster {cluster_id!r} has no managed master user secret",
                hint="enable ManageMasterUserPassword (ModifyDBCluster) or use iam_auth=True",
                cluster_id=cluster_id,
            )
        if secret.get("SecretStatus") != "active":
            secret = self._wait_secret_active(cluster_id).get("MasterUserSecret") or secret
        value = self._call("secretsmanager", "GetSecretValue", SecretId=secret["SecretArn"])
        try:
            return str(json.loads(value["SecretString"])["password"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendOperationError(
                f"the master user secret of {cluster_id!r} has no JSON 'password' field", cluster_id=cluster_id
            ) from exc

    # -- monitoring -------------------------------------------------------------------------------------------
    def put_alarms(
        self, cluster_id: str, alarms: list[AlarmSpec], *, sns_topic_arn: str | None = None
    ) -> list[AlarmState]:
        """PutMetricAlarm (namespace AWS/RDS) per alarm and target (see decisions.alarm_targets); upserts."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        members = cluster.get("DBClusterMembers") or []
        writer = next((m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")), None)
        readers = sorted(m["DBInstanceIdentifier"] for m in members if not m.get("IsClusterWriter"))
        names: list[str] = []
        planned: list[AlarmState] = []
        for spec in alarms:
            for target in d.alarm_targets(spec, cluster_id, writer, readers):
                self._call(
                    "cloudwatch", "PutMetricAlarm", **d.put_metric_alarm_params(spec, target, cluster_id, sns_topic_arn)
                )
                names.append(target.alarm_name)
                planned.append(
                    AlarmState(
                        target.alarm_name,
                        spec.metric,
                        spec.threshold,
                        spec.comparison,
                        "dry-run",
                        "dry run: not created",
                        f"{target.dimension_name}={target.dimension_value}",
                    )
                )
        if self.dry_run:
            return planned
        by_name = {a.alarm_name: a for a in self.describe_alarms(cluster_id)}
        return [by_name[n] for n in names if n in by_name]

    def describe_alarms(self, cluster_id: str) -> list[AlarmState]:
        cluster_id = _lower(cluster_id)
        rows = self._pages("cloudwatch", "DescribeAlarms", "MetricAlarms", AlarmNamePrefix=d.alarm_prefix(cluster_id))
        return [to_alarm_state(r) for r in rows]

    def close(self) -> None:
        for client in self._clients.values():
            closer = getattr(client, "close", None)
            if callable(closer):
                closer()
        self._clients.clear()


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


def _split_host_port(host: str, target: str) -> tuple[str, int]:
    name, sep, port = target.rpartition(":")
    if not sep or not name or not port.isdigit():
        raise InvalidParameterError(f"endpoint_overrides[{host}]", target, "must be 'host:port'")
    return name, int(port)


def _describe_state(state: tuple[dict[str, Any] | None, dict[str, str]]) -> str:
    cluster, statuses = state
    if cluster is None:
        return "cluster not found"
    writer = next(
        (m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers") or [] if m.get("IsClusterWriter")), None
    )
    inst = ", ".join(f"{i}:{s}" for i, s in sorted(statuses.items())) or "no instances"
    return f"cluster {cluster.get('Status')} writer={writer} [{inst}]"


def _warn_defaults(settings: Mapping[str, Any], cluster_id: str) -> None:
    missing = [
        name
        for key, name in (
            ("DBClusterParameterGroupName", "parameter group"),
            ("DBSubnetGroupName", "subnet group"),
            ("VpcSecurityGroupIds", "security groups"),
        )
        if key not in settings
    ]
    if missing:
        warnings.warn(
            f"restore {cluster_id}: source cluster is gone and no {', '.join(missing)} given: AWS uses the defaults",
            UserWarning,
            stacklevel=3,
        )


def _projected_cluster(spec: ClusterSpec, group: str) -> Cluster:
    from aurora_kit.backends.base import ClusterMember

    return Cluster(
        db_cluster_identifier=spec.cluster_id,
        status="dry-run",
        engine=d.ENGINE,
        engine_version=spec.engine_version,
        endpoint="",
        reader_endpoint="",
        port=spec.port or 5432,
        master_username=spec.master_username,
        database_name=spec.database_name,
        db_cluster_members=[
            ClusterMember(i.instance_id, n == 0, "in-sync", i.promotion_tier) for n, i in enumerate(spec.instances)
        ],
        backup_retention_period=spec.backup_retention_period,
        preferred_backup_window=spec.preferred_backup_window,
        storage_encrypted=spec.storage_encrypted,
        deletion_protection=spec.deletion_protection,
        iam_database_authentication_enabled=spec.iam_database_authentication,
        db_cluster_parameter_group=group,
        tags=dict(spec.tags),
    )


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
