"""Fleet runs end to end through ``aurora-kit run --fleet``, with real kernels in worker processes: runs in
parallel within the concurrency limit, the canary stopping the rest, one at a time and stop at the first failure
for destructive runbooks, the exit code of the worst outcome, a run past its time limit failing with a sealed
record, the fleet summary linking every record, and the audit chain intact after parallel sealing. Stand-in
notebooks (behaviour chosen by the cluster id) keep them fast; the last test runs the real 04 on local clusters."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from aurora_kit import audit
from aurora_kit.cli import main

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "tests" / "notebooks"
LOCAL = ROOT / "parameters" / "local.yaml"

# the stand-in's behaviour by cluster id: bad* raises, unv* skips its check, slow* sleeps long, others nap 1.5 s
BEHAVIOUR = [
    "import time\nfrom aurora_kit.checks.result import Findings\nfrom aurora_kit.steps import common as wf",
    'time.sleep(120 if cluster_id.startswith("slow") else 1.5)',
    'assert not cluster_id.startswith("bad"), f"{cluster_id} is broken"',
    'wf.verify(wf.Skipped("replica lag", "not reachable from here") if cluster_id.startswith("unv") '
    'else Findings("control plane", {"ok": 1}, [], judged_against="as described"))',
]


def _stand_in(folder: Path, name: str) -> Path:
    nb = nbformat.read(str(NOTEBOOKS / "passing.ipynb"), as_version=4)
    nb.cells[3:] = [nbformat.v4.new_code_cell(c) for c in BEHAVIOUR]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def _fleet(tmp_path: Path, ids: list[str], root: Path, **extra: Any) -> Path:
    path = tmp_path / "fleet.yaml"
    body = {"parameters": str(LOCAL), "defaults": {"local_root": str(root)}, **extra}
    body["clusters"] = [{"cluster_id": c} for c in ids]
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _summary(audit_dir: Path) -> dict[str, Any]:
    (folder,) = sorted((audit_dir / audit.FLEETS_DIR).iterdir())[-1:]
    doc: dict[str, Any] = json.loads((folder / "fleet.json").read_text())
    return doc


def _records(audit_dir: Path) -> list[dict[str, Any]]:
    return [json.loads((audit_dir / e["dir"] / "summary.json").read_text()) for e in audit.read_index(audit_dir)]


def _most_at_once(records: list[dict[str, Any]]) -> int:
    """The largest number of runs whose [start, end] overlap, from their records."""
    events = sorted(
        [(r["started_at"], 1) for r in records] + [(r["ended_at"], -1) for r in records], key=lambda e: (e[0], e[1])
    )
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def _run(argv: list[str]) -> int:
    return main(["run", *argv])


@pytest.mark.timeout(240)
def test_runs_in_parallel_within_the_limit_and_the_chain_stays_valid(
    tmp_path: Path, fresh_local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = _stand_in(tmp_path / "books", "checking")
    ids = [f"ok-{n}" for n in range(5)]
    audit_dir = tmp_path / "audit"
    fleet = _fleet(tmp_path, ids, fresh_local_root, max_parallel=4)
    assert _run([str(book), "--fleet", str(fleet), "--max-parallel", "2", "--audit-dir", str(audit_dir)]) == 0
    out = capsys.readouterr().out
    assert "5 clusters, 2 at a time" in out
    assert "aurora-kit run: 5 passed in" in out
    records = _records(audit_dir)
    assert sorted(r["parameters"]["cluster_id"] for r in records) == ids  # one record per cluster
    assert _most_at_once(records) == 2  # parallel, and never more than the limit
    doc = _summary(audit_dir)
    assert {r["batch_id"] for r in records} == {doc["fleet_run_id"]}
    assert [c["name"] for c in doc["clusters"]] == ids
    entries = {e["run_id"]: e["hash"] for e in audit.read_index(audit_dir)}
    for c in doc["clusters"]:
        assert (c["outcome"], c["exit_code"]) == ("passed", 0)
        assert entries[c["run_id"]] == c["entry_hash"]  # each row is tied to its entry of the chain
        assert (audit_dir / c["record"] / "summary.json").exists()
        assert Path(json.loads((audit_dir / c["record"] / "summary.json").read_text())["parameters_file"]).exists()
    html = (audit_dir / audit.FLEETS_DIR / doc["fleet_run_id"] / "fleet.html").read_text()
    assert html.count("data-outcome='passed'") == 5
    for c in doc["clusters"]:
        assert f"href='../../{c['record']}/checking.html'" in html
        assert (audit_dir / audit.FLEETS_DIR / doc["fleet_run_id"] / f"../../{c['record']}/checking.html").exists()

    # the fleet file's own limit (4) when the command line gives none; sealing 5 + 5 records in parallel
    assert _run([str(book), "--fleet", str(fleet), "--audit-dir", str(audit_dir)]) == 0
    assert "5 clusters, 4 at a time" in capsys.readouterr().out
    assert _most_at_once(_records(audit_dir)[5:]) >= 3
    assert _run(["..", "--fleet", str(fleet)]) == 2  # an unknown runbook is refused before anything starts
    assert main(["audit", "verify", "--audit-dir", str(audit_dir)]) == 0
    assert "audit chain intact" in capsys.readouterr().out


@pytest.mark.timeout(240)
def test_the_worst_outcome_is_the_exit_code(
    tmp_path: Path, fresh_local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = _stand_in(tmp_path / "books", "checking")
    cases = [(["ok-1", "unv-1"], [], 3), (["ok-1", "unv-1", "bad-1"], [], 1), (["unv-1"], ["--allow-unverified"], 0)]
    for n, (ids, flags, code) in enumerate(cases):
        audit_dir = tmp_path / f"audit{n}"
        fleet = _fleet(tmp_path, ids, fresh_local_root)
        assert _run([str(book), "--fleet", str(fleet), "--audit-dir", str(audit_dir), *flags]) == code, ids
        outcomes = {c["name"]: c["outcome"] for c in _summary(audit_dir)["clusters"]}
        expected = {i: {"ok": "passed", "unv": "not verified", "bad": "failed"}[i.split("-")[0]] for i in ids}
        assert outcomes == expected  # read-only: every cluster ran, whatever the others did
        assert _summary(audit_dir)["exit_code"] == code
    err = capsys.readouterr().err
    assert "bad-1 failed" in err


@pytest.mark.timeout(240)
def test_a_destructive_runbook_stops_when_the_canary_fails(
    tmp_path: Path, fresh_local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = _stand_in(tmp_path / "books", "06-failover")  # destructive by name: the fleet's canary rule applies
    audit_dir = tmp_path / "audit"
    fleet = _fleet(tmp_path, ["ok-1", "bad-canary", "ok-2"], fresh_local_root, canary="bad-canary")
    assert _run([str(book), "--fleet", str(fleet), "--audit-dir", str(audit_dir), "-p", "confirm=true"]) == 1
    out = capsys.readouterr().out
    assert "canary bad-canary first" in out
    doc = _summary(audit_dir)
    assert [(c["name"], c["outcome"], c["canary"]) for c in doc["clusters"]] == [
        ("bad-canary", "failed", True),
        ("ok-1", "not run", False),
        ("ok-2", "not run", False),
    ]
    assert doc["stopped"] == "the canary bad-canary failed"
    assert [r["parameters"]["cluster_id"] for r in _records(audit_dir)] == ["bad-canary"]  # nothing else ran
    assert re.search(r"ok-1 +- +not run \(stopped after the canary bad-canary failed\)", out)


@pytest.mark.timeout(240)
def test_a_destructive_runbook_runs_one_at_a_time_and_stops_at_the_first_failure(
    tmp_path: Path, fresh_local_root: Path
) -> None:
    book = _stand_in(tmp_path / "books", "99-teardown")
    audit_dir = tmp_path / "audit"
    fleet = _fleet(tmp_path, ["ok-1", "ok-2", "bad-3", "ok-4"], fresh_local_root, max_parallel=4)
    assert _run([str(book), "--fleet", str(fleet), "--audit-dir", str(audit_dir)]) == 1
    doc = _summary(audit_dir)
    assert [c["outcome"] for c in doc["clusters"]] == ["passed", "passed", "failed", "not run"]
    assert doc["max_parallel"] == 1  # the fleet file's 4 is for read-only runbooks
    assert _most_at_once(_records(audit_dir)) == 1

    # told otherwise: two at a time after the canary, and every cluster runs (--keep-going)
    audit_dir = tmp_path / "audit2"
    argv = [str(book), "--fleet", str(fleet), "--audit-dir", str(audit_dir), "--max-parallel", "2", "--keep-going"]
    assert _run(argv) == 1
    doc = _summary(audit_dir)
    assert [c["outcome"] for c in doc["clusters"]] == ["passed", "passed", "failed", "passed"]
    records = _records(audit_dir)
    assert records[0]["parameters"]["cluster_id"] == "ok-1"  # the canary first, alone
    assert min(r["started_at"] for r in records[1:]) >= records[0]["ended_at"]
    assert _most_at_once(records) == 2


@pytest.mark.timeout(240)
def test_a_run_past_its_time_limit_fails_with_a_sealed_record(
    tmp_path: Path, fresh_local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = _stand_in(tmp_path / "books", "checking")
    audit_dir = tmp_path / "audit"
    fleet = _fleet(tmp_path, ["slow-1", "ok-1"], fresh_local_root)
    started = time.monotonic()
    assert _run([str(book), "--fleet", str(fleet), "--audit-dir", str(audit_dir), "--run-timeout", "8"]) == 1
    assert time.monotonic() - started < 60  # not the 120 s the stand-in sleeps
    outcomes = {c["name"]: (c["outcome"], c["reason"]) for c in _summary(audit_dir)["clusters"]}
    assert outcomes["ok-1"][0] == "passed"
    assert outcomes["slow-1"][0] == "failed"
    assert outcomes["slow-1"][1].startswith("timed out after 8 s")
    (slow,) = [r for r in _records(audit_dir) if r["parameters"]["cluster_id"] == "slow-1"]
    assert slow["error"].startswith("timed out after 8 s")
    assert slow["failure"]["ename"] == "KeyboardInterrupt"  # the record marks the cell that was running
    assert main(["audit", "verify", "--audit-dir", str(audit_dir)]) == 0


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_04_over_local_clusters_one_missing(
    tmp_path: Path, fresh_local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aurora_kit.backends.local import LocalBackend
    from aurora_kit.specs import ClusterSpec

    backend = LocalBackend(root_dir=fresh_local_root)
    for cid in ("fleet-a", "fleet-b"):
        backend.create_cluster(ClusterSpec.with_readers(cid, 1, deletion_protection=False, tags={"env": "fleet"}))
    path = tmp_path / "fleet.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "parameters": str(LOCAL),
                "defaults": {"local_root": str(fresh_local_root), "readers": 1},
                "clusters": [{"select": {"match": "fleet-*", "tags": {"env": "fleet"}}}, {"cluster_id": "fleet-x"}],
            }
        )
    )
    audit_dir = tmp_path / "audit"
    assert _run(["04", "--fleet", str(path), "--audit-dir", str(audit_dir)]) == 1
    doc = _summary(audit_dir)
    outcomes = {c["name"]: c["outcome"] for c in doc["clusters"]}
    assert outcomes == {"fleet-a": "passed", "fleet-b": "passed", "fleet-x": "failed"}
    for c in doc["clusters"][:2]:
        assert c["key_figures"]["lag_p99_ms"] >= 0  # measured on each cluster
    missing = doc["clusters"][2]
    assert "ClusterNotFoundError" in missing["reason"]
    hint = re.search(r"(aurora-kit run 01 -f \S+ -p cluster_id=fleet-x)", missing["reason"])
    assert hint, missing["reason"]  # the hint names the cluster's own parameters file: a command that works
    assert main([*hint.group(1).split()[1:], "--audit-dir", str(audit_dir)]) == 0
    assert main(["audit", "verify", "--audit-dir", str(audit_dir)]) == 0


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_01_creates_a_fleet_in_parallel_each_instance_on_its_own_socket(
    tmp_path: Path, fresh_local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aurora_kit.backends.local import LocalBackend

    ids = ["par-1", "par-2", "par-3"]
    fleet = _fleet(tmp_path, ids, fresh_local_root)
    audit_dir = tmp_path / "audit"
    assert _run(["01", "--fleet", str(fleet), "--audit-dir", str(audit_dir), "-p", "readers=1"]) == 0
    assert _most_at_once(_records(audit_dir)) == 3  # all three created at once
    backend = LocalBackend(root_dir=fresh_local_root)
    # As root every instance has its own loopback address on Aurora's port 5432; otherwise its own port on
    # 127.0.0.1. Either way allocated under the state lock: no two instances share an (address, port).
    sockets = [(i.endpoint_address, i.endpoint_port) for cid in ids for i in backend.describe_instances(cid)]
    assert len(sockets) == 6
    assert len(set(sockets)) == 6
