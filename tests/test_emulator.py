"""The emulated AWS (``aurora-kit emulate``) against the unchanged aws backend: what it promises about Aurora.

One emulator for the module, one cluster (writer + 1 reader) for the tests that do not change its topology. Each
test says which Aurora behaviour it holds the emulator to: endpoints shaped like RDS's, TLS that verifies the RDS
hostname, the managed secret holding the real password, IAM database authentication honoured only with a valid token
(failures look like Aurora's PAM failure), events with Aurora's messages, real failover / reboot / parameters.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from plugins.aws_emulator import RunningEmulator

from aurora_kit.backends.aws import AwsBackend
from aurora_kit.checks.common import connect
from aurora_kit.rules import memory_settings
from aurora_kit.specs import ClusterSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
CLUSTER = "emu"


@pytest.fixture(scope="module")
def cluster(aws_emulator: RunningEmulator) -> Iterator[str]:
    """``emu``: writer emu-1 (us-east-1a), reader emu-2 (us-east-1b), IAM auth on, no deletion protection."""
    import os

    saved = {k: os.environ.get(k) for k in aws_emulator.env}
    os.environ.update(aws_emulator.env)
    try:
        backend = AwsBackend(**aws_emulator.backend_options())
        spec = ClusterSpec.with_readers(CLUSTER, 1, availability_zones=["us-east-1a", "us-east-1b"],
                                        deletion_protection=False)  # fmt: skip
        backend.create_cluster(spec)
        yield CLUSTER
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def backend(emulator_env: RunningEmulator, cluster: str) -> AwsBackend:
    return AwsBackend(**emulator_env.backend_options())


def _sql(backend: AwsBackend, endpoint: str, statement: str) -> Any:
    with connect(backend.connection_info(CLUSTER, endpoint), connect_timeout=5) as conn:
        return conn.execute(statement).fetchone()


def test_endpoints_are_rds_hostnames_and_lead_to_the_right_instance(backend: AwsBackend) -> None:
    described = backend.describe_cluster(CLUSTER)
    host_id = described.endpoint.split(".")[1].removeprefix("cluster-")
    assert re.fullmatch(rf"emu\.cluster-{host_id}\.us-east-1\.rds\.amazonaws\.com", described.endpoint)
    assert described.reader_endpoint == f"emu.cluster-ro-{host_id}.us-east-1.rds.amazonaws.com"
    instances = {i.db_instance_identifier: i for i in backend.describe_instances(CLUSTER)}
    assert instances["emu-2"].endpoint_address == f"emu-2.{host_id}.us-east-1.rds.amazonaws.com"
    assert instances["emu-2"].endpoint_port == 5432
    writer = described.writer_id
    assert _sql(backend, "cluster", "SELECT aurora_db_instance_identifier(), pg_is_in_recovery()") == (writer, False)
    assert _sql(backend, "reader", "SELECT pg_is_in_recovery()") == (True,)
    for iid in instances:
        assert _sql(backend, iid, "SELECT aurora_db_instance_identifier()") == (iid,)


def test_tls_verifies_the_rds_hostname_with_the_emulators_ca(
    backend: AwsBackend, emulator_env: RunningEmulator
) -> None:
    info = backend.connection_info(CLUSTER)
    assert "sslmode=verify-full" in info.conninfo
    with connect(info, connect_timeout=5) as conn:
        assert conn.pgconn.ssl_in_use
    other_ca = AwsBackend(**emulator_env.backend_options(ca_bundle="/etc/ssl/certs/ca-certificates.crt"))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(other_ca.connection_info(CLUSTER), connect_timeout=5)
    plain = psycopg.conninfo.make_conninfo(info.conninfo, sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):  # rds.force_ssl=1, as Aurora 16 has it
        psycopg.connect(plain, connect_timeout=5, **info.kwargs())


def test_the_managed_secret_holds_the_master_password(backend: AwsBackend) -> None:
    described = backend.describe_cluster(CLUSTER)
    assert described.master_user_secret_arn
    assert ":secret:rds!cluster-" in described.master_user_secret_arn
    secret = json.loads(
        backend.client("secretsmanager").get_secret_value(SecretId=described.master_user_secret_arn)["SecretString"]
    )
    assert secret["username"] == "postgres"
    assert backend.connection_info(CLUSTER).password == secret["password"]
    assert _sql(backend, "cluster", "SELECT current_user") == ("postgres",)


@pytest.fixture
def iam_users(backend: AwsBackend) -> None:
    """``app_iam`` (granted rds_iam, no password) and ``app_pw`` (a password, no rds_iam)."""
    with connect(backend.connection_info(CLUSTER), connect_timeout=5) as conn:
        for role in ("app_iam", "app_pw"):
            conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute("CREATE ROLE app_iam LOGIN")
        conn.execute("GRANT rds_iam TO app_iam")
        conn.execute("CREATE ROLE app_pw LOGIN PASSWORD 'a-real-password'")


def _refusal(info: Any) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        connect(info, connect_timeout=5)
    return str(caught.value).strip().splitlines()[-1]


def test_iam_auth_as_aurora_honours_it(backend: AwsBackend, emulator_env: RunningEmulator, iam_users: None) -> None:
    """A user with rds_iam logs in only with a token made for that user, endpoint hostname, port and Region; a token
    is no password for a user without rds_iam; failures read as Aurora's."""
    iam = AwsBackend(**emulator_env.backend_options(iam_auth=True, iam_user="app_iam"))
    for endpoint in ("cluster", "reader", "emu-2"):
        with connect(iam.connection_info(CLUSTER, endpoint), connect_timeout=5) as conn:
            assert conn.execute("SELECT session_user, current_user").fetchone() == ("app_iam", "app_iam")
    info = iam.connection_info(CLUSTER)
    rds = iam.client("rds")
    host = backend.describe_cluster(CLUSTER).endpoint
    pam = 'FATAL:  PAM authentication failed for user "app_iam"'
    tokens = {
        "another user": rds.generate_db_auth_token(DBHostname=host, Port=5432, DBUsername="app_pw"),
        "another host": iam.connection_info(CLUSTER, "reader").password,
        "another port": rds.generate_db_auth_token(DBHostname=host, Port=5433, DBUsername="app_iam"),
        "another region": rds.generate_db_auth_token(
            DBHostname=host, Port=5432, DBUsername="app_iam", Region="eu-west-1"
        ),
        "a password": "a-real-password",
    }
    for why, token in tokens.items():
        assert _refusal(dataclasses.replace(info, password=token)).endswith(pam), why
    refused = [c for c in emulator_env.client.calls() if c["service"] == "rds-db" and not c["ok"]]
    assert len(refused) == len(tokens)
    assert all(c["resource"].startswith("arn:aws:rds-db:us-east-1:123456789012:dbuser:cluster-") for c in refused)
    not_iam = AwsBackend(**emulator_env.backend_options(iam_auth=True, iam_user="app_pw"))
    assert _refusal(not_iam.connection_info(CLUSTER)).endswith('password authentication failed for user "app_pw"')


def test_rds_proxy_routes_pins_multiplexes_and_goes(backend: AwsBackend, emulator_env: RunningEmulator) -> None:
    """A proxy of an emulated cluster is real: its endpoints have RDS Proxy's hostnames and verify with TLS, the
    default one reaches the writer and the READ_ONLY one a reader, a session-level SET pins the session (as RDS Proxy
    does, where PgBouncer alone would not) while other clients share few server sessions; a wrong password is
    refused; with IAMAuth REQUIRED only a token for the proxy's hostname logs in; DeleteDBProxy removes it all."""
    from aurora_kit.checks.proxy import check_multiplexing, check_pinning
    from aurora_kit.specs import ProxySpec

    host_id = backend.describe_cluster(CLUSTER).endpoint.split(".")[1].removeprefix("cluster-")
    writer = backend.describe_cluster(CLUSTER).writer_id
    spec = ProxySpec(proxy_name="emu-proxy", read_only_endpoint="emu-proxy-ro", max_connections_percent=20,
                     max_idle_connections_percent=10)  # fmt: skip
    proxy = backend.create_proxy(CLUSTER, spec)
    try:
        assert proxy.endpoint.split(":")[0] == f"emu-proxy.proxy-{host_id}.us-east-1.rds.amazonaws.com"
        instance_targets = [t for t in proxy.targets if t.type == "RDS_INSTANCE"]
        assert {t.rds_resource_id for t in instance_targets} == {"emu-1", "emu-2"}
        assert {t.target_health for t in proxy.targets} == {"AVAILABLE"}
        info = backend.proxy_connection_info("emu-proxy")
        assert "sslmode=verify-full" in info.conninfo
        with connect(info, connect_timeout=5) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()").fetchone() == (
                writer,
                False,
            )
        ro = backend.proxy_connection_info("emu-proxy", "emu-proxy-ro")
        assert f"emu-proxy-ro.endpoint.proxy-{host_id}.us-east-1.rds.amazonaws.com" in ro.conninfo
        with connect(ro, connect_timeout=5) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        pinning = check_pinning(info, pins_expected=True)
        assert not pinning.problems(), pinning.problems()
        multiplexed = check_multiplexing(info, clients=20, transactions=3, max_connections_percent=20)
        assert not multiplexed.problems(), multiplexed.problems()
        assert multiplexed.server_sessions < 20
        max_connections = _sql(backend, "cluster", "SELECT current_setting('max_connections')::int")[0]
        assert multiplexed.pool_size == max_connections * 20 // 100  # RDS Proxy reports no pool: read through it
        # refused by PgBouncer's SCRAM check against the secret's password (its own wording, not RDS Proxy's)
        assert _refusal(dataclasses.replace(info, password="not-the-secret")).endswith("SASL authentication failed")
        iam = backend.create_proxy(CLUSTER, ProxySpec(proxy_name="emu-proxy-iam", iam_auth=True))
        iam_info = backend.proxy_connection_info(iam.db_proxy_name)  # a token for the proxy's hostname
        with connect(iam_info, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        secret = backend.proxy_connection_info("emu-proxy").password
        assert _refusal(dataclasses.replace(iam_info, password=secret)).endswith(
            'PAM authentication failed for user "postgres"'
        )
        backend.delete_proxy(iam.db_proxy_name)
    finally:
        backend.delete_proxy("emu-proxy")
    with pytest.raises(Exception, match="emu-proxy"):
        backend.describe_proxy("emu-proxy")
    assert "no DB endpoint" in _refusal(info)


def test_reboot_and_static_parameters_take_effect_after_it(backend: AwsBackend) -> None:
    result = backend.apply_parameters(CLUSTER, {"max_connections": "123", "work_mem": "8MB"})
    assert {c.parameter_name: c.apply_method for c in result.changes} == {
        "max_connections": "pending-reboot",
        "work_mem": "immediate",
    }
    assert sorted(result.pending_reboot_instances) == ["emu-1", "emu-2"]  # read from the servers' pending_restart
    instances = {i.db_instance_identifier: i for i in backend.describe_instances(CLUSTER)}
    # what the instance class gives until the group's value takes effect
    default = memory_settings(instances["emu-2"].db_instance_class)
    assert default is not None
    assert _sql(backend, "emu-2", "SELECT current_setting('max_connections'), current_setting('work_mem')") == (
        str(default.max_connections),
        "8MB",
    )
    answer = backend.client("rds").reboot_db_instance(DBInstanceIdentifier="emu-2")["DBInstance"]
    assert answer["DBInstanceStatus"] == "rebooting"  # moto alone answers available

    def emu_2() -> tuple[str, str]:
        member = next(
            m for m in backend.describe_cluster(CLUSTER).db_cluster_members if m.db_instance_identifier == "emu-2"
        )
        return next(i.status for i in backend.describe_instances(CLUSTER) if i.db_instance_identifier == "emu-2"), (
            member.db_cluster_parameter_group_status
        )

    seen = [emu_2()]
    while seen[-1] != ("available", "in-sync") and len(seen) < 600:
        time.sleep(0.05)
        seen.append(emu_2())
    assert seen[0] == ("rebooting", "pending-reboot")
    assert seen[-1] == ("available", "in-sync")
    rebooted = backend.reboot_pending(CLUSTER)
    assert [i.db_instance_identifier for i in rebooted] == ["emu-1"]  # emu-2 already restarted by hand
    assert all(
        m.db_cluster_parameter_group_status == "in-sync" for m in backend.describe_cluster(CLUSTER).db_cluster_members
    )
    for iid in ("emu-1", "emu-2"):
        assert _sql(backend, iid, "SELECT current_setting('max_connections')") == ("123",)
    events = backend.client("rds").describe_events(SourceType="db-instance", Duration=10)["Events"]
    assert {(e["SourceIdentifier"], e["Message"]) for e in events} >= {
        ("emu-1", "DB instance restarted."),
        ("emu-2", "DB instance restarted."),
    }


def test_failover_promotes_for_real_and_emits_aurora_events(backend: AwsBackend) -> None:
    old = backend.describe_cluster(CLUSTER).writer_id
    result = backend.failover(CLUSTER)
    assert (result.old_writer, result.new_writer) == (old, "emu-2" if old == "emu-1" else "emu-1")
    assert backend.describe_cluster(CLUSTER).writer_id == result.new_writer
    assert _sql(backend, "cluster", "SELECT aurora_db_instance_identifier(), pg_is_in_recovery()") == (
        result.new_writer,
        False,
    )
    assert _sql(backend, old, "SELECT pg_is_in_recovery()") == (True,)  # the old writer is back as a reader
    events = backend.client("rds").describe_events(SourceIdentifier=CLUSTER, SourceType="db-cluster", Duration=10)
    messages = [e["Message"] for e in events["Events"] if e["EventCategories"] == ["failover"]]
    assert messages[-2:] == [
        f"Started cross AZ failover to DB instance: {result.new_writer}.",  # emu-1 and emu-2 are in two AZs
        f"Completed failover to DB instance: {result.new_writer}.",
    ]


def test_a_failed_failover_is_reported_by_its_event(backend: AwsBackend, emulator_env: RunningEmulator) -> None:
    writer = backend.describe_cluster(CLUSTER).writer_id
    emulator_env.client.inject_fault("FailoverDBCluster", CLUSTER)
    backend.client("rds").failover_db_cluster(DBClusterIdentifier=CLUSTER)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = backend.client("rds").describe_events(SourceIdentifier=CLUSTER, SourceType="db-cluster", Duration=5)
        messages = [e["Message"] for e in events["Events"]]
        if "Cluster failover failed, check the health of your cluster instances and try again." in messages:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no RDS-EVENT-0069 in {messages}")
    assert f"Promoting previous primary again: {writer}." in messages
    assert backend.describe_cluster(CLUSTER).writer_id == writer
    assert backend.describe_cluster(CLUSTER).status == "available"


def test_rds_proxy_sessions_survive_what_clients_do(backend: AwsBackend) -> None:
    """(Last: it fails over.) Through the emulated proxy: a session opened before a failover pins, after it, to the
    *new* writer; psycopg's automatic prepared statements work (a named statement pins here); a COPY leaves the
    session able to pin; a cancel request is dropped, as RDS Proxy for PostgreSQL does not support CancelRequest, and
    harms nothing."""
    from aurora_kit.specs import ProxySpec

    backend.create_proxy(CLUSTER, ProxySpec(proxy_name="emu-proxy-2"))
    try:
        info = backend.proxy_connection_info("emu-proxy-2")
        with connect(info, connect_timeout=5) as early:
            early.execute("SELECT 1")
            result = backend.failover(CLUSTER)
            for _ in range(100):  # the proxy follows the promotion; the client's connection to it stays
                try:
                    early.execute("SELECT 1")
                    break
                except psycopg.OperationalError:
                    time.sleep(0.05)
            early.execute("SET application_name = 'pinned-after-failover'")
            assert early.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()").fetchone() == (
                result.new_writer,
                False,
            )
        with connect(info, connect_timeout=5) as conn:  # prepare_threshold 5: the 6th run uses a named statement
            assert [conn.execute("SELECT %s::int", (i,)).fetchone() for i in range(8)] == [(i,) for i in range(8)]
        with connect(info, connect_timeout=5) as conn:
            conn.autocommit = True
            conn.execute("CREATE TEMP TABLE t (i int)")  # pins
            with conn.cursor().copy("COPY t FROM STDIN") as copy:
                copy.write_row((1,))
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        with connect(info, connect_timeout=5) as conn:
            conn.autocommit = True
            with conn.cursor().copy("COPY (SELECT 1) TO STDOUT") as copy:
                list(copy.rows())
            conn.execute("SET aurora_kit.after_copy = 'kept'")
            pids = {conn.execute("SELECT current_setting('aurora_kit.after_copy', true)").fetchone() for _ in range(5)}
            assert pids == {("kept",)}
        with connect(info, connect_timeout=5) as conn:
            conn.cancel()  # dropped (PgBouncer 1.18 could even crash on a cancel whose sender leaves at once)
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with connect(info, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        backend.delete_proxy("emu-proxy-2")
