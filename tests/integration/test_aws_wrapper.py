"""The local twin passes for Aurora with a real Aurora client: the AWS Advanced Python Wrapper, unmodified.

Its stock code must detect the Aurora dialect (not forced), read the topology from
``pg_catalog.aurora_replica_status()``, route ``read_only`` sessions to readers, and fail over (crash and planned)
raising ``FailoverSuccessError`` once, the next write landing on the new writer with no acknowledged commit lost,
while its monitoring opens no more than a handful of connections per second (counted from ``log_connections``).

The names come from the hosts file the backend manages as root (CI); where they cannot resolve, these tests are
skipped with that reason.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.checks.wrapper_probe import WrapperWriteProbe, connect_wrapper

pytestmark = pytest.mark.integration

wrapper = pytest.importorskip("aws_advanced_python_wrapper")

#: monitoring connections per second the wrapper may open, at rest and through a failover ("a handful")
MAX_CONNECTIONS_PER_S = 5.0
#: the shortest window a rate is taken over: a failover's few necessary reconnects (the application's, one per
#: monitored host) land within a second, so a 1.5 s planned failover would read as a "storm" that a 5 s window
#: tells apart from a real one (a monitor reconnecting in a loop keeps its rate over any window)
RATE_WINDOW_S = 5.0
#: the test's own poller names itself so that its reconnects are not counted as the wrapper's
POLLER_APPLICATION_NAME = "aurora-kit-test-poller"


@pytest.fixture(scope="module", autouse=True)
def _release_wrapper_resources() -> Iterator[None]:
    yield
    wrapper.release_resources()  # the wrapper's monitor threads and their connections


def _recipe(backend: Any, cluster_id: str) -> Any:
    recipe = backend.aws_wrapper_recipe(cluster_id)
    if not recipe.names_resolve:
        pytest.skip("the cluster's names do not resolve here (the hosts file is not writable): " + recipe.conninfo)
    return recipe


def _one(conn: Any, sql: str) -> tuple[Any, ...]:
    cur = conn.cursor()
    cur.execute(sql)
    row = cur.fetchone()
    cur.close()
    return tuple(row)


def test_the_wrapper_detects_aurora_and_reads_every_instance_with_its_role(
    local_backend: Any, local_cluster: Cluster
) -> None:
    from aws_advanced_python_wrapper.database_dialect import AuroraPgDialect
    from aws_advanced_python_wrapper.hostinfo import HostRole

    cid = local_cluster.db_cluster_identifier
    recipe = _recipe(local_backend, cid)
    assert "wrapper_dialect" not in recipe.properties  # detected, not forced
    with connect_wrapper(recipe, autocommit=True) as conn:
        service = conn._plugin_service  # read-only look at what the stock code concluded
        assert isinstance(service.database_dialect, AuroraPgDialect)
        hosts = {h.host_id: (h.host, h.role) for h in service.all_hosts}
        assert _one(conn, "SELECT aurora_db_instance_identifier()") == (local_cluster.writer_id,)
    expected = {
        i.db_instance_identifier: (
            recipe.properties["cluster_instance_host_pattern"].replace("?", i.db_instance_identifier),
            HostRole.WRITER if i.is_cluster_writer else HostRole.READER,
        )
        for i in local_backend.describe_instances(cid)
    }
    assert hosts == expected


def test_read_only_lands_on_a_reader_and_back_on_the_writer(local_backend: Any, local_cluster: Cluster) -> None:
    recipe = _recipe(local_backend, local_cluster.db_cluster_identifier)
    plugins = "read_write_splitting,failover_v2,host_monitoring_v2"
    with connect_wrapper(recipe, plugins=plugins, autocommit=True) as conn:
        assert _one(conn, "SELECT aurora_db_instance_identifier(), pg_is_in_recovery()") == (
            local_cluster.writer_id,
            False,
        )
        conn.read_only = True
        reader, in_recovery = _one(conn, "SELECT aurora_db_instance_identifier(), pg_is_in_recovery()")
        assert reader in local_cluster.reader_ids
        assert in_recovery is True
        conn.read_only = False
        assert _one(conn, "SELECT aurora_db_instance_identifier(), pg_is_in_recovery()") == (
            local_cluster.writer_id,
            False,
        )


def _log_sizes(backend: Any, cluster_id: str) -> dict[Path, int]:
    paths = backend.nodes.paths(cluster_id)
    return {
        paths.log_file(iid): paths.log_file(iid).stat().st_size for iid in backend.store.cluster(cluster_id).instances
    }


def _connections_since(sizes: dict[Path, int], dbname: str) -> int:
    """Sessions authorized on ``dbname`` since ``sizes`` were taken (the backend's own use ``postgres``), the test
    poller's left out (PostgreSQL logs a session's ``application_name`` when the client sets one)."""
    pattern = re.compile(rf"connection authorized: .*database={re.escape(dbname)}\b")
    count = 0
    for path, size in sizes.items():
        with path.open("rb") as fh:
            fh.seek(size)
            lines = fh.read().decode(errors="replace").splitlines()
        count += sum(1 for line in lines if pattern.search(line) and POLLER_APPLICATION_NAME not in line)
    return count


class _ReplicaStatusPoller:
    """Polls ``aurora_replica_status()`` on instances (own connections, reconnecting after errors) in a thread;
    ``writer_rows`` holds, per answer, how many rows said ``MASTER_SESSION_ID``."""

    def __init__(self, backend: Any, cluster_id: str, instance_ids: list[str]) -> None:
        self.infos = [backend.connection_info(cluster_id, iid) for iid in instance_ids]
        self.writer_rows: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _ReplicaStatusPoller:
        self._thread.start()
        return self

    def wait_until_answering(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.writer_rows:
            assert time.monotonic() < deadline, "the replica status poller never got an answer"
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conns: dict[int, Any] = {}
        query = "SELECT count(*) FILTER (WHERE session_id = 'MASTER_SESSION_ID') FROM aurora_replica_status()"
        while not self._stop.is_set():
            for n, info in enumerate(self.infos):
                try:
                    if n not in conns:
                        conns[n] = psycopg.connect(
                            info.conninfo, autocommit=True, application_name=POLLER_APPLICATION_NAME, **info.kwargs()
                        )
                    self.writer_rows.append(conns[n].execute(query).fetchone()[0])
                except psycopg.Error:
                    conns.pop(n, None)
            time.sleep(0.01)
        for conn in conns.values():
            conn.close()


def test_crash_and_planned_failover_each_raise_failover_success_once_and_lose_nothing(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = local_cluster_factory(readers=2, prefix="wr")
    cid = cluster.db_cluster_identifier
    local_backend.apply_parameters(cid, {"log_connections": "on"})  # dynamic: every node logs each session
    recipe = _recipe(local_backend, cid)
    dbname = cluster.database_name

    with connect_wrapper(recipe, autocommit=True) as idle:  # at rest: only the monitors' own connections
        _one(idle, "SELECT 1")
        sizes, started = _log_sizes(local_backend, cid), time.monotonic()
        time.sleep(RATE_WINDOW_S)
        _one(idle, "SELECT 1")
        at_rest = _connections_since(sizes, dbname) / (time.monotonic() - started)

    for mode in ("crash", "planned"):
        writer = local_backend.describe_cluster(cid).writer_id
        survivors = [r for r in local_backend.describe_cluster(cid).reader_ids]
        with (
            WrapperWriteProbe(recipe, rate=50, settle_writes=25) as probe,
            _ReplicaStatusPoller(local_backend, cid, survivors) as poller,
        ):
            poller.wait_until_answering()
            # counted from the failover on: the application's first connect and its monitors' are not the failover's
            sizes, started = _log_sizes(local_backend, cid), time.monotonic()
            result = local_backend.failover(cid, mode=mode)
        time.sleep(max(0.0, started + RATE_WINDOW_S - time.monotonic()))
        through_failover = _connections_since(sizes, dbname) / (time.monotonic() - started)
        report = probe.report
        assert report is not None
        assert result.old_writer == writer
        assert probe.failover_successes == 1, report.errors_by_kind
        assert probe.failover_writers == [result.new_writer]  # the next write landed on the new writer
        assert report.lost == 0, report.lost_ids
        assert report.recovered
        assert report.writers[-1] == result.new_writer
        # readers and the promoted one name exactly one writer in every answer, also mid-failover
        assert poller.writer_rows
        assert set(poller.writer_rows) == {1}, poller.writer_rows
        print(
            f"{mode}: write gap {report.rto_s:.3f} s, {len(report.acks)} acknowledged, "
            f"{through_failover:.2f} connections/s through the failover, {at_rest:.2f}/s at rest"
        )
        assert through_failover <= MAX_CONNECTIONS_PER_S, (mode, through_failover)
    assert at_rest <= MAX_CONNECTIONS_PER_S, at_rest


def test_connect_info_gives_the_wrapper_recipe_and_never_the_password(
    local_backend: Any, local_cluster: Cluster, capsys: Any
) -> None:
    from aurora_kit.cli import main

    cid = local_cluster.db_cluster_identifier
    recipe = local_backend.aws_wrapper_recipe(cid)
    root = ["local", "--root", str(local_backend.root), "connect-info", cid]
    assert main([*root, "--for", "aws-wrapper", "--json"]) == (0 if recipe.names_resolve else 1)
    out = json.loads(capsys.readouterr().out)
    assert out["conninfo"] == recipe.conninfo
    assert "target_session_attrs" not in out["conninfo"]
    assert out["properties"]["cluster_instance_host_pattern"] == recipe.host_pattern
    assert main([*root, "--for", "aws-wrapper"]) == (0 if recipe.names_resolve else 1)
    text = capsys.readouterr().out
    assert "AwsWrapperConnection.connect(" in text
    assert main([*root, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "target_session_attrs=read-write" in plain["cluster"]
    assert recipe.password
    assert recipe.password not in text + json.dumps(out) + json.dumps(plain)


def test_without_the_hosts_file_plain_clients_work_and_connect_info_says_what_to_add(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user who may not write /etc/hosts gets (here: management switched off)."""
    from aurora_kit.cli import main

    monkeypatch.setenv("AURORA_KIT_MANAGE_HOSTS", "0")
    cluster = local_cluster_factory(readers=0, prefix="nh")
    cid = cluster.db_cluster_identifier
    info = local_backend.connection_info(cid, "cluster")
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:  # addresses need no names
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone() == (cluster.writer_id,)
    recipe = local_backend.aws_wrapper_recipe(cid)
    assert not recipe.names_resolve
    assert main(["local", "--root", str(local_backend.root), "connect-info", cid, "--for", "aws-wrapper"]) == 1
    out = capsys.readouterr().out
    assert "Add these lines to /etc/hosts" in out
    assert all(line in out for line in recipe.hosts_lines)


def test_the_first_failover_plugin_too_raises_failover_success_once_and_loses_nothing(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    """``failover`` (v1, one failover process per connection) as well as the default ``failover_v2``."""
    cluster = local_cluster_factory(readers=1, prefix="v1")
    cid = cluster.db_cluster_identifier
    recipe = _recipe(local_backend, cid)
    with WrapperWriteProbe(recipe, settings={"plugins": "failover,host_monitoring"}, rate=50) as probe:
        result = local_backend.failover(cid, mode="crash")
    report = probe.report
    assert report is not None
    assert probe.failover_successes == 1, report.errors_by_kind
    assert probe.failover_writers == [result.new_writer]
    assert report.lost == 0, report.lost_ids
