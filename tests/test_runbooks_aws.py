"""The ``aws`` path of the runbooks through papermill kernels, two ways:

- against the emulated AWS (``aurora-kit emulate``: moto whose clusters are real local clusters), every runbook in
  order with **no step skipped**, asserting what the runbooks measured (RTO and lost commits of a real failover, PITR
  exactness, HNSW recall, pending-reboot parameters in effect after the reboot, alarms with data);
- against a plain moto server, whose endpoints answer nobody: the data-plane steps must say SKIPPED and be recorded
  ``skipped (...)``, never passed; and the destructive runbooks without ``confirm`` change nothing.

moto's RDS gaps are filled in one place for both (:mod:`aurora_kit.emulator.gaps`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from aurora_kit import iam, params, runner

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


RECORDED_WITH = {
    "emulator": "tests/test_runbooks_aws.py: parameters/aws-emulated.yaml, confirmed, with failback, "
    "on aurora-kit emulate",
}


def _the_iam_source_is_what_the_runbooks_called(recorded: dict[str, list[dict[str, Any]]], source: str) -> None:
    """aurora_kit/data/iam_calls.json (the source of `aurora-kit iam-policy` and the runbook headers) must hold
    exactly the calls each runbook just made; AURORA_KIT_RECORD_IAM=1 rewrites their entries from this run (review
    the diff). ``source``: where they were recorded (RECORDED_WITH)."""
    current = json.loads(iam.CALLS_FILE.read_text())
    how = current.get("recorded_with")
    sources = {**(how.get("runbooks", {}) if isinstance(how, dict) else {}), **dict.fromkeys(recorded, source)}
    runbooks = {**current["runbooks"], **recorded}
    data = {
        "recorded_with": {**RECORDED_WITH, "runbooks": {n: sources[n] for n in params.RUNBOOKS if n in sources}},
        "runbooks": {n: runbooks[n] for n in params.RUNBOOKS if n in runbooks},
    }
    if os.environ.get("AURORA_KIT_RECORD_IAM"):
        iam.CALLS_FILE.write_text(json.dumps(data, indent=1) + "\n")
    committed = json.loads(iam.CALLS_FILE.read_text())["runbooks"]
    changed = {n: recorded[n] for n in recorded if committed.get(n) != recorded[n]}
    assert not changed, (
        "the runbooks' AWS calls changed; rerun this test with AURORA_KIT_RECORD_IAM=1, review "
        f"aurora_kit/data/iam_calls.json, then scripts/sync_runbooks.py: {changed}"
    )


# -- the emulated AWS: the whole data plane, for real ---------------------------------------------------------------
#: what every runbook must not record: a check that did not run
SKIPPED_STEP = "SKIPPED "  # when() prints "SKIPPED <step>: <reason>" for a step it did not run


def _not_skipped(result: runner.RunResult) -> dict[str, Any]:
    """The run passed (every check it owns ran and passed), recorded no skipped result and printed no skipped
    step."""
    assert result.status == "passed", f"{result.runbook}: {result.status} {result.failure or result.error or ''}"
    recorded = result.results or {}
    skipped = {k: v for k, v in recorded.items() if isinstance(v, str) and v.startswith("skipped (")}
    assert not skipped, f"{result.runbook} skipped {skipped}"
    if "data_plane" in recorded:
        assert recorded["data_plane"] == "available", result.runbook
    outputs = json.loads(_text(result))
    printed = [o.get("text", "") for cell in outputs for o in cell if o.get("output_type") == "stream"]
    assert not [t for t in printed if SKIPPED_STEP in "".join(t)], f"{result.runbook} printed a skipped step"
    return recorded


def test_every_runbook_on_the_emulated_aws_with_no_step_skipped(emulator_env: Any, tmp_path: Path) -> None:
    """``aurora-kit run`` of 01 → 99 with parameters/aws-emulated.yaml (confirmed, with failback), the aws backend
    unchanged: every data-plane step runs, and what the runbooks measured holds."""
    from aurora_kit import audit

    path = emulator_env.parameters(
        tmp_path / "aws-emulated.yaml",
        confirm=True,
        failover={"failback": True},
        teardown={"confirm_cluster_id": "ak-emulated"},
    )
    p = params.load(path).injected()
    audit_dir = tmp_path / "audit"
    results: dict[str, dict[str, Any]] = {}
    recorded: dict[str, list[dict[str, Any]]] = {}
    for name in params.RUNBOOKS:
        emulator_env.client.reset_calls()
        results[name] = _not_skipped(_run(name, p, audit_dir))
        recorded[name] = iam.normalise(emulator_env.client.calls())
    _the_iam_source_is_what_the_runbooks_called(recorded, "emulator")

    created = results["01-create-cluster"]["cluster"]
    assert (created["writer"], created["readers"]) == ("ak-emulated-1", ["ak-emulated-2", "ak-emulated-3"])
    assert created["endpoint"].startswith("ak-emulated.cluster-")
    assert created["endpoint"].endswith(".rds.amazonaws.com")

    configured = results["02-configure-parameters"]
    assert configured["reboot"] == {"rebooted": ["ak-emulated-2", "ak-emulated-3", "ak-emulated-1"],
                                    "still_pending": [], "static": ["max_connections", "shared_buffers"]}  # fmt: skip
    shown = configured["settings"]["show"]
    assert {i: s["max_connections"] for i, s in shown.items()} == dict.fromkeys(shown, "200")  # static: after reboot
    assert {i: s["shared_buffers"] for i, s in shown.items()} == dict.fromkeys(shown, "64MB")
    assert len(shown) == 3

    proof = results["03-extensions"]["pgvector_proof"]
    assert proof["best_recall"] >= 0.8
    assert results["03-extensions"]["extension"]["installed"] == results["03-extensions"]["extension"]["wanted"]

    rw = results["04-verify-read-write"]
    assert set(rw["roles"]["distribution"]) == {"ak-emulated-2", "ak-emulated-3"}  # the reader endpoint spreads
    assert rw["roles"]["reader_write_sqlstate"] == "25006"

    backup = results["05-backup-restore"]
    pitr = backup["pitr_restore"]  # exact at T: every row committed by T, none after, same content
    assert (pitr["missing_count"], pitr["extra_count"], pitr["rows_after_cutoff"]) == (0, 0, 0)
    assert pitr["restored_checksum"] == pitr["expected_checksum"]
    assert pitr["restored_rows"] == pitr["expected_rows"]
    assert backup["snapshot_restore"]["mismatches"] == []
    assert backup["deleted"][:2] == ["ak-emulated-restored", "ak-emulated-restored-pitr"]

    failover = results["06-failover"]["failover"]
    assert (failover["old_writer"], failover["new_writer"]) == ("ak-emulated-1", "ak-emulated-2")
    assert failover["lost_commits"] == 0
    assert 0 < failover["rto_s"] <= 15
    assert results["06-failover"]["failback"]["NewWriter"] == "ak-emulated-1"

    alarms = results["07-monitoring"]["alarms"]
    assert alarms["states"] == {"OK": 8}  # evaluated from the instances' metrics: every alarm has data, none fires

    scaled = results["08-scale"]
    scale = scaled["scale"]  # the rolling class change: readers, a planned failover to a changed reader, the old writer
    assert [(s["step"], s["instance"]) for s in scale["class_change"]["steps"]] == [
        ("modify", "ak-emulated-2"),
        ("modify", "ak-emulated-3"),
        ("failover", "ak-emulated-2"),
        ("modify", "ak-emulated-1"),
    ]
    probe = scale["class_change"]["write_probe"]  # measured on the cluster endpoint through the front door
    assert (probe["old_writer"], probe["new_writer"]) == ("ak-emulated-1", "ak-emulated-2")
    assert scale["class_change_lost_commits"] == 0
    assert 0 < scale["class_change_gap_s"] <= 60
    shown_after = scaled["settings"]["instances"]  # each instance restarted for its class; the group's values run
    assert set(shown_after) == {"ak-emulated-1", "ak-emulated-2", "ak-emulated-3"}
    for row in shown_after.values():
        assert row["class"] == "db.r6g.xlarge"
        assert row["restarted"] is True
        assert row["actual"] == row["expected"] == {"max_connections": 200, "shared_buffers": 65536}
    assert (scale["added"], scale["removed"]) == (["ak-emulated-4"], ["ak-emulated-4"])
    assert set(scaled["balance"]["answers"]) == {"ak-emulated-1", "ak-emulated-3", "ak-emulated-4"}
    assert "ak-emulated-4" not in scaled["after_removal"]["answers"]
    assert scaled["after_removal"]["absent"] == ["ak-emulated-4"]
    assert scaled["rehearsal"].startswith("not requested (AWS evaluates the policy itself")
    assert scaled["policy"] == "deleted ak-emulated-readers"

    proxy = results["09-proxy"]  # through the emulated RDS Proxy: TLS, the secret, PgBouncer + the front door's pinning
    assert proxy["pinning"]["pinned"] is True  # RDS Proxy pins a session-level SET (the aws backend expects it)
    assert proxy["pinning"]["leaked"] == 0
    assert proxy["multiplexing"]["server_sessions"] < proxy["multiplexing"]["clients"]
    assert proxy["multiplexing"]["pool_size"] == 100  # 50 % of max_connections 200 (02's group), read through it
    assert proxy["read_only"]["in_recovery"] == proxy["read_only"]["connections"]
    planned = proxy["proxy"]["planned"]  # a real failover, measured through the proxy and on the cluster endpoint
    assert planned["proxy_gap_s"] > 0  # with 0 lost commits on both sides: judged by the check, which passed
    assert planned["cluster_endpoint_gap_s"] > 0
    assert proxy["deleted"] == "deleted ak-emulated-proxy"

    gone = results["99-teardown"]
    assert gone["gone"]["exists"] is False
    assert gone["final_snapshot"]["Status"] == "available"
    assert audit.verify(audit_dir).ok

    import boto3

    rds = boto3.client("rds", region_name="us-east-1")
    events = rds.describe_events(SourceIdentifier="ak-emulated", SourceType="db-cluster", Duration=60)["Events"]
    assert [e["Message"] for e in events if e["EventCategories"] == ["failover"]] == [
        "Started cross AZ failover to DB instance: ak-emulated-2.",
        "Completed failover to DB instance: ak-emulated-2.",
        "Started cross AZ failover to DB instance: ak-emulated-1.",
        "Completed failover to DB instance: ak-emulated-1.",
        "Started cross AZ failover to DB instance: ak-emulated-2.",  # 08's class change
        "Completed failover to DB instance: ak-emulated-2.",
        "Started cross AZ failover to DB instance: ak-emulated-1.",  # 09's, measured through the proxy
        "Completed failover to DB instance: ak-emulated-1.",
    ]
    changed = rds.describe_events(SourceType="db-instance", EventCategories=["configuration change"], Duration=60)
    shapes = [e["SourceIdentifier"] for e in changed["Events"] if e["Message"] == "DB instance shape changed."]
    assert shapes == ["ak-emulated-2", "ak-emulated-3", "ak-emulated-1", "ak-emulated-4"]  # 4: to db.serverless


def test_without_a_reachable_data_plane_every_data_plane_step_is_reported_skipped(
    moto_server_env: Any, tmp_path: Path
) -> None:
    """Plain moto hands out endpoints nobody answers on: the control plane runs, and every data-plane step says
    SKIPPED with its reason and is recorded ``skipped (...)`` — never passed. (The emulated AWS, above, is where the
    data plane runs.)"""
    p = _aws_parameters(tmp_path)
    audit_dir = tmp_path / "audit"
    created = _assert_ok(_run("01", p, audit_dir))
    assert created["cluster"]["status"] == "available"
    assert created["cluster"]["writer"] == "ak-moto-1"
    assert created["cluster"]["readers"] == ["ak-moto-2"]
    assert created["data_plane"].startswith("skipped (")
    result = _run("04", p, audit_dir)  # data plane only: every check skipped, each one said so
    recorded = _assert_ok(result)
    _assert_data_plane_skipped(result)
    checks = {k: v for k, v in recorded.items() if k != "data_plane"}
    assert set(checks) == {"roles", "instances", "round_trip", "lag", "pool"}
    assert all(str(v).startswith("skipped (data plane not reachable") for v in checks.values()), recorded


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


# -- 09-proxy on plain moto: its control plane alone -------------------------------------------------------------
@pytest.fixture
def moto_calls(moto_server_env: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every AWS call the moto server answers (it runs in this process), as the emulator records them."""
    from moto.core.responses import BaseResponse

    from aurora_kit.emulator.hooks import RECORDED_FLAGS

    recorded: list[dict[str, Any]] = []
    call_action = BaseResponse.call_action

    def recording(self: Any) -> Any:
        try:
            action = self._get_action()
        except Exception:  # moto's own routes (reset)
            return call_action(self)
        given = getattr(self, "params", None)

        def flag(name: str) -> bool:
            try:
                return bool(given.get(name))  # type: ignore[union-attr]
            except (AttributeError, TypeError):
                return False

        flags = [f for f in RECORDED_FLAGS if flag(f)]
        recorded.append({"service": str(self.service_name), "operation": action, "flags": flags})
        return call_action(self)

    monkeypatch.setattr(BaseResponse, "call_action", recording)
    return recorded


def test_proxy_runs_its_control_plane_on_aws(moto_calls: list[dict[str, Any]], tmp_path: Path) -> None:
    """09 on plain moto: the proxy with its role, targets AVAILABLE, the read-only endpoint, then deleted with its
    role. The data plane (moto's endpoints answer nobody) is reported skipped, and the run is not verified; every
    call it made is in the runbook's least-privilege policy (recorded on the emulated AWS, above)."""
    p = _aws_parameters(tmp_path)
    audit_dir = tmp_path / "audit"
    _assert_ok(_run("01", p, audit_dir))
    moto_calls.clear()
    result = _run("09-proxy", p, audit_dir)
    proxy = _assert_ok(result)
    _assert_data_plane_skipped(result)
    made = {(c["service"], c["operation"]) for c in iam.normalise(moto_calls)}
    allowed = {(c["service"], c["operation"]) for c in json.loads(iam.CALLS_FILE.read_text())["runbooks"]["09-proxy"]}
    assert made <= allowed, made - allowed

    assert proxy["proxy_plane"].startswith("skipped (")
    assert proxy["deleted"] == "deleted ak-local-proxy"
    assert proxy["proxy"]["failover through the proxy (planned)"].startswith("skipped (proxy not reachable")

    import boto3

    rds = boto3.client("rds", region_name="us-east-1")
    assert rds.describe_db_proxies()["DBProxies"] == []
    assert boto3.client("iam").list_roles()["Roles"] == []  # the role created for the proxy went with it
