"""Parameters are validated up front: unknown/missing keys and bad values name the key, the value and the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aurora_kit import params
from aurora_kit.errors import InvalidParameterError
from aurora_kit.params import MISSING, RunbookParameters

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "parameters" / "local.yaml"
EXAMPLES = sorted((ROOT / "parameters").glob("*.yaml"))


def _raw() -> dict[str, Any]:
    data = yaml.safe_load(LOCAL.read_text())
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_three_parameter_files_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"local.yaml", "aws-dev.example.yaml", "aws-prod.example.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_parameter_file_is_valid_and_complete(path: Path) -> None:
    p = params.load(path)
    for section in params.SECTIONS:
        assert getattr(p, section) is not None
    spec = p.to_cluster_spec()
    assert len(spec.instances) == p.readers + 1


def test_local_is_local_and_small() -> None:
    p = params.load(LOCAL)
    assert p.backend == "local"
    assert p.dry_run is False
    assert p.confirm is False  # destructive steps need -p confirm=true (make rehearse passes it)
    assert p.pgvector is not None
    assert p.pgvector.rows <= 5000
    assert p.probe is not None
    assert p.probe.duration_s <= 2


def test_prod_example_is_realistic() -> None:
    p = params.load(ROOT / "parameters" / "aws-prod.example.yaml")
    spec = p.to_cluster_spec()
    assert p.backend == "aws"
    assert len({i.availability_zone for i in spec.instances}) == 3
    assert {i.instance_class for i in spec.instances} == {"db.r6g.large"}
    assert spec.backup_retention_period == 14
    assert spec.deletion_protection is True
    assert spec.iam_database_authentication is True
    assert p.aws.ca_bundle
    assert p.aws.sns_topic_arn
    assert spec.kms_key_id
    assert spec.db_subnet_group_name
    assert spec.vpc_security_group_ids
    assert p.teardown is not None
    assert p.teardown.final_snapshot_id
    assert not p.teardown.skip_final_snapshot
    assert params.load(ROOT / "parameters" / "aws-dev.example.yaml").backup_retention_period == 7


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_parameter_file_keeps_destructive_steps_closed(path: Path) -> None:
    """Jupyter's Run All or `aurora-kit run --all -f <file>` must not fail over, reboot or delete anything."""
    p = params.load(path)
    assert p.confirm is False
    assert p.teardown is not None
    assert p.teardown.confirm_cluster_id is None
    confirmed = params.load(path, ["confirm=true", f"teardown.confirm_cluster_id={p.cluster_id}"])
    assert confirmed.confirm is True
    assert confirmed.teardown is not None
    assert confirmed.teardown.confirm_cluster_id == p.cluster_id


def test_teardown_confirm_cluster_id_is_an_identifier(tmp_path: Path) -> None:
    data = _raw()
    data["teardown"]["confirm_cluster_id"] = "yes please"
    with pytest.raises(InvalidParameterError) as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == "teardown.confirm_cluster_id"
    assert "must be 1-63 letters" in str(exc.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_no_secret_in_any_parameter_file(path: Path) -> None:
    text = path.read_text().lower()
    for word in ("password:", "secret:", "token:", "aws_secret_access_key", "akia"):
        assert word not in text


def test_unknown_top_level_key_names_key_and_file(tmp_path: Path) -> None:
    data = _raw() | {"readerz": 3}
    with pytest.raises(InvalidParameterError) as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == "readerz"
    assert exc.value.value == 3
    assert "unknown key" in str(exc.value)
    assert "env.yaml" in str(exc.value)


def test_unknown_section_key_is_named_with_its_section(tmp_path: Path) -> None:
    data = _raw()
    data["failover"]["moed"] = "crash"
    with pytest.raises(InvalidParameterError) as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == "failover.moed"
    assert "known keys: mode, target_instance_id" in str(exc.value)


def test_secret_key_is_refused_with_the_reason(tmp_path: Path) -> None:
    data = _raw() | {"master_password": "hunter2"}
    with pytest.raises(InvalidParameterError, match="secrets never go in parameters") as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == "master_password"


@pytest.mark.parametrize("key", ["cluster_id", "backend", "teardown"])
def test_missing_key_names_key_and_file(tmp_path: Path, key: str) -> None:
    data = _raw()
    del data[key]
    with pytest.raises(InvalidParameterError) as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == key
    assert exc.value.value is MISSING
    assert "required key missing in" in str(exc.value)
    assert "env.yaml" in str(exc.value)


def test_missing_section_key(tmp_path: Path) -> None:
    data = _raw()
    del data["pgvector"]["ef_search"]
    with pytest.raises(InvalidParameterError) as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == "pgvector.ef_search"


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("backend",), "gcp", "local"),
        (("readers",), 99, "less than or equal to 15"),
        (("cluster_id",), "Bad--id", "must be 1-63 letters"),
        (("backup_retention_period",), 0, "from 1 to 35"),
        (("preferred_backup_window",), "03:00-03:10", "at least 30 minutes"),
        (("region",), "moon-1", "AWS region"),
        (("failover", "mode"), "sideways", "planned"),
        (("pgvector", "ef_search"), [10, 5000], "1-1000"),
        (("instance_class",), "r6g.large", "db."),
        (("monitoring", "period_s"), 30, "multiple of 60"),
    ],
)
def test_bad_value_names_field_and_value(tmp_path: Path, path: tuple[str, ...], value: Any, fragment: str) -> None:
    data = _raw()
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(InvalidParameterError) as exc:
        params.load(_write(tmp_path, data))
    assert fragment in str(exc.value)
    assert repr(value) in str(exc.value) or str(value) in str(exc.value)
    assert exc.value.field.split(".")[0] == path[0]


def test_unquoted_engine_version_is_refused_and_numeric_tags_become_text(tmp_path: Path) -> None:
    data = _raw() | {"engine_version": 16.10}
    with pytest.raises(InvalidParameterError, match="quote the version") as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == "engine_version"
    data = _raw() | {"engine_version": 16, "tags": {"cost-center": 4711}}
    p = params.load(_write(tmp_path, data))
    assert (p.engine_version, p.tags) == ("16", {"cost-center": "4711"})


def test_aws_backend_needs_a_ca_bundle(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "parameters" / "aws-dev.example.yaml").read_text())
    data["aws"]["ca_bundle"] = None
    with pytest.raises(InvalidParameterError) as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == "aws.ca_bundle"


def test_teardown_needs_exactly_one_final_snapshot_choice(tmp_path: Path) -> None:
    data = _raw()
    data["teardown"] = {
        "final_snapshot_id": "final-1",
        "skip_final_snapshot": True,
        "lift_deletion_protection": False,
        "delete_automated_backups": True,
        "confirm_cluster_id": None,
    }
    with pytest.raises(InvalidParameterError, match="exactly one"):
        params.load(_write(tmp_path, data))


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidParameterError, match="mapping"):
        params.load(bad)
    with pytest.raises(InvalidParameterError, match="no such file"):
        params.load(tmp_path / "nope.yaml")


# -- overrides -----------------------------------------------------------------------------------------------------
def test_overrides_are_typed_by_the_model() -> None:
    p = params.load(
        LOCAL,
        [
            "readers=3",
            "dry_run=true",
            "cluster_id=ak-123",
            "failover.mode=crash",
            "failover.target_instance_id=ak-123-2",
            "pgvector.ef_search=[20, 80]",
            "engine_version=16.4",
            "local_root=null",
        ],
    )
    assert p.readers == 3
    assert p.dry_run is True
    assert p.cluster_id == "ak-123"
    assert p.failover is not None
    assert p.failover.mode == "crash"
    assert p.failover.target_instance_id == "ak-123-2"
    assert p.pgvector is not None
    assert p.pgvector.ef_search == [20, 80]
    assert p.engine_version == "16.4"  # a str field keeps the text (YAML would have read 16.4 as a float)
    assert p.local_root is None


@pytest.mark.parametrize(
    ("item", "field"),
    [("readerz=3", "readerz"), ("failover.moed=crash", "failover.moed"), ("readers", "readers")],
)
def test_bad_override_names_the_key(item: str, field: str) -> None:
    with pytest.raises(InvalidParameterError) as exc:
        params.load(LOCAL, [item])
    assert exc.value.field == field


def test_override_with_bad_value_names_field_value_and_source() -> None:
    with pytest.raises(InvalidParameterError) as exc:
        params.load(LOCAL, ["readers=lots"])
    assert exc.value.field == "readers"
    assert exc.value.value == "lots"
    assert "local.yaml with -p overrides" in str(exc.value)


# -- inside a runbook ----------------------------------------------------------------------------------------------
def _namespace(**changes: Any) -> dict[str, Any]:
    ns: dict[str, Any] = params.load(LOCAL).injected()
    ns.update({"__name__": "__main__", "In": [], "unrelated": 1})
    ns.update(changes)
    return ns


def test_for_runbook_needs_only_its_own_sections() -> None:
    ns = _namespace(pgvector=None, backup_restore=None, monitoring=None, teardown=None, parameter_group=None)
    p = params.for_runbook("06-failover", ns)
    assert p.section("failover").mode == "planned"
    with pytest.raises(InvalidParameterError) as exc:
        params.for_runbook("06-failover", _namespace(probe=None))
    assert exc.value.field == "probe"
    assert "runbook 06-failover" in str(exc.value)


def test_for_runbook_reports_a_key_missing_from_the_parameters_cell() -> None:
    ns = _namespace()
    del ns["confirm"]
    with pytest.raises(InvalidParameterError) as exc:
        params.for_runbook("01-create-cluster", ns)
    assert exc.value.field == "confirm"


def test_for_runbook_rejects_unknown_runbooks() -> None:
    with pytest.raises(InvalidParameterError, match="unknown"):
        params.for_runbook("42-nope", _namespace())


def test_parameters_cell_defines_every_key_and_is_python() -> None:
    source = params.parameters_cell(LOCAL, runbook="06-failover")
    ns: dict[str, Any] = {}
    exec(source, ns)
    others = set(params.SECTIONS) - {"failover", "probe"}
    assert set(ns) - {"__builtins__"} == set(RunbookParameters.model_fields) - others  # only what 06 receives
    assert ns["failover"]["mode"] == "planned"
    assert params.for_runbook("06-failover", ns).cluster_id == "ak-local"


def test_monitoring_builds_alarm_specs() -> None:
    p = params.load(LOCAL)
    assert p.monitoring is not None
    alarms = {a.metric: a for a in p.monitoring.alarm_specs()}
    assert alarms["AuroraReplicaLag"].threshold == 1000
    assert alarms["FreeableMemory"].breached(1.0)  # less than 64 MiB free


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_backend_options_fit_the_backend_constructor(path: Path) -> None:
    import inspect

    from aurora_kit.backends import backend_class

    p = params.load(path, ["local_root=/tmp/ak-root"])
    cls = backend_class(p.backend)
    inspect.signature(cls.__init__).bind(None, **cls.options_from(p))  # TypeError if they drift apart


def test_print_parameters_cell_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    from aurora_kit.cli import main

    assert main(["run", "06", "-f", str(LOCAL), "-p", "readers=1", "--print-parameters-cell"]) == 0
    ns: dict[str, Any] = {}
    exec(capsys.readouterr().out, ns)
    assert ns["readers"] == 1
    assert "pgvector" not in ns
    assert params.for_runbook("06-failover", ns).failover is not None


# -- hardening: bad input is refused with a message, before anything runs ------------------------------------
def _text_file(tmp_path: Path, text: str | bytes, name: str = "env.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    text = LOCAL.read_text() + "\ndeletion_protection: true\n"
    with pytest.raises(InvalidParameterError, match=r"key 'deletion_protection' given twice \(lines \d+ and \d+\)"):
        params.load(_text_file(tmp_path, text))
    nested = LOCAL.read_text().replace("  mode: planned", "  mode: planned\n  mode: crash")
    with pytest.raises(InvalidParameterError, match="'mode' given twice"):
        params.load(_text_file(tmp_path, nested))


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    import time

    bomb = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
    for n, prev in zip("bcdefghi", "abcdefgh", strict=True):
        bomb += f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    started = time.monotonic()
    with pytest.raises(InvalidParameterError, match=r"expands to [\d,]+ values through YAML aliases"):
        params.load(_text_file(tmp_path, bomb))
    assert time.monotonic() - started < 5  # refused from the node graph, nothing was expanded


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    text = "zones: &z [us-east-1a, us-east-1b]\n" + LOCAL.read_text().replace(
        "availability_zones: [us-east-1a, us-east-1b, us-east-1c]", "availability_zones: *z"
    )
    with pytest.raises(InvalidParameterError, match="unknown key"):  # parsed; only the helper key is unknown
        params.load(_text_file(tmp_path, text))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"backend: local\ncluster_id: \xff\xfe\n", "is not UTF-8 text"),
        (b"x: [" * 10 + b"\n", "not valid YAML"),
        (b"a: 1\n" * 300_000, "a parameters file is at most"),
    ],
    ids=["latin-1", "broken", "huge"],
)
def test_unreadable_files_get_a_message_not_a_traceback(tmp_path: Path, content: bytes, reason: str) -> None:
    with pytest.raises(InvalidParameterError, match=reason):
        params.load(_text_file(tmp_path, content))


def test_a_directory_is_not_a_parameters_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="is a directory"):
        params.load(tmp_path)


SENTINEL = "hunter2-Sentinel-9f3"


@pytest.mark.parametrize(
    "how",
    ["top-level key", "section key", "override", "override section key", "tag key", "yaml error"],
)
def test_a_refused_secret_is_never_echoed(tmp_path: Path, how: str) -> None:
    data = _raw()
    overrides: list[str] = []
    if how == "top-level key":
        data["master_password"] = SENTINEL
    elif how == "section key":
        data["probe"]["db_password"] = SENTINEL
    elif how == "override":
        overrides = [f"master_password={SENTINEL}"]
    elif how == "override section key":
        overrides = [f"failover.secret_token={SENTINEL}"]
    elif how == "tag key":
        data["tags"]["db_password"] = SENTINEL
    path = _write(tmp_path, data)
    if how == "yaml error":
        path = _text_file(tmp_path, f'master_password: "{SENTINEL}\n  x: [', "broken.yaml")
    with pytest.raises(InvalidParameterError) as exc:
        params.load(path, overrides)
    assert SENTINEL not in str(exc.value)
    assert SENTINEL not in repr(exc.value.value)


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("backup_retention_period",), True, "whole number of days"),
        (("backup_retention_period",), 7.5, "whole number of days"),
        (("instance_class",), "db.r6g.lrage", "not a DB instance class"),
        (("monitoring", "cpu_percent"), float("inf"), "finite"),
        (("monitoring", "replica_lag_ms"), float("nan"), "finite"),
        (("failover", "max_rto_s"), float("inf"), "finite"),
    ],
)
def test_values_a_user_would_expect_refused_are_refused(
    tmp_path: Path, path: tuple[str, ...], value: Any, fragment: str
) -> None:
    data = _raw()
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(InvalidParameterError, match=fragment) as exc:
        params.load(_write(tmp_path, data))
    assert exc.value.field == ".".join(path)


def _aws(tmp_path: Path, **aws: Any) -> dict[str, Any]:
    data = _raw()
    data.update(backend="aws", availability_zones=["us-east-1a", "us-east-1b"], readers=1)
    data["aws"] = {**data["aws"], "ca_bundle": "/etc/ssl/rds.pem", **aws}
    return data


def test_endpoint_overrides_reach_the_aws_backend_and_are_validated(tmp_path: Path) -> None:
    """Defect 12: the tunnel/bastion mapping is a parameter, validated before anything runs."""
    overrides = {"*.us-east-1.rds.amazonaws.com": "127.0.0.1:15432"}
    p = params.load(_write(tmp_path, _aws(tmp_path, endpoint_overrides=overrides)))
    from aurora_kit.backends.aws import AwsBackend

    assert AwsBackend.options_from(p)["endpoint_overrides"] == overrides
    with pytest.raises(InvalidParameterError, match="host:port") as info:
        params.load(_write(tmp_path, _aws(tmp_path, endpoint_overrides={"x.rds.amazonaws.com": "127.0.0.1"})))
    assert "endpoint_overrides" in info.value.field


def test_a_relative_ca_bundle_is_relative_to_the_parameters_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    data = _aws(tmp_path, ca_bundle="../tls/rds-ca.pem")
    path = tmp_path / "sub" / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    assert params.load(path).aws.ca_bundle == str((tmp_path / "tls" / "rds-ca.pem").resolve())


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ("sun:03:30-sun:04:30", "overlaps the backup window 03:00-04:00"),
        ("sun:05:00-sun:05:10", "at least 30 minutes"),
        ("sunday:05:00-06:00", "ddd:hh:mm-ddd:hh:mm"),
    ],
)
def test_defect_11_the_maintenance_window_is_validated_before_anything_runs(
    tmp_path: Path, window: str, reason: str
) -> None:
    """preferred_maintenance_window: format, at least 30 minutes, no overlap with the backup window (RDS refuses
    it), checked when the parameters load — before any kernel starts, so before anything is created."""
    data = _raw() | {"preferred_maintenance_window": window}
    with pytest.raises(InvalidParameterError, match=re.escape(reason)) as info:
        params.load(_write(tmp_path, data))
    assert info.value.field == "preferred_maintenance_window"
    good = params.load(_write(tmp_path, _raw() | {"preferred_maintenance_window": "Sun:05:00-Sun:05:30"}))
    assert good.preferred_maintenance_window == "sun:05:00-sun:05:30"
    assert good.to_cluster_spec().preferred_maintenance_window == "sun:05:00-sun:05:30"


def test_defect_06_a_connection_alarm_above_max_connections_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "parameters" / "aws-dev.example.yaml").read_text())
    data["monitoring"]["max_connections"] = 400
    data["parameter_group"]["parameters"]["max_connections"] = "200"
    with pytest.raises(InvalidParameterError, match="can never fire") as info:
        params.load(_write(tmp_path, data))
    assert info.value.field == "monitoring.max_connections"
    assert info.value.value == 400
