"""Every runbook refuses bad input before its first mutating call: run each runbook's own cells (in this process,
against moto with the aws backend, whose every request is counted) with one invalid value at a time, and assert the
typed error came and not one mutating request (Create*/Modify*/Delete*/Reboot*/Failover*/Put*...) left boto3.

Values the parameter model refuses never get this far (tests/test_params.py); these are the ones only the cluster's
state can refute: a cluster or snapshot id already taken, a restore time outside what the cluster can give, a
failover target that is the writer, a typed cluster id that does not match.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jupytext
import pytest
import yaml
from moto import mock_aws

from aurora_kit import errors, params
from aurora_kit.backends.aws import AwsBackend, PollSettings
from aurora_kit.backends.aws.plan import is_mutating
from aurora_kit.specs import ClusterSpec

ROOT = Path(__file__).resolve().parents[1]
FAST = PollSettings(initial_delay=0.001, max_delay=0.01, timeout=10, short_timeout=10)


class Requests:
    """Every AWS operation a client sends (botocore's before-call event)."""

    def __init__(self) -> None:
        self.operations: list[str] = []

    def hook(self, client: Any) -> Any:
        client.meta.events.register("before-call", self._seen)
        return client

    def _seen(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)

    @property
    def mutating(self) -> list[str]:
        return [op for op in self.operations if is_mutating(op)]


@pytest.fixture
def moto_cluster(
    aws_credentials: None, moto_rds_gaps: None, boto_session: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Requests]:
    """A moto cluster ``ak-moto`` (writer + 1 reader) and a fresh request log; runbooks get a backend whose clients
    report to that log."""
    with mock_aws():
        requests = Requests()
        clients = {s: requests.hook(boto_session.client(s)) for s in ("rds", "secretsmanager", "cloudwatch")}
        backend_args: dict[str, Any] = {"region": "us-east-1", "clients": clients, "poll": FAST, "ca_bundle": "/ca"}
        setup = AwsBackend(**backend_args)
        setup.create_cluster(
            ClusterSpec.with_readers(
                "ak-moto", 1, availability_zones=["us-east-1a", "us-east-1b"], deletion_protection=False
            )
        )
        setup.create_snapshot("ak-moto", "taken-already")
        requests.operations.clear()

        def backend_for(p: Any) -> AwsBackend:
            return AwsBackend(dry_run=p.dry_run, **backend_args)

        monkeypatch.setattr("aurora_kit.backends.from_parameters", backend_for)
        yield requests


def _parameters(**changes: Any) -> params.RunbookParameters:
    data = yaml.safe_load((ROOT / "parameters" / "local.yaml").read_text())
    data.update(
        backend="aws",
        cluster_id="ak-moto",
        readers=1,
        confirm=True,
        availability_zones=["us-east-1a", "us-east-1b"],
        aws={**data["aws"], "ca_bundle": "/ca"},
    )
    data["teardown"]["confirm_cluster_id"] = "ak-moto"
    data["backup_restore"]["restore_cluster_id"] = "ak-moto-restored"
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = data
        for part in path:
            target = target[part]
        target[last] = value
    return params.validate(data)


def _run_cells(runbook: str, p: params.RunbookParameters) -> None:
    """The runbook's code cells after its parameters cell, in order, in one namespace (as a kernel runs them)."""
    nb = jupytext.read(str(ROOT / "runbooks" / f"{runbook}.py"))
    namespace: dict[str, Any] = dict(p.injected(runbook))
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    for cell in cells:
        exec(compile(cell.source, f"<{runbook}>", "exec"), namespace)


def _in_the_future() -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()


def _before_the_cluster() -> str:
    return (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()


CASES = [
    ("01-create-cluster", {"readers": 2}, errors.ClusterAlreadyExistsError),  # the id is taken by another shape
    (
        "02-configure-parameters",
        {"parameter_group__parameters": {"no_such_parameter": "1"}},
        errors.InvalidParameterError,
    ),
    ("05-backup-restore", {"backup_restore__restore_time": "FUTURE"}, errors.RestoreWindowError),
    ("05-backup-restore", {"backup_restore__restore_time": "PAST"}, errors.RestoreWindowError),
    ("05-backup-restore", {"backup_restore__snapshot_id": "taken-already"}, errors.SnapshotAlreadyExistsError),
    ("06-failover", {"failover__target_instance_id": "ak-moto-1"}, errors.FailoverNotPossibleError),  # the writer
    ("06-failover", {"failover__target_instance_id": "ak-nobody"}, errors.FailoverNotPossibleError),
    ("07-monitoring", {"monitoring__max_connections": 100_000}, errors.InvalidParameterError),  # can never fire
    ("08-scale", {"scale__remove_instance_id": "ak-moto-1"}, errors.InvalidParameterError),  # the writer
    ("08-scale", {"scale__remove_instance_id": "ak-nobody"}, errors.InvalidParameterError),
    ("99-teardown", {"teardown__confirm_cluster_id": "ak-other"}, errors.ConfirmationRequiredError),
    (
        "99-teardown",
        {"teardown__final_snapshot_id": "taken-already", "teardown__skip_final_snapshot": False},
        errors.SnapshotAlreadyExistsError,
    ),
]


@pytest.mark.parametrize(("runbook", "changes", "error"), CASES)
def test_bad_input_is_refused_before_the_first_mutating_call(
    moto_cluster: Requests, runbook: str, changes: dict[str, Any], error: type[Exception]
) -> None:
    when = {"FUTURE": _in_the_future, "PAST": _before_the_cluster}
    values = {k: when[v]() if isinstance(v, str) and v in when else v for k, v in changes.items()}
    with pytest.raises(error):
        _run_cells(runbook, _parameters(**values))
    assert moto_cluster.mutating == [], f"{runbook} made {moto_cluster.mutating} before refusing"


def test_a_restore_into_a_taken_cluster_id_is_refused_before_the_snapshot(moto_cluster: Requests) -> None:
    other = AwsBackend(region="us-east-1", poll=FAST, ca_bundle="/ca")
    other.create_cluster(ClusterSpec.with_readers("ak-taken", 0, deletion_protection=False))
    moto_cluster.operations.clear()
    p = _parameters(backup_restore__restore_cluster_id="ak-taken", backup_restore__restore_mode="pitr")
    with pytest.raises(errors.ClusterAlreadyExistsError, match="ak-taken"):
        _run_cells("05-backup-restore", p)
    assert moto_cluster.mutating == []


def test_a_proxy_whose_failovers_have_no_reader_is_refused_before_it_is_created(moto_cluster: Requests) -> None:
    AwsBackend(region="us-east-1", poll=FAST, ca_bundle="/ca").create_cluster(
        ClusterSpec.with_readers("ak-alone", 0, deletion_protection=False)
    )
    moto_cluster.operations.clear()
    with pytest.raises(errors.InvalidParameterError, match="no reader to fail over to") as info:
        _run_cells("09-proxy", _parameters(cluster_id="ak-alone", readers=0, scale__min_readers=0))
    assert info.value.field == "proxy.failover_modes"
    assert moto_cluster.mutating == []


def test_a_rerun_of_01_on_the_cluster_it_created_says_unchanged_and_makes_no_call(
    moto_cluster: Requests, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _parameters(cluster_id="ak-rerun")
    _run_cells("01-create-cluster", p)
    assert "created ak-rerun" in capsys.readouterr().out
    assert "CreateDBCluster" in moto_cluster.mutating  # the log sees the first run's calls
    moto_cluster.operations.clear()
    _run_cells("01-create-cluster", p)
    assert "ak-rerun already exists as the parameters describe it: unchanged, no call made" in capsys.readouterr().out
    assert moto_cluster.mutating == []
    assert "DescribeDBClusters" in moto_cluster.operations  # it did look


def test_the_harness_sees_mutating_calls() -> None:
    """The check above could not pass by never seeing a request: the same log records a real change."""
    log = Requests()
    log._seen(type("M", (), {"name": "CreateDBClusterSnapshot"})())
    assert log.mutating == ["CreateDBClusterSnapshot"]
