"""Aurora Auto Scaling of a local cluster's readers, rehearsed: the target-tracking policies are kept in state and
evaluated when asked (:meth:`LocalBackend.evaluate_scaling_policy`) on the readers' metrics sampled now, as
:mod:`.monitoring` samples them for alarms.

What matches Application Auto Scaling: the scalable target ``cluster:<id>`` / ``rds:cluster:ReadReplicaCount`` with
its min and max capacity (0-15 readers), the two predefined metrics, the target-tracking arithmetic and its scale-in
margin (:func:`aurora_kit.rules.target_tracking_capacity`), the cooldowns (no scale-out within
``scale_out_cooldown`` of the last one; no scale-in within ``scale_in_cooldown`` of the last scale-in nor during a
scale-out cooldown), new readers named ``application-autoscaling-<id>`` with the writer's class and promotion tier
15, scale-in removing only the readers a policy created (newest first), one activity recorded per change.

What differs: one sample when asked instead of CloudWatch's high alarm (3 one-minute datapoints above the target)
and low alarm (15 datapoints below 90 % of it); the rehearsal's load and cooldowns are seconds, not minutes. The
alarms a policy shows are those two, evaluated from that sample.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aurora_kit.backends.capacity import (
    ScalingActivity,
    ScalingAlarm,
    ScalingPolicy,
    scaling_resource_id,
)
from aurora_kit.backends.local import monitoring
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import ClusterRecord
from aurora_kit.rules import SCALE_IN_SHARE, target_tracking_capacity
from aurora_kit.specs import ReaderScalingPolicy

#: how Aurora Auto Scaling names the readers it creates (AWS: a full UUID; here 8 hex digits, as replication slot
#: names are limited to 63 characters)
AUTOSCALING_PREFIX = "application-autoscaling-"
AUTOSCALING_TIER = 15
KEEP_ACTIVITIES = 50


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _arn(cluster_id: str, name: str) -> str:
    return (
        f"arn:aws:autoscaling:local:000000000000:scalingPolicy:{uuid.uuid5(uuid.NAMESPACE_URL, cluster_id)}:"
        f"resource/rds/{scaling_resource_id(cluster_id)}:policyName/{name}"
    )


def policies_of(cl: ClusterRecord) -> list[Mapping[str, Any]]:
    """The cluster's policies as recorded (ReaderScalingPolicy dumps + ``arn``, ``last_scale_out``/``_in``)."""
    return list(cl.capacity.get("policies") or [])


def _with(cl: ClusterRecord, **changes: Any) -> ClusterRecord:
    return cl.replace(capacity={**cl.capacity, **changes})


def store_policy(nodes: Nodes, cluster_id: str, policy: ReaderScalingPolicy) -> None:
    """Register the scalable target and put the policy (replacing one of the same name; AWS allows one policy per
    metric: a policy on the same metric under another name is replaced too). min/max capacity apply to every
    policy of the cluster, as on AWS."""

    def change(cl: ClusterRecord) -> ClusterRecord:
        kept = [
            dict(p, min_capacity=policy.min_capacity, max_capacity=policy.max_capacity)
            for p in policies_of(cl)
            if p["policy_name"] != policy.policy_name and p["metric"] != policy.metric
        ]
        entry = {**policy.model_dump(), "arn": _arn(cluster_id, policy.policy_name), "created": _now().isoformat()}
        return _with(cl, policies=[*kept, entry])

    nodes.store.update_cluster(cluster_id, change)


def remove_policy(nodes: Nodes, cluster_id: str, policy_name: str) -> None:
    nodes.store.update_cluster(
        cluster_id,
        lambda cl: _with(cl, policies=[p for p in policies_of(cl) if p["policy_name"] != policy_name]),
    )


def _alarms(cluster_id: str, policy: Mapping[str, Any], value: float | None) -> list[ScalingAlarm]:
    """The two alarms target tracking keeps (AWS names them TargetTracking-<resource>-AlarmHigh/-AlarmLow-<uuid>),
    evaluated from one sample."""
    target = float(policy["target_value"])
    metric = monitoring.READER_METRICS[str(policy["metric"])]
    suffix = uuid.uuid5(uuid.NAMESPACE_URL, f"{cluster_id}/{policy['policy_name']}")

    def state(breached: bool) -> str:
        return "INSUFFICIENT_DATA" if value is None else ("ALARM" if breached else "OK")

    high = ScalingAlarm(
        f"TargetTracking-{scaling_resource_id(cluster_id)}-AlarmHigh-{suffix}",
        state(value is not None and value > target),
        metric,
        "GreaterThanThreshold",
        target,
        3,
    )
    alarms = [high]
    if not policy.get("disable_scale_in"):
        low_at = round(target * SCALE_IN_SHARE, 6)
        alarms.append(
            ScalingAlarm(
                f"TargetTracking-{scaling_resource_id(cluster_id)}-AlarmLow-{suffix}",
                state(value is not None and value < low_at),
                metric,
                "LessThanThreshold",
                low_at,
                15,
            )
        )
    return alarms


def policies(nodes: Nodes, cl: ClusterRecord, *, sample: bool = True) -> list[ScalingPolicy]:
    """The cluster's policies with their alarms evaluated from one sample of each metric (``sample=False``: no
    sample, alarms INSUFFICIENT_DATA)."""
    values: dict[str, float | None] = {}
    out = []
    for p in policies_of(cl):
        metric = str(p["metric"])
        if sample and metric not in values:
            values[metric] = monitoring.reader_average(nodes, cl, metric)[0]
        out.append(
            ScalingPolicy(
                policy_name=str(p["policy_name"]),
                resource_id=scaling_resource_id(cl.cluster_id),
                predefined_metric_type=metric,
                target_value=float(p["target_value"]),
                min_capacity=int(p["min_capacity"]),
                max_capacity=int(p["max_capacity"]),
                scale_in_cooldown=int(p["scale_in_cooldown_s"]),
                scale_out_cooldown=int(p["scale_out_cooldown_s"]),
                disable_scale_in=bool(p.get("disable_scale_in")),
                alarms=_alarms(cl.cluster_id, p, values.get(metric)),
                policy_arn=str(p.get("arn", "")),
            )
        )
    return out


def activities(cl: ClusterRecord) -> list[ScalingActivity]:
    return [_activity_from(a) for a in cl.capacity.get("activities") or []]


@dataclass(frozen=True)
class Decision:
    """What the policies ask for now: the reader count, why, and what to add or remove."""

    current: int
    desired: int
    metric: str
    value: float | None
    policy_name: str
    add: list[str]
    remove: list[str]
    blocked: str = ""  # a cooldown or the missing sample that keeps it from acting

    @property
    def acts(self) -> bool:
        return bool(self.add or self.remove)


def _since(stamp: object, now: datetime) -> float:
    return (now - datetime.fromisoformat(str(stamp))).total_seconds() if stamp else float("inf")


def new_reader_id() -> str:
    return f"{AUTOSCALING_PREFIX}{secrets.token_hex(4)}"


def decide(nodes: Nodes, cl: ClusterRecord) -> Decision | None:
    """What the cluster's policies ask for now (None when it has no policy). Scale-out when any policy wants it,
    scale-in only when every policy does (Application Auto Scaling's rule for several policies)."""
    if not policies_of(cl):
        return None
    now = _now()
    current = len(cl.reader_ids)
    wants: list[tuple[int, Mapping[str, Any], float | None]] = []
    for p in policies_of(cl):
        value, _each = monitoring.reader_average(nodes, cl, str(p["metric"]))
        if value is None:
            wants.append((current, p, None))
            continue
        desired = target_tracking_capacity(
            current,
            value,
            float(p["target_value"]),
            min_capacity=int(p["min_capacity"]),
            max_capacity=int(p["max_capacity"]),
            scale_in=not p.get("disable_scale_in"),
        )
        wants.append((desired, p, value))
    outs = [w for w in wants if w[0] > current]
    if outs:
        desired, policy, value = max(outs, key=lambda w: w[0])
    elif all(w[0] < current for w in wants):  # scale in only when every policy agrees, to the largest of them
        desired, policy, value = max(wants, key=lambda w: w[0])
    else:
        desired, policy, value = current, wants[0][1], wants[0][2]
    name, metric = str(policy["policy_name"]), str(policy["metric"])
    if value is None and desired == current:
        return Decision(current, current, metric, None, name, [], [], "no sample: no reader answered")
    if desired > current:
        last = max((p.get("last_scale_out") or "" for p in policies_of(cl)), default="")
        cooldown = int(policy["scale_out_cooldown_s"])
        if _since(last, now) < cooldown:
            return Decision(current, desired, metric, value, name, [], [], f"scale-out cooldown ({cooldown} s)")
        return Decision(current, desired, metric, value, name, [new_reader_id() for _ in range(desired - current)], [])
    if desired < current:
        last_in = max((p.get("last_scale_in") or "" for p in policies_of(cl)), default="")
        last_out = max((p.get("last_scale_out") or "" for p in policies_of(cl)), default="")
        cooldown_in, cooldown_out = int(policy["scale_in_cooldown_s"]), int(policy["scale_out_cooldown_s"])
        if _since(last_in, now) < cooldown_in or _since(last_out, now) < cooldown_out:
            return Decision(current, desired, metric, value, name, [], [], "scale-in cooldown")
        created = sorted(
            (r for r in cl.reader_ids if r.startswith(AUTOSCALING_PREFIX)),
            key=lambda r: cl.instances[r].created,
            reverse=True,
        )
        remove = created[: current - desired]
        blocked = "" if remove else "no reader it created to remove (it removes only its own)"
        return Decision(current, desired, metric, value, name, [], remove, blocked)
    return Decision(current, current, metric, value, name, [], [])


def record(nodes: Nodes, cluster_id: str, decision: Decision, started: datetime, error: str = "") -> ScalingActivity:
    """Record the activity of an acted-upon decision, and its time on every policy (for the cooldowns)."""
    direction = "scale_out" if decision.add else "scale_in"
    activity = ScalingActivity(
        activity_id=str(uuid.uuid4()),
        description=f"Setting desired count to {decision.desired}.",
        cause=(
            f"monitor alarm TargetTracking-{scaling_resource_id(cluster_id)}-"
            f"{'AlarmHigh' if decision.add else 'AlarmLow'} in state ALARM triggered policy {decision.policy_name} "
            f"({decision.metric} = {decision.value:g})"
            if decision.value is not None
            else f"policy {decision.policy_name}"
        ),
        status_code="Failed" if error else "Successful",
        start_time=started,
        end_time=_now(),
        status_message=error,
        desired_capacity=decision.desired,
        metric_value=decision.value,
        added=list(decision.add),
        removed=list(decision.remove),
    )

    def change(cl: ClusterRecord) -> ClusterRecord:
        stamp = activity.end_time.isoformat() if activity.end_time else ""
        policies_ = [dict(p, **{f"last_{direction}": stamp}) for p in policies_of(cl)]
        kept = [activity.as_rds(), *(cl.capacity.get("activities") or [])][:KEEP_ACTIVITIES]
        return _with(cl, policies=policies_, activities=kept)

    nodes.store.update_cluster(cluster_id, change)
    return activity


def _activity_from(data: Mapping[str, Any]) -> ScalingActivity:
    def when(key: str) -> datetime | None:
        value = data.get(key)
        return datetime.fromisoformat(str(value)) if value else None

    start = when("StartTime") or _now()
    return ScalingActivity(
        activity_id=str(data.get("ActivityId", "")),
        description=str(data.get("Description", "")),
        cause=str(data.get("Cause", "")),
        status_code=str(data.get("StatusCode", "")),
        start_time=start,
        end_time=when("EndTime"),
        status_message=str(data.get("StatusMessage", "")),
        desired_capacity=data.get("DesiredCapacity"),
        metric_value=data.get("MetricValue"),
        added=list(data.get("Added") or []),
        removed=list(data.get("Removed") or []),
    )
