"""The ``scale:`` (08-scale) and ``proxy:`` (09-proxy) sections of the parameters file.

::

    scale:
      instance_class_to: db.r6g.xlarge   # rolling class change of every instance (null: none)
      max_class_change_gap_s: 15         # the write gap the change may cause (its one planned failover)
      add_readers: 1                     # readers to add (0: none), named <cluster>-<n>
      add_instance_class: null           # null: the cluster's class (after the change above)
      min_readers: 2                     # never remove a reader below this many
      serverless: {min_capacity: 0.5, max_capacity: 4, instance_id: added}   # or null: no Serverless v2
      remove_instance_id: added          # added | <instance id> | null: the reader removed at the end
      autoscaling: {...}                 # Aurora Auto Scaling of the readers, or null
    proxy:
      proxy_name: ak-local-proxy
      ...                                # see ProxySettings

Every rule comes from :mod:`aurora_kit.rules` (ACU steps and limits, replica capacity, proxy limits); ``"added"``
names the first reader this run adds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aurora_kit.rules import (
    check_acu_capacity,
    check_identifier,
    check_instance_class,
    check_proxy_pool,
    check_proxy_timeouts,
    check_replica_capacity,
)
from aurora_kit.specs import ProxySpec, ReaderScalingPolicy

ADDED = "added"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _instance_ref(value: str | None, field: str) -> str | None:
    """``added``, an instance identifier, or None."""
    if value is None or value == ADDED:
        return value
    return check_identifier(field, value)


class ServerlessSettings(_Model):
    """The cluster's Serverless v2 capacity range, and which reader becomes ``db.serverless``."""

    min_capacity: float
    max_capacity: float
    instance_id: str | None  # added | <reader id> | null: set the range only

    @field_validator("instance_id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        return _instance_ref(v, "scale.serverless.instance_id")

    @model_validator(mode="after")
    def _range(self) -> ServerlessSettings:
        check_acu_capacity(self.min_capacity, self.max_capacity, field="scale.serverless")
        return self


class AutoscalingSettings(_Model):
    """Aurora Auto Scaling of the readers: a target-tracking policy; on the local backend the runbook also
    rehearses it (``rehearsal_load`` connections on the reader endpoint, the policy evaluated with and without)."""

    policy_name: str
    metric: Literal["RDSReaderAverageCPUUtilization", "RDSReaderAverageDatabaseConnections"]
    target_value: float = Field(gt=0)
    min_capacity: int
    max_capacity: int
    scale_in_cooldown_s: int = Field(ge=0, le=86400)
    scale_out_cooldown_s: int = Field(ge=0, le=86400)
    disable_scale_in: bool
    keep_policy: bool  # false: the runbook deletes the policy at its end
    rehearsal_load: int = Field(ge=1, le=300)  # local rehearsal: connections held on the reader endpoint

    @model_validator(mode="after")
    def _capacity(self) -> AutoscalingSettings:
        check_replica_capacity(self.min_capacity, self.max_capacity, field="scale.autoscaling")
        self.policy()  # the spec's own checks (name, CPU target ≤ 100)
        return self

    def policy(self) -> ReaderScalingPolicy:
        from aurora_kit.specs import validated

        return validated(
            ReaderScalingPolicy,
            policy_name=self.policy_name,
            metric=self.metric,
            target_value=self.target_value,
            min_capacity=self.min_capacity,
            max_capacity=self.max_capacity,
            scale_in_cooldown_s=self.scale_in_cooldown_s,
            scale_out_cooldown_s=self.scale_out_cooldown_s,
            disable_scale_in=self.disable_scale_in,
        )


class ScaleSettings(_Model):
    """08-scale: readers on demand, instance classes, Serverless v2, Aurora Auto Scaling."""

    instance_class_to: str | None
    max_class_change_gap_s: float = Field(gt=0)
    add_readers: int = Field(ge=0, le=15)
    add_instance_class: str | None
    min_readers: int = Field(ge=0, le=15)
    serverless: ServerlessSettings | None
    remove_instance_id: str | None
    autoscaling: AutoscalingSettings | None

    @field_validator("instance_class_to", "add_instance_class")
    @classmethod
    def _class(cls, v: str | None) -> str | None:
        return None if v is None else check_instance_class(v, "scale.instance_class")

    @field_validator("remove_instance_id")
    @classmethod
    def _remove(cls, v: str | None) -> str | None:
        return _instance_ref(v, "scale.remove_instance_id")

    @model_validator(mode="after")
    def _consistent(self) -> ScaleSettings:
        refs = [self.remove_instance_id, self.serverless.instance_id if self.serverless else None]
        if ADDED in refs and self.add_readers == 0:
            raise ValueError("'added' names the reader this run adds: add_readers must be at least 1")
        classes = [self.instance_class_to, self.add_instance_class]
        if "db.serverless" in classes and self.serverless is None:
            raise ValueError("db.serverless needs the serverless capacity range (scale.serverless)")
        return self


class ProxySettings(_Model):
    """09-proxy: RDS Proxy (local: PgBouncer) for the cluster, its checks and its failover comparison."""

    proxy_name: str
    read_only_endpoint: str | None
    require_tls: bool
    idle_client_timeout_s: int
    max_connections_percent: int
    max_idle_connections_percent: int
    connection_borrow_timeout_s: int
    iam_auth: bool
    role_arn: str | None  # aws: an existing role that may read the cluster's secret; null: create one
    vpc_subnet_ids: list[str]  # aws: [] = the subnets of the cluster's DB subnet group
    failover_modes: list[Literal["planned", "crash"]]  # failovers measured side by side ([]: none)
    #: how much longer than the cluster endpoint's the proxy's write gap may be (0: not longer)
    max_gap_excess_s: float = Field(ge=0)
    multiplexing_clients: int = Field(ge=2, le=300)
    delete_proxy: bool  # delete the proxy (and its role, if created) at the end

    @field_validator("proxy_name", "read_only_endpoint")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier("proxy.proxy_name", v)

    @model_validator(mode="after")
    def _limits(self) -> ProxySettings:
        check_proxy_pool(self.max_connections_percent, self.max_idle_connections_percent)
        check_proxy_timeouts(self.idle_client_timeout_s, self.connection_borrow_timeout_s)
        if len(set(self.failover_modes)) != len(self.failover_modes):
            raise ValueError("failover_modes lists a mode twice")
        self.spec()
        return self

    def spec(self, security_groups: list[str] | None = None) -> ProxySpec:
        from aurora_kit.specs import validated

        return validated(
            ProxySpec,
            proxy_name=self.proxy_name,
            require_tls=self.require_tls,
            idle_client_timeout_s=self.idle_client_timeout_s,
            max_connections_percent=self.max_connections_percent,
            max_idle_connections_percent=self.max_idle_connections_percent,
            connection_borrow_timeout_s=self.connection_borrow_timeout_s,
            iam_auth=self.iam_auth,
            role_arn=self.role_arn,
            read_only_endpoint=self.read_only_endpoint,
            vpc_subnet_ids=list(self.vpc_subnet_ids),
            vpc_security_group_ids=list(security_groups or []),
        )
