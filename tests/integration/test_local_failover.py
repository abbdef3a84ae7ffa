"""Failover on real processes: every acknowledged commit survives, the chosen reader becomes the writer, the old
writer comes back as a reader; a crash (SIGKILL) of the writer likewise."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from plugins.local_cluster import ContinuousWriter, unique_id

from aurora_kit.backends.base import Cluster
from aurora_kit.backends.local import LocalBackend
from aurora_kit.backends.local.config import slot_name, sync_standby_names
from aurora_kit.errors import (
    BackendOperationError,
    FailoverNotPossibleError,
    InstanceNotFoundError,
    InvalidParameterError,
)
from aurora_kit.polling import wait_for
from aurora_kit.rules import FailoverCandidate, failover_target
from aurora_kit.specs import ClusterSpec, InstanceSpec

pytestmark = pytest.mark.integration


def _roles(backend: Any, cluster_id: str) -> dict[str, tuple[bool, str]]:
    return {i.db_instance_identifier: (i.is_cluster_writer, i.status) for i in backend.describe_instances(cluster_id)}


def _streaming_from(backend: Any, cluster_id: str, writer: str) -> set[str]:
    return backend.nodes.streaming(cluster_id, writer)


def _check_rejoined(backend: Any, cluster_id: str, new_writer: str, old_writer: str) -> None:
    roles = _roles(backend, cluster_id)
    assert roles[new_writer] == (True, "available")
    assert roles[old_writer] == (False, "available")
    assert sum(w for w, _ in roles.values()) == 1
    assert old_writer in _streaming_from(backend, cluster_id, new_writer)
    info = backend.connection_info(cluster_id, old_writer)
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    readers = [iid for iid, (w, _) in roles.items() if not w]
    # the new writer holds exactly one slot per reader, each in use, and waits for exactly those readers
    slots = backend.nodes.query(cluster_id, new_writer, "SELECT slot_name, active FROM pg_replication_slots")
    assert sorted(slots) == sorted((slot_name(r), True) for r in readers)
    assert backend.nodes.query(cluster_id, new_writer, "SHOW synchronous_standby_names") == [
        (sync_standby_names(readers),)
    ]


def test_planned_then_crash_failover_keep_every_acknowledged_commit(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=2, prefix="fo")
    cid = cluster.db_cluster_identifier
    assert cluster.writer_id is not None
    old, target = cluster.writer_id, cluster.reader_ids[1]

    with ContinuousWriter(local_backend, cid) as writer:
        writer.wait_acks(50)
        result = local_backend.failover(cid, target_instance_id=target, mode="planned")
        writer.wait_acks(50)
    assert (result.old_writer, result.new_writer, result.status) == (old, target, "completed")
    assert writer.missing(local_backend, cid) == []
    assert writer.gap_s < 5.0, f"planned failover outage {writer.gap_s:.2f}s"
    _check_rejoined(local_backend, cid, target, old)
    info = local_backend.connection_info(cid, "cluster")
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (target,)

    # crash of the new writer, explicit target: the writer is SIGKILLed, nothing acknowledged may be lost
    crash_target = next(r for r in local_backend.describe_cluster(cid).reader_ids if r != old)
    with ContinuousWriter(local_backend, cid) as writer:
        writer.wait_acks(50)
        crashed = local_backend.failover(cid, target_instance_id=crash_target, mode="crash")
        writer.wait_acks(50)
    assert (crashed.old_writer, crashed.new_writer, crashed.mode) == (target, crash_target, "crash")
    assert writer.missing(local_backend, cid) == []
    assert writer.errors >= 1  # the client did see the crash
    _check_rejoined(local_backend, cid, crash_target, target)


def test_crash_failover_default_target_and_bad_requests(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=1, prefix="fc")
    cid = cluster.db_cluster_identifier
    assert cluster.writer_id is not None
    before = local_backend.store.cluster(cid)

    with pytest.raises(FailoverNotPossibleError):
        local_backend.failover(cid, target_instance_id=cluster.writer_id)
    with pytest.raises(InstanceNotFoundError):
        local_backend.failover(cid, target_instance_id="no-such-instance")
    with pytest.raises(InvalidParameterError):
        local_backend.failover(cid, mode="sideways")
    assert local_backend.store.cluster(cid) == before
    assert _roles(local_backend, cid)[cluster.writer_id] == (True, "available")

    with ContinuousWriter(local_backend, cid) as writer:
        writer.wait_acks(30)
        result = local_backend.failover(cid, mode="crash")
        writer.wait_acks(30)
    assert result.new_writer == cluster.reader_ids[0]
    assert writer.missing(local_backend, cid) == []
    _check_rejoined(local_backend, cid, result.new_writer, cluster.writer_id)

    # the writer dies on its own: describe shows it failed; a (planned) failover still recovers the cluster
    local_backend.nodes.controller(cid, result.new_writer).kill()
    assert _roles(local_backend, cid)[result.new_writer] == (True, "failed")
    again = local_backend.failover(cid)
    assert again.new_writer == cluster.writer_id
    assert again.mode == "crash"  # planned was asked, but a dead writer cannot be shut down cleanly
    _check_rejoined(local_backend, cid, cluster.writer_id, result.new_writer)


def test_crash_failover_to_a_lagging_target_catches_up_first(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=2, prefix="fl")
    cid = cluster.db_cluster_identifier
    assert cluster.writer_id is not None
    lagging = cluster.reader_ids[0]
    cl = local_backend.store.cluster(cid)
    # cut the lagging reader off its upstream: it stops receiving WAL, the other reader keeps commits acknowledged
    local_backend.nodes.write_node_config(
        cid, lagging, cl, upstream_id=cluster.writer_id, recovery={"primary_conninfo": ""}
    )
    local_backend.nodes.controller(cid, lagging, cl).reload()
    wait_for(
        "walreceiver of the lagging reader stopped",
        lambda: local_backend.nodes.query(cid, lagging, "SELECT count(*) FROM pg_stat_wal_receiver")[0][0],
        lambda n: n == 0,
        timeout=15,
    )
    info = local_backend.connection_info(cid, "cluster")
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        conn.execute("CREATE TABLE lag_probe (id int PRIMARY KEY)")
        for i in range(1, 51):
            conn.execute("INSERT INTO lag_probe VALUES (%s)", (i,))
    with psycopg.connect(
        local_backend.connection_info(cid, lagging).conninfo, autocommit=True, password=info.password
    ) as conn:
        assert conn.execute("SELECT to_regclass('lag_probe')").fetchone() == (None,)  # really behind

    result = local_backend.failover(cid, target_instance_id=lagging, mode="crash")
    assert result.new_writer == lagging
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (lagging,)
        assert conn.execute("SELECT count(*) FROM lag_probe").fetchone() == (50,)
    _check_rejoined(local_backend, cid, lagging, cluster.writer_id)


def _cut_off(backend: Any, cid: str, reader: str, writer: str) -> None:
    """Stop a reader's walreceiver (empty primary_conninfo): it stays up but receives no more WAL."""
    cl = backend.store.cluster(cid)
    backend.nodes.write_node_config(cid, reader, cl, upstream_id=writer, recovery={"primary_conninfo": ""})
    backend.nodes.controller(cid, reader, cl).reload()
    wait_for(
        "walreceiver of the cut-off reader stopped",
        lambda: backend.nodes.query(cid, reader, "SELECT count(*) FROM pg_stat_wal_receiver")[0][0],
        lambda n: n == 0,
        timeout=15,
    )


def test_planned_failover_to_a_lagging_target_loses_no_commit(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=2, prefix="fp")
    cid = cluster.db_cluster_identifier
    assert cluster.writer_id is not None
    lagging = cluster.reader_ids[0]
    _cut_off(local_backend, cid, lagging, cluster.writer_id)
    info = local_backend.connection_info(cid, "cluster")
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        conn.execute("CREATE TABLE lag_probe (id int PRIMARY KEY)")
        for i in range(1, 51):  # acknowledged by the other reader only
            conn.execute("INSERT INTO lag_probe VALUES (%s)", (i,))
    assert local_backend.nodes.query(cid, lagging, "SELECT to_regclass('lag_probe')") == [(None,)]  # really behind
    # the WAL archive is behind too (failing here), so the target cannot pick the last segment up from there
    archive = local_backend.nodes.paths(cid).archive
    archive.chmod(0o500)
    try:
        with ContinuousWriter(local_backend, cid) as writer:
            writer.wait_acks(50)
            result = local_backend.failover(cid, target_instance_id=lagging, mode="planned")
            writer.wait_acks(30)
    finally:
        archive.chmod(0o700)
    assert (result.new_writer, result.mode) == (lagging, "planned")
    assert writer.missing(local_backend, cid) == []
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (lagging,)
        assert conn.execute("SELECT count(*) FROM lag_probe").fetchone() == (50,)
    _check_rejoined(local_backend, cid, lagging, cluster.writer_id)


def test_failed_rejoin_leaves_the_old_writer_fenced(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aurora_kit.backends.local.controller import PgController

    cluster = local_cluster_factory(readers=1, prefix="fr")
    cid = cluster.db_cluster_identifier
    old, new = cluster.writer_id, cluster.reader_ids[0]
    assert old is not None

    def broken_rewind(self: PgController, **kwargs: Any) -> None:
        raise BackendOperationError(f"pg_rewind ({self.name}) failed (test)")

    monkeypatch.setattr(PgController, "rewind", broken_rewind)
    with pytest.raises(BackendOperationError, match="could not rejoin"):
        local_backend.failover(cid, mode="planned")
    assert _roles(local_backend, cid) == {new: (True, "available"), old: (False, "failed")}

    def never_a_second_primary() -> None:
        ctl = local_backend.nodes.controller(cid, old)
        if ctl.is_running():
            assert local_backend.nodes.query(cid, old, "SELECT pg_is_in_recovery()") == [(True,)]
        info = local_backend.connection_info(cid, "cluster")
        with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
            assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (new,)

    # the old writer is started again while it still cannot be rewound: never as a primary
    local_backend.start_cluster(cid)
    never_a_second_primary()
    assert _roles(local_backend, cid)[old] == (False, "failed")
    with pytest.raises(BackendOperationError):
        local_backend.reboot_instance(cid, old)
    never_a_second_primary()
    # no slot was left behind for the old writer on the new one (it would retain WAL for ever)
    assert local_backend.nodes.query(cid, new, "SELECT slot_name FROM pg_replication_slots") == []
    # once rewind works again, a reboot rewinds it and it rejoins as a reader
    monkeypatch.undo()
    local_backend.reboot_instance(cid, old)
    _check_rejoined(local_backend, cid, new, old)
    # a dead reader's slot cannot retain WAL without bound
    assert local_backend.nodes.query(cid, new, "SHOW max_slot_wal_keep_size") == [("1GB",)]
    # a reader whose standby.signal went missing still starts in recovery
    local_backend.nodes.controller(cid, old).stop()
    (local_backend.nodes.paths(cid).data_dir(old) / "standby.signal").unlink()
    local_backend.reboot_instance(cid, old)
    _check_rejoined(local_backend, cid, new, old)


def test_failover_refuses_when_readers_do_not_answer(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=2, prefix="fs")
    cid = cluster.db_cluster_identifier
    writer = cluster.writer_id
    assert writer is not None
    hung = [local_backend.nodes.controller(cid, r).pid() for r in cluster.reader_ids]
    assert all(hung)
    try:
        for pid in hung:  # hung hosts: the postmasters accept TCP connections but never answer
            os.kill(pid, signal.SIGSTOP)
        with pytest.raises(FailoverNotPossibleError, match="no reader"):
            local_backend.failover(cid, mode="planned")
        assert _roles(local_backend, cid)[writer] == (True, "available")
        os.kill(hung[1], signal.SIGCONT)
        # the silent reader may hold the last acknowledged commit: refuse rather than promote the other one
        with pytest.raises(FailoverNotPossibleError, match=cluster.reader_ids[0]):
            local_backend.failover(cid, mode="crash")
    finally:
        for pid in hung:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert local_backend.describe_cluster(cid).writer_id == writer


def test_planned_failover_is_called_off_when_no_reader_has_the_last_record(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=2, prefix="fa")
    cid = cluster.db_cluster_identifier
    writer = cluster.writer_id
    assert writer is not None
    first, second = cluster.reader_ids
    _cut_off(local_backend, cid, first, writer)
    info = local_backend.connection_info(cid, "cluster")
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        conn.execute("CREATE TABLE only_on_writer (id int PRIMARY KEY)")
        for i in range(1, 21):  # acknowledged by the second reader only
            conn.execute("INSERT INTO only_on_writer VALUES (%s)", (i,))
    _cut_off(local_backend, cid, second, writer)
    archive = local_backend.nodes.paths(cid).archive
    archive.chmod(0o500)  # and the archive is behind: no reader can get the writer's last records anywhere
    try:
        with pytest.raises(FailoverNotPossibleError, match="called off"):
            local_backend.failover(cid, target_instance_id=first, mode="planned")
    finally:
        archive.chmod(0o700)
    # nothing changed: same writer (running again), both readers stream from it again
    assert _roles(local_backend, cid) == {
        writer: (True, "available"),
        first: (False, "available"),
        second: (False, "available"),
    }
    local_backend.nodes.wait_streaming(cid, writer, [first, second])
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (writer,)
        conn.execute("INSERT INTO only_on_writer VALUES (21)")
        assert conn.execute("SELECT count(*) FROM only_on_writer").fetchone() == (21,)
    # and a failover works afterwards
    result = local_backend.failover(cid, target_instance_id=first, mode="planned")
    assert (result.new_writer, result.mode) == (first, "planned")
    _check_rejoined(local_backend, cid, first, writer)


def test_default_target_follows_the_rule_tier_then_size_then_name(local_backend: Any) -> None:
    """Without a target, the reader Aurora's rule names is promoted (lowest promotion tier, then the largest
    instance class, then the name) — not the most advanced one; a rule target that is behind catches up first."""
    cid = unique_id("rule")
    members = [
        ("w", 0, "db.r6g.large"),  # the writer
        ("x", 2, "db.r6g.16xlarge"),  # the largest, but a worse tier
        ("v", 1, "db.r6g.large"),  # the best tier, but smaller
        ("z", 1, "db.r6g.2xlarge"),  # best tier and size: loses to "y" by name
        ("y", 1, "db.r6g.2xlarge"),
    ]
    spec = ClusterSpec(
        cluster_id=cid,
        deletion_protection=False,
        instances=[
            InstanceSpec(instance_id=f"{cid}-{name}", promotion_tier=tier, instance_class=cls)
            for name, tier, cls in members
        ],
    )
    cluster = local_backend.create_cluster(spec)
    try:
        writer = f"{cid}-w"
        assert cluster.writer_id == writer
        candidates = [
            FailoverCandidate(
                i.db_instance_identifier, i.is_cluster_writer, True, i.promotion_tier, i.db_instance_class
            )
            for i in local_backend.describe_instances(cid)
        ]
        assert failover_target(cid, candidates) == (writer, f"{cid}-y")
        # the dry run names the same target and changes nothing
        dry = LocalBackend(root_dir=local_backend.root, dry_run=True).failover(cid)
        assert (dry.status, dry.new_writer) == ("dry-run", f"{cid}-y")

        with ContinuousWriter(local_backend, cid) as probe:
            probe.wait_acks(50)
            result = local_backend.failover(cid, mode="planned")
            probe.wait_acks(50)
        assert (result.old_writer, result.new_writer, result.mode) == (writer, f"{cid}-y", "planned")
        assert probe.missing(local_backend, cid) == []
        _check_rejoined(local_backend, cid, f"{cid}-y", writer)

        # the old writer is back as a reader with tier 0: the rule names it now. Cut it off, so it is behind the
        # others when the writer crashes; it must catch up from the most advanced reader before its promotion
        _cut_off(local_backend, cid, writer, f"{cid}-y")
        with ContinuousWriter(local_backend, cid, table="crash_probe") as probe:
            probe.wait_acks(100)  # acknowledged by the other readers only
            assert local_backend.nodes.query(cid, writer, f"SELECT to_regclass('{probe.table}')") == [(None,)]
            crashed = local_backend.failover(cid, mode="crash")
            probe.wait_acks(50)
        assert (crashed.old_writer, crashed.new_writer, crashed.mode) == (f"{cid}-y", writer, "crash")
        assert local_backend.last_failover_phases is not None
        assert "target caught up" in [name for name, _ in local_backend.last_failover_phases.marks]
        assert probe.missing(local_backend, cid) == []
        _check_rejoined(local_backend, cid, writer, f"{cid}-y")
    finally:
        local_backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True)


def test_a_second_failover_meanwhile_names_the_one_holding_the_cluster(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    """Two failovers at once: the second is refused before any change, and its hint says which operation holds the
    cluster (not "add a reader")."""
    import threading

    cid = local_cluster_factory(readers=2).db_cluster_identifier
    first = threading.Thread(target=local_backend.failover, args=(cid,), kwargs={"mode": "crash"})
    first.start()
    try:
        wait_for(
            "the first failover under way",
            lambda: local_backend.store.cluster(cid).status,
            lambda status: status == "failing-over",
            timeout=30,
            initial_delay=0.001,
            max_delay=0.005,
        )
        with pytest.raises(FailoverNotPossibleError) as exc:
            local_backend.failover(cid)
    finally:
        first.join(timeout=120)
    assert "is failing-over" in str(exc.value)
    assert f"failover (pid {os.getpid()}" in exc.value.hint
    assert "add a reader" not in str(exc.value)
    assert local_backend.store.holder(cid) is None  # released with the first failover


def test_a_lock_holder_that_is_gone_is_not_named(tmp_path: Any) -> None:
    from aurora_kit.backends.local.state import StateStore

    store = StateStore(tmp_path)
    (tmp_path / "locks" / "c1.holder").write_text('{"operation": "failover", "pid": 999999999, "since": "x"}')
    assert store.holder("c1") is None
    assert "wait until it is available" in store.busy_hint("c1", "failing-over")
    with store.cluster_lock("c1", "reboot instance"):
        assert store.holder("c1").startswith(f"reboot instance (pid {os.getpid()}")
    assert not (tmp_path / "locks" / "c1.holder").exists()
