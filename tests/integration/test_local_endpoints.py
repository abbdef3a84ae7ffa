"""Endpoints of a real local cluster: writes on the cluster endpoint, reads on the reader endpoint."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from aurora_kit.backends.base import Cluster
from aurora_kit.errors import InvalidParameterError
from aurora_kit.polling import wait_for

pytestmark = pytest.mark.integration


def _connect(backend: Any, cluster: Cluster, endpoint: str) -> psycopg.Connection[Any]:
    info = backend.connection_info(cluster.db_cluster_identifier, endpoint)
    return psycopg.connect(info.conninfo, autocommit=True, **info.kwargs())


def test_describe_shows_writer_and_readers(local_backend: Any, local_cluster: Cluster) -> None:
    cluster = local_backend.describe_cluster(local_cluster.db_cluster_identifier)
    assert cluster.status == "available"
    assert cluster.writer_id == local_cluster.writer_id
    assert len(cluster.reader_ids) == 2
    instances = local_backend.describe_instances(cluster.db_cluster_identifier)
    assert [i.status for i in instances] == ["available"] * 3
    assert sum(i.is_cluster_writer for i in instances) == 1
    assert len(cluster.endpoint.split(",")) == 3
    assert len(cluster.reader_endpoint.split(",")) == 2


def test_write_on_cluster_endpoint_visible_on_reader(local_backend: Any, local_cluster: Cluster) -> None:
    with _connect(local_backend, local_cluster, "cluster") as conn:
        writer = conn.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()").fetchone()
        assert writer == (local_cluster.writer_id, False)
        conn.execute("CREATE TABLE IF NOT EXISTS endpoint_probe (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO endpoint_probe VALUES (1, 'hello') ON CONFLICT (id) DO NOTHING")
    with _connect(local_backend, local_cluster, "reader") as conn:
        me = conn.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()").fetchone()
        assert me is not None
        assert me[0] in local_cluster.reader_ids
        assert me[1] is True

        def row() -> Any:
            return conn.execute(
                "SELECT note FROM endpoint_probe WHERE id = 1"
                if conn.execute("SELECT to_regclass('endpoint_probe')").fetchone() != (None,)
                else "SELECT NULL"
            ).fetchone()

        assert wait_for("row replicated", row, lambda r: r == ("hello",), timeout=10) == ("hello",)


def test_reader_rejects_writes(local_backend: Any, local_cluster: Cluster) -> None:
    with _connect(local_backend, local_cluster, "reader") as conn:
        with pytest.raises(errors.ReadOnlySqlTransaction) as excinfo:
            conn.execute("CREATE TABLE must_fail (x int)")
        assert excinfo.value.sqlstate == "25006"


def test_replica_status_lists_the_writer_and_every_reader(local_backend: Any, local_cluster: Cluster) -> None:
    with _connect(local_backend, local_cluster, "cluster") as conn:
        rows = conn.execute("SELECT server_id, session_id FROM aurora_replica_status()").fetchall()
    assert (local_cluster.writer_id, "MASTER_SESSION_ID") in rows
    assert sorted(r[0] for r in rows if r[1] != "MASTER_SESSION_ID") == sorted(local_cluster.reader_ids)


def test_password_never_in_conninfo(local_backend: Any, local_cluster: Cluster) -> None:
    info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster")
    assert info.password
    assert info.password not in info.conninfo
    assert info.password not in repr(info)
    assert "target_session_attrs=read-write" in info.conninfo
    reader = local_backend.connection_info(local_cluster.db_cluster_identifier, "reader")
    assert "target_session_attrs=standby" in reader.conninfo
    assert "load_balance_hosts=random" in reader.conninfo


def test_pgvector_available_but_not_created(local_backend: Any, local_cluster: Cluster) -> None:
    with _connect(local_backend, local_cluster, "cluster") as conn:
        row = conn.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    assert row is not None
    assert row[0] == "0.8.5"


def test_every_instance_answers_on_the_cluster_port_at_its_recorded_address(
    local_backend: Any, local_cluster: Cluster
) -> None:
    cid = local_cluster.db_cluster_identifier
    instances = local_backend.describe_instances(cid)
    assert len({i.endpoint_port for i in instances}) == 1  # one port, as on Aurora
    assert len({i.endpoint_address for i in instances}) == len(instances)  # an address each
    password = local_backend.connection_info(cid, "cluster").password
    for inst in instances:
        with psycopg.connect(
            host=inst.endpoint_address,
            port=inst.endpoint_port,
            dbname=local_cluster.database_name,
            user=local_cluster.master_username,
            password=password,
            connect_timeout=2,
        ) as conn:
            row = conn.execute("SELECT aurora_db_instance_identifier(), host(inet_server_addr())").fetchone()
        assert row == (inst.db_instance_identifier, inst.endpoint_address)


def test_aurora_sql_surface_on_every_instance(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    members = {local_cluster.writer_id, *local_cluster.reader_ids}
    for iid in sorted(members):
        with _connect(local_backend, local_cluster, iid) as conn:
            rows = conn.execute(
                "SELECT server_id, session_id, last_update_timestamp FROM pg_catalog.aurora_replica_status()"
            ).fetchall()
            # every instance lists every instance, the writer's row included, on readers too
            assert {r[0] for r in rows} == members
            assert [r[0] for r in rows if r[1] == "MASTER_SESSION_ID"] == [local_cluster.writer_id]
            assert [r[2] for r in rows if r[0] == iid] == [None]  # as on Aurora >= 13.9: NULL for itself
            columns = [c.name for c in conn.execute("SELECT * FROM aurora_replica_status() LIMIT 0").description]
            assert columns[:2] == ["server_id", "session_id"]
            assert {"replica_lag_in_msec", "last_update_timestamp", "cpu", "durable_lsn"} <= set(columns)
            assert len(columns) == 22
            extensions = conn.execute(
                "SELECT setting, context FROM pg_catalog.pg_settings WHERE name = 'rds.extensions'"
            ).fetchall()
            assert len(extensions) == 1
            assert "aurora_stat_utils" in extensions[0][0]
            assert extensions[0][1] == "internal"
            assert conn.execute("SHOW rds.extensions").fetchone() == (extensions[0][0],)
            version = conn.execute("SELECT aurora_version(), current_setting('server_version')").fetchone()
            assert version is not None
            assert version[0] == f"{version[1]}.0"
            assert conn.execute("SELECT to_regprocedure('public.aurora_replica_status()')").fetchone() == (None,)
    with pytest.raises(InvalidParameterError):  # not modifiable, as on Aurora
        local_backend.apply_parameters(cid, {"rds.extensions": "x"})
