"""Per-instance loopback addresses, Aurora-shaped names, the managed hosts-file blocks and the wrapper recipe
(pure + sockets and temp files; no PostgreSQL)."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from aurora_kit.backends.local import addressing, topology
from aurora_kit.backends.local.addressing import HostsFile, Member
from aurora_kit.backends.local.config import TOPOLOGY_FROM_DATA_DIR, ClusterPaths
from aurora_kit.backends.local.sql import rds_extensions, surface_sql
from aurora_kit.backends.local.state import ClusterRecord as Rec
from aurora_kit.backends.local.state import InstanceRecord, StateStore
from aurora_kit.errors import InvalidParameterError, InvalidStateError

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


def _record(cluster_id: str = "ak", addresses: tuple[str, ...] = ("127.0.0.2", "127.0.0.3", "127.0.0.4")) -> Rec:
    instances = {
        f"{cluster_id}-{n}": InstanceRecord(
            port=5432,
            role="writer" if n == 1 else "reader",
            status="available",
            instance_class="db.r6g.large",
            availability_zone="local-1a",
            promotion_tier=1,
            created=NOW,
            address=address,
        )
        for n, address in enumerate(addresses, start=1)
    }
    return Rec(
        cluster_id=cluster_id,
        status="available",
        engine_major=16,
        engine_version="16.14",
        master_username="postgres",
        database_name="app",
        created=NOW,
        instances=instances,
    )


# -- addresses and ports -------------------------------------------------------------------------------------
def test_candidates_skip_the_usual_loopback_addresses() -> None:
    first = []
    for address in addressing.candidate_addresses():
        first.append(address)
        if len(first) == 300:
            break
    assert first[0] == "127.0.0.2"
    assert not set(first) & addressing.RESERVED
    assert "127.0.1.2" in first
    assert "127.0.0.255" not in first
    assert "127.0.1.0" not in first


def test_addresses_skip_taken_and_busy_ones() -> None:
    port = _free_port()
    with socket.create_server(("127.0.0.3", port)):  # something listens on 127.0.0.3 at that port
        picked = addressing.pick_addresses(3, port, taken={"127.0.0.2"})
    assert picked == ["127.0.0.4", "127.0.0.5", "127.0.0.6"]


def test_an_explicit_port_busy_on_every_address_is_refused_before_anything() -> None:
    port = _free_port()
    with socket.create_server(("0.0.0.0", port)):  # a wildcard listener takes the port on every address
        with pytest.raises(InvalidParameterError) as excinfo:
            addressing.allocate(2, port=port, taken=set())
        assert excinfo.value.field == "port"
        assert addressing.pick_addresses(1, port, taken=set()) is None


def test_a_cluster_shares_one_port_across_its_own_addresses() -> None:
    port, addresses = addressing.allocate(3, port=None, taken={"127.0.0.2"})
    assert len(set(addresses)) == 3
    assert "127.0.0.2" not in addresses
    assert all(addressing.bindable(a, port) for a in addresses)


# -- names ---------------------------------------------------------------------------------------------------
def test_names_are_per_root_and_follow_aurora_shapes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert addressing.domain(a) == addressing.domain(a) != addressing.domain(b)
    dom = addressing.domain(a)
    assert dom.endswith(".aurora-kit.internal")
    assert len(dom.split(".")[0]) == 12
    assert addressing.instance_name(a, "ak-1") == f"ak-1.{dom}"
    assert addressing.cluster_name(a, "ak") == f"ak.cluster-{dom}"
    assert addressing.reader_name(a, "ak") == f"ak.cluster-ro-{dom}"
    assert addressing.host_pattern(a).replace("?", "ak-1") == addressing.instance_name(a, "ak-1")


def test_entries_name_instances_the_writer_and_the_readers(tmp_path: Path) -> None:
    members = [
        Member("ak-1", "127.0.0.2", True),
        Member("ak-2", "127.0.0.3", False),
        Member("ak-3", "127.0.0.4", False),
    ]
    lines = addressing.entries(tmp_path, "ak", members)
    by_name: dict[str, list[str]] = {}
    for address, name in lines:
        by_name.setdefault(name, []).append(address)
    assert by_name[addressing.cluster_name(tmp_path, "ak")] == ["127.0.0.2"]
    assert by_name[addressing.reader_name(tmp_path, "ak")] == ["127.0.0.3", "127.0.0.4"]
    assert by_name[addressing.instance_name(tmp_path, "ak-3")] == ["127.0.0.4"]
    alone = addressing.entries(tmp_path, "ak", members[:1])  # no reader: the reader endpoint reaches the writer
    assert (("127.0.0.2", addressing.reader_name(tmp_path, "ak"))) in alone
    assert addressing.entries(tmp_path, "old", [Member("old-1", "127.0.0.1", True)]) == []  # legacy: no names


def test_our_names_are_not_taken_for_rds_names_by_the_wrapper(tmp_path: Path) -> None:
    rds_utils = pytest.importorskip("aws_advanced_python_wrapper.utils.rds_utils")
    rds_url_type = pytest.importorskip("aws_advanced_python_wrapper.utils.rds_url_type")
    utils = rds_utils.RdsUtils()
    for name in (addressing.cluster_name(tmp_path, "ak"), addressing.instance_name(tmp_path, "ak-1")):
        assert utils.identify_rds_type(name) == rds_url_type.RdsUrlType.OTHER  # so the dialect is detected
    assert utils.is_dns_pattern_valid(addressing.host_pattern(tmp_path))


# -- the hosts file ------------------------------------------------------------------------------------------
def _hosts(tmp_path: Path) -> HostsFile:
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    return HostsFile(path, tmp_path / "hosts.lock")


def _root_with(tmp_path: Path, name: str, *clusters: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    with StateStore(root).edit() as doc:
        for cid in clusters:
            doc.clusters[cid] = _record(cid)
    return root


def test_blocks_are_added_replaced_and_removed_leaving_other_lines(tmp_path: Path) -> None:
    hosts = _hosts(tmp_path)
    root = _root_with(tmp_path, "root", "ak", "bk")
    hosts.sync(root, "ak", [("127.0.0.2", "ak-1.x.aurora-kit.internal")])
    hosts.sync(root, "bk", [("127.0.0.5", "bk-1.x.aurora-kit.internal")])
    hosts.sync(root, "ak", [("127.0.0.3", "ak-1.x.aurora-kit.internal"), ("127.0.0.4", "ak-2.x.aurora-kit.internal")])
    assert hosts.blocks() == {
        (str(root), "bk"): [("127.0.0.5", "bk-1.x.aurora-kit.internal")],
        (str(root), "ak"): [("127.0.0.3", "ak-1.x.aurora-kit.internal"), ("127.0.0.4", "ak-2.x.aurora-kit.internal")],
    }
    assert hosts.addresses() >= {"127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
    hosts.sync(root, "ak", None)
    hosts.sync(root, "bk", None)
    assert hosts.read() == "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"


def test_blocks_of_gone_roots_or_clusters_are_pruned(tmp_path: Path) -> None:
    hosts = _hosts(tmp_path)
    live = _root_with(tmp_path, "live", "ak")
    gone = _root_with(tmp_path, "gone", "ck")
    hosts.sync(gone, "ck", [("127.0.0.9", "ck-1.y.aurora-kit.internal")])
    hosts.sync(live, "old", [("127.0.0.8", "old-1.x.aurora-kit.internal")])  # not (or no longer) in live's state
    for path in sorted(gone.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    gone.rmdir()
    hosts.sync(live, "ak", [("127.0.0.2", "ak-1.x.aurora-kit.internal")])
    assert list(hosts.blocks()) == [(str(live), "ak")]


def test_the_hosts_file_is_left_alone_when_switched_off_or_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = _hosts(tmp_path)
    assert hosts.managed
    monkeypatch.setenv("AURORA_KIT_MANAGE_HOSTS", "0")
    assert not hosts.managed
    monkeypatch.delenv("AURORA_KIT_MANAGE_HOSTS")
    assert not HostsFile(tmp_path / "missing", tmp_path / "lock").managed
    monkeypatch.setenv("AURORA_KIT_HOSTS_FILE", str(hosts.path))
    assert HostsFile().path == hosts.path


# -- the topology file and the wrapper recipe ----------------------------------------------------------------
def test_the_topology_document_lists_every_member_writer_first() -> None:
    doc = topology.document(_record(), NOW)
    assert doc["writer"] == "ak-1"
    assert [i["id"] for i in doc["instances"]] == ["ak-1", "ak-2", "ak-3"]
    assert doc["instances"][1] == {
        "id": "ak-2",
        "role": "reader",
        "status": "available",
        "address": "127.0.0.3",
        "port": 5432,
    }
    assert json.loads(json.dumps(doc)) == doc


def test_the_sql_finds_the_topology_file_from_any_data_dir(tmp_path: Path) -> None:
    paths = ClusterPaths(tmp_path, "ak")
    assert (paths.data_dir("ak-2") / TOPOLOGY_FROM_DATA_DIR).resolve() == paths.topology.resolve()
    assert f"'/{TOPOLOGY_FROM_DATA_DIR}'" in surface_sql(TOPOLOGY_FROM_DATA_DIR)
    assert "pg_catalog.aurora_replica_status(" in surface_sql(TOPOLOGY_FROM_DATA_DIR)
    assert rds_extensions(["vector", "plpgsql"]) == "aurora_stat_utils, plpgsql, vector"


def test_the_wrapper_recipe_names_the_writer_without_session_attributes(tmp_path: Path) -> None:
    recipe = topology.wrapper_recipe(
        tmp_path, _record(), dbname="app", user="postgres", connect_timeout=2, password="s3cret"
    )
    params = conninfo_to_dict(recipe.conninfo)
    assert params["host"] == addressing.cluster_name(tmp_path, "ak")
    assert params["port"] == "5432"
    assert "target_session_attrs" not in params
    assert "password" not in params
    assert recipe.properties == {"cluster_instance_host_pattern": addressing.host_pattern(tmp_path), "cluster_id": "ak"}
    assert "s3cret" not in repr(recipe)
    assert f"127.0.0.2 {addressing.cluster_name(tmp_path, 'ak')}" in recipe.hosts_lines
    legacy = _record("old", ("127.0.0.1", "127.0.0.1"))
    with pytest.raises(InvalidStateError):
        topology.wrapper_recipe(tmp_path, legacy, dbname="app", user="postgres", connect_timeout=2, password=None)


def test_roots_allocate_from_blocks_of_their_own() -> None:
    """A root records addresses it has not bound yet (a restored cluster's future writer): another root allocating
    at the same time must not start from the same address."""
    from itertools import islice
    from pathlib import Path

    from aurora_kit.backends.local.addressing import RESERVED, candidate_addresses

    a = list(islice(candidate_addresses(Path("/tmp/root-a")), 300))
    b = list(islice(candidate_addresses(Path("/tmp/root-b")), 300))
    assert not set(a) & set(b)
    assert len(set(a)) == 300
    assert all(x.startswith("127.") and x not in RESERVED for x in a)
    assert list(islice(candidate_addresses(Path("/tmp/root-a")), 3)) == a[:3]  # the same root, the same order
