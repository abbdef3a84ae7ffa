"""06-failover: the plan (which reader the rule promotes), the failover under a write probe (RTO, lost commits),
the old writer back as a reader, every instance's role, and an optional failback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aurora_kit.display import Table, quantity
from aurora_kit.polling import wait_for
from aurora_kit.rules import FailoverCandidate, failover_target
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import DataPlane, Skipped, check_step, confirm, failover_candidates
from aurora_kit.steps.common import __all__ as _common

if TYPE_CHECKING:
    from aurora_kit.backends.base import Cluster, ClusterBackend, FailoverResult
    from aurora_kit.checks.write_probe import WriteProbeReport
    from aurora_kit.runbook import Run


def _candidates(run: Run) -> list[FailoverCandidate]:
    cid = run.params.cluster_id
    instances = {i.db_instance_identifier: i for i in run.backend.describe_instances(cid)}
    return failover_candidates(run.backend.describe_cluster(cid), instances)


def target(run: Run) -> str:
    """The instance to promote: ``failover.target_instance_id``, else the reader the rule picks (promotion tier,
    largest class, name) — one rule for both backends; FailoverNotPossibleError before any call."""
    _writer, chosen = failover_target(
        run.params.cluster_id, _candidates(run), run.section("failover").target_instance_id
    )
    return chosen


def plan(run: Run) -> Table:
    """Members with their role, tier and class, and the instance that will be promoted: the one given, or the
    one Aurora's rule picks (promotion tier, then the largest class, then the name)."""
    cid = run.params.cluster_id
    fo = run.section("failover")
    candidates = _candidates(run)
    _writer, chosen = failover_target(cid, candidates, fo.target_instance_id)  # refuses here, before any call
    rows = [
        {
            "instance": m.instance_id,
            "role": "writer" if m.is_writer else "reader",
            "available": m.available,
            "promotion tier": m.promotion_tier,
            "class": m.instance_class,
            "promoted": "◀ promoted" if m.instance_id == chosen else "",
        }
        for m in candidates
    ]
    how = "as requested" if fo.target_instance_id else "by the rule: promotion tier, then largest class, then name"
    return Table(rows, f"{fo.mode} failover of {cid}: {chosen} will be promoted ({how})")


def failover(run: Run, dp: DataPlane) -> tuple[FailoverResult, WriteProbeReport | Skipped]:
    """Fail over (``failover.mode``), with a write probe committing through the cluster endpoint when the data
    plane is reachable; without it the failover still runs and the probe is reported as skipped. Needs
    ``confirm`` (ConfirmationRequiredError before any call otherwise)."""
    from aurora_kit.checks import probe_failover

    fo = run.section("failover")
    cid = run.params.cluster_id
    chosen = target(run)  # the plan's pick, asked for explicitly: the backend does not choose by its own rule

    def promote(backend: ClusterBackend) -> FailoverResult:
        return backend.failover(cid, target_instance_id=chosen, mode=fo.mode)

    confirm(run, f"{fo.mode} failover", plan=promote)
    if dp.available and not run.params.dry_run:
        return probe_failover(
            run.backend,
            cid,
            mode=fo.mode,
            target_instance_id=chosen,
            rate=1.0 / run.section("probe").interval_s,
            max_rto_s=fo.max_rto_s,
            max_lost=fo.max_lost_commits,
        )
    why = "dry run" if run.params.dry_run else f"data plane not reachable: {dp.reason}"
    skipped = Skipped("write probe", f"{why} (RTO and lost commits not measured)")
    print(skipped)
    return promote(run.backend), skipped


def failover_table(result: FailoverResult | Skipped) -> Table | Skipped:
    """The failover (or failback) as a table: mode, old and new writer, status, control-plane time."""
    if isinstance(result, Skipped):
        return result
    return Table(
        [
            {
                "mode": result.mode,
                "old writer": result.old_writer,
                "new writer": result.new_writer,
                "status": result.status,
                "control plane": f"{quantity(result.control_plane_seconds, 's')} (−{result.control_plane_error_s:g} s)",
            }
        ],
        f"{result.mode} failover of {result.db_cluster_identifier}",
    )


def figures(result: FailoverResult, report: Any) -> dict[str, Any]:
    """The failover's key figures for the record (RTO and lost commits when the probe ran)."""
    if result.status == "dry-run":
        return {"status": "dry-run"}
    out: dict[str, Any] = {
        "old_writer": result.old_writer,
        "new_writer": result.new_writer,
        "control_plane_s": round(result.control_plane_seconds, 3),
        "control_plane_error_s": round(result.control_plane_error_s, 3),  # it may have ended up to this much earlier
    }
    if isinstance(report, Skipped):
        out["write_probe"] = report.summary()
    else:
        out.update(rto_s=report.rto_s, rto_server_s=report.rto_server_s, lost_commits=report.lost)
    return out


def wait_old_writer_reader(run: Run, result: FailoverResult) -> Cluster:
    """Wait until the new writer is the writer and the old writer is back as an available reader (deadline: the
    backend's ``rejoin_timeout_s`` — seconds locally, minutes on Aurora, where the old writer reboots)."""
    cid = run.params.cluster_id
    traits = run.backend.traits
    if result.status == "dry-run":
        return run.backend.describe_cluster(cid)

    def probe() -> tuple[Cluster, dict[str, str]]:
        return run.backend.describe_cluster(cid), {
            i.db_instance_identifier: i.status for i in run.backend.describe_instances(cid)
        }

    def done(state: tuple[Cluster, dict[str, str]]) -> bool:
        c, statuses = state
        return (
            c.writer_id == result.new_writer
            and result.old_writer in c.reader_ids
            and statuses.get(result.old_writer) == "available"
        )

    cluster, _ = wait_for(
        f"{result.old_writer} back as a reader",
        probe,
        done,
        timeout=traits.rejoin_timeout_s,
        initial_delay=0.1,
        max_delay=traits.poll_max_delay_s,
        describe=lambda s: f"writer {s[0].writer_id}, {result.old_writer}: {s[1].get(result.old_writer)}",
        progress=run.backend.progress,
    )
    print(f"writer {cluster.writer_id}; {result.old_writer} is back as a reader")
    return cluster


@check_step("every instance's role, from the instance itself")
def instance_roles(run: Run) -> Any:
    """Every instance's role, from the instance itself (readers refuse writes)."""
    from aurora_kit.steps.readwrite import instance_roles as roles

    return roles(run)


def failback(run: Run, result: FailoverResult, dp: DataPlane) -> FailoverResult | Skipped:
    """With ``failover.failback``: a planned failover back to the old writer (probe running when possible),
    verified like the first; needs ``confirm``."""
    from aurora_kit.checks import probe_failover
    from aurora_kit.steps.common import verify

    fo = run.section("failover")
    if not fo.failback:
        print("failback is false: the new writer stays")
        return Skipped("failback", "failover.failback: false")
    if result.status == "dry-run":
        return Skipped("failback", "dry run")
    cid = run.params.cluster_id

    def promote_old_writer(backend: ClusterBackend) -> FailoverResult:
        return backend.failover(cid, target_instance_id=result.old_writer, mode="planned")

    confirm(run, f"failback to {result.old_writer}", plan=promote_old_writer)
    if dp.available:
        back, report = probe_failover(
            run.backend,
            cid,
            mode="planned",
            target_instance_id=result.old_writer,
            rate=1.0 / run.section("probe").interval_s,
            max_rto_s=fo.max_rto_s,
            max_lost=fo.max_lost_commits,
        )
        verify(report, name="failback write probe")
    else:
        verify(Skipped("failback write probe", f"data plane not reachable: {dp.reason}"))
        back = promote_old_writer(run.backend)
    wait_old_writer_reader(run, back)
    return back


__all__ = [
    *_common,
    "failback",
    "failover",
    "failover_table",
    "figures",
    "instance_roles",
    "plan",
    "target",
    "wait_old_writer_reader",
]
