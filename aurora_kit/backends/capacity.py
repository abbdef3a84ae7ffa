"""Results of the scaling and connection-handling operations (08-scale, 09-proxy), shaped like their AWS APIs:
the cluster's Serverless v2 capacity range (RDS), reader scaling policies and activities (Application Auto Scaling,
``rds:cluster:ReadReplicaCount``), and RDS Proxy with its targets and endpoints. Field names are the snake_case of the
API's, so ``as_rds()`` gives the names a DBA knows (``DBProxyName``, ``TargetHealth``...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aurora_kit.backends.shaped import RdsShaped

#: Application Auto Scaling's names for Aurora replicas
SCALABLE_DIMENSION = "rds:cluster:ReadReplicaCount"
SERVICE_NAMESPACE = "rds"


def scaling_resource_id(cluster_id: str) -> str:
    """``cluster:<id>``: how Application Auto Scaling names an Aurora cluster."""
    return f"cluster:{cluster_id}"


@dataclass(frozen=True)
class ServerlessScalingConfiguration(RdsShaped):
    """``ServerlessV2ScalingConfiguration`` of a cluster (ACUs)."""

    min_capacity: float
    max_capacity: float


@dataclass(frozen=True)
class ScalingAlarm(RdsShaped):
    """A CloudWatch alarm a target-tracking policy created (high: scale out; low: scale in)."""

    alarm_name: str
    state_value: str = "INSUFFICIENT_DATA"
    metric_name: str = ""
    comparison_operator: str = ""
    threshold: float | None = None
    evaluation_periods: int | None = None


@dataclass(frozen=True)
class ScalingPolicy(RdsShaped):
    """A target-tracking policy on a cluster's readers, with its scalable target's capacity and its alarms."""

    policy_name: str
    resource_id: str  # cluster:<id>
    predefined_metric_type: str  # RDSReaderAverageCPUUtilization | RDSReaderAverageDatabaseConnections
    target_value: float
    min_capacity: int
    max_capacity: int
    scale_in_cooldown: int
    scale_out_cooldown: int
    disable_scale_in: bool = False
    alarms: list[ScalingAlarm] = field(default_factory=list)
    scalable_dimension: str = SCALABLE_DIMENSION
    policy_type: str = "TargetTrackingScaling"
    policy_arn: str = ""
    status: str = "active"  # active | dry-run


@dataclass(frozen=True)
class ScalingActivity(RdsShaped):
    """One scaling activity (Application Auto Scaling's ``DescribeScalingActivities``)."""

    activity_id: str
    description: str
    cause: str
    status_code: str  # Successful | Failed | InProgress | Pending
    start_time: datetime
    end_time: datetime | None = None
    status_message: str = ""
    desired_capacity: int | None = None
    metric_value: float | None = None
    added: list[str] = field(default_factory=list)  # readers it created
    removed: list[str] = field(default_factory=list)  # readers it deleted


@dataclass(frozen=True)
class ProxyTarget(RdsShaped):
    """What the proxy routes to (``DescribeDBProxyTargets``): the tracked cluster and each instance."""

    rds_resource_id: str
    type: str  # TRACKED_CLUSTER | RDS_INSTANCE
    role: str  # READ_WRITE | READ_ONLY | UNKNOWN
    endpoint: str = ""
    port: int = 0
    target_health: str = "REGISTERING"  # REGISTERING | AVAILABLE | UNAVAILABLE
    target_health_reason: str = ""


@dataclass(frozen=True)
class ProxyEndpoint(RdsShaped):
    """An endpoint of the proxy: the default one (READ_WRITE) or one made for the readers (READ_ONLY)."""

    db_proxy_endpoint_name: str
    endpoint: str
    target_role: str  # READ_WRITE | READ_ONLY
    status: str
    is_default: bool = False


@dataclass(frozen=True)
class Proxy(RdsShaped):
    """An RDS Proxy (local: a PgBouncer pair configured from the same settings) in front of one cluster."""

    db_proxy_name: str
    db_cluster_identifier: str
    status: str  # creating | available | modifying | deleting | dry-run ...
    engine_family: str
    endpoint: str
    port: int
    require_tls: bool
    idle_client_timeout: int
    role_arn: str
    max_connections_percent: int
    max_idle_connections_percent: int
    connection_borrow_timeout: int
    targets: list[ProxyTarget] = field(default_factory=list)
    endpoints: list[ProxyEndpoint] = field(default_factory=list)
    auth_secret_arn: str = ""
    iam_auth: str = "DISABLED"  # DISABLED | REQUIRED
    #: the server connections the pool may open (max_connections × MaxConnectionsPercent), when known
    pool_size: int | None = None

    def endpoint_named(self, name: str | None) -> ProxyEndpoint | None:
        """The endpoint called ``name`` (None or the proxy's name: the default endpoint)."""
        if name is None or name == self.db_proxy_name:
            return next((e for e in self.endpoints if e.is_default), None)
        return next((e for e in self.endpoints if e.db_proxy_endpoint_name == name), None)

    @property
    def targets_available(self) -> bool:
        return bool(self.targets) and all(t.target_health == "AVAILABLE" for t in self.targets)
