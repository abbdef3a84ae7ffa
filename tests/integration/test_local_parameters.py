"""The cluster parameter group on real processes: dynamic changes apply now, static ones wait for a reboot,
bad names and values are refused before anything changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.errors import InvalidParameterError

pytestmark = pytest.mark.integration


def _show(backend: Any, cluster_id: str, endpoint: str, name: str) -> str:
    info = backend.connection_info(cluster_id, endpoint)
    with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def _statuses(backend: Any, cluster_id: str) -> dict[str, str]:
    return {
        m.db_instance_identifier: m.db_cluster_parameter_group_status for m in backend.describe_instances(cluster_id)
    }


def _state(backend: Any, cluster: Cluster) -> dict[str, Any]:
    cid = cluster.db_cluster_identifier
    return {
        "group file": backend.nodes.paths(cid).parameters.read_text(),
        "settings": {n: _show(backend, cid, "cluster", n) for n in ("shared_buffers", "work_mem", "max_connections")},
        "statuses": _statuses(backend, cid),
        "writer": backend.describe_cluster(cid).writer_id,
    }


@pytest.fixture(autouse=True, scope="module")
def _shared_cluster_left_as_found(local_backend: Any, local_cluster: Cluster) -> Iterator[None]:
    """The session's shared cluster serves other modules: nothing this module does may stay changed on it."""
    before = _state(local_backend, local_cluster)
    yield
    assert _state(local_backend, local_cluster) == before


def test_dynamic_now_static_pending_reboot_until_rebooted(
    local_backend: Any, local_cluster_factory: Callable[..., Cluster]
) -> None:
    # its own cluster: static changes and reboots must not leak into the shared one
    own = local_cluster_factory(readers=1, prefix="params")
    cid = own.db_cluster_identifier
    members = [own.writer_id, *own.reader_ids]
    old_buffers = _show(local_backend, cid, "cluster", "shared_buffers")
    old_work_mem = _show(local_backend, cid, "cluster", "work_mem")
    new_buffers = "64MB" if old_buffers != "64MB" else "96MB"

    result = local_backend.apply_parameters(cid, {"work_mem": "12MB", "shared_buffers": new_buffers})
    methods = {c.parameter_name: (c.apply_type, c.apply_method) for c in result.changes}
    assert methods == {"work_mem": ("dynamic", "immediate"), "shared_buffers": ("static", "pending-reboot")}
    assert sorted(result.pending_reboot_instances) == sorted(members)
    assert result.needs_reboot
    for endpoint in members:
        assert _show(local_backend, cid, endpoint, "work_mem") == "12MB"
        assert _show(local_backend, cid, endpoint, "shared_buffers") == old_buffers
    assert set(_statuses(local_backend, cid).values()) == {"pending-reboot"}
    cluster = local_backend.describe_cluster(cid)
    assert {m.db_cluster_parameter_group_status for m in cluster.db_cluster_members} == {"pending-reboot"}
    assert local_backend.get_parameters(cid, ["work_mem", "shared_buffers"]) == {
        "work_mem": "12MB",
        "shared_buffers": new_buffers,
    }

    rebooted = local_backend.reboot_pending(cid)
    order = [i.db_instance_identifier for i in rebooted]
    assert order[-1] == own.writer_id  # readers first, then the writer
    assert sorted(order) == sorted(members)
    assert set(_statuses(local_backend, cid).values()) == {"in-sync"}
    for endpoint in members:
        assert _show(local_backend, cid, endpoint, "shared_buffers") == new_buffers
    assert local_backend.describe_cluster(cid).writer_id == own.writer_id

    again = local_backend.apply_parameters(cid, {"work_mem": "12MB"})
    assert again.status == "no-change"
    assert again.changes == []
    restored = local_backend.apply_parameters(cid, {"work_mem": old_work_mem})
    assert restored.pending_reboot_instances == []


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"work_mem": "16MB", "no_such_parameter": "1"}, "no_such_parameter"),
        ({"work_mem": "16MB", "shared_buffers": "lots"}, "shared_buffers"),
        ({"work_mem": "1"}, "work_mem"),  # below the minimum (64kB)
        ({"wal_level": "minimal"}, "wal_level"),  # managed by the backend
        ({"block_size": "4096"}, "block_size"),  # read-only
        ({"enable_seqscan": "maybe"}, "enable_seqscan"),
        ({"shared_preload_libraries": "pg_stat_statements,not_a_library"}, "shared_preload_libraries"),
    ],
)
def test_bad_parameters_are_refused_and_change_nothing(
    local_backend: Any, local_cluster: Cluster, parameters: dict[str, str], field: str
) -> None:
    cid = local_cluster.db_cluster_identifier
    group_file = local_backend.nodes.paths(cid).parameters
    before_file = group_file.read_text()
    before_state = local_backend.store.cluster(cid)
    before_work_mem = _show(local_backend, cid, "cluster", "work_mem")
    with pytest.raises(InvalidParameterError) as excinfo:
        local_backend.apply_parameters(cid, parameters)
    assert excinfo.value.field == field
    assert group_file.read_text() == before_file
    assert local_backend.store.cluster(cid) == before_state
    assert _show(local_backend, cid, "cluster", "work_mem") == before_work_mem


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("full_page_writes", "off"),  # pg_rewind and standby base backups need it
        ("max_slot_wal_keep_size", "-1"),  # would let a dead reader's slot fill the disk again
        ("max_wal_senders", "1"),
        ("max_replication_slots", "1"),
        ("hot_standby_feedback", "off"),
        ("wal_sender_timeout", "0"),
        ("synchronous_commit", "local"),  # would drop zero acknowledged-commit loss
        ("synchronous_commit", "off"),
        ("synchronous_standby_names", ""),
        ("wal_level", "logical"),
        ("archive_mode", "off"),
        ("archive_command", "/bin/true"),
        ("hot_standby", "off"),
        ("primary_conninfo", "host=example.invalid"),
        ("fsync", "off"),
    ],
)
def test_replication_and_durability_settings_are_managed(
    local_backend: Any, local_cluster: Cluster, name: str, value: str
) -> None:
    cid = local_cluster.db_cluster_identifier
    group_file = local_backend.nodes.paths(cid).parameters
    before_file = group_file.read_text()
    before_state = local_backend.store.cluster(cid)
    with pytest.raises(InvalidParameterError, match="managed by the local backend: ") as excinfo:
        local_backend.apply_parameters(cid, {"work_mem": "8MB", name: value})
    assert excinfo.value.field == name
    assert group_file.read_text() == before_file
    assert local_backend.store.cluster(cid) == before_state
