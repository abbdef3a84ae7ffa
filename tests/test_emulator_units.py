"""The emulator's pure parts, without a server: IAM token verification, its CA, endpoint names, event messages,
the moto pin and the patcher."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from cryptography import x509

from aurora_kit.emulator.events import CATALOGUE, make_event
from aurora_kit.emulator.gaps import Patcher, check_moto_version
from aurora_kit.emulator.iam import TokenRejectedError, verify_token
from aurora_kit.emulator.pinning import message_pin_reason, pin_reason, query_text
from aurora_kit.emulator.server import host_id
from aurora_kit.emulator.tls import generate, rds_hostnames

HOST = "orders.cluster-c123456789ab.us-east-1.rds.amazonaws.com"
SECRETS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def _token(user: str = "app_iam", host: str = HOST, port: int = 5432, region: str = "us-east-1") -> str:
    rds = boto3.client(
        "rds",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SECRETS["AKIDEXAMPLE"],
        aws_session_token="session-token/with+chars",
    )
    return str(rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region))


def _verify(token: str, **kw: object) -> object:
    args: dict = {"user": "app_iam", "host": HOST, "port": 5432, "region": "us-east-1", "secrets": SECRETS, **kw}
    return verify_token(token, **args)


def test_a_token_from_generate_db_auth_token_verifies() -> None:
    identity = _verify(_token())
    assert identity.access_key_id == "AKIDEXAMPLE"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("token_args", "verify_args", "reason"),
    [
        ({"user": "other"}, {}, "made for user 'other'"),
        ({"host": "orders.cluster-ro-c123456789ab.us-east-1.rds.amazonaws.com"}, {}, "the login is to"),
        ({"port": 5433}, {}, "the login is to"),
        ({"region": "eu-west-1"}, {}, "signed for Region eu-west-1"),
        ({}, {"secrets": {"AKIDEXAMPLE": "another secret"}}, "signature does not match"),
        ({}, {"secrets": {}}, "unknown access key id"),
        ({}, {"now": datetime.now(timezone.utc) + timedelta(minutes=16)}, "expired"),
        ({}, {"now": datetime.now(timezone.utc) - timedelta(minutes=10)}, "in the future"),
    ],
)
def test_a_token_is_refused_for_anything_else(token_args: dict, verify_args: dict, reason: str) -> None:
    with pytest.raises(TokenRejectedError, match=re.escape(reason)):
        _verify(_token(**token_args), **verify_args)  # type: ignore[arg-type]


def test_an_altered_token_or_a_password_is_refused() -> None:
    token = _token()
    altered = token.replace("DBUser=app_iam", "DBUser=app_iam").replace("X-Amz-Expires=900", "X-Amz-Expires=899")
    with pytest.raises(TokenRejectedError, match="signature"):
        _verify(altered)
    with pytest.raises(TokenRejectedError, match="not an IAM auth token"):
        _verify("a-plain-password")
    longer = token.replace("X-Amz-Expires=900", f"X-Amz-Expires={quote('3600')}")
    with pytest.raises(TokenRejectedError, match="at most 900"):
        _verify(longer)


def test_the_ca_signs_a_certificate_for_every_endpoint_name(tmp_path: Path) -> None:
    files = generate(tmp_path, region="eu-west-1", host_id="cabcdef12345")
    ca = x509.load_pem_x509_certificate(files.ca_bundle.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert names == rds_hostnames("eu-west-1", "cabcdef12345")
    assert names == [
        "*.cabcdef12345.eu-west-1.rds.amazonaws.com",
        "*.cluster-cabcdef12345.eu-west-1.rds.amazonaws.com",
        "*.cluster-ro-cabcdef12345.eu-west-1.rds.amazonaws.com",
        "*.proxy-cabcdef12345.eu-west-1.rds.amazonaws.com",
        "*.endpoint.proxy-cabcdef12345.eu-west-1.rds.amazonaws.com",
    ]
    assert files.server_key.stat().st_mode & 0o777 == 0o600


def test_the_endpoint_id_is_fixed_per_account_and_region() -> None:
    assert host_id("123456789012", "us-east-1") == host_id("123456789012", "us-east-1")
    assert host_id("123456789012", "us-east-1") != host_id("123456789012", "eu-west-1")
    assert re.fullmatch(r"[a-z0-9]{12}", host_id("123456789012", "us-east-1"))


def test_events_carry_auroras_messages() -> None:
    event = make_event("RDS-EVENT-0073", "orders", "arn:aws:rds:us-east-1:123456789012:cluster:orders", name="o-2")
    assert (event.source_type, event.event_categories, event.message) == (
        "db-cluster",
        ["failover"],
        "Started cross AZ failover to DB instance: o-2.",
    )
    assert CATALOGUE["RDS-EVENT-0069"].message.startswith("Cluster failover failed")
    assert all(e.source_type in ("db-cluster", "db-instance", "db-cluster-snapshot") for e in CATALOGUE.values())


def test_moto_is_the_series_the_patches_were_written_for() -> None:
    assert check_moto_version().startswith("5.2.")


def test_the_patcher_undoes_in_reverse() -> None:
    class Target:
        value = 1

    patch = Patcher()
    patch.setattr(Target, "value", 2)
    patch.setattr(Target, "added", 3, raising=False)
    assert (Target.value, Target.added) == (2, 3)  # type: ignore[attr-defined]
    patch.undo()
    assert Target.value == 1
    assert not hasattr(Target, "added")
    with pytest.raises(AttributeError):
        patch.setattr(Target, "missing", 1)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SET search_path = app", "a SET statement"),
        ("  set aurora_kit.pin_probe = 'x'", "a SET statement"),
        ("SET SESSION work_mem = '64MB'", "a SET statement"),
        ("SET LOCAL work_mem = '64MB'", "a SET statement"),  # the PostgreSQL list names no exception
        ("RESET ALL", "a SET statement"),
        ("/* why */ SET statement_timeout = 0", "a SET statement"),
        ("SELECT 1; SET TIME ZONE 'UTC'", "a SET statement"),
        ("SELECT set_config('app.user', 'x', false)", "set_config(..., false)"),
        ("SELECT set_config('a', lower('X'), false)", "set_config(..., false)"),
        ("PREPARE q AS SELECT 1", "a prepared statement"),
        ("DEALLOCATE ALL", "a prepared statement"),
        ("DISCARD ALL", "DISCARD"),
        ("CREATE TEMP TABLE t (i int)", "a temporary object"),
        ("create temporary sequence s", "a temporary object"),
        ("SELECT 1 AS i INTO TEMP t", "a temporary object"),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "a cursor"),
        ("LISTEN jobs", "LISTEN"),
        ("LOAD 'auto_explain'", "LOAD"),
        ("SELECT pg_advisory_lock(42)", "a session-level advisory lock"),
        ("SELECT pg_try_advisory_lock(42)", "a session-level advisory lock"),
        ("SELECT nextval('s')", "a sequence function"),
        ("SELECT setval('s', 10)", "a sequence function"),
        ("SELECT '" + "x" * 17_000 + "'", "a statement over 16 KB"),
    ],
)
def test_what_pins_a_proxy_session(sql: str, reason: str) -> None:
    """RDS Proxy's conditions for PostgreSQL (Aurora User Guide, "Avoiding pinning an RDS Proxy")."""
    assert pin_reason(sql) == reason


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "UPDATE t SET a = 1",
        "INSERT INTO t VALUES ('SET x = 1')",
        "SELECT 'a;SET x = 1'",
        "SELECT $$;RESET ALL$$",
        "SELECT $fn$ pg_advisory_lock(1) $fn$",
        "SELECT E'it\\'s; SET x = 1'",
        "SELECT set_config('app.user', 'x', true)",
        "SELECT pg_advisory_xact_lock(42)",
        "-- SET search_path = app\nSELECT 1",
        "CREATE TABLE tempo (i int)",
        "PREPARE TRANSACTION 'tx1'",
    ],
)
def test_what_does_not_pin(sql: str) -> None:
    assert pin_reason(sql) is None


def test_a_named_prepared_statement_pins_here_an_unnamed_one_does_not() -> None:
    assert message_pin_reason(b"P", b"_pg3_0\0SELECT $1\0\0\0") == "a named prepared statement (extended protocol)"
    assert message_pin_reason(b"P", b"\0SELECT $1\0\0\0") is None
    assert message_pin_reason(b"P", b"\0SET a.b = $1\0\0\0") == "a SET statement"
    assert message_pin_reason(b"B", b"\0\0") is None


def test_the_sql_of_query_and_parse_messages() -> None:
    assert query_text(b"Q", b"SET a.b = 1\0") == "SET a.b = 1"
    assert query_text(b"P", b"stmt\0SELECT $1\0\0\0") == "SELECT $1"
    assert query_text(b"B", b"\0\0") is None
