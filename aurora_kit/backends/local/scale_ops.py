"""The scaling and proxy operations of :class:`~aurora_kit.backends.local.LocalBackend` (08-scale, 09-proxy), as a
mixin over what the backend provides (``store``, ``nodes``, the one dry-run switch ``_mutate``, instances created and
deleted through its own methods). Each validates first, then goes through ``_mutate``; mutations take the cluster's
operation lock.

- instance class changes restart the instance with the class's memory settings (:func:`.lifecycle.
  modify_instance_class`);
- the Serverless v2 capacity range is recorded (and shown); ``db.serverless`` instances take the memory settings of
  the maximum capacity at their next start — there is no elastic CPU or memory here;
- reader scaling policies are kept and evaluated when asked (:mod:`.scaling`);
- proxies are PgBouncer pairs (:mod:`.proxy`, :mod:`.pgbouncer`).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from aurora_kit.backends.base import Cluster, ClusterBackend, ConnectionInfo, Instance
from aurora_kit.backends.capacity import (
    Proxy,
    ScalingActivity,
    ScalingPolicy,
    ServerlessScalingConfiguration,
    scaling_resource_id,
)
from aurora_kit.backends.local import lifecycle, proxy, scaling, views
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import ClusterRecord, StateStore
from aurora_kit.errors import InvalidParameterError, InvalidStateError
from aurora_kit.rules import (
    check_acu_capacity,
    check_instance_class,
    check_serverless_class,
)
from aurora_kit.specs import InstanceSpec, ProxySpec, ReaderScalingPolicy

T = TypeVar("T")
Call = tuple[str, dict[str, Any]]


class ScaleOps(ClusterBackend):
    """Scaling and proxy operations of the local backend (see the module docstring)."""

    store: StateStore
    nodes: Nodes

    @abstractmethod
    def _mutate(self, calls: Sequence[Call], run: Callable[[], T], projected: Callable[[], T]) -> T: ...

    @abstractmethod
    def _instance(self, cl: ClusterRecord, instance_id: str) -> Instance: ...

    def _available(self, cluster_id: str, what: str) -> ClusterRecord:
        cl = self.store.cluster(cluster_id)
        if cl.status != "available":
            raise InvalidStateError(
                f"DB cluster {cluster_id!r} is {cl.status}; {what} needs it available",
                hint=self.store.busy_hint(cluster_id, cl.status),
                cluster_id=cluster_id,
            )
        return cl

    # == instance class and Serverless v2 ==================================================================
    def modify_instance(
        self, cluster_id: str, instance_id: str, *, instance_class: str | None = None, wait: bool = True
    ) -> Instance:
        cl = self._available(cluster_id, "modifying an instance")
        inst = cl.instance(instance_id)
        if instance_class is None or instance_class == inst.instance_class:
            return self._instance(cl, instance_id)
        check_instance_class(instance_class)
        check_serverless_class(instance_class, cl.capacity.get("serverless"))
        if inst.status != "available":
            raise InvalidStateError(f"DB instance {instance_id!r} is {inst.status}; modifying needs it available")

        def run() -> Instance:
            with self.store.cluster_lock(cluster_id, "modify instance"):
                lifecycle.modify_instance_class(self.nodes, cluster_id, instance_id, instance_class)
            return self._instance(self.store.cluster(cluster_id), instance_id)

        calls: list[Call] = [
            (
                "ModifyDBInstance",
                {"DBInstanceIdentifier": instance_id, "DBInstanceClass": instance_class, "ApplyImmediately": True},
            )
        ]
        projected = views.dry(self._instance(cl, instance_id), db_instance_class=instance_class)
        return self._mutate(calls, run, lambda: projected)

    def class_memory_settings(self, cluster_id: str, instance_id: str) -> tuple[dict[str, int], float, str]:
        """The class's settings as the local backend applies them (:func:`.config.class_settings`: Aurora's
        max_connections, the cluster's largest; shared_buffers scaled)."""
        cl = self.store.cluster(cluster_id)
        found = self.nodes.class_settings(cl, instance_id)
        if not found.settings:
            return {}, 0.0, "; ".join(found.notes)
        wanted = {
            "max_connections": int(found.settings["max_connections"]),
            "shared_buffers": int(found.settings["shared_buffers"].removesuffix("kB")),
        }
        return wanted, 0.0, "; ".join(found.notes) or f"{cl.instance(instance_id).instance_class} (local)"

    def set_serverless_scaling(self, cluster_id: str, min_capacity: float, max_capacity: float) -> Cluster:
        cl = self._available(cluster_id, "setting the Serverless v2 capacity")
        low, high = check_acu_capacity(min_capacity, max_capacity, engine_version=cl.engine_version)
        wanted = {"min_capacity": low, "max_capacity": high}

        def run() -> Cluster:
            with self.store.cluster_lock(cluster_id, "modify cluster"):
                self.store.update_cluster(
                    cluster_id, lambda c: c.replace(capacity={**c.capacity, "serverless": wanted})
                )
            return self.describe_cluster(cluster_id)

        calls: list[Call] = [
            (
                "ModifyDBCluster",
                {
                    "DBClusterIdentifier": cluster_id,
                    "ServerlessV2ScalingConfiguration": {"MinCapacity": low, "MaxCapacity": high},
                    "ApplyImmediately": True,
                },
            )
        ]
        config = ServerlessScalingConfiguration(low, high)
        return self._mutate(
            calls,
            run,
            lambda: dataclasses.replace(
                self.describe_cluster(cluster_id), status=views.DRY_RUN, serverless_v2_scaling_configuration=config
            ),
        )

    # == Aurora Auto Scaling, rehearsed =====================================================================
    def put_scaling_policy(self, cluster_id: str, policy: ReaderScalingPolicy) -> ScalingPolicy:
        cl = self.store.cluster(cluster_id)
        if not isinstance(policy, ReaderScalingPolicy):
            raise InvalidParameterError("policy", type(policy).__name__, "must be a ReaderScalingPolicy")
        resource = scaling_resource_id(cluster_id)

        def run() -> ScalingPolicy:
            with self.store.cluster_lock(cluster_id, "put scaling policy"):
                scaling.store_policy(self.nodes, cluster_id, policy)
            found = scaling.policies(self.nodes, self.store.cluster(cluster_id))
            return next(p for p in found if p.policy_name == policy.policy_name)

        calls: list[Call] = [
            (
                "RegisterScalableTarget",
                {
                    "ServiceNamespace": "rds",
                    "ResourceId": resource,
                    "ScalableDimension": "rds:cluster:ReadReplicaCount",
                    "MinCapacity": policy.min_capacity,
                    "MaxCapacity": policy.max_capacity,
                },
            ),
            ("PutScalingPolicy", {"PolicyName": policy.policy_name, "ResourceId": resource, **policy.model_dump()}),
        ]

        def projected() -> ScalingPolicy:
            return ScalingPolicy(
                policy.policy_name, resource, policy.metric, policy.target_value, policy.min_capacity,
                policy.max_capacity, policy.scale_in_cooldown_s, policy.scale_out_cooldown_s, policy.disable_scale_in,
                status=views.DRY_RUN,
            )  # fmt: skip

        del cl
        return self._mutate(calls, run, projected)

    def describe_scaling_policies(self, cluster_id: str) -> list[ScalingPolicy]:
        return scaling.policies(self.nodes, self.store.cluster(cluster_id))

    def delete_scaling_policy(self, cluster_id: str, policy_name: str) -> None:
        cl = self.store.cluster(cluster_id)
        if not any(p["policy_name"] == policy_name for p in scaling.policies_of(cl)):
            raise InvalidParameterError("policy_name", policy_name, f"no scaling policy of that name on {cluster_id!r}")

        def run() -> None:
            with self.store.cluster_lock(cluster_id, "delete scaling policy"):
                scaling.remove_policy(self.nodes, cluster_id, policy_name)

        resource = scaling_resource_id(cluster_id)
        calls: list[Call] = [("DeleteScalingPolicy", {"PolicyName": policy_name, "ResourceId": resource})]
        if len(scaling.policies_of(cl)) == 1:
            calls.append(("DeregisterScalableTarget", {"ResourceId": resource}))
        self._mutate(calls, run, lambda: None)

    def describe_scaling_activities(self, cluster_id: str) -> list[ScalingActivity]:
        return scaling.activities(self.store.cluster(cluster_id))

    def evaluate_scaling_policy(self, cluster_id: str) -> ScalingActivity | None:
        """Sample the readers now and act as Application Auto Scaling would (see :mod:`.scaling`): add readers
        (``application-autoscaling-…``, the writer's class, promotion tier 15, spread over the cluster's zones) or
        remove the ones a policy created. None when the policies ask for no change (or a cooldown holds)."""
        cl = self.store.cluster(cluster_id)
        if not scaling.policies_of(cl):
            raise InvalidStateError(f"DB cluster {cluster_id!r} has no scaling policy", cluster_id=cluster_id)
        if cl.status != "available" or any(i.status != "available" for i in cl.instances.values()):
            return None  # Aurora Auto Scaling waits until the whole cluster is available

        def run() -> ScalingActivity | None:
            with self.store.cluster_lock(cluster_id, "auto scaling"):
                return self._scale(cluster_id)

        calls: list[Call] = [("EvaluateScalingPolicy", {"ResourceId": scaling_resource_id(cluster_id)})]
        return self._mutate(calls, run, lambda: None)

    def _scale(self, cluster_id: str) -> ScalingActivity | None:
        cl = self.store.cluster(cluster_id)
        decision = scaling.decide(self.nodes, cl)
        if decision is None or not decision.acts:
            return None
        started = datetime.now(timezone.utc)
        writer = cl.instance(cl.writer_id) if cl.writer_id else None
        zones = sorted({i.availability_zone for i in cl.instances.values()}) or [views.LOCAL_AZ]
        try:
            for n, new_id in enumerate(decision.add):
                spec = InstanceSpec(
                    instance_id=new_id,
                    instance_class=writer.instance_class if writer else "db.r6g.large",
                    availability_zone=zones[(len(cl.reader_ids) + n) % len(zones)],
                    promotion_tier=scaling.AUTOSCALING_TIER,
                )
                self.create_instance(cluster_id, spec)
            for old_id in decision.remove:
                self.delete_instance(cluster_id, old_id)
        except Exception as exc:  # recorded as a failed activity, then raised
            scaling.record(self.nodes, cluster_id, decision, started, f"{type(exc).__name__}: {exc}")
            raise
        return scaling.record(self.nodes, cluster_id, decision, started)

    # == the proxy ==========================================================================================
    def create_proxy(self, cluster_id: str, spec: ProxySpec, *, wait: bool = True) -> Proxy:
        """A PgBouncer pair in front of the cluster (see :mod:`.pgbouncer`); synchronous: its targets are
        AVAILABLE on return. An identical proxy of this cluster is returned unchanged."""
        if not isinstance(spec, ProxySpec):
            raise InvalidParameterError("spec", type(spec).__name__, "must be a ProxySpec")
        cl = self.store.cluster(cluster_id)
        existing = proxy.check_new(self.nodes, cl, spec)
        if existing is not None:
            return proxy.describe(self.nodes, spec.proxy_name)

        def run() -> Proxy:
            with self.store.cluster_lock(cluster_id, "create proxy"):
                proxy.create(self.nodes, cluster_id, spec)
            return proxy.describe(self.nodes, spec.proxy_name)

        calls: list[Call] = [
            ("CreateDBProxy", {"DBProxyName": spec.proxy_name, "EngineFamily": proxy.ENGINE_FAMILY,
                               "RequireTLS": spec.require_tls, "IdleClientTimeout": spec.idle_client_timeout_s}),
            ("ModifyDBProxyTargetGroup", {"DBProxyName": spec.proxy_name, "TargetGroupName": "default",
                                          "MaxConnectionsPercent": spec.max_connections_percent,
                                          "MaxIdleConnectionsPercent": spec.max_idle_connections_percent,
                                          "ConnectionBorrowTimeout": spec.connection_borrow_timeout_s}),
            ("RegisterDBProxyTargets", {"DBProxyName": spec.proxy_name, "DBClusterIdentifiers": [cluster_id]}),
        ]  # fmt: skip
        if spec.read_only_endpoint:
            calls.append(
                (
                    "CreateDBProxyEndpoint",
                    {
                        "DBProxyName": spec.proxy_name,
                        "DBProxyEndpointName": spec.read_only_endpoint,
                        "TargetRole": "READ_ONLY",
                    },
                )
            )
        return self._mutate(calls, run, lambda: proxy.projected(cl, spec))

    def describe_proxy(self, proxy_name: str) -> Proxy:
        return proxy.describe(self.nodes, proxy_name)

    def delete_proxy(self, proxy_name: str, *, wait: bool = True) -> None:
        cl, record = proxy.find(self.nodes, proxy_name)

        def run() -> None:
            with self.store.cluster_lock(cl.cluster_id, "delete proxy"):
                proxy.remove(self.nodes, cl.cluster_id, proxy_name)

        calls: list[Call] = []
        ro = record.spec.read_only_endpoint
        if ro:
            calls.append(("DeleteDBProxyEndpoint", {"DBProxyEndpointName": ro}))
        calls.append(("DeleteDBProxy", {"DBProxyName": proxy_name}))
        self._mutate(calls, run, lambda: None)

    def _proxy_endpoint_info(self, proxy_name: str, endpoint: str | None) -> ConnectionInfo:
        return proxy.endpoint_info(self.nodes, proxy_name, endpoint)
