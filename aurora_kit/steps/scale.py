"""08-scale: a rolling instance-class change under a write probe (readers first, a planned failover to a changed
reader, then the old writer), readers added (AZ spread, promotion tier) and the reader endpoint balancing over them,
Serverless v2 (the capacity range, a reader switched to ``db.serverless``), Aurora Auto Scaling of the readers
(the policy, its alarms; rehearsed under load on the local backend), and a reader removed — never the writer, never
below the configured minimum. Destructive steps pass :func:`~aurora_kit.steps.common.confirm` first."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aurora_kit.backends.base import ClusterMember
from aurora_kit.display import Table, quantity
from aurora_kit.errors import InvalidParameterError
from aurora_kit.params.scaling import ADDED
from aurora_kit.rules import (
    check_reader_additions,
    check_reader_removal,
    class_change_order,
    memory_settings,
)
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import DataPlane, Skipped, check_step, confirm, connect_timeout, failover_candidates
from aurora_kit.steps.common import __all__ as _common

if TYPE_CHECKING:
    from aurora_kit.backends.base import Cluster, ClusterBackend, Instance
    from aurora_kit.backends.capacity import ScalingPolicy
    from aurora_kit.checks.scale import InstanceSettingsReport, ReaderBalanceReport, ScalingRehearsalReport
    from aurora_kit.checks.write_probe import WriteProbeReport
    from aurora_kit.runbook import Run


def _instances(run: Run) -> dict[str, Instance]:
    return {i.db_instance_identifier: i for i in run.backend.describe_instances(run.params.cluster_id)}


def preflight(run: Run, cluster: Cluster, instances: dict[str, Instance]) -> None:
    """Everything this run will ask for, checked against the cluster as it will be when each step comes —
    before the first mutating call (an invalid removal found only at the end would leave a class change, new
    readers and a Serverless switch made): the class change's order, the readers added (Aurora's limit), the
    reader switched to ``db.serverless`` and the reader removed (a member then, never the writer the class change
    leaves, never below ``scale.min_readers``). InvalidParameterError naming the ``scale.`` key otherwise."""
    scale = run.section("scale")
    cid = cluster.db_cluster_identifier
    writer = cluster.writer_id
    if scale.instance_class_to is not None:
        candidates = failover_candidates(cluster, instances)
        to_change = [c.instance_id for c in candidates if c.instance_class != scale.instance_class_to]
        steps = class_change_order(candidates, to_change)
        writer = next((st.instance_id for st in steps if st.action == "failover"), writer)
    try:
        check_reader_additions(len(cluster.reader_ids), scale.add_readers)
    except InvalidParameterError as exc:
        raise InvalidParameterError("scale.add_readers", exc.value, exc.reason) from None
    added = _next_ids(cid, set(instances), scale.add_readers) if scale.add_readers else []
    members = [
        ClusterMember(i, i == writer) for i in [*(m.db_instance_identifier for m in cluster.db_cluster_members), *added]
    ]
    ids = {m.db_instance_identifier for m in members}
    switched = _resolve(scale.serverless.instance_id, added) if scale.serverless else None
    if switched is not None and switched not in ids:
        raise InvalidParameterError(
            "scale.serverless.instance_id", switched, f"not a member of cluster {cid!r} (members: {sorted(ids)})"
        )
    removed = _resolve(scale.remove_instance_id, added)
    if removed is not None:
        try:
            check_reader_removal(cid, members, removed, min_readers=scale.min_readers)
        except InvalidParameterError as exc:
            raise InvalidParameterError("scale.remove_instance_id", exc.value, exc.reason) from None


def plan(run: Run) -> Table:
    """Members with their class and Aurora's memory defaults for it, and what this run will do — after
    :func:`preflight` found all of it possible."""
    scale = run.section("scale")
    cluster = run.backend.describe_cluster(run.params.cluster_id)
    instances = _instances(run)
    preflight(run, cluster, instances)
    scaling = cluster.serverless_v2_scaling_configuration
    rows = []
    for m in cluster.db_cluster_members:
        inst = instances.get(m.db_instance_identifier)
        cls = inst.db_instance_class if inst else "?"
        aurora = memory_settings(cls, max_acu=scaling.max_capacity if scaling else None)
        rows.append(
            {
                "instance": m.db_instance_identifier,
                "role": "writer" if m.is_cluster_writer else "reader",
                "class": cls,
                "AZ": inst.availability_zone if inst else None,
                "promotion tier": m.promotion_tier,
                "Aurora max_connections": aurora.max_connections if aurora else None,
                "Aurora shared_buffers": quantity(aurora.shared_buffers_kb * 1024, "bytes") if aurora else None,
            }
        )
    todo = []
    if scale.instance_class_to:
        todo.append(f"class → {scale.instance_class_to}")
    if scale.add_readers:
        todo.append(f"add {scale.add_readers} reader(s)")
    if scale.serverless:
        todo.append(f"Serverless v2 {scale.serverless.min_capacity:g}-{scale.serverless.max_capacity:g} ACUs")
    if scale.autoscaling:
        todo.append(f"auto scaling {scale.autoscaling.metric} target {scale.autoscaling.target_value:g}")
    if scale.remove_instance_id:
        todo.append(f"remove {scale.remove_instance_id}")
    return Table(rows, f"{cluster.db_cluster_identifier}: " + ("; ".join(todo) or "nothing to change"))


# == the rolling class change ==================================================================================
@dataclass
class ClassChange:
    """What the rolling class change did: each step with its duration, and the write probe over all of it."""

    to: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    probe: WriteProbeReport | Skipped | None = None
    started_at: datetime | None = None
    changed: list[str] = field(default_factory=list)
    status: str = "done"  # done | not requested | dry-run

    def table(self) -> Table:
        rows = [{**s, "took": quantity(s.get("seconds"), "s")} for s in self.steps]
        return Table(rows, f"class change → {self.to}: {self.status}")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"to": self.to, "status": self.status, "steps": self.steps, "changed": self.changed}
        if self.probe is not None:
            out["write_probe"] = self.probe.summary()
        return out

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def change_class(run: Run, dp: DataPlane) -> ClassChange:
    """Change every instance to ``scale.instance_class_to`` with the least disruption: the readers one at a time,
    a planned failover to a changed reader, then the old writer (:func:`aurora_kit.rules.class_change_order`),
    under a write probe on the cluster endpoint when the data plane answers. Needs ``confirm``."""
    scale = run.section("scale")
    cid = run.params.cluster_id
    target = scale.instance_class_to
    if target is None:
        print("scale.instance_class_to is null: no class change")
        return ClassChange(None, status="not requested")
    cluster = run.backend.describe_cluster(cid)
    instances = _instances(run)
    members = failover_candidates(cluster, instances)
    to_change = [m.instance_id for m in members if m.instance_class != target]
    steps = class_change_order(members, to_change)  # refuses (no changed reader to fail over to) before any call
    if not steps:
        print(f"every instance is {target} already")
        return ClassChange(target, status="nothing to change")

    def rolling(backend: ClusterBackend) -> None:  # the plan the confirmation widget shows (a dry-run twin)
        for step in steps:
            if step.action == "modify":
                backend.modify_instance(cid, step.instance_id, instance_class=target)
            else:
                backend.failover(cid, target_instance_id=step.instance_id, mode="planned")

    confirm(run, f"rolling class change to {target} of {', '.join(to_change)}", plan=rolling)
    failover_to = next((s.instance_id for s in steps if s.action == "failover"), None)
    if failover_to is not None:
        confirm(
            run,
            f"planned failover to {failover_to} inside the class change",
            plan=lambda backend: backend.failover(cid, target_instance_id=failover_to, mode="planned"),
        )
    result = ClassChange(target, started_at=datetime.now(timezone.utc), changed=to_change)
    probing = dp.available and not run.params.dry_run
    probe = None
    if probing:
        from aurora_kit.checks.write_probe import WriteProbe

        probe = WriteProbe(run.backend.connection_info(cid, "cluster"), rate=1.0 / run.section("probe").interval_s)
        probe.start()
    try:
        for step in steps:
            began = time.monotonic()
            if probe is not None:
                probe.mark(f"{step.action} {step.instance_id}")
            if step.action == "modify":
                run.backend.modify_instance(cid, step.instance_id, instance_class=target)
            else:
                run.backend.failover(cid, target_instance_id=step.instance_id, mode="planned")
                _wait_rejoined(run)
            result.steps.append(
                {"step": step.action, "instance": step.instance_id, "seconds": round(time.monotonic() - began, 3)}
            )
    finally:
        if probe is not None:
            result.probe = probe.stop()
    if result.probe is not None and not isinstance(result.probe, Skipped):
        result.probe.max_rto_s = scale.max_class_change_gap_s
        result.probe.max_lost = 0
    elif not probing:
        why = "dry run" if run.params.dry_run else f"data plane not reachable: {dp.reason}"
        result.probe = Skipped("class change write probe", f"{why} (the write gap the change causes not measured)")
        print(result.probe)
    if run.params.dry_run:
        result.status = "dry-run"
    return result


def _wait_rejoined(run: Run) -> None:
    """After the failover inside the class change: every instance available again (the old writer back as a
    reader), before the old writer is changed in its turn."""
    from aurora_kit.polling import wait_for

    if run.params.dry_run:
        return
    wait_for(
        "every instance available after the failover",
        lambda: [i.status for i in run.backend.describe_instances(run.params.cluster_id)],
        lambda statuses: all(s == "available" for s in statuses),
        timeout=run.backend.traits.rejoin_timeout_s,
        initial_delay=0.05,
        max_delay=run.backend.traits.poll_max_delay_s,
        progress=run.backend.progress,
    )


def class_change_probe(change: ClassChange) -> Any:
    """The write probe of the class change as a check (a Skipped when none was requested or it could not run)."""
    if change.probe is None:
        return Skipped.not_requested("class change write probe", "no class change requested")
    return change.probe


def _parameter_override(run: Run) -> dict[str, int]:
    """max_connections / shared_buffers (kB) the cluster parameter group sets to a number (a formula: none)."""
    values = run.backend.get_parameters(run.params.cluster_id, ["max_connections", "shared_buffers"])
    out: dict[str, int] = {}
    connections = values.get("max_connections")
    if connections is not None and str(connections).isdigit():
        out["max_connections"] = int(connections)
    buffers = values.get("shared_buffers")
    match = re.fullmatch(r"(\d+)\s*(kB|MB|GB)?", str(buffers or ""))
    if match:
        number, unit = int(match.group(1)), match.group(2)
        out["shared_buffers"] = number * {"kB": 1, "MB": 1024, "GB": 1024 * 1024}.get(unit or "", 8)
    return out


@check_step("instance class settings")
def instance_settings(run: Run, change: ClassChange | None = None) -> InstanceSettingsReport:
    """Each instance's ``max_connections`` and ``shared_buffers``: what its class gives it on this backend
    (:meth:`~aurora_kit.backends.base.ClusterBackend.class_memory_settings`), the parameter group overriding as
    on Aurora; the instances the change touched must have restarted since it began."""
    from aurora_kit.checks.scale import check_instance_settings

    cid = run.params.cluster_id
    override = _parameter_override(run)

    def expected(instance_id: str, instance_class: str) -> tuple[dict[str, int], float, str]:
        wanted, tolerance, source = run.backend.class_memory_settings(cid, instance_id)
        if override:
            wanted = {**wanted, **override}
            source += f"; parameter group sets {', '.join(sorted(override))}"
        return wanted, tolerance, source

    return check_instance_settings(
        run.backend,
        cid,
        expected,
        changed_since=change.started_at if change else None,
        changed=change.changed if change else None,
        connect_timeout=connect_timeout(run),
    )


# == readers on demand =========================================================================================
def _next_ids(cluster_id: str, taken: set[str], count: int) -> list[str]:
    out: list[str] = []
    n = 1
    while len(out) < count:
        candidate = f"{cluster_id}-{n}"
        if candidate not in taken:
            out.append(candidate)
        n += 1
    return out


def add_readers(run: Run) -> list[str]:
    """Add ``scale.add_readers`` readers named ``<cluster>-<n>``, each in the zone with the fewest instances,
    promotion tier 1, the writer's class (or ``scale.add_instance_class``). Returns their ids."""
    from aurora_kit.specs import InstanceSpec, validated

    scale = run.section("scale")
    cid = run.params.cluster_id
    if not scale.add_readers:
        print("scale.add_readers is 0: no reader added")
        return []
    cluster = run.backend.describe_cluster(cid)
    instances = _instances(run)
    check_reader_additions(len(cluster.reader_ids), scale.add_readers)
    writer = instances.get(cluster.writer_id or "")
    cls = scale.add_instance_class or (writer.db_instance_class if writer else run.params.instance_class)
    zones: list[str | None] = list(run.params.availability_zones) or [None]
    used = {z: sum(1 for i in instances.values() if i.availability_zone == z) for z in zones}
    added = []
    for new_id in _next_ids(cid, set(instances), scale.add_readers):
        zone = min(zones, key=lambda z: (used.get(z, 0), zones.index(z)))
        used[zone] = used.get(zone, 0) + 1
        spec = validated(InstanceSpec, instance_id=new_id, instance_class=cls, availability_zone=zone, promotion_tier=1)
        run.backend.create_instance(cid, spec)
        added.append(new_id)
    return added


def _resolve(ref: str | None, added: list[str]) -> str | None:
    return (added[0] if added else None) if ref == ADDED else ref


@check_step("reader endpoint balance")
def reader_balance(run: Run, absent: list[str] | None = None) -> ReaderBalanceReport:
    """New connections on the reader endpoint land on every current reader (and not on ``absent`` ones)."""
    from aurora_kit.checks.scale import check_reader_balance

    cid = run.params.cluster_id
    readers = run.backend.describe_cluster(cid).reader_ids
    ttl = run.backend.traits.reader_endpoint_dns_ttl_s  # a new answer from the reader endpoint's DNS this often
    return check_reader_balance(
        run.backend.connection_info(cid, "reader"),
        readers,
        absent=absent,
        max_connections=20 * max(1, len(readers)),
        timeout_s=30.0 + 60 * ttl,
        pause_s=ttl,
        connect_timeout=connect_timeout(run),
    )


def serverless(run: Run, added: list[str]) -> Cluster:
    """Set the cluster's Serverless v2 capacity range, then switch the chosen reader to ``db.serverless`` (a class
    change: the reader restarts; needs ``confirm``). Locally the range is recorded and the instance takes the memory
    settings of its maximum capacity: there is no elastic CPU or memory here."""
    scale = run.section("scale")
    cid = run.params.cluster_id
    if scale.serverless is None:
        print("scale.serverless is null: no Serverless v2")
        return run.backend.describe_cluster(cid)
    cluster = run.backend.set_serverless_scaling(cid, scale.serverless.min_capacity, scale.serverless.max_capacity)
    target = _resolve(scale.serverless.instance_id, added)
    if target is None:
        return cluster
    confirm(
        run,
        f"switching {target} to db.serverless (it restarts)",
        plan=lambda backend: backend.modify_instance(cid, target, instance_class="db.serverless"),
    )
    run.backend.modify_instance(cid, target, instance_class="db.serverless")
    return run.backend.describe_cluster(cid)


def serverless_table(run: Run, cluster: Cluster) -> Table:
    scaling = cluster.serverless_v2_scaling_configuration
    rows = [
        {
            "instance": i.db_instance_identifier,
            "class": i.db_instance_class,
            "capacity": (
                f"{scaling.min_capacity:g}-{scaling.max_capacity:g} ACUs"
                if scaling and i.db_instance_class == "db.serverless"
                else "fixed"
            ),
        }
        for i in run.backend.describe_instances(cluster.db_cluster_identifier)
    ]
    note = "" if run.backend.traits.regional else " — local: recorded; no elastic CPU or memory"
    title = f"Serverless v2 range {scaling.min_capacity:g}-{scaling.max_capacity:g} ACUs" if scaling else "no range"
    return Table(rows, title + note)


# == Aurora Auto Scaling =======================================================================================
def put_policy(run: Run) -> ScalingPolicy | None:
    """Register the readers as a scalable target and put the target-tracking policy (``scale.autoscaling``)."""
    settings = run.section("scale").autoscaling
    if settings is None:
        print("scale.autoscaling is null: no scaling policy")
        return None
    return run.backend.put_scaling_policy(run.params.cluster_id, settings.policy())


def policies_table(run: Run) -> Table:
    """The cluster's scaling policies with their capacity and the alarms that drive them."""
    if run.section("scale").autoscaling is None or run.params.dry_run:
        return Table([], "no scaling policy")
    rows = []
    for p in run.backend.describe_scaling_policies(run.params.cluster_id):
        for alarm in p.alarms or [None]:  # type: ignore[list-item]
            rows.append(
                {
                    "policy": p.policy_name,
                    "metric": p.predefined_metric_type,
                    "target": p.target_value,
                    "readers": f"{p.min_capacity}-{p.max_capacity}",
                    "cooldown in/out": f"{p.scale_in_cooldown} s / {p.scale_out_cooldown} s",
                    "alarm": alarm.alarm_name if alarm else "—",
                    "state": alarm.state_value if alarm else "—",
                }
            )
    return Table(rows, f"{len(rows)} alarm(s) of the scaling policies")


@check_step("auto scaling rehearsal")
def rehearse_autoscaling(run: Run) -> ScalingRehearsalReport | Skipped:
    """Where the backend evaluates policies when asked (local): hold ``rehearsal_load`` connections on the reader
    endpoint, evaluate (the policy adds a reader), check the new reader answers, release the load, evaluate again
    (it removes the reader it added). On AWS, CloudWatch and Application Auto Scaling do this by themselves over
    minutes: the step says so and is not a check of this run."""
    from aurora_kit.checks.common import connect
    from aurora_kit.checks.scale import ScalingRehearsalReport

    settings = run.section("scale").autoscaling
    if settings is None:
        return Skipped.not_requested("auto scaling rehearsal", "scale.autoscaling is null")
    if not run.backend.traits.scaling_evaluated_on_demand:
        return Skipped.not_requested(
            "auto scaling rehearsal",
            "AWS evaluates the policy itself (its alarms: 3 minutes above the target to add a reader, 15 below to "
            "remove one); watch its activities with `aws application-autoscaling describe-scaling-activities`",
        )
    cid = run.params.cluster_id
    before = run.backend.describe_cluster(cid).reader_ids
    info = run.backend.connection_info(cid, "reader")
    load = [connect(info, connect_timeout=connect_timeout(run)) for _ in range(settings.rehearsal_load)]
    try:
        under = run.backend.evaluate_scaling_policy(cid)
        loaded = run.backend.describe_cluster(cid).reader_ids
    finally:
        for conn in load:
            conn.close()
    after = run.backend.evaluate_scaling_policy(cid) if not settings.disable_scale_in else None
    final = run.backend.describe_cluster(cid).reader_ids
    return ScalingRehearsalReport(
        settings.policy_name,
        settings.metric,
        settings.target_value,
        settings.rehearsal_load,
        before,
        under,
        loaded,
        after,
        final,
        settings.min_capacity,
        settings.max_capacity,
        not settings.disable_scale_in,
    )


def remove_policy(run: Run) -> str:
    """Delete the policy (and deregister the target) unless ``keep_policy``; the readers it added stay, as on AWS."""
    settings = run.section("scale").autoscaling
    if settings is None:
        return "no policy"
    if settings.keep_policy:
        return f"kept {settings.policy_name}"
    run.backend.delete_scaling_policy(run.params.cluster_id, settings.policy_name)
    return f"deleted {settings.policy_name}"


# == removing a reader ==========================================================================================
def remove_reader(run: Run, added: list[str]) -> list[str]:
    """Remove ``scale.remove_instance_id`` (``added``: the first reader this run added): a reader only, never below
    ``scale.min_readers`` readers (refused before any call); needs ``confirm``."""
    scale = run.section("scale")
    cid = run.params.cluster_id
    target = _resolve(scale.remove_instance_id, added)
    if target is None:
        print("scale.remove_instance_id is null: no reader removed")
        return []
    cluster = run.backend.describe_cluster(cid)
    check_reader_removal(cid, cluster.db_cluster_members, target, min_readers=scale.min_readers)
    confirm(run, f"removing reader {target}", plan=lambda backend: backend.delete_instance(cid, target))
    run.backend.delete_instance(cid, target)
    return [target]


def figures(change: ClassChange, added: list[str], removed: list[str], rehearsal: Any) -> dict[str, Any]:
    """The run's key figures: the class change's write gap and lost commits, readers added and removed, what the
    auto scaling rehearsal did."""
    out: dict[str, Any] = {"class_change": change.summary(), "added": added, "removed": removed}
    probe = change.probe
    if probe is not None and not isinstance(probe, Skipped):
        out.update(class_change_gap_s=probe.rto_s, class_change_lost_commits=probe.lost)
    if rehearsal is not None and not isinstance(rehearsal, Skipped):
        summary = rehearsal.summary()
        out.update(autoscaling_added=summary["added"], autoscaling_removed=summary["removed"])
    return out


__all__ = [
    *_common,
    "ClassChange",
    "add_readers",
    "change_class",
    "class_change_probe",
    "figures",
    "instance_settings",
    "plan",
    "policies_table",
    "put_policy",
    "rehearse_autoscaling",
    "reader_balance",
    "remove_policy",
    "remove_reader",
    "serverless",
    "serverless_table",
]
