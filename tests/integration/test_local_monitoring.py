"""``AuroraReplicaLag`` on real readers: measured as the time a reader takes to replay what the writer has flushed,
so a quiet cluster never reads seconds "behind" (the 07 alarm that fired on an idle cluster in CI), and a reader that
stopped replaying does."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.backends.local.monitoring import replica_lag_ms
from aurora_kit.specs import AlarmSpec

pytestmark = pytest.mark.integration

QUIET_S = 3.0  # no commit for this long before the measurement: the age of the last commit the old formula read


@pytest.fixture
def conns(local_backend: Any, local_cluster: Cluster) -> Iterator[tuple[psycopg.Connection[Any], dict[str, Any]]]:
    cid = local_cluster.db_cluster_identifier
    cl = local_backend.store.cluster(cid)
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(local_backend.nodes.connect(cid, cl.writer_id))
        readers = {r: stack.enter_context(local_backend.nodes.connect(cid, r)) for r in cl.reader_ids}
        try:
            yield writer, readers
        finally:  # a paused reader would hold the shared cluster back for every later test
            for conn in readers.values():
                conn.execute("SELECT pg_wal_replay_resume()")


def _hold_a_record_unreplayed(writer: psycopg.Connection[Any], reader: psycopg.Connection[Any]) -> float:
    """A commit, ``QUIET_S`` of nothing, then a record that is no transaction (a CHECKPOINT) received by the paused
    reader and held unreplayed. Returns what the replaced formula reads now: the age of the last replayed commit."""
    writer.execute("CREATE TABLE IF NOT EXISTS lag_probe (at timestamptz)")
    writer.execute("INSERT INTO lag_probe VALUES (now())")
    time.sleep(QUIET_S)
    reader.execute("SELECT pg_wal_replay_pause()")
    writer.execute("CHECKPOINT")
    while reader.execute("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()").fetchone() != (True,):
        time.sleep(0.01)
    row = reader.execute(
        "SELECT EXTRACT(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000"
    ).fetchone()
    assert row is not None
    return float(row[0])


def _resume_after(reader: psycopg.Connection[Any], delay_s: float) -> tuple[threading.Thread, list[float]]:
    """Resume the reader's replay ``delay_s`` from now on a connection opened ahead; the list gets the moment."""
    other = psycopg.connect(reader.info.dsn, password=reader.info.password, autocommit=True)
    resumed: list[float] = []

    def resume() -> None:
        with other:
            time.sleep(delay_s)
            other.execute("SELECT pg_wal_replay_resume()")
            resumed.append(time.monotonic())

    thread = threading.Thread(target=resume)
    thread.start()
    return thread, resumed


def test_quiet_cluster_reads_no_lag_while_a_non_transaction_record_waits(
    conns: tuple[psycopg.Connection[Any], dict[str, Any]],
) -> None:
    writer, readers = conns
    name, reader = sorted(readers.items())[0]
    old = _hold_a_record_unreplayed(writer, reader)
    assert old >= QUIET_S * 1000

    start = time.monotonic()
    thread, resumed = _resume_after(reader, 0.4)
    lags = replica_lag_ms(writer, {name: reader}, wait_s=30)
    thread.join()
    lag = lags[name]
    assert lag is not None
    # the measured lag is the time the record waited for replay: at least the pause, at most until it was resumed
    assert 350 <= lag <= (resumed[0] - start) * 1000 + 250, (lag, resumed[0] - start)
    assert lag < old


def test_a_reader_that_stopped_replaying_is_in_alarm(
    local_backend: Any, local_cluster: Cluster, conns: tuple[psycopg.Connection[Any], dict[str, Any]]
) -> None:
    writer, readers = conns
    (stuck, stuck_conn), (healthy, _) = sorted(readers.items())[:2]
    stuck_conn.execute("SELECT pg_wal_replay_pause()")
    writer.execute("CREATE TABLE IF NOT EXISTS lag_probe (at timestamptz)")
    writer.execute("INSERT INTO lag_probe VALUES (now())")
    lag = replica_lag_ms(writer, {stuck: stuck_conn}, wait_s=0.5)[stuck]
    assert lag is not None
    assert lag >= 500

    cid = local_cluster.db_cluster_identifier
    states = local_backend.put_alarms(cid, [AlarmSpec(metric="AuroraReplicaLag", threshold=1000)])
    by_instance = {s.dimension.split("=", 1)[1]: s for s in states}
    assert by_instance[stuck].state_value == "ALARM", by_instance[stuck].state_reason
    assert by_instance[healthy].state_value == "OK", by_instance[healthy].state_reason
    assert (by_instance[healthy].observed_value or 0) < 1000


def test_a_connection_not_in_recovery_is_no_reader(conns: tuple[psycopg.Connection[Any], dict[str, Any]]) -> None:
    writer, _ = conns
    assert replica_lag_ms(writer, {"the-writer": writer}) == {"the-writer": None}


def test_aurora_replica_status_on_a_quiet_reader_reads_the_replay_wait_not_the_commit_age(
    conns: tuple[psycopg.Connection[Any], dict[str, Any]],
) -> None:
    writer, readers = conns
    name, reader = sorted(readers.items())[0]
    old = _hold_a_record_unreplayed(writer, reader)
    thread, _ = _resume_after(reader, 0.2)
    row = reader.execute(
        "SELECT replica_lag_in_msec FROM pg_catalog.aurora_replica_status() WHERE server_id = %s", (name,)
    ).fetchone()
    thread.join()
    assert row is not None
    # replayed within the shim's 0.5 s poll: the wait it saw, not the >= 3 s since the last commit
    assert 150 <= row[0] < old, (row, old)
    # caught up: no wait (a few ms at most, should a record arrive just then)
    (caught_up,) = reader.execute(
        "SELECT replica_lag_in_msec FROM pg_catalog.aurora_replica_status() WHERE server_id = %s", (name,)
    ).fetchone()
    assert caught_up < 100
