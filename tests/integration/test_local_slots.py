"""Replication slots never leak: a deleted reader's slot goes even while some client still holds it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.backends.local.config import slot_name
from aurora_kit.polling import wait_for

pytestmark = pytest.mark.integration


def test_deleting_a_reader_drops_its_slot_even_while_held(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = local_cluster_factory(readers=2, prefix="sl")
    cid = cluster.db_cluster_identifier
    writer = cluster.writer_id
    assert writer is not None
    staying, leaving = cluster.reader_ids
    cl = local_backend.store.cluster(cid)

    def slot_pid() -> Any:
        rows = local_backend.nodes.query(
            cid, writer, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", slot_name(leaving)
        )
        return rows[0][0] if rows else "gone"

    # the reader goes away, and another client (a WAL receiver) keeps streaming from its slot
    local_backend.nodes.controller(cid, leaving, cl).stop()
    wait_for("slot released by the stopped reader", slot_pid, lambda pid: pid is None, timeout=15)
    dest = tmp_path / "wal"
    dest.mkdir()
    receiver = subprocess.Popen(
        [
            local_backend.nodes.bins(cl).tool("pg_receivewal"),
            *("-D", str(dest), "-S", slot_name(leaving), "--no-loop", "-w"),
            *("-h", cl.instances[writer].address, "-p", str(cl.instances[writer].port), "-U", cl.master_username),
        ],
        env={**os.environ, "PGPASSWORD": local_backend.nodes.password(cid)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("slot held by pg_receivewal", slot_pid, lambda pid: isinstance(pid, int), timeout=15)
        local_backend.delete_instance(cid, leaving)
        slots = local_backend.nodes.query(cid, writer, "SELECT slot_name FROM pg_replication_slots")
        assert slots == [(slot_name(staying),)]
        assert receiver.wait(timeout=15) != 0  # its walsender was terminated
        cl = local_backend.store.cluster(cid)
        assert leaving not in cl.instances
        assert cl.pending_slot_drops == ()
        assert not local_backend.nodes.paths(cid).instance_dir(leaving).exists()
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()


def test_a_slot_that_cannot_be_dropped_now_is_dropped_at_the_next_start(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=2, prefix="sp")
    cid = cluster.db_cluster_identifier
    writer = cluster.writer_id
    assert writer is not None
    staying, leaving = cluster.reader_ids
    local_backend.nodes.controller(cid, writer).kill()  # the writer is down while the reader is deleted
    local_backend.delete_instance(cid, leaving)
    cl = local_backend.store.cluster(cid)
    assert leaving not in cl.instances
    assert cl.pending_slot_drops == (slot_name(leaving),)
    assert not local_backend.nodes.paths(cid).instance_dir(leaving).exists()
    local_backend.start_cluster(cid)
    assert local_backend.nodes.query(cid, writer, "SELECT slot_name FROM pg_replication_slots") == [
        (slot_name(staying),)
    ]
    assert local_backend.store.cluster(cid).pending_slot_drops == ()
