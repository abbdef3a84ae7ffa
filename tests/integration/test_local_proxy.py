"""The local RDS Proxy (PgBouncer) in front of a real cluster: created from the proxy settings, its targets and
endpoints, what 09-proxy proves through it (multiplexing, no pinning but no leak, the read-only endpoint on readers),
following planned and crash failovers with no acknowledged commit lost, and no PgBouncer left behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.backends.local.pgbouncer import find_pgbouncer
from aurora_kit.checks.common import connect, instance_identity
from aurora_kit.checks.proxy import check_multiplexing, check_pinning, check_read_only_endpoint, compare_failover
from aurora_kit.errors import BackendOperationError, InvalidParameterError, ProxyNotFoundError
from aurora_kit.specs import ProxySpec

pytestmark = pytest.mark.integration


def _pgbouncers_under(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and "pgbouncer" in cmd[0] and any(str(root) in part for part in cmd):
            found.append(proc)
    return found


@pytest.fixture(autouse=True)
def _pgbouncer_installed() -> None:
    try:
        find_pgbouncer()
    except BackendOperationError as exc:  # pragma: no cover - .ci/run installs it
        pytest.skip(str(exc))


SPEC = ProxySpec(
    proxy_name="px", read_only_endpoint="px-ro", max_connections_percent=10, max_idle_connections_percent=5
)


def test_proxy_endpoints_targets_and_what_it_proves(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cid = local_cluster_factory(readers=2, prefix="pxa").db_cluster_identifier
    spec = SPEC.model_copy(update={"proxy_name": f"{cid}-px", "read_only_endpoint": f"{cid}-px-ro"})
    proxy = local_backend.create_proxy(cid, spec)
    assert proxy.status == "available"
    assert proxy.targets_available
    assert proxy.pool_size == 172  # 10 % of db.r6g.large's 1722 connections
    assert [(e.target_role, e.status) for e in proxy.endpoints] == [
        ("READ_WRITE", "available"),
        ("READ_ONLY", "available"),
    ]
    writer = local_backend.describe_cluster(cid).writer_id
    with connect(local_backend.proxy_connection_info(spec.proxy_name)) as conn:
        assert instance_identity(conn) == (writer, False)

    multiplexed = check_multiplexing(local_backend.proxy_connection_info(spec.proxy_name), clients=30,
                                     pool_size=proxy.pool_size)  # fmt: skip
    assert multiplexed.ok, multiplexed.problems()
    assert multiplexed.server_sessions < 30
    pinned = check_pinning(local_backend.proxy_connection_info(spec.proxy_name), pins_expected=False)
    assert pinned.ok, pinned.problems()
    assert (pinned.kept, pinned.leaked) == (0, 0)  # the SET lasted for its transaction; nobody else saw it
    strict = check_pinning(local_backend.proxy_connection_info(spec.proxy_name), pins_expected=True)
    assert not strict.ok  # what RDS Proxy would do is not what PgBouncer does: the check tells them apart
    readers = local_backend.describe_cluster(cid).reader_ids
    ro = check_read_only_endpoint(
        local_backend.proxy_connection_info(spec.proxy_name, spec.read_only_endpoint), readers
    )
    assert ro.ok, ro.problems()
    assert set(ro.answers) == set(readers)  # round-robin over the readers

    assert local_backend.create_proxy(cid, spec).db_proxy_name == spec.proxy_name  # the same proxy: found
    with pytest.raises(InvalidParameterError, match="already exists"):
        local_backend.create_proxy(cid, spec.model_copy(update={"idle_client_timeout_s": 60}))
    local_backend.delete_proxy(spec.proxy_name)
    with pytest.raises(ProxyNotFoundError):
        local_backend.describe_proxy(spec.proxy_name)
    assert not _pgbouncers_under(local_backend.root)


@pytest.mark.timing
def test_the_proxy_follows_planned_and_crash_failovers_losing_nothing(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    """Both probes lose no acknowledged commit; the proxy's write gap is no longer than the cluster endpoint's
    (+0.25 s on a busy machine); the proxy's read-only endpoint follows the readers."""
    cid = local_cluster_factory(readers=2, prefix="pxf").db_cluster_identifier
    spec = SPEC.model_copy(update={"proxy_name": f"{cid}-px", "read_only_endpoint": f"{cid}-px-ro"})
    local_backend.create_proxy(cid, spec)
    for mode in ("planned", "crash"):
        result, report = compare_failover(local_backend, cid, spec.proxy_name, mode=mode, slack_s=0.25)
        assert report.ok, report.problems()
        assert report.proxied.new_writer == result.new_writer
        with connect(local_backend.proxy_connection_info(spec.proxy_name)) as conn:
            assert instance_identity(conn) == (result.new_writer, False)
        readers = local_backend.describe_cluster(cid).reader_ids
        assert result.old_writer in readers
        ro = check_read_only_endpoint(
            local_backend.proxy_connection_info(spec.proxy_name, spec.read_only_endpoint), readers
        )
        assert ro.ok, ro.problems()
    processes = _pgbouncers_under(local_backend.nodes.paths(cid).dir)
    assert len(processes) == 2  # one per endpoint, still the same two


def test_a_missing_pgbouncer_is_named_before_anything_changes(
    local_backend: Any, local_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = local_cluster.db_cluster_identifier  # shared: nothing may change on it
    monkeypatch.setenv("AURORA_KIT_PGBOUNCER", "/nonexistent/pgbouncer")
    with pytest.raises(BackendOperationError, match="apt-get install pgbouncer"):
        local_backend.create_proxy(cid, SPEC.model_copy(update={"proxy_name": f"{cid}-px"}))
    assert local_backend.store.cluster(cid).proxies == {}


def test_deleting_the_cluster_stops_its_proxy(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    cid = local_cluster_factory(readers=1, prefix="pxd").db_cluster_identifier
    local_backend.create_proxy(cid, SPEC.model_copy(update={"proxy_name": f"{cid}-px", "read_only_endpoint": None}))
    assert len(_pgbouncers_under(local_backend.root)) == 1
    local_backend.delete_cluster(cid, final_snapshot_id=None, skip_final_snapshot=True)
    assert not _pgbouncers_under(local_backend.root)
