"""Every runbook on the local backend, in order 01 → 99 on one rehearsal cluster, two ways:

- nbval (``pytest --nbval-lax``) over the committed notebooks — their ``parameters`` cells' local defaults, plus
  one injected cell that confirms the destructive steps (the defaults say ``confirm = False``), as papermill's
  ``-p confirm True`` would — in a child pytest whose ``AURORA_KIT_HOME`` is a fresh root;
- the runner end to end (``aurora-kit run --all -p confirm=true -p teardown.confirm_cluster_id=ak-local``, what
  ``make rehearse`` runs): one sealed, verifiable audit record per runbook, every data-plane step actually run
  (none skipped) and the key figures within their limits.

Each test gets its own root; at the end every cluster left there is deleted through the backend and no
PostgreSQL process of that root may survive, whatever happened in the notebooks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from plugins.local_cluster import postmasters_under

from aurora_kit import audit, params, runner

ROOT = Path(__file__).resolve().parents[1]
RUNBOOKS = [ROOT / "runbooks" / f"{name}.ipynb" for name in params.RUNBOOKS]
pytestmark = [pytest.mark.notebooks, pytest.mark.integration]


@pytest.fixture
def rehearsal_root(fresh_local_root: Path) -> Path:
    """A fresh local-backend root; afterwards every cluster is deleted and no postmaster may be left (asserted)."""
    return fresh_local_root


#: what `make rehearse` passes on top of parameters/local.yaml (whose defaults keep destructive steps closed)
CONFIRMED = ["confirm=true", "teardown.confirm_cluster_id=ak-local"]
#: the same for nbval, as a cell after the parameters cell (papermill's injected-parameters cell); 99 also gets the
#: cluster id typed again
CONFIRM_CELL = "confirm = True\n"
TYPED_CELL = "teardown = {**teardown, 'confirm_cluster_id': cluster_id}\n"


def _confirmed_copies(target: Path) -> list[Path]:
    """Copies of the committed runbooks with CONFIRM_CELL injected right after their parameters cell."""
    import nbformat

    target.mkdir()
    copies = []
    for source in RUNBOOKS:
        nb = nbformat.read(str(source), as_version=4)
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        source_text = CONFIRM_CELL + (TYPED_CELL if "teardown" in params.RUNBOOK_SECTIONS[source.stem] else "")
        cell = nbformat.v4.new_code_cell(source_text, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(at + 1, cell)
        copy = target / source.name
        nbformat.write(nb, str(copy))
        copies.append(copy)
    return copies


@pytest.mark.timeout(300)
def test_nbval_over_every_runbook_in_order(rehearsal_root: Path, tmp_path: Path) -> None:
    junit = tmp_path / "nbval.xml"
    notebooks = _confirmed_copies(tmp_path / "runbooks")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTEST_"))}
    env["AURORA_KIT_HOME"] = str(rehearsal_root)  # local_root: null in the notebooks → the backend's default root
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--timeout=120",
            f"--junitxml={junit}",
            "-q",
            f"--rootdir={tmp_path}",
            *map(str, notebooks),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("failures", 0)) == int(suite.get("errors", 0)) == int(suite.get("skipped", 0)) == 0
    files = [c.get("file") or c.get("classname", "") for c in suite.iter("testcase")]
    seen = list(dict.fromkeys(Path(f).stem.replace("runbooks.", "") for f in files))
    assert seen == list(params.RUNBOOKS), seen  # every notebook ran, in order


#: the checks each runbook owns, by name (a run that cannot reach the data plane names the same ones)
CHECKS = {
    "01-create-cluster": ["cluster matches the parameters", "IAM database user", "who answers on each endpoint"],
    "02-configure-parameters": ["parameters on every instance"],
    "03-extensions": ["pgvector extension", "pgvector index proof"],
    "04-verify-read-write": [
        "endpoint roles",
        "every instance's role, from the instance itself",
        "write on the writer, read back on the reader endpoint",
        "replica lag",
        "connection pool check",
    ],
    "05-backup-restore": ["automated backups", "restore verification", "point-in-time restore exactness"],
    "06-failover": ["write probe", "every instance's role, from the instance itself"],
    "07-monitoring": ["alarms"],
    "08-scale": [
        "class change write probe",
        "instance class settings",
        "reader endpoint balance",
        "auto scaling rehearsal",
        "reader endpoint after the removal",
    ],
    "09-proxy": [
        "proxy targets available",
        "connection multiplexing",
        "session pinning",
        "read-only proxy endpoint",
        "failover through the proxy (planned)",
    ],
    "99-teardown": ["ak-local deleted"],
}
#: checks local.yaml does not ask for (iam_auth: false)
NOT_REQUESTED = {"IAM database user"}


def _assert_banner(record: Path, runbook: str) -> None:
    """The record's banner (first cell of the notebook, top of the HTML) and summary.json agree: PASS, the
    cluster, and every key figure of the runbook, rounded in the banner, raw in the summary."""
    import json
    import re

    import nbformat

    from aurora_kit.figures import KEY_FIGURES, shown

    summary = json.loads((record / "summary.json").read_text())
    assert summary["outcome"] == "passed", (runbook, summary["outcome_reason"])
    assert (summary["unverified"], summary["allowed_unverified"], summary["exit_code"]) == ([], False, 0)
    expected = [(n, "not requested" if n in NOT_REQUESTED else "passed") for n in CHECKS[runbook]]
    assert [(c["name"], c["status"]) for c in summary["checks"]] == expected
    assert all(c["detail"].startswith("PASS ") for c in summary["checks"] if c["name"] not in NOT_REQUESTED)
    expected = {f.key for f in KEY_FIGURES[runbook]}
    assert set(summary["key_figures"]) == expected, runbook  # every figure measured
    html = (record / f"{runbook}.html").read_text()
    banner = re.search(r"""<div class=["']aurora-kit-banner["'].*?</table></div>""", html, re.DOTALL)
    assert banner, runbook
    text = banner.group(0)
    assert re.search(r"""data-outcome=["']passed["'][^>]*>PASS<""", text), runbook
    assert f">{runbook}<" in text
    assert ">ak-local<" in text
    for label, value in shown(runbook, summary["key_figures"]):
        assert f">{label}<" in text, (runbook, label)
        assert f">{value}<" in text, (runbook, label, value)
    nb = nbformat.read(str(record / f"{runbook}.ipynb"), as_version=4)
    assert "aurora-kit-banner" in nb.cells[0].metadata.tags
    assert "data-outcome='passed'" in nb.cells[0].source


@pytest.mark.timeout(300)
def test_runner_rehearsal_end_to_end(rehearsal_root: Path, tmp_path: Path) -> None:
    audit_dir = tmp_path / "audit"
    loaded = params.load(ROOT / "parameters" / "local.yaml", [f"local_root={rehearsal_root}", *CONFIRMED])
    results = runner.run_many(runner.resolve_all(), loaded.injected(), audit_dir=audit_dir)
    durations = {r.runbook: r.duration_s for r in results}
    print("runbook durations (s):", durations, "total", round(sum(d or 0 for d in durations.values()), 1))
    failed = [(r.runbook, r.status, r.failure or r.error or r.outcome) for r in results if r.status != "passed"]
    assert not failed, failed

    entries = audit.read_index(audit_dir)
    assert [(e["runbook"], e["outcome"]) for e in entries] == [(name, "passed") for name in params.RUNBOOKS]
    verification = audit.verify(audit_dir)
    assert verification.ok, verification.problems
    for entry in entries:  # every record: the banner with outcome and key figures, in the HTML and summary.json
        _assert_banner(audit_dir / entry["dir"], entry["runbook"])

    by_name = {r.runbook: r.results or {} for r in results}
    for name, recorded in by_name.items():
        if "data_plane" in recorded:
            assert recorded["data_plane"] == "available", (name, recorded["data_plane"])
        skipped = {k: v for k, v in recorded.items() if isinstance(v, str) and v.startswith("skipped (")}
        assert set(skipped) <= {"failback"}, (name, skipped)  # failback: false is the only expected skip
    assert by_name["01-create-cluster"]["cluster"]["readers"] == ["ak-local-2", "ak-local-3"]
    assert by_name["02-configure-parameters"]["reboot"]["still_pending"] == []
    assert by_name["03-extensions"]["pgvector_proof"]["index_used_in_explain"] is True
    roles = by_name["04-verify-read-write"]["instances"]
    assert {i: r["write"] for i, r in roles.items() if r["role"] == "reader"} == {
        "ak-local-2": "25006",
        "ak-local-3": "25006",
    }
    assert by_name["05-backup-restore"]["pitr_restore"]["missing_count"] == 0
    assert by_name["05-backup-restore"]["pitr_restore"]["rows_after_cutoff"] == 0
    failover = by_name["06-failover"]["failover"]
    assert failover["lost_commits"] == 0
    assert failover["rto_s"] <= loaded.failover.max_rto_s  # type: ignore[union-attr]
    assert by_name["06-failover"]["writer"] == failover["new_writer"] != "ak-local-1"
    assert by_name["07-monitoring"]["alarms"]["states"] == {"OK": 9}
    scale = by_name["08-scale"]["scale"]
    assert scale["class_change_lost_commits"] == 0
    assert scale["class_change_gap_s"] <= loaded.scale.max_class_change_gap_s  # type: ignore[union-attr]
    assert [s["step"] for s in scale["class_change"]["steps"]] == ["modify", "modify", "failover", "modify"]
    assert (scale["added"], scale["removed"]) == (["ak-local-4"], ["ak-local-4"])
    assert len(scale["autoscaling_added"]) == 1
    assert scale["autoscaling_removed"] == scale["autoscaling_added"]  # scale-in removed what scale-out added
    settings = by_name["08-scale"]["settings"]["instances"]
    assert {i: s["class"] for i, s in settings.items()} == dict.fromkeys(settings, "db.r6g.xlarge")
    assert by_name["08-scale"]["policy"] == "deleted ak-local-readers"
    proxy = by_name["09-proxy"]
    assert proxy["pinning"]["pinned"] is False  # PgBouncer cannot pin (documented), and nothing leaked:
    assert proxy["pinning"]["leaked"] == 0
    assert proxy["multiplexing"]["server_sessions"] < proxy["multiplexing"]["clients"]
    assert proxy["read_only"]["in_recovery"] == proxy["read_only"]["connections"]
    assert proxy["proxy"]["planned"]["proxy_gap_s"] > 0
    assert proxy["deleted"] == "deleted ak-local-proxy"
    assert by_name["99-teardown"]["existed"] is True
    assert by_name["99-teardown"]["gone"]["exists"] is False
    assert by_name["99-teardown"]["final_snapshot"] is None
    assert not postmasters_under(rehearsal_root)  # 99 stopped everything it created

    # every destructive step's confirmation is in its record: headless, the confirm parameter (no plan shown)
    confirmed = {e["runbook"]: audit.find(audit_dir, e["run_id"])["summary"]["confirmations"] for e in entries}
    assert [c["action"] for c in confirmed["06-failover"]] == ["planned failover"]
    [teardown] = confirmed["99-teardown"]
    assert teardown["how"] == "parameter confirm: true and teardown.confirm_cluster_id"
    assert teardown["typed_cluster_id"] == "ak-local"
    assert teardown["plan"] is None
    assert confirmed["01-create-cluster"] == []


@pytest.mark.timeout(180)
def test_a_failing_check_stops_the_runbook_at_its_cell_and_leaves_nothing_running(
    rehearsal_root: Path, tmp_path: Path
) -> None:
    """04 with an impossible lag limit: VerificationError in the lag cell, the record says so; the fixture then
    deletes the cluster and finds no postmaster left."""
    audit_dir = tmp_path / "audit"
    loaded = params.load(ROOT / "parameters" / "local.yaml", [f"local_root={rehearsal_root}"])
    created = runner.run_notebook(runner.resolve("01"), loaded.injected(), audit_dir=audit_dir)
    assert created.status == "passed", created.failure
    strict = params.load(
        ROOT / "parameters" / "local.yaml", [f"local_root={rehearsal_root}", "probe.max_replica_lag_s=0.000001"]
    )
    result = runner.run_notebook(runner.resolve("04"), strict.injected(), audit_dir=audit_dir)
    assert result.status == "failed"
    failure = result.failure or {}
    assert failure.get("ename") == "VerificationError", failure
    assert "lag p99" in str(failure.get("evalue"))
    assert "wf.replica_lag" in str(failure.get("source"))
    assert result.outcome is not None
    assert [(c.name, c.status.value) for c in result.outcome.checks][-1] == ("replica lag", "failed")
    assert postmasters_under(rehearsal_root)  # the cluster is still up here; the fixture must clean it
