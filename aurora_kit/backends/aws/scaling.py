"""Scaling on Aurora (08-scale): instance classes (``ModifyDBInstance`` applied now, waited until the new class is in
place), the Serverless v2 capacity range (``ModifyDBCluster``), and Aurora Auto Scaling through Application Auto
Scaling (``rds:cluster:ReadReplicaCount``: the scalable target, a target-tracking policy and the CloudWatch alarms
it creates, its activities). Request shapes and translations: :mod:`.scale_decisions`."""

from __future__ import annotations

import dataclasses
from typing import Any

from aurora_kit.backends.aws import scale_decisions as sd
from aurora_kit.backends.aws.api import RDS, AwsApi, _instance_terminal, _lower
from aurora_kit.backends.aws.translate import to_cluster, to_instance
from aurora_kit.backends.base import Cluster, Instance
from aurora_kit.backends.capacity import (
    SCALABLE_DIMENSION,
    SERVICE_NAMESPACE,
    ScalingActivity,
    ScalingPolicy,
    ServerlessScalingConfiguration,
    scaling_resource_id,
)
from aurora_kit.errors import InvalidParameterError, InvalidStateError, UnsupportedOperationError
from aurora_kit.rules import check_acu_capacity, check_instance_class, check_serverless_class
from aurora_kit.specs import ReaderScalingPolicy


class ScalingOps(AwsApi):
    """The scaling operations of :class:`~aurora_kit.backends.aws.AwsBackend`."""

    # -- instance class -----------------------------------------------------------------------------------------
    def modify_instance(
        self, cluster_id: str, instance_id: str, *, instance_class: str | None = None, wait: bool = True
    ) -> Instance:
        """ModifyDBInstance(DBInstanceClass, ApplyImmediately) — the instance restarts with the class; waited until
        it reports the new class, ``available``, nothing pending. ``db.serverless`` is refused before any call
        when the cluster has no Serverless v2 capacity range."""
        cluster_id, instance_id = _lower(cluster_id), _lower(instance_id)
        cluster = self._cluster(cluster_id)
        self._member(cluster, instance_id)
        current = self._find_instance(instance_id) or {}
        if instance_class is None or current.get("DBInstanceClass") == instance_class:
            return to_instance(current, cluster)
        check_instance_class(instance_class)
        check_serverless_class(instance_class, cluster.get("ServerlessV2ScalingConfiguration"))
        self._call(
            RDS,
            "ModifyDBInstance",
            DBInstanceIdentifier=instance_id,
            DBInstanceClass=instance_class,
            ApplyImmediately=True,
        )
        if self.dry_run:
            return dataclasses.replace(
                to_instance(current, cluster), status="dry-run", db_instance_class=instance_class
            )
        if not wait:
            return to_instance(self._find_instance(instance_id) or current, cluster)

        def done(inst: dict[str, Any] | None) -> bool:
            return (
                inst is not None
                and inst.get("DBInstanceClass") == instance_class
                and inst.get("DBInstanceStatus") == "available"
                and not (inst.get("PendingModifiedValues") or {}).get("DBInstanceClass")
            )

        inst = self._wait(
            f"instance {instance_id} running as {instance_class}",
            lambda: self._find_instance(instance_id),
            done,
            operation="modify",
            describe=lambda i: "missing" if i is None else f"{i.get('DBInstanceStatus')} {i.get('DBInstanceClass')}",
            fail_if=lambda i: _instance_terminal(instance_id, (i or {}).get("DBInstanceStatus")),
        )
        assert inst is not None
        return to_instance(inst, self._cluster(cluster_id))

    def set_serverless_scaling(self, cluster_id: str, min_capacity: float, max_capacity: float) -> Cluster:
        """ModifyDBCluster(ServerlessV2ScalingConfiguration, ApplyImmediately); waited until the cluster shows it."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        low, high = check_acu_capacity(min_capacity, max_capacity, engine_version=str(cluster.get("EngineVersion", "")))
        self._call(
            RDS,
            "ModifyDBCluster",
            DBClusterIdentifier=cluster_id,
            ServerlessV2ScalingConfiguration={"MinCapacity": low, "MaxCapacity": high},
            ApplyImmediately=True,
        )
        if self.dry_run:
            return dataclasses.replace(
                to_cluster(cluster),
                status="dry-run",
                serverless_v2_scaling_configuration=ServerlessScalingConfiguration(low, high),
            )

        def done(c: dict[str, Any] | None) -> bool:
            scaling = (c or {}).get("ServerlessV2ScalingConfiguration") or {}
            return (
                c is not None
                and c.get("Status") == "available"
                and float(scaling.get("MinCapacity", -1)) == low
                and float(scaling.get("MaxCapacity", -1)) == high
            )

        found = self._wait(
            f"cluster {cluster_id} capacity {low:g}-{high:g} ACUs",
            lambda: self._find_cluster(cluster_id),
            done,
            operation="modify",
            describe=lambda c: "not found" if c is None else str(c.get("ServerlessV2ScalingConfiguration")),
        )
        assert found is not None
        return to_cluster(found)

    # -- Aurora Auto Scaling ------------------------------------------------------------------------------------
    def put_scaling_policy(self, cluster_id: str, policy: ReaderScalingPolicy) -> ScalingPolicy:
        """RegisterScalableTarget (min/max readers) and PutScalingPolicy (target tracking); the cluster must exist
        with a reader (Aurora Auto Scaling needs one to start from)."""
        cluster_id = _lower(cluster_id)
        if not isinstance(policy, ReaderScalingPolicy):
            raise InvalidParameterError("policy", type(policy).__name__, "must be a ReaderScalingPolicy")
        cluster = self._cluster(cluster_id)
        if not any(not m.get("IsClusterWriter") for m in cluster.get("DBClusterMembers") or []):
            raise InvalidStateError(
                f"Aurora Auto Scaling needs a reader in {cluster_id!r} to start from", cluster_id=cluster_id
            )
        self._call("application-autoscaling", "RegisterScalableTarget", **sd.scalable_target_params(cluster_id, policy))
        answer = self._call(
            "application-autoscaling", "PutScalingPolicy", **sd.scaling_policy_params(cluster_id, policy)
        )
        if self.dry_run:
            return ScalingPolicy(
                policy.policy_name, scaling_resource_id(cluster_id), policy.metric, policy.target_value,
                policy.min_capacity, policy.max_capacity, policy.scale_in_cooldown_s, policy.scale_out_cooldown_s,
                policy.disable_scale_in, status="dry-run",
            )  # fmt: skip
        found = {p.policy_name: p for p in self.describe_scaling_policies(cluster_id)}
        if policy.policy_name in found:
            return found[policy.policy_name]
        return ScalingPolicy(
            policy.policy_name, scaling_resource_id(cluster_id), policy.metric, policy.target_value,
            policy.min_capacity, policy.max_capacity, policy.scale_in_cooldown_s, policy.scale_out_cooldown_s,
            policy.disable_scale_in, policy_arn=str(answer.get("PolicyARN", "")),
        )  # fmt: skip

    def describe_scaling_policies(self, cluster_id: str) -> list[ScalingPolicy]:
        """The cluster's policies with their scalable target's capacity and their alarms' state (DescribeAlarms)."""
        cluster_id = _lower(cluster_id)
        resource = scaling_resource_id(cluster_id)
        common = {"ServiceNamespace": SERVICE_NAMESPACE, "ScalableDimension": SCALABLE_DIMENSION}
        targets = self._pages(
            "application-autoscaling", "DescribeScalableTargets", "ScalableTargets", ResourceIds=[resource], **common
        )
        rows = self._pages(
            "application-autoscaling", "DescribeScalingPolicies", "ScalingPolicies", ResourceId=resource, **common
        )
        names = [str(a["AlarmName"]) for r in rows for a in r.get("Alarms") or []]
        alarms: dict[str, dict[str, Any]] = {}
        for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
            found = self._pages("cloudwatch", "DescribeAlarms", "MetricAlarms", AlarmNames=names[start : start + 100])
            alarms.update({str(a["AlarmName"]): a for a in found})
        target = targets[0] if targets else None
        return [sd.to_scaling_policy(r, target, alarms) for r in rows]

    def delete_scaling_policy(self, cluster_id: str, policy_name: str) -> None:
        """DeleteScalingPolicy; DeregisterScalableTarget once no policy is left. The readers it added stay."""
        cluster_id = _lower(cluster_id)
        resource = scaling_resource_id(cluster_id)
        common = {"ServiceNamespace": SERVICE_NAMESPACE, "ScalableDimension": SCALABLE_DIMENSION}
        existing = self._pages(
            "application-autoscaling", "DescribeScalingPolicies", "ScalingPolicies", ResourceId=resource, **common
        )
        if not any(p.get("PolicyName") == policy_name for p in existing):
            raise InvalidParameterError("policy_name", policy_name, f"no scaling policy of that name on {cluster_id!r}")
        self._call(
            "application-autoscaling", "DeleteScalingPolicy", PolicyName=policy_name, ResourceId=resource, **common
        )
        if len(existing) == 1:
            self._call("application-autoscaling", "DeregisterScalableTarget", ResourceId=resource, **common)

    def describe_scaling_activities(self, cluster_id: str) -> list[ScalingActivity]:
        resource = scaling_resource_id(_lower(cluster_id))
        rows = self._pages(
            "application-autoscaling",
            "DescribeScalingActivities",
            "ScalingActivities",
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=resource,
            ScalableDimension=SCALABLE_DIMENSION,
        )
        return [sd.to_scaling_activity(r) for r in rows]

    def evaluate_scaling_policy(self, cluster_id: str) -> ScalingActivity | None:
        raise UnsupportedOperationError(
            "Aurora Auto Scaling evaluates its policies itself (CloudWatch alarms, Application Auto Scaling)",
            hint="watch describe_scaling_activities; rehearse the policy on the local backend",
            cluster_id=cluster_id,
        )
