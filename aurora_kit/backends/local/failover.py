"""Failover of a local cluster: our stand-in for ``FailoverDBCluster`` (planned) and for Aurora's automatic
failover after a writer crash (``crash``).

Order matters (DESIGN §3 pitfalls):

1. validate (target exists, is an available reader; the cluster has one) — nothing changes before this;
2. stop the writer: ``planned`` = fast shutdown (its walsenders ship every WAL record first); ``crash`` = SIGKILL
   of the postmaster and all its children (by pid);
3. pick the target: the requested one, else the reader with the highest ``pg_last_wal_receive_lsn()`` (ties: lower
   promotion tier). With synchronous ``ANY 1`` that reader holds every acknowledged commit; a requested target
   that is behind first catches up by streaming from the most advanced reader;
4. create the other readers' physical slots on the target (slots do not exist on a promoted node) and repoint
   those readers at it *before* promotion (cascading replication follows the new timeline by itself), and set the
   target's ``synchronous_standby_names`` to them — a promoted node keeps the inherited value and would block
   its first commit until a named standby attaches;
5. promote (``pg_promote``) and wait until it accepts writes: from here the cluster endpoint works again;
6. rejoin the old writer as a reader: ``CHECKPOINT`` on the new writer, ``pg_rewind --restore-target-wal`` (crash
   recovery first when it was killed), regenerate its config (rewind copied the source's), start it, add it to
   ``synchronous_standby_names``.

With a single reader there is no other standby to name while the old writer is being rewound: the new writer
commits without a synchronous standby for that moment (well under a second after a planned failover, ~1-2 s after
a crash), as there is no second copy to wait for.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import psycopg

from aurora_kit.backends.base import FailoverResult
from aurora_kit.backends.local.config import slot_name
from aurora_kit.errors import (
    BackendOperationError,
    FailoverNotPossibleError,
    InstanceNotFoundError,
    InvalidParameterError,
)
from aurora_kit.polling import wait_for

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aurora_kit.backends.local.backend import LocalBackend


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _available_readers(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any]) -> list[str]:
    return [
        r
        for r in backend.reader_ids(cl)
        if cl["instances"][r]["status"] == "available" and backend.controller(cluster_id, r, cl).pm_status() == "ready"
    ]


def check_failover(
    backend: LocalBackend, cluster_id: str, target_instance_id: str | None, mode: str
) -> tuple[dict[str, Any], str, list[str]]:
    """Validate a failover request; returns (cluster state, writer id, available readers). Changes nothing."""
    if mode not in ("planned", "crash"):
        raise InvalidParameterError("mode", mode, "must be 'planned' or 'crash'")
    cl = backend.cluster_state(cluster_id)
    if cl["status"] != "available":
        raise FailoverNotPossibleError(
            f"DB cluster {cluster_id!r} is {cl['status']}, not available", cluster_id=cluster_id
        )
    writer = backend.writer_id(cl)
    if writer is None:
        raise FailoverNotPossibleError(f"DB cluster {cluster_id!r} has no writer", cluster_id=cluster_id)
    if target_instance_id is not None:
        if target_instance_id not in cl["instances"]:
            raise InstanceNotFoundError(target_instance_id, cluster_id)
        if target_instance_id == writer:
            raise FailoverNotPossibleError(
                f"{target_instance_id!r} is already the writer of {cluster_id!r}; pick a reader",
                cluster_id=cluster_id,
                instance_id=target_instance_id,
            )
    readers = _available_readers(backend, cluster_id, cl)
    if not readers:
        raise FailoverNotPossibleError(
            f"DB cluster {cluster_id!r} has no available reader to fail over to", cluster_id=cluster_id
        )
    if target_instance_id is not None and target_instance_id not in readers:
        raise FailoverNotPossibleError(
            f"target {target_instance_id!r} is not an available reader of {cluster_id!r}",
            cluster_id=cluster_id,
            instance_id=target_instance_id,
        )
    return cl, writer, readers


def _receive_positions(backend: LocalBackend, cluster_id: str, readers: list[str]) -> dict[str, int]:
    """Bytes of WAL each reader has flushed (``pg_last_wal_receive_lsn()``, falling back to replay)."""
    out: dict[str, int] = {}
    for r in readers:
        try:
            row = backend.query(
                cluster_id,
                r,
                "SELECT COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) - '0/0'::pg_lsn",
            )[0]
            out[r] = int(row[0] or 0)
        except psycopg.Error:
            continue
    return out


def _choose(cl: Mapping[str, Any], positions: dict[str, int]) -> str:
    return sorted(positions, key=lambda r: (-positions[r], int(cl["instances"][r]["promotion_tier"]), r))[0]


def failover(
    backend: LocalBackend, cluster_id: str, *, target_instance_id: str | None = None, mode: str = "planned"
) -> FailoverResult:
    cl, writer, readers = check_failover(backend, cluster_id, target_instance_id, mode)
    if backend.dry_run:
        backend._record(
            "local",
            "FailoverDBCluster",
            DBClusterIdentifier=cluster_id,
            TargetDBInstanceIdentifier=target_instance_id,
            Mode=mode,
        )
        guess = target_instance_id or _choose(
            cl, _receive_positions(backend, cluster_id, readers) or dict.fromkeys(readers, 0)
        )
        now = _now()
        return FailoverResult(cluster_id, mode, writer, guess, now, now, status="dry-run")
    with backend.store.cluster_lock(cluster_id):
        cl, writer, readers = check_failover(backend, cluster_id, target_instance_id, mode)
        started = _now()
        phases = backend.last_failover_phases = Phases()
        backend.set_status(cluster_id, "failing-over")
        try:
            target = _switch_writer(backend, cluster_id, cl, writer, readers, target_instance_id, mode, phases)
        except BaseException:
            backend.set_status(cluster_id, "available")
            raise
        try:
            _rejoin_old_writer(backend, cluster_id, writer, target, phases)
        except Exception as exc:
            backend.set_status(cluster_id, "available", **{writer: "failed"})
            raise BackendOperationError(
                f"{target!r} is the writer of {cluster_id!r} now, but the old writer {writer!r} could not rejoin "
                f"as a reader: {exc}",
                hint=f"delete instance {writer!r} and add a new reader",
            ) from exc
        backend.set_status(cluster_id, "available")
        return FailoverResult(cluster_id, mode, writer, target, started, _now())


class Phases:
    """Monotonic timestamps of the failover steps (``backend.last_failover_phases``), for measurements."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.marks: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        self.marks.append((name, round(time.monotonic() - self.t0, 4)))


def _switch_writer(
    backend: LocalBackend,
    cluster_id: str,
    cl: Mapping[str, Any],
    writer: str,
    readers: list[str],
    requested: str | None,
    mode: str,
    phases: Phases,
) -> str:
    old = backend.controller(cluster_id, writer, cl)
    if mode == "planned" and not old.is_running():
        mode = "crash"  # the writer is already gone: nothing to shut down cleanly, same path as a crash
    if mode == "planned":
        # everything that does not need the writer gone happens while it still serves: pick the target, give
        # the other readers their slots on it and let them cascade from it; a CHECKPOINT makes the shutdown
        # checkpoint short. The target still streams from the writer, so the fast shutdown ships it every record.
        target = requested or _choose(cl, _receive_positions(backend, cluster_id, readers))
        others = [r for r in readers if r != target]
        _repoint(backend, cluster_id, cl, target, others)
        phases.mark("readers repointed")
        backend.query(cluster_id, writer, "CHECKPOINT")
        phases.mark("checkpoint on writer")
        old.stop(mode="fast")
        phases.mark("writer stopped")
    else:
        old.kill()
        phases.mark("writer killed")
        positions = _receive_positions(backend, cluster_id, readers)
        if not positions:
            raise FailoverNotPossibleError(f"no reader of {cluster_id!r} answered after the writer crashed")
        best = _choose(cl, positions)
        target = requested or best
        if positions.get(target, -1) < positions[best]:
            _catch_up(backend, cluster_id, cl, target, best, positions[best])
        phases.mark("target chosen")
        others = [r for r in readers if r != target]
        _repoint(backend, cluster_id, cl, target, others)
        phases.mark("readers repointed")
    with backend.update_cluster(cluster_id) as rec:
        rec["instances"][writer].update(role="reader", status="rebooting")
        rec["instances"][target]["role"] = "writer"
    cl = backend.cluster_state(cluster_id)
    # the promoted node keeps synchronous_standby_names: name only readers that are attached to it already
    backend.write_node_config(cluster_id, target, cl, standby_readers=others, standby_signal=True)
    backend.controller(cluster_id, target, cl).reload()
    with backend.connect(cluster_id, target, cl=cl) as conn:
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
    backend.write_node_config(cluster_id, target, cl, standby_readers=others, standby_signal=False)
    return target


def _repoint(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any], target: str, others: list[str]) -> None:
    """Slots for ``others`` on ``target`` (allowed on a standby) and ``others`` streaming from it (cascading;
    they follow its new timeline once it is promoted)."""
    for r in others:
        backend.create_slot(cluster_id, target, r)
    for r in others:
        backend.write_node_config(cluster_id, r, cl, upstream_id=target)
        backend.controller(cluster_id, r, cl).reload()


def _catch_up(
    backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any], target: str, source: str, position: int
) -> None:
    """Let ``target`` stream the WAL it lacks from the most advanced reader ``source`` (no slot needed)."""
    backend.write_node_config(cluster_id, target, cl, upstream_id=source, recovery={"primary_slot_name": ""})
    backend.controller(cluster_id, target, cl).reload()
    wait_for(
        f"{target} caught up with {source}",
        lambda: _receive_positions(backend, cluster_id, [target]).get(target, -1),
        lambda pos: pos >= position,
        timeout=30,
        initial_delay=0.01,
        max_delay=0.1,
    )


def _rejoin_old_writer(backend: LocalBackend, cluster_id: str, old: str, new: str, phases: Phases) -> None:
    cl = backend.cluster_state(cluster_id)
    backend.query(cluster_id, new, "CHECKPOINT")
    backend.create_slot(cluster_id, new, old)
    ctl = backend.controller(cluster_id, old, cl)
    # rewind reads restore_command from the old writer's config, and may run it in single-user mode for crash
    # recovery (which refuses standby.signal): reader config, no signal yet
    backend.write_node_config(cluster_id, old, cl, upstream_id=new, standby_signal=False)
    p = backend.paths(cluster_id)
    source = (
        f"host=127.0.0.1 port={cl['instances'][new]['port']} user={cl['master_username']} dbname=postgres "
        f"connect_timeout=5"
    )
    phases.mark("checkpoint on new writer")
    ctl.rewind(source_conninfo=source, passfile=p.pgpass)
    phases.mark("old writer rewound")
    backend.write_node_config(cluster_id, old, cl, upstream_id=new)  # rewind copied the new writer's config
    ctl.start(timeout=backend.ready_timeout)
    backend.set_status(cluster_id, None, **{old: "available"})
    backend.reconfigure_writer(cluster_id)
    backend.wait_streaming(cluster_id, new, backend.reader_ids(backend.cluster_state(cluster_id)))
    phases.mark("old writer streaming as a reader")


__all__ = ["check_failover", "failover", "slot_name"]
