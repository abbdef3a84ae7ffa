"""Failover of a local cluster: our stand-in for ``FailoverDBCluster`` (planned) and for Aurora's automatic
failover after a writer crash (``crash``).

Order matters (DESIGN §3 pitfalls):

1. validate (target exists, is an available reader; the cluster has one) — nothing changes before this;
2. stop the writer: ``planned`` = fast shutdown (its walsenders ship every WAL record first); ``crash`` = SIGKILL
   of the postmaster and all its children (by pid);
3. pick the target: the requested one, else Aurora's rule (:func:`aurora_kit.rules.failover_target`: lowest
   promotion tier, then largest instance class, then name) among the readers that answer. With synchronous
   ``ANY 1`` the reader with the highest ``pg_last_wal_receive_lsn()`` holds every acknowledged commit; a target
   that is behind it first catches up by streaming from it;
4. create the other readers' physical slots on the target (slots do not exist on a promoted node) and repoint
   those readers at it *before* promotion (cascading replication follows the new timeline by itself), and set the
   target's ``synchronous_standby_names`` to them — a promoted node keeps the inherited value and would block
   its first commit until a named standby attaches;
5. fence the old writer (standby config + ``standby.signal``, ``needs_rewind`` in state: nothing may start it as
   a primary on the old timeline), promote (``pg_promote``) and wait until it accepts writes: from here the cluster
   endpoint works again;
6. after a crash, remove the temp copy the killed writer's archive command may have left in the archive (every
   reader archives too — ``archive_mode=always`` — so no segment depends on the killed writer's archiver);
7. rejoin the old writer as a reader: ``CHECKPOINT`` on the new writer, ``pg_rewind --restore-target-wal`` (crash
   recovery first when it was killed), regenerate its config (rewind copied the source's), create its slot, start
   it, add it to ``synchronous_standby_names``. If that fails it stays fenced; ``start_cluster`` / a reboot rewinds
   it first.

Planned mode checks the target received the old writer's shutdown checkpoint (its last record); if not, it catches
up from a reader that has it, else the failover is called off (the old writer starts again as the writer). A fast
shutdown that had to be escalated wrote no shutdown checkpoint: handled as a crash (and reported as one). In crash
mode every available reader must answer: a silent one may hold the last acknowledged commit.

With a single reader there is no other standby to name while the old writer is being rewound: the new writer
commits without a synchronous standby for that moment (well under a second after a planned failover, ~1-2 s after
a crash), as there is no second copy to wait for.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection
from datetime import datetime, timezone

import psycopg

from aurora_kit.backends.base import FailoverResult
from aurora_kit.backends.local.archive import sweep_temp_files
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import READER, WRITER, ClusterRecord
from aurora_kit.errors import (
    BackendOperationError,
    FailoverNotPossibleError,
    InstanceNotFoundError,
    InvalidParameterError,
    WaitTimeoutError,
)
from aurora_kit.polling import wait_for
from aurora_kit.rules import FailoverCandidate, failover_target


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Phases:
    """Monotonic timestamps of the failover steps (``LocalBackend.last_failover_phases``), for measurements."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.marks: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        self.marks.append((name, round(time.monotonic() - self.t0, 4)))


def _rule_target(cl: ClusterRecord, available: Collection[str], requested: str | None) -> tuple[str, str]:
    """(writer, target) by Aurora's rule, ``available`` being the readers that may be promoted."""
    members = [
        FailoverCandidate(iid, inst.is_writer, iid in available, inst.promotion_tier, inst.instance_class)
        for iid, inst in cl.instances.items()
    ]
    return failover_target(cl.cluster_id, members, requested)


def check_failover(
    nodes: Nodes, cluster_id: str, target_instance_id: str | None, mode: str
) -> tuple[ClusterRecord, str, str, list[str]]:
    """Validate a failover request; returns (record, writer, target, available readers). Changes nothing.

    The target is the requested one, else the rule's pick among the available readers (status ``available``,
    postmaster ready); a failover may still pick among fewer (those that answer)."""
    if mode not in ("planned", "crash"):
        raise InvalidParameterError("mode", mode, "must be 'planned' or 'crash'")
    cl = nodes.store.cluster(cluster_id)
    if cl.status != "available":
        raise FailoverNotPossibleError(
            f"DB cluster {cluster_id!r} is {cl.status}, not available",
            hint=nodes.store.busy_hint(cluster_id, cl.status),
            cluster_id=cluster_id,
        )
    if target_instance_id is not None and target_instance_id not in cl.instances:
        raise InstanceNotFoundError(target_instance_id, cluster_id)
    readers = [
        r for r in cl.readers_with_status("available") if nodes.controller(cluster_id, r, cl).pm_status() == "ready"
    ]
    writer, target = _rule_target(cl, readers, target_instance_id)
    return cl, writer, target, readers


def _receive_positions(nodes: Nodes, cluster_id: str, readers: list[str], *, attempts: int = 1) -> dict[str, int]:
    """Bytes of WAL each reader has flushed (``pg_last_wal_receive_lsn()``, falling back to replay). A reader that
    does not answer is asked again up to ``attempts`` times; readers still silent are absent from the result."""
    out: dict[str, int] = {}
    delay = 0.05
    for attempt in range(attempts):
        for r in readers:
            if r in out:
                continue
            try:
                row = nodes.query(
                    cluster_id,
                    r,
                    "SELECT COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) - '0/0'::pg_lsn",
                )[0]
                out[r] = int(row[0] or 0)
            except psycopg.Error:
                continue
        if len(out) == len(readers) or attempt == attempts - 1:
            break
        time.sleep(delay)
        delay *= 2
    return out


def _all_positions(nodes: Nodes, cluster_id: str, readers: list[str]) -> dict[str, int]:
    """Every reader's position; a silent (hung, unreachable) reader might be the only one holding the last
    acknowledged commit (``ANY 1``), so promoting another one could lose it: refuse instead."""
    positions = _receive_positions(nodes, cluster_id, readers, attempts=3)
    silent = sorted(set(readers) - set(positions))
    if silent:
        raise FailoverNotPossibleError(
            f"reader(s) {', '.join(silent)} of {cluster_id!r} did not answer: one of them may hold the last "
            f"acknowledged commit, refusing to promote another reader",
            cluster_id=cluster_id,
            instance_id=silent[0],
        )
    return positions


def _most_advanced(positions: dict[str, int]) -> str:
    """The reader that received the most WAL (ties: by name): the one to catch a lagging target up from."""
    return min(positions, key=lambda r: (-positions[r], r))


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def failover(
    nodes: Nodes, cluster_id: str, target_instance_id: str | None, mode: str, phases: Phases
) -> FailoverResult:
    """Run a failover (the caller holds the cluster lock): switch the writer, then rejoin the old one."""
    cl, writer, _, readers = check_failover(nodes, cluster_id, target_instance_id, mode)
    started = _now()
    nodes.store.set_status(cluster_id, "failing-over")
    try:
        target, used = _switch_writer(nodes, cl, writer, readers, target_instance_id, mode, phases)
    except BaseException:
        nodes.store.set_status(cluster_id, "available")
        raise
    nodes.drop_pending_slots(cluster_id)
    if used == "crash":  # the killed writer's archiver may have left a half-written temp copy in the archive
        sweep_temp_files(nodes.paths(cluster_id).archive)
    if nodes.settle_standbys(cluster_id):  # the new writer allows more connections than some reader ran with
        phases.mark("readers restarted with the new writer's max_connections")
    try:
        rejoin(nodes, cluster_id, writer, phases)
    except Exception as exc:
        nodes.store.set_status(cluster_id, "available", **{writer: "failed"})
        raise BackendOperationError(
            f"{target!r} is the writer of {cluster_id!r} now, but the old writer {writer!r} could not rejoin "
            f"as a reader (it stays fenced as a standby that needs a rewind): {exc}",
            hint=f"reboot instance {writer!r} to retry the rewind, or delete it and add a new reader",
        ) from exc
    nodes.store.set_status(cluster_id, "available")
    return FailoverResult(cluster_id, used, writer, target, started, _now())


def _switch_writer(
    nodes: Nodes,
    cl: ClusterRecord,
    writer: str,
    readers: list[str],
    requested: str | None,
    mode: str,
    phases: Phases,
) -> tuple[str, str]:
    """Stop the writer, promote the target; returns (target, mode actually used)."""
    cid = cl.cluster_id
    old = nodes.controller(cid, writer, cl)
    if mode == "planned" and not old.is_running():
        mode = "crash"  # the writer is already gone: nothing to shut down cleanly, same path as a crash
    if mode == "planned":
        # everything that does not need the writer gone happens while it still serves: pick the target, give
        # the other readers their slots on it and let them cascade from it; a CHECKPOINT makes the shutdown
        # checkpoint short. The target still streams from the writer, so the fast shutdown ships it every record.
        target = requested or _rule_target(cl, _receive_positions(nodes, cid, readers), None)[1]
        others = [r for r in readers if r != target]
        # a target that does not stream from the writer (cut off, lagging) must not become the others' upstream
        # before it has caught up: they would stop acknowledging commits and miss the last records
        early = target in nodes.streaming(cid, writer)
        if early:
            _repoint(nodes, cl, target, others)
            phases.mark("readers repointed")
        nodes.query(cid, writer, "CHECKPOINT")
        phases.mark("checkpoint on writer")
        used = old.stop(mode="fast")
        phases.mark("writer stopped")
        if used == "fast":
            _target_has_shutdown_checkpoint(nodes, cl, writer, target, readers, others, early)
        else:  # the fast shutdown hung and was escalated: no shutdown checkpoint, handle it as a crash
            mode = "crash"
            positions = _all_positions(nodes, cid, readers)
            best = _most_advanced(positions)
            if positions[target] < positions[best]:
                _catch_up(nodes, cl, target, best, positions[best])
                phases.mark("target caught up")
        phases.mark("target has every WAL record")
        if not early:
            _repoint(nodes, cl, target, others)
            phases.mark("readers repointed")
    else:
        old.kill()
        phases.mark("writer killed")
        positions = _all_positions(nodes, cid, readers)
        target = requested or _rule_target(cl, positions, None)[1]
        best = _most_advanced(positions)
        if positions[target] < positions[best]:
            _catch_up(nodes, cl, target, best, positions[best])
            phases.mark("target caught up")
        phases.mark("target chosen")
        others = [r for r in readers if r != target]
        _repoint(nodes, cl, target, others)
        phases.mark("readers repointed")
    # fence the old writer before anything is promoted: standby config + standby.signal, recorded as needing a
    # rewind, so no later start (start_cluster, reboot) can bring it back as a second primary on the old timeline
    nodes.write_node_config(cid, writer, cl, upstream_id=target, standby_signal=True)

    def swap(rec: ClusterRecord) -> ClusterRecord:
        fenced = rec.instance(writer).replace(role=READER, status="rebooting", needs_rewind=True)
        return rec.with_instance(writer, fenced).with_instance(target, rec.instance(target).replace(role=WRITER))

    cl = nodes.store.update_cluster(cid, swap)
    # the promoted node keeps synchronous_standby_names: name only readers that are attached to it already
    nodes.write_node_config(cid, target, cl, standby_readers=others, standby_signal=True)
    nodes.controller(cid, target, cl).reload()
    with nodes.connect(cid, target, cl=cl) as conn:
        conn.execute("SELECT pg_promote(wait => false)")
        wait_for(
            f"{target} promoted",
            lambda: conn.execute("SELECT pg_is_in_recovery()").fetchone(),
            lambda row: row == (False,),
            timeout=60,
            initial_delay=0.002,
            max_delay=0.02,
            backoff=1.3,
        )
    phases.mark("target writable")
    nodes.publish(cid)  # every node now names the new writer; so does the cluster endpoint's name
    phases.mark("topology published")
    nodes.write_node_config(cid, target, cl, standby_readers=others, standby_signal=False)
    return target, mode


def _target_has_shutdown_checkpoint(
    nodes: Nodes,
    cl: ClusterRecord,
    writer: str,
    target: str,
    readers: list[str],
    others: list[str],
    repointed: bool,
) -> None:
    """After a clean stop the writer's last record is its shutdown checkpoint: the target must have received it
    (so it holds every acknowledged commit). Else catch it up from a reader that has it, else abort cleanly."""
    cid = cl.cluster_id
    ckpt = _lsn(nodes.controller(cid, writer, cl).control_data()["Latest checkpoint location"])
    try:
        wait_for(
            f"{target} received the shutdown checkpoint of {writer}",
            lambda: _receive_positions(nodes, cid, [target]).get(target, -1),
            lambda pos: pos > ckpt,
            timeout=1.0,
            initial_delay=0.002,
            max_delay=0.05,
        )
        return
    except WaitTimeoutError:
        pass
    positions = _receive_positions(nodes, cid, readers, attempts=3)
    complete = {r: pos for r, pos in positions.items() if pos > ckpt}
    if complete:
        _catch_up(nodes, cl, target, _most_advanced(complete), ckpt + 1)
        return
    _abort_planned(nodes, cl, writer, target, others, repointed)
    raise FailoverNotPossibleError(
        f"no reader of {cid!r} received the last WAL record of {writer!r}: the failover was called off and "
        f"{writer!r} is the writer again",
        cluster_id=cid,
        instance_id=target,
    )


def _abort_planned(
    nodes: Nodes, cl: ClusterRecord, writer: str, target: str, others: list[str], repointed: bool
) -> None:
    """Undo a planned failover before promotion: the old writer starts again as the writer, the readers stream
    from it again (their slots on it still exist), the slots made on the target go."""
    cid = cl.cluster_id
    readers = [target, *others]
    nodes.write_node_config(cid, writer, cl, standby_readers=readers, standby_signal=False)
    nodes.controller(cid, writer, cl).start(timeout=nodes.ready_timeout)
    for r in readers:
        nodes.write_node_config(cid, r, cl, upstream_id=writer)
        nodes.controller(cid, r, cl).reload()
    if repointed:
        for r in others:
            with contextlib.suppress(psycopg.Error, WaitTimeoutError):
                nodes.drop_slot(cid, target, r)


def _repoint(nodes: Nodes, cl: ClusterRecord, target: str, others: list[str]) -> None:
    """Slots for ``others`` on ``target`` (allowed on a standby) and ``others`` streaming from it (cascading;
    they follow its new timeline once it is promoted)."""
    for r in others:
        nodes.create_slot(cl.cluster_id, target, r)
    for r in others:
        nodes.write_node_config(cl.cluster_id, r, cl, upstream_id=target)
        nodes.controller(cl.cluster_id, r, cl).reload()


def _catch_up(nodes: Nodes, cl: ClusterRecord, target: str, source: str, position: int) -> None:
    """Let ``target`` stream the WAL it lacks from the most advanced reader ``source`` (no slot needed)."""
    cid = cl.cluster_id
    nodes.write_node_config(cid, target, cl, upstream_id=source, recovery={"primary_slot_name": ""})
    nodes.controller(cid, target, cl).reload()
    wait_for(
        f"{target} caught up with {source}",
        lambda: _receive_positions(nodes, cid, [target]).get(target, -1),
        lambda pos: pos >= position,
        timeout=30,
        initial_delay=0.01,
        max_delay=0.1,
    )


def rejoin(nodes: Nodes, cluster_id: str, old: str, phases: Phases | None = None) -> None:
    """Rewind the fenced former writer ``old`` onto the current writer and start it as a reader.

    ``old`` keeps ``standby.signal`` except during ``pg_rewind`` itself (which may run crash recovery in single-user
    mode, refused with the signal); the signal is restored whatever happens. Its slot on the writer is created
    only once the rewind succeeded, and dropped again if it does not come up."""
    cl = nodes.store.cluster(cluster_id)
    new = cl.writer_id
    if new is None or not nodes.controller(cluster_id, new, cl).is_running():
        raise BackendOperationError(f"{old!r} needs a rewind, but {cluster_id!r} has no running writer to rewind onto")
    ctl = nodes.controller(cluster_id, old, cl)
    ctl.stop(mode="fast")
    nodes.query(cluster_id, new, "CHECKPOINT")
    up = cl.instance(new)
    source = f"host={up.address} port={up.port} user={cl.master_username} dbname=postgres connect_timeout=5"
    if phases:
        phases.mark("checkpoint on new writer")
    try:
        # rewind reads restore_command from the old writer's config: reader config, no signal for the rewind
        nodes.write_node_config(cluster_id, old, cl, upstream_id=new, standby_signal=False)
        ctl.rewind(source_conninfo=source, passfile=nodes.paths(cluster_id).pgpass)
    finally:
        # rewind copied the new writer's config: regenerate it, with the signal, whether or not rewind worked; never
        # below the new writer's max_connections (a standby allowing fewer stops replaying)
        floor = nodes.standby_floor(cluster_id, new)
        nodes.write_node_config(cluster_id, old, cl, upstream_id=new, standby_signal=True, connections_floor=floor)
    if phases:
        phases.mark("old writer rewound")
    nodes.store.update_instance(cluster_id, old, needs_rewind=False)
    nodes.create_slot(cluster_id, new, old)
    try:
        ctl.start(timeout=nodes.ready_timeout)
        nodes.store.set_status(cluster_id, None, **{old: "available"})
        nodes.reconfigure_writer(cluster_id)
        cl = nodes.store.cluster(cluster_id)
        nodes.wait_streaming(cluster_id, new, cl.readers_with_status("available"))
    except BaseException:
        nodes.store.set_status(cluster_id, None, **{old: "failed"})
        nodes.reconfigure_writer(cluster_id)
        with contextlib.suppress(Exception):
            ctl.stop(mode="fast")
            nodes.drop_slot(cluster_id, new, old)
        raise
    if phases:
        phases.mark("old writer streaming as a reader")
