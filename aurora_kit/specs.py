"""What the operator asks for: validated input models shared by both backends.

Validation happens here, before any backend call, so bad input never mutates anything. Use :func:`validated`
to build a model and get an :class:`InvalidParameterError` naming the field and value instead of pydantic's
``ValidationError``.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aurora_kit.errors import InvalidParameterError
from aurora_kit.rules import (
    check_acu_capacity,
    check_alarm_period,
    check_backup_window,
    check_identifier,
    check_instance_class,
    check_maintenance_window,
    check_proxy_pool,
    check_proxy_timeouts,
    check_replica_capacity,
    check_retention,
)

M = TypeVar("M", bound=BaseModel)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # an inf threshold never fires


class InstanceSpec(_Spec):
    """One DB instance of the cluster. The first instance of a :class:`ClusterSpec` becomes the writer."""

    instance_id: str
    instance_class: str = "db.r6g.large"
    availability_zone: str | None = None
    promotion_tier: int = Field(default=1, ge=0, le=15)

    @field_validator("instance_id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_identifier("instance_id", v)

    @field_validator("instance_class")
    @classmethod
    def _cls(cls, v: str) -> str:
        return check_instance_class(v)


class ServerlessV2Scaling(_Spec):
    """The cluster's Serverless v2 capacity range (ACUs, :func:`aurora_kit.rules.check_acu_capacity`)."""

    min_capacity: float = 0.5
    max_capacity: float = 4

    @model_validator(mode="after")
    def _range(self) -> ServerlessV2Scaling:
        check_acu_capacity(self.min_capacity, self.max_capacity, field="serverless_v2_scaling")
        return self


class ClusterSpec(_Spec):
    """A cluster to create, with Aurora's secure defaults."""

    cluster_id: str
    engine_version: str = "16.4"
    instances: list[InstanceSpec] = Field(min_length=1)
    master_username: str = "postgres"
    database_name: str = "app"
    port: int | None = Field(default=None, ge=1150, le=65535)
    backup_retention_period: int = 7
    preferred_backup_window: str = "03:00-04:00"
    preferred_maintenance_window: str | None = None
    storage_encrypted: bool = True
    kms_key_id: str | None = None
    deletion_protection: bool = True
    iam_database_authentication: bool = True
    copy_tags_to_snapshot: bool = True
    cloudwatch_logs_exports: list[str] = Field(default_factory=lambda: ["postgresql"])
    db_subnet_group_name: str | None = None
    vpc_security_group_ids: list[str] = Field(default_factory=list)
    db_cluster_parameter_group_name: str | None = None
    serverless_v2_scaling: ServerlessV2Scaling | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("cluster_id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_identifier("cluster_id", v)

    @field_validator("engine_version")
    @classmethod
    def _engine(cls, v: str) -> str:
        if not re.match(r"^\d+(\.\d+)*$", v):
            raise ValueError("must be an aurora-postgresql version such as '16.4'")
        return v

    @field_validator("master_username", "database_name")
    @classmethod
    def _pg_name(cls, v: str) -> str:
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$", v):
            raise ValueError("must start with a letter and contain only letters, digits and '_' (max 63)")
        return v

    @field_validator("preferred_backup_window")
    @classmethod
    def _window(cls, v: str) -> str:
        return check_backup_window(v)

    @field_validator("backup_retention_period", mode="before")  # before: pydantic would read true as 1
    @classmethod
    def _retention(cls, v: Any) -> int:
        return check_retention(v)

    @model_validator(mode="after")
    def _instances(self) -> ClusterSpec:
        if self.preferred_maintenance_window is not None:
            check_maintenance_window(self.preferred_maintenance_window, self.preferred_backup_window)
        ids = [i.instance_id for i in self.instances]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate instance_id {dupes[0]!r}")
        serverless = [i.instance_id for i in self.instances if i.instance_class == "db.serverless"]
        if serverless and self.serverless_v2_scaling is None:
            raise ValueError(
                f"instances {serverless} use db.serverless, which needs serverless_v2_scaling on the cluster"
            )
        return self

    @property
    def engine_major(self) -> int:
        return int(self.engine_version.split(".")[0])

    @classmethod
    def with_readers(cls, cluster_id: str, readers: int, **kwargs: Any) -> ClusterSpec:
        """A writer plus ``readers`` readers named ``<cluster>-1`` (writer), ``<cluster>-2``...; spreads them
        over ``availability_zones`` (kwarg, optional) round-robin."""
        zones: list[str | None] = list(kwargs.pop("availability_zones", None) or [None])
        instance_class = kwargs.pop("instance_class", "db.r6g.large")
        instances = [
            {
                "instance_id": f"{cluster_id}-{n + 1}",
                "instance_class": instance_class,
                "availability_zone": zones[n % len(zones)],
                "promotion_tier": 0 if n == 0 else 1,
            }
            for n in range(readers + 1)
        ]
        return validated(cls, cluster_id=cluster_id, instances=instances, **kwargs)


class AlarmSpec(_Spec):
    """A CloudWatch alarm on one cluster or instance metric (local backend evaluates the same threshold)."""

    metric: Literal["AuroraReplicaLag", "CPUUtilization", "FreeableMemory", "DatabaseConnections"]
    threshold: float
    comparison: Literal[
        "GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"
    ] = "GreaterThanThreshold"
    statistic: Literal["Average", "Maximum", "Minimum", "Sum"] = "Average"
    period_s: int = 60
    evaluation_periods: int = Field(default=5, ge=1)

    @field_validator("period_s")
    @classmethod
    def _period(cls, v: int) -> int:
        return check_alarm_period(v)

    def breached(self, value: float) -> bool:
        return {
            "GreaterThanThreshold": value > self.threshold,
            "GreaterThanOrEqualToThreshold": value >= self.threshold,
            "LessThanThreshold": value < self.threshold,
            "LessThanOrEqualToThreshold": value <= self.threshold,
        }[self.comparison]


class ReaderScalingPolicy(_Spec):
    """Aurora Auto Scaling of the readers: a target-tracking policy on ``rds:cluster:ReadReplicaCount``."""

    policy_name: str
    metric: Literal["RDSReaderAverageCPUUtilization", "RDSReaderAverageDatabaseConnections"]
    target_value: float = Field(gt=0)
    min_capacity: int
    max_capacity: int
    scale_in_cooldown_s: int = Field(default=300, ge=0, le=86400)
    scale_out_cooldown_s: int = Field(default=300, ge=0, le=86400)
    disable_scale_in: bool = False

    @field_validator("policy_name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.:/-]{1,256}$", v) or not v.strip():
            raise ValueError("must be 1-256 letters, digits or _ . : / -")
        return v

    @model_validator(mode="after")
    def _capacity(self) -> ReaderScalingPolicy:
        check_replica_capacity(self.min_capacity, self.max_capacity)
        if self.metric == "RDSReaderAverageCPUUtilization" and self.target_value > 100:
            raise ValueError(f"a CPU target is a percentage (≤ 100), got {self.target_value:g}")
        return self


class ProxySpec(_Spec):
    """An RDS Proxy for a cluster (local: PgBouncer configured from the same settings)."""

    proxy_name: str
    require_tls: bool = True
    idle_client_timeout_s: int = 1800
    max_connections_percent: int = 100
    max_idle_connections_percent: int = 50
    connection_borrow_timeout_s: int = 120
    iam_auth: bool = False
    #: an existing role RDS Proxy assumes to read the secret; None: one is created for the proxy
    role_arn: str | None = None
    #: name of a READ_ONLY proxy endpoint for the readers; None: none
    read_only_endpoint: str | None = None
    vpc_subnet_ids: list[str] = Field(default_factory=list)  # aws: [] = the cluster's DB subnet group
    vpc_security_group_ids: list[str] = Field(default_factory=list)  # aws: [] = the cluster's

    @field_validator("proxy_name", "read_only_endpoint")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier("proxy_name", v)

    @field_validator("role_arn")
    @classmethod
    def _role(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$", v):
            raise ValueError("must be an IAM role ARN such as 'arn:aws:iam::123456789012:role/aurora-proxy'")
        return v

    @model_validator(mode="after")
    def _limits(self) -> ProxySpec:
        check_proxy_pool(self.max_connections_percent, self.max_idle_connections_percent)
        check_proxy_timeouts(self.idle_client_timeout_s, self.connection_borrow_timeout_s)
        if self.read_only_endpoint == self.proxy_name:
            raise ValueError("read_only_endpoint must differ from proxy_name")
        return self


def validated(model: type[M], **values: Any) -> M:
    """Build ``model`` from ``values``; raise :class:`InvalidParameterError` naming the first bad field."""
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = err.get("ctx", {}).get("error")
        # a model-level check names no location: the rule's own field says which one
        own = cause.field if isinstance(cause, InvalidParameterError) else model.__name__
        loc = ".".join(str(p) for p in err["loc"]) or own
        if isinstance(cause, InvalidParameterError):  # a rule's own error: keep its reason, name the full path
            raise InvalidParameterError(loc, cause.value, cause.reason, hint=cause.hint) from exc
        value = err.get("input")
        reason = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidParameterError(loc, value, reason) from exc
