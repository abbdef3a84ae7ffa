"""The ``aws`` path of the runbooks, through papermill kernels talking to the moto server.

Control-plane cells run against moto; the endpoints moto hands out are fake hostnames, so every data-plane step
must be SKIPPED with its reason printed in the notebook and recorded (``data_plane: skipped (...)``) — never
silently passed.

moto 5.2 gaps, handled in the open:

- the RDS answers moto lacks (engine-default parameters → HTTP 500, members always ``in-sync``, reboot a no-op)
  are filled by the ``moto_server`` fixture itself (``fill_moto_rds_gaps`` patches moto's classes in this
  process, where the server runs; kernels see the same answers);
- restoring a snapshot of a cluster created with ``ManageMasterUserPassword`` fails inside moto (HTTP 500 →
  ``BackendOperationError``): the full sequence runs 05 with ``restore_mode: pitr``, and a separate test pins the
  snapshot-restore failure to that cell and that error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from aurora_kit import params, runner

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.notebooks, pytest.mark.timeout(240)]


def _aws_parameters(tmp_path: Path, *, confirm: bool = True, **sections: dict[str, Any]) -> dict[str, Any]:
    """local.yaml made aws for moto; ``confirm`` (and the teardown's typed cluster id) passed explicitly, as an
    operator would with ``-p confirm=true -p teardown.confirm_cluster_id=ak-moto``."""
    data = yaml.safe_load((ROOT / "parameters" / "local.yaml").read_text())
    data["teardown"]["confirm_cluster_id"] = "ak-moto" if confirm else None
    data.update(
        confirm=confirm,
        backend="aws",
        cluster_id="ak-moto",
        availability_zones=["us-east-1a", "us-east-1b"],
        readers=1,
        aws={**data["aws"], "ca_bundle": str(tmp_path / "rds-ca.pem"), "profile": None},
    )
    data["backup_restore"] = {**data["backup_restore"], "restore_cluster_id": "ak-moto-restored"}
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    path = tmp_path / "aws-moto.yaml"  # a parameters/aws-*.yaml-like file, validated like any other
    path.write_text(yaml.safe_dump(data))
    return params.load(path).injected()


def _run(name: str, parameters: dict[str, Any], audit_dir: Path) -> runner.RunResult:
    return runner.run_notebook(runner.resolve(name), parameters, audit_dir=audit_dir)


def _text(result: runner.RunResult) -> str:
    assert result.record_dir is not None
    nb = nbformat.read(str(next(result.record_dir.glob("*.ipynb"))), as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def _assert_ok(result: runner.RunResult) -> dict[str, Any]:
    """Completed: passed, or not verified where the data plane is out of reach (the fake endpoints)."""
    assert result.status in ("passed", "not verified"), f"{result.runbook}: {result.failure or result.error}"
    return result.results or {}


def _assert_data_plane_skipped(result: runner.RunResult, key: str = "data_plane") -> None:
    value = (result.results or {}).get(key)
    assert isinstance(value, str), f"{result.runbook} recorded no {key}"
    assert value.startswith("skipped ("), value
    assert "ak-moto.cluster-" in value  # the fake endpoint moto handed out, named in the reason
    assert "AWS_ENDPOINT_URL is set" in value
    assert "SKIPPED" in _text(result), f"{result.runbook}: no SKIPPED message printed"
    assert result.status == "not verified", f"{result.runbook}: {result.status}"  # a skipped check is no pass


def test_every_runbook_runs_its_control_plane_on_aws_and_skips_the_data_plane_loudly(
    moto_server_env: Any, tmp_path: Path
) -> None:
    p = _aws_parameters(tmp_path, backup_restore={"restore_mode": "pitr"}, failover={"failback": True})
    p["deletion_protection"] = True  # as in production: 05 must lift it on its own restore, 99 must stop on it
    audit_dir = tmp_path / "audit"

    created = _assert_ok(_run("01", p, audit_dir))
    assert created["cluster"]["status"] == "available"
    assert created["cluster"]["writer"] == "ak-moto-1"
    assert created["cluster"]["readers"] == ["ak-moto-2"]
    _assert_data_plane_skipped(_run("01", p, audit_dir))  # idempotent rerun: same cluster, nothing created

    configured = _run("02", p, audit_dir)
    results = _assert_ok(configured)
    assert {c["parameter"] for c in results["changes"]} == set(p["parameter_group"]["parameters"])
    assert results["settings"].startswith("skipped (data plane not reachable")
    _assert_data_plane_skipped(configured)

    for name in ("03", "04"):  # data plane only: every check skipped, each one said so
        result = _run(name, p, audit_dir)
        recorded = _assert_ok(result)
        _assert_data_plane_skipped(result)
        checks = {k: v for k, v in recorded.items() if k != "data_plane"}
        assert checks, name
        assert all(str(v).startswith("skipped (") for v in checks.values()), recorded

    restored = _run("05", p, audit_dir)
    results = _assert_ok(restored)
    _assert_data_plane_skipped(restored)
    assert results["snapshot"]["Status"] == "available"
    assert results["restore_time"] is None  # no seeded T without a data plane: latest restorable time
    assert results["pitr_restore"].startswith("skipped (")
    assert results["deleted"] == ["ak-moto-restored", f"snapshot {results['snapshot']['DBClusterSnapshotIdentifier']}"]

    failed_over = _run("06", p, audit_dir)
    results = _assert_ok(failed_over)
    _assert_data_plane_skipped(failed_over)
    assert results["failover"]["old_writer"] == "ak-moto-1"
    assert results["failover"]["new_writer"] == "ak-moto-2"
    assert results["write_probe"].startswith("skipped (data plane not reachable")
    assert results["writer"] == "ak-moto-2"
    assert results["failback"]["NewWriter"] == "ak-moto-1"  # failback: true, planned, back to the old writer

    monitored = _assert_ok(_run("07", p, audit_dir))
    assert {a["metric"] for a in monitored["alarms"]["alarms"]} == {
        "AuroraReplicaLag",
        "CPUUtilization",
        "FreeableMemory",
        "DatabaseConnections",
    }

    protected = _run("99", p, audit_dir)  # lift_deletion_protection: false → stops before deleting anything
    assert protected.status == "failed"
    assert (protected.failure or {}).get("ename") == "DeletionProtectionError", protected.failure
    assert "wf.plan(" in str((protected.failure or {}).get("source"))

    final = {
        "final_snapshot_id": "ak-moto-final",
        "skip_final_snapshot": False,
        "lift_deletion_protection": True,
        "confirm_cluster_id": "ak-moto",
    }
    torn_down = _assert_ok(_run("99", {**p, "teardown": final}, audit_dir))
    assert torn_down["existed"] is True
    assert torn_down["gone"]["exists"] is False
    assert torn_down["final_snapshot"]["DBClusterSnapshotIdentifier"] == "ak-moto-final"


def test_snapshot_restore_under_moto_fails_in_the_restore_cell_with_backend_operation_error(
    moto_server_env: Any, tmp_path: Path
) -> None:
    """moto 5.2 answers RestoreDBClusterFromSnapshot of a managed-password cluster with HTTP 500 (its own
    KeyError); the runbook must stop at that cell with the typed error, not pass or skip it."""
    p = _aws_parameters(tmp_path, backup_restore={"restore_mode": "snapshot"})
    audit_dir = tmp_path / "audit"
    _assert_ok(_run("01", p, audit_dir))
    result = _run("05", p, audit_dir)
    assert result.status == "failed"
    failure = result.failure or {}
    assert failure.get("ename") == "BackendOperationError", failure
    assert "RestoreDBClusterFromSnapshot" in str(failure.get("evalue")), failure
    assert result.record_dir is not None
    nb = nbformat.read(str(next(result.record_dir.glob("*.ipynb"))), as_version=4)
    assert "wf.restore_snapshot(" in nb.cells[failure["cell_index"]].source


def _assert_refused_at(result: runner.RunResult, call: str) -> None:
    """The run failed with ConfirmationRequiredError in the cell that makes the destructive call."""
    assert result.status == "failed", f"{result.runbook} ran without confirm"
    failure = result.failure or {}
    assert failure.get("ename") == "ConfirmationRequiredError", failure
    assert "needs confirm: true" in str(failure.get("evalue")), failure
    assert call in str(failure.get("source")), failure


def test_destructive_runbooks_without_confirm_stop_before_any_mutating_call(
    moto_server_env: Any, tmp_path: Path
) -> None:
    """02 (rolling reboot), 06 (failover) and 99 (teardown) with confirm: false, dry_run: false — the parameters
    files' defaults — fail at the confirm step with the typed error, and the cluster is exactly as it was."""
    from aurora_kit.backends import get_backend

    p = _aws_parameters(tmp_path, confirm=False, failover={"failback": True})
    assert p["confirm"] is False
    assert p["dry_run"] is False
    assert p["parameter_group"]["allow_reboot"] is True
    audit_dir = tmp_path / "audit"
    _assert_ok(_run("01", p, audit_dir))  # creating is not destructive: no confirm needed
    backend = get_backend("aws", region="us-east-1", ca_bundle=p["aws"]["ca_bundle"])

    def members() -> dict[str, tuple[bool, str]]:
        cluster = backend.describe_cluster("ak-moto")
        return {
            m.db_instance_identifier: (m.is_cluster_writer, m.db_cluster_parameter_group_status)
            for m in cluster.db_cluster_members
        }

    created = members()
    assert created == {"ak-moto-1": (True, "in-sync"), "ak-moto-2": (False, "in-sync")}

    _assert_refused_at(_run("02", p, audit_dir), "wf.rolling_reboot(")
    pending = members()  # the parameters were applied (not destructive); the static one waits: no reboot made
    assert pending == {"ak-moto-1": (True, "pending-reboot"), "ak-moto-2": (False, "pending-reboot")}

    _assert_refused_at(_run("06", p, audit_dir), "wf.failover(")
    assert members() == pending  # same writer, nothing rebooted

    _assert_refused_at(_run("99", p, audit_dir), "wf.teardown(")
    assert members() == pending  # the cluster and its instances still exist
    assert backend.describe_cluster("ak-moto").status == "available"

    typed_wrong = {**p, "confirm": True, "teardown": {**p["teardown"], "confirm_cluster_id": "ak-other"}}
    refused = _run("99", typed_wrong, audit_dir)  # confirm alone is not enough: the cluster must be typed
    assert refused.status == "failed"
    assert (refused.failure or {}).get("ename") == "ConfirmationRequiredError", refused.failure
    assert "'ak-other' does not name cluster_id='ak-moto'" in str((refused.failure or {}).get("evalue"))
    assert members() == pending
