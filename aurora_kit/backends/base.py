"""The backend interface both ``local`` and ``aws`` implement, and the typed results they return.

Field names are the snake_case of the RDS API's (``Status`` → ``status``, ``IsClusterWriter`` →
``is_cluster_writer``, ``DBClusterParameterGroupStatus`` → ``db_cluster_parameter_group_status``), and status
strings are RDS's own (``available``, ``creating``, ``pending-reboot``, ``in-sync``...), so a DBA recognises
them. ``as_rds()`` gives the PascalCase dict for records and tables.

Dry run: with ``dry_run=True`` a backend makes no mutating call. Each mutating method appends the calls it
would make to ``backend.plan`` (operation + parameters, secrets redacted) and returns a projected result whose
``status`` is ``"dry-run"``. Read-only methods still run for real.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from aurora_kit.backends.capacity import (
    Proxy,
    ScalingActivity,
    ScalingPolicy,
    ServerlessScalingConfiguration,
)
from aurora_kit.backends.shaped import RdsShaped
from aurora_kit.errors import UnsupportedOperationError
from aurora_kit.rules import is_secret_key, memory_settings
from aurora_kit.specs import AlarmSpec, ClusterSpec, InstanceSpec, ProxySpec, ReaderScalingPolicy

EndpointKind = Literal["cluster", "reader"]
FailoverMode = Literal["planned", "crash"]

REDACTED = "***redacted***"


@dataclass(frozen=True)
class ClusterMember(RdsShaped):
    db_instance_identifier: str
    is_cluster_writer: bool
    db_cluster_parameter_group_status: str = "in-sync"  # in-sync | pending-reboot | applying
    promotion_tier: int = 1


@dataclass(frozen=True)
class Instance(RdsShaped):
    db_instance_identifier: str
    db_cluster_identifier: str
    status: str  # available | creating | rebooting | stopped | starting | stopping | deleting | failed | dry-run
    db_instance_class: str
    is_cluster_writer: bool
    endpoint_address: str
    endpoint_port: int
    availability_zone: str | None = None
    promotion_tier: int = 1
    engine_version: str = ""
    db_cluster_parameter_group_status: str = "in-sync"


@dataclass(frozen=True)
class Cluster(RdsShaped):
    db_cluster_identifier: str
    status: str  # available | creating | modifying | stopped | starting | stopping | failing-over | deleting | dry-run
    engine: str
    engine_version: str
    endpoint: str  # writer ("cluster") endpoint address; local: libpq multi-host list
    reader_endpoint: str
    port: int
    master_username: str
    database_name: str
    db_cluster_members: list[ClusterMember]
    backup_retention_period: int
    preferred_backup_window: str
    storage_encrypted: bool
    deletion_protection: bool
    iam_database_authentication_enabled: bool = False
    db_cluster_parameter_group: str | None = None
    availability_zones: list[str] = field(default_factory=list)
    earliest_restorable_time: datetime | None = None
    latest_restorable_time: datetime | None = None
    cluster_create_time: datetime | None = None
    master_user_secret_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    serverless_v2_scaling_configuration: ServerlessScalingConfiguration | None = None

    @property
    def writer_id(self) -> str | None:
        return next((m.db_instance_identifier for m in self.db_cluster_members if m.is_cluster_writer), None)

    @property
    def reader_ids(self) -> list[str]:
        return [m.db_instance_identifier for m in self.db_cluster_members if not m.is_cluster_writer]


def projected_cluster(
    spec: ClusterSpec, *, engine_version: str, port: int, group: str | None = None, zones: list[str] | None = None
) -> Cluster:
    """What a dry run returns for a cluster it would create: the spec's shape, status ``dry-run``, no endpoints."""
    return Cluster(
        db_cluster_identifier=spec.cluster_id,
        status="dry-run",
        engine="aurora-postgresql",
        engine_version=engine_version,
        endpoint="",
        reader_endpoint="",
        port=port,
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
        availability_zones=list(zones or []),
        tags=dict(spec.tags),
    )


@dataclass(frozen=True)
class Snapshot(RdsShaped):
    db_cluster_snapshot_identifier: str
    db_cluster_identifier: str
    status: str  # creating | available | deleting | failed | dry-run
    snapshot_type: str  # manual | automated
    engine_version: str
    snapshot_create_time: datetime | None = None
    allocated_storage: int = 0  # GiB on AWS; local reports bytes / 2**30 rounded up
    storage_encrypted: bool = False
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ParameterChange(RdsShaped):
    parameter_name: str
    old_value: str | None
    new_value: str
    apply_type: str  # dynamic | static
    apply_method: str  # immediate | pending-reboot


@dataclass(frozen=True)
class ParameterChangeResult(RdsShaped):
    db_cluster_identifier: str
    changes: list[ParameterChange]
    pending_reboot_instances: list[str]  # instances whose db_cluster_parameter_group_status is pending-reboot
    status: str = "applied"  # applied | no-change | dry-run

    @property
    def needs_reboot(self) -> bool:
        return bool(self.pending_reboot_instances)


@dataclass(frozen=True)
class FailoverResult(RdsShaped):
    db_cluster_identifier: str
    mode: str  # planned | crash
    old_writer: str
    new_writer: str
    started_at: datetime
    completed_at: datetime
    status: str = "completed"  # completed | dry-run
    #: how early the failover may have completed before ``completed_at`` (the poll interval that saw it; 0: exact)
    control_plane_error_s: float = 0.0

    @property
    def control_plane_seconds(self) -> float:
        """From the call to the first poll that saw it done (its true end lies up to ``control_plane_error_s``
        earlier)."""
        return (self.completed_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class AlarmState(RdsShaped):
    alarm_name: str
    metric_name: str
    threshold: float
    comparison_operator: str
    state_value: str  # OK | ALARM | INSUFFICIENT_DATA
    state_reason: str = ""
    dimension: str = ""  # DBClusterIdentifier=... or DBInstanceIdentifier=...
    observed_value: float | None = None


@dataclass(frozen=True, repr=False)
class ConnectionInfo:
    """How to reach an endpoint with psycopg: ``psycopg.connect(info.conninfo, **info.kwargs())``.

    ``conninfo`` never contains the password; ``password`` is kept out of ``repr`` so it cannot leak into a
    notebook output or an audit record by accident.
    """

    conninfo: str
    user: str
    dbname: str
    password: str | None = field(default=None, compare=False)
    endpoint: str = ""  # cluster | reader | <instance id>

    def kwargs(self) -> dict[str, Any]:
        return {"password": self.password} if self.password else {}

    def __repr__(self) -> str:
        return f"ConnectionInfo(endpoint={self.endpoint!r}, conninfo={self.conninfo!r}, password={REDACTED!r})"


@dataclass(frozen=True)
class PlannedCall:
    """One mutating call a dry run would have made."""

    service: str  # rds | secretsmanager | cloudwatch | local
    operation: str  # AWS API name (CreateDBCluster...) or the local equivalent
    params: dict[str, Any]

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.service}.{self.operation}({args})"


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``params`` with every secret-looking key's value replaced, recursively."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if is_secret_key(key):
            out[key] = REDACTED
        elif isinstance(value, Mapping):
            out[key] = redact(value)
        elif isinstance(value, list):
            out[key] = [redact(v) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out


class AwsSettings(Protocol):
    @property
    def profile(self) -> str | None: ...
    @property
    def ca_bundle(self) -> str | None: ...
    @property
    def endpoint_overrides(self) -> dict[str, str]: ...
    @property
    def iam_db_user(self) -> str | None: ...


class BackendSettings(Protocol):
    """What a backend reads from a runbook's parameters (:class:`aurora_kit.params.RunbookParameters` is one), so
    this module needs nothing from the parameter model."""

    @property
    def backend(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def local_root(self) -> str | None: ...
    @property
    def region(self) -> str: ...
    @property
    def iam_auth(self) -> bool: ...
    @property
    def readers(self) -> int: ...
    @property
    def availability_zones(self) -> list[str]: ...
    @property
    def aws(self) -> AwsSettings: ...

    def to_cluster_spec(self) -> ClusterSpec: ...


@dataclass(frozen=True)
class BackendTraits:
    """What differs between backends, declared by each, so steps ask the backend instead of comparing its name.

    Every field is a fact about the platform, not a preference: a step that needs one reads
    ``run.backend.traits.<field>``.
    """

    #: a point-in-time restore to "now" works at once (local: the restore archives the WAL up to now itself);
    #: False: LatestRestorableTime trails (Aurora: up to ~5 minutes) and a restore to T waits until it passes T
    restorable_on_demand: bool
    #: alarms are evaluated from a sample taken when asked (local), so INSUFFICIENT_DATA means the metric could not
    #: be measured; False: CloudWatch evaluates periods, and a new alarm is INSUFFICIENT_DATA until it has
    alarms_sampled_on_demand: bool
    #: the backend can crash the writer itself (local: SIGKILL); Aurora has no API for it
    crash_failover: bool
    #: how long the old writer takes at most to come back as a reader after a failover
    rejoin_timeout_s: float
    #: the longest pause between two polls of a long wait (local answers in ms, AWS in seconds)
    poll_max_delay_s: float
    #: how long a restore may wait for LatestRestorableTime to pass the target (unused when restorable on demand)
    restorable_wait_s: float
    #: the ``region`` parameter means something (aws); on local it is only a label
    regional: bool
    #: IAM database authentication (aws: tokens from generate_db_auth_token, users granted rds_iam); local: passwords
    iam_database_auth: bool = False
    #: automated backups can outlive a deleted cluster (``DeleteAutomatedBackups=False`` keeps them for their
    #: retention period: aws, and local, which moves them to ``retained/<resource id>``)
    retains_automated_backups: bool = False
    #: a reader scaling policy is evaluated when asked (local: :meth:`ClusterBackend.evaluate_scaling_policy` samples
    #: the readers now); False: CloudWatch alarms evaluate it and Application Auto Scaling acts, by itself
    scaling_evaluated_on_demand: bool = False
    #: the connection proxy pins a session to its server connection after session state changes (RDS Proxy: a
    #: session-level SET pins); False (local PgBouncer): the state lasts for its transaction only, then is discarded
    proxy_pins_sessions: bool = True
    #: how long the reader endpoint's DNS answer lives (Aurora: 1 s, so new connections balance over the readers one
    #: second apart); 0: the client picks a reader per connection (local: libpq's load_balance_hosts=random)
    reader_endpoint_dns_ttl_s: float = 1.0


class ClusterBackend(ABC):
    """Control plane of an Aurora-shaped cluster. Data plane goes through :meth:`connection_info` + psycopg.

    Every method raises typed :mod:`aurora_kit.errors` errors; input is validated before anything is mutated.
    Waits go through :func:`aurora_kit.polling.wait_for`; ``wait=True`` methods return once the resource is
    ``available`` (for clusters: the cluster **and every instance**).
    """

    name: str = "abstract"
    traits: BackendTraits

    def unreachable_hint(self) -> str:
        """What to do when this backend's endpoints cannot be reached from here ('' when nothing to add)."""
        return ""

    @classmethod
    def check_parameters(cls, params: BackendSettings) -> None:
        """Refuse (InvalidParameterError) runbook parameters this backend cannot work with; called while the
        parameters are validated, before any kernel starts. The default accepts every parameter."""
        return None

    @classmethod
    @abstractmethod
    def options_from(cls, params: BackendSettings) -> dict[str, Any]:
        """Constructor keyword arguments from a runbook's parameters."""

    def __init__(self, *, dry_run: bool = False, progress: bool = False) -> None:
        self.dry_run = dry_run
        self.progress = progress
        self.plan: list[PlannedCall] = []
        #: called with every password this backend hands out, once each (a run registers it as a secret)
        self.on_secret: Callable[[str], None] | None = None
        self._declared: set[str] = set()

    def _record(self, service: str, operation: str, **params: Any) -> PlannedCall:
        call = PlannedCall(service, operation, redact(params))
        self.plan.append(call)
        return call

    # -- clusters ---------------------------------------------------------------------------------------
    @abstractmethod
    def create_cluster(self, spec: ClusterSpec, *, wait: bool = True) -> Cluster:
        """Create the cluster and its instances (first = writer). Raises ClusterAlreadyExistsError if the id is
        taken by a cluster that differs from ``spec``; if an identical cluster exists, returns it unchanged."""

    @abstractmethod
    def describe_cluster(self, cluster_id: str) -> Cluster: ...

    @abstractmethod
    def list_clusters(self) -> list[Cluster]: ...

    @abstractmethod
    def describe_instances(self, cluster_id: str) -> list[Instance]: ...

    @abstractmethod
    def modify_cluster(
        self,
        cluster_id: str,
        *,
        deletion_protection: bool | None = None,
        backup_retention_period: int | None = None,
        preferred_backup_window: str | None = None,
    ) -> Cluster: ...

    @abstractmethod
    def delete_cluster(
        self,
        cluster_id: str,
        *,
        final_snapshot_id: str | None,
        skip_final_snapshot: bool = False,
        lift_deletion_protection: bool = False,
        wait: bool = True,
        delete_automated_backups: bool = True,
    ) -> Snapshot | None:
        """Delete instances, then the cluster. Exactly one of ``final_snapshot_id`` / ``skip_final_snapshot``
        must be given (InvalidParameterError otherwise). DeletionProtectionError unless protection is off or
        ``lift_deletion_protection``. ``delete_automated_backups`` (RDS ``DeleteAutomatedBackups``, default True
        as in the RDS API): False keeps the automated backups as retained backups that expire with the retention
        period, where the backend can (``traits.retains_automated_backups``; UnsupportedOperationError, before any
        change, where it cannot). Returns the final snapshot, if one was taken."""

    @abstractmethod
    def stop_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster: ...

    @abstractmethod
    def start_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster: ...

    # -- instances --------------------------------------------------------------------------------------
    @abstractmethod
    def create_instance(self, cluster_id: str, spec: InstanceSpec, *, wait: bool = True) -> Instance:
        """Add an instance: the writer if the cluster has none (restored clusters), else a reader."""

    @abstractmethod
    def delete_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> None: ...

    @abstractmethod
    def reboot_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> Instance: ...

    # -- parameters -------------------------------------------------------------------------------------
    @abstractmethod
    def get_parameters(self, cluster_id: str, names: list[str]) -> dict[str, str | None]:
        """Current values of the cluster parameter group for ``names`` (None where unset/default unknown)."""

    @abstractmethod
    def apply_parameters(self, cluster_id: str, parameters: Mapping[str, str]) -> ParameterChangeResult:
        """Set cluster parameters: dynamic ones take effect now, static ones are ``pending-reboot``. Unknown
        names and invalid values raise InvalidParameterError before anything changes."""

    @abstractmethod
    def reboot_pending(self, cluster_id: str) -> list[Instance]:
        """Rolling reboot of every instance whose parameter status is pending-reboot: readers first, then the
        writer, waiting for each. Returns the rebooted instances."""

    # -- snapshots and restores -------------------------------------------------------------------------
    @abstractmethod
    def create_snapshot(
        self, cluster_id: str, snapshot_id: str, *, tags: Mapping[str, str] | None = None, wait: bool = True
    ) -> Snapshot: ...

    @abstractmethod
    def describe_snapshots(self, cluster_id: str | None = None) -> list[Snapshot]: ...

    @abstractmethod
    def delete_snapshot(self, snapshot_id: str) -> None: ...

    @abstractmethod
    def restore_from_snapshot(
        self, snapshot_id: str, new_cluster_id: str, *, instances: list[InstanceSpec] | None = None, wait: bool = True
    ) -> Cluster:
        """Restore into a new cluster. As on Aurora the restore itself creates no instance; when ``instances``
        is given they are created (first = writer) and waited for."""

    @abstractmethod
    def restore_to_point_in_time(
        self,
        source_cluster_id: str,
        new_cluster_id: str,
        *,
        restore_time: datetime | None = None,
        use_latest_restorable_time: bool = False,
        instances: list[InstanceSpec] | None = None,
        wait: bool = True,
    ) -> Cluster:
        """PITR into a new cluster. Exactly one of ``restore_time`` (tz-aware) / ``use_latest_restorable_time``.
        RestoreWindowError when the time is outside [earliest, latest] restorable time."""

    # -- failover ---------------------------------------------------------------------------------------
    @abstractmethod
    def failover(
        self, cluster_id: str, *, target_instance_id: str | None = None, mode: FailoverMode = "planned"
    ) -> FailoverResult:
        """Promote ``target_instance_id`` (default: the reader :func:`aurora_kit.rules.failover_target` names —
        promotion tier, then the largest class, then the name).
        ``crash`` simulates an unplanned writer failure first (game day). Returns once the target is writer
        and the cluster available; the old writer comes back as a reader."""

    # -- data plane -------------------------------------------------------------------------------------
    def connection_info(self, cluster_id: str, endpoint: str = "cluster") -> ConnectionInfo:
        """How to reach ``endpoint``: ``"cluster"`` (writer), ``"reader"`` (load-balanced readers; the writer when
        there are none) or an instance identifier. The password is handed to :attr:`on_secret` (a run declares it
        secret there, so its record never holds it) before anyone else sees it — whoever asks, steps or checks."""
        return self._declare(self._endpoint_info(cluster_id, endpoint))

    def _declare(self, info: ConnectionInfo) -> ConnectionInfo:
        if info.password and self.on_secret is not None and info.password not in self._declared:
            self.on_secret(info.password)
            self._declared.add(info.password)
        return info

    def master_connection_info(self, cluster_id: str, endpoint: str = "cluster") -> ConnectionInfo:
        """:meth:`connection_info` as the master user with its password, for administration (creating users and
        extensions) — whoever the data plane otherwise logs in as (with IAM auth: the IAM user). The default: the
        backend's data plane is the master user's."""
        return self.connection_info(cluster_id, endpoint)

    @abstractmethod
    def _endpoint_info(self, cluster_id: str, endpoint: str) -> ConnectionInfo:
        """The backend's own :meth:`connection_info`, without the secret declaration."""

    # -- monitoring -------------------------------------------------------------------------------------
    @abstractmethod
    def put_alarms(
        self, cluster_id: str, alarms: list[AlarmSpec], *, sns_topic_arn: str | None = None
    ) -> list[AlarmState]: ...

    @abstractmethod
    def describe_alarms(self, cluster_id: str) -> list[AlarmState]:
        """Current state of the cluster's alarms (local: thresholds evaluated now from the instances)."""

    # -- scaling (08-scale) ---------------------------------------------------------------------------------
    def _unsupported(self, operation: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(f"the {self.name} backend has no {operation}", operation=operation)

    def modify_instance(
        self, cluster_id: str, instance_id: str, *, instance_class: str | None = None, wait: bool = True
    ) -> Instance:
        """ModifyDBInstance with ApplyImmediately: a new instance class restarts the instance with that class's
        memory settings (:func:`aurora_kit.rules.memory_settings`); ``db.serverless`` needs the cluster's capacity
        range first. Returns once the instance is available again."""
        raise self._unsupported("modify_instance")

    def class_memory_settings(self, cluster_id: str, instance_id: str) -> tuple[dict[str, int], float, str]:
        """What ``instance_id`` runs with by its class alone (no parameter group): ``max_connections`` and
        ``shared_buffers`` in kB, the relative tolerance they are known to, and where they come from. Here: Aurora's
        default formulas where AWS documents the class's memory ({} where it does not)."""
        cluster = self.describe_cluster(cluster_id)
        inst = next(i for i in self.describe_instances(cluster_id) if i.db_instance_identifier == instance_id)
        scaling = cluster.serverless_v2_scaling_configuration
        found = memory_settings(inst.db_instance_class, max_acu=scaling.max_capacity if scaling else None)
        if found is None or found.source != "documented":
            return {}, 0.0, f"{inst.db_instance_class}: not documented by AWS, not judged"
        # DBInstanceClassMemory is known to ±9531392 bytes from the documented max_connections: ~0.1 %
        wanted = {"max_connections": found.max_connections, "shared_buffers": found.shared_buffers_kb}
        return wanted, 0.01, f"Aurora's default formulas ({inst.db_instance_class})"

    def set_serverless_scaling(self, cluster_id: str, min_capacity: float, max_capacity: float) -> Cluster:
        """ModifyDBCluster ``ServerlessV2ScalingConfiguration`` (ACUs; :func:`aurora_kit.rules.check_acu_capacity`)."""
        raise self._unsupported("set_serverless_scaling")

    def put_scaling_policy(self, cluster_id: str, policy: ReaderScalingPolicy) -> ScalingPolicy:
        """Register the cluster's readers as a scalable target (min/max capacity) and put a target-tracking policy
        on them (Application Auto Scaling). Returns the policy with its alarms."""
        raise self._unsupported("put_scaling_policy")

    def describe_scaling_policies(self, cluster_id: str) -> list[ScalingPolicy]:
        """The cluster's reader scaling policies with their capacity and alarms (none: [])."""
        raise self._unsupported("describe_scaling_policies")

    def delete_scaling_policy(self, cluster_id: str, policy_name: str) -> None:
        """Delete the policy and deregister the scalable target (the readers it added stay, as on AWS)."""
        raise self._unsupported("delete_scaling_policy")

    def describe_scaling_activities(self, cluster_id: str) -> list[ScalingActivity]:
        """What the scaling policy did, newest first."""
        raise self._unsupported("describe_scaling_activities")

    def evaluate_scaling_policy(self, cluster_id: str) -> ScalingActivity | None:
        """Evaluate the policy now and act (add or remove readers); None when it asks for no change. Only where
        ``traits.scaling_evaluated_on_demand`` (elsewhere the platform evaluates it by itself)."""
        raise self._unsupported("evaluate_scaling_policy")

    # -- connection proxy (09-proxy) -------------------------------------------------------------------------
    def create_proxy(self, cluster_id: str, spec: ProxySpec, *, wait: bool = True) -> Proxy:
        """A proxy for the cluster (RDS Proxy; local: PgBouncer): the cluster registered as its target, the pool
        limits set, a read-only endpoint when ``spec.read_only_endpoint``; returns once every target is
        AVAILABLE. An identical proxy that exists is returned unchanged."""
        raise self._unsupported("create_proxy")

    def describe_proxy(self, proxy_name: str) -> Proxy:
        """The proxy with its targets (and their health) and endpoints; ProxyNotFoundError when there is none."""
        raise self._unsupported("describe_proxy")

    def delete_proxy(self, proxy_name: str, *, wait: bool = True) -> None:
        """Delete the proxy, its endpoints (and the IAM role it created for itself)."""
        raise self._unsupported("delete_proxy")

    def proxy_connection_info(self, proxy_name: str, endpoint: str | None = None) -> ConnectionInfo:
        """How to reach the proxy's ``endpoint`` (None: the default, read/write one), password declared secret as
        with :meth:`connection_info`."""
        return self._declare(self._proxy_endpoint_info(proxy_name, endpoint))

    def _proxy_endpoint_info(self, proxy_name: str, endpoint: str | None) -> ConnectionInfo:
        raise self._unsupported("proxy_connection_info")

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release clients/locks held by this backend object (not the cluster)."""
