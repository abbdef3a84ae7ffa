"""The fleet file and the fleet's rules, without kernels: loading (inheritance, placeholders, -p last), validation
of the whole fleet before anything starts (errors that name the key, the value and the entry), what a runbook
creates unique across the fleet, the plan (concurrency, canary, stop), and parallel sealing into one audit index
keeping the hash chain valid."""

from __future__ import annotations

import ast
import json
import multiprocessing
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from aurora_kit import audit
from aurora_kit.errors import InvalidParameterError
from aurora_kit.fleet import DESTRUCTIVE_RUNBOOKS, load_fleet
from aurora_kit.fleet.plan import plan
from aurora_kit.params import RUNBOOKS

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "parameters" / "local.yaml"


def _fleet(tmp_path: Path, body: dict[str, Any] | str, name: str = "fleet.yaml") -> Path:
    path = tmp_path / name
    if isinstance(body, str):
        path.write_text(body)
    else:
        path.write_text(yaml.safe_dump({"parameters": str(LOCAL), **body}, sort_keys=False))
    return path


def _refused(path: Path, overrides: list[str] | None = None) -> InvalidParameterError:
    with pytest.raises(InvalidParameterError) as caught:
        load_fleet(path, overrides or [])
    return caught.value


def test_each_cluster_inherits_the_base_then_defaults_then_its_entry_then_p(tmp_path: Path) -> None:
    path = _fleet(
        tmp_path,
        {
            "name": "staging",
            "defaults": {"readers": 1, "backup_restore": {"restore_cluster_id": "{cluster_id}-restored"}},
            "max_parallel": 3,
            "run_timeout_s": 600,
            "clusters": [
                {"cluster_id": "ak-1"},
                {"cluster_id": "ak-2", "readers": 2, "probe": {"rows": 7}},
                {"cluster_id": "ak-3", "name": "third", "tags": {"env": "{cluster_id}"}},
            ],
        },
    )
    fleet = load_fleet(path, ["confirm=true", "probe.duration_s=2", "backup_restore.snapshot_id={cluster_id}-snap"])
    assert (fleet.name, fleet.max_parallel, fleet.run_timeout_s) == ("staging", 3, 600.0)
    assert [m.name for m in fleet.members] == ["ak-1", "ak-2", "third"]
    one, two, three = (m.parameters for m in fleet.members)
    assert (one.readers, two.readers, three.readers) == (1, 2, 1)
    assert two.probe is not None
    assert two.probe.rows == 7
    assert two.probe.interval_s == 0.01
    assert all(p.confirm for p in (one, two, three))  # -p applies to every cluster, last
    assert one.backup_restore is not None
    assert one.backup_restore.restore_cluster_id == "ak-1-restored"
    assert one.backup_restore.snapshot_id == "ak-1-snap"
    assert three.tags == {"project": "aurora_kit", "env": "ak-3"}  # mappings merge key by key (tags too)
    assert fleet.canary_member.name == "ak-1"  # the first, unless canary: names one


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ("parameters: x.yaml\nclusters: []\nclusters: []\n", "fleet file", "given twice"),
        ({"clusters": [{"cluster_id": "a"}], "colour": "red"}, "colour", "unknown key"),
        ({"clusters": []}, "clusters", "non-empty list"),
        ({"clusters": [{"readers": 1}]}, "clusters[0].cluster_id", "names its cluster_id"),
        ({"clusters": [{"cluster_id": "a", "readers": 99}]}, "readers", "clusters[0] (a)"),
        ({"clusters": [{"cluster_id": "a", "failover": {"mode": "boom"}}]}, "failover.mode", "clusters[0] (a)"),
        ({"clusters": [{"cluster_id": "Bad_Id"}]}, "cluster_id", "clusters[0]"),
        ({"clusters": [{"cluster_id": "a"}, {"cluster_id": "a"}]}, "cluster_id", "same cluster"),
        ({"clusters": [{"cluster_id": "a"}, {"cluster_id": "b", "name": "a"}]}, "name", "give each a name"),
        ({"clusters": [{"cluster_id": "a"}], "canary": "zz"}, "canary", "not a cluster of the fleet"),
        ({"clusters": [{"cluster_id": "a"}], "max_parallel": 0}, "max_parallel", "from 1 to 64"),
        ({"clusters": [{"select": {"glob": "x"}}]}, "clusters[0].select", "match"),
        ({"clusters": [{"cluster_id": "a", "name": "no spaces"}]}, "clusters[0].name", "letters, digits"),
        ({"clusters": [{"cluster_id": "a", "password": "x"}]}, "password", "secret"),
    ],
)
def test_the_whole_fleet_is_validated_before_anything_starts(
    tmp_path: Path, body: dict[str, Any] | str, field: str, words: str
) -> None:
    error = _refused(_fleet(tmp_path, body))
    assert error.field == field, str(error)
    assert words in str(error), str(error)
    assert "x" not in str(error.value) or "password" not in field  # a secret-looking key's value is not echoed


def test_a_bad_base_file_is_named_once_as_the_base(tmp_path: Path) -> None:
    base = yaml.safe_load(LOCAL.read_text())
    base["readers"] = -1
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    error = _refused(_fleet(tmp_path, "parameters: base.yaml\nclusters: [{cluster_id: a}]\n"))
    assert error.field == "readers"
    assert str(tmp_path / "base.yaml") in str(error)  # relative to the fleet file, and named as the source


def test_the_same_id_in_two_local_roots_is_two_clusters(tmp_path: Path) -> None:
    path = _fleet(
        tmp_path,
        {"clusters": [{"cluster_id": "a", "local_root": "/tmp/r1"}, {"cluster_id": "a", "local_root": "/tmp/r2",
                                                                     "name": "a2"}]},
    )  # fmt: skip
    assert [m.name for m in load_fleet(path).members] == ["a", "a2"]


@pytest.mark.parametrize(
    ("runbook", "overrides", "field"),
    [
        ("05-backup-restore", [], "backup_restore.restore_cluster_id"),  # ak-local-restored for both
        ("05-backup-restore", ["backup_restore.restore_cluster_id={cluster_id}-r", "backup_restore.snapshot_id=s"],
         "backup_restore.snapshot_id"),
        ("99-teardown", ["teardown.skip_final_snapshot=false", "teardown.final_snapshot_id=final"],
         "teardown.final_snapshot_id"),
    ],
)  # fmt: skip
def test_what_a_runbook_creates_is_unique_across_the_fleet(
    tmp_path: Path, runbook: str, overrides: list[str], field: str
) -> None:
    fleet = load_fleet(_fleet(tmp_path, {"clusters": [{"cluster_id": "a"}, {"cluster_id": "b"}]}), overrides)
    fleet.check_for("04-verify-read-write")  # creates nothing: no collision possible
    with pytest.raises(InvalidParameterError) as caught:
        fleet.check_for(runbook)
    assert caught.value.field == field


def test_a_restore_may_not_create_another_member(tmp_path: Path) -> None:
    body = {"clusters": [{"cluster_id": "a", "backup_restore": {"restore_cluster_id": "b"}}, {"cluster_id": "b"}]}
    fleet = load_fleet(_fleet(tmp_path, body), ["backup_restore.restore_mode=snapshot"])
    with pytest.raises(InvalidParameterError, match="which is fleet member b"):
        fleet.check_for("05-backup-restore")


def test_per_cluster_names_for_what_runbooks_create_pass(tmp_path: Path) -> None:
    fleet = load_fleet(
        _fleet(tmp_path, {"clusters": [{"cluster_id": "a"}, {"cluster_id": "b"}]}),
        ["backup_restore.restore_cluster_id={cluster_id}-restored", "teardown.final_snapshot_id=null",
         "teardown.skip_final_snapshot=true"],
    )  # fmt: skip
    for runbook in RUNBOOKS:
        fleet.check_for(runbook)


def test_plan_read_only_runs_in_parallel_and_destructive_ones_after_a_canary(tmp_path: Path) -> None:
    body = {"max_parallel": 3, "canary": "c", "clusters": [{"cluster_id": x} for x in "abcde"]}
    fleet = load_fleet(_fleet(tmp_path, body))
    p = plan(fleet, "04-verify-read-write")
    assert (p.max_parallel, p.canary, p.stop_on_failure, p.destructive) == (3, None, False, False)
    assert [m.name for m in p.order] == list("abcde")
    assert plan(fleet, "04-verify-read-write", max_parallel=10).max_parallel == 5  # never more than clusters
    assert plan(fleet, "04-verify-read-write", stop_on_failure=True).stop_on_failure
    for runbook in DESTRUCTIVE_RUNBOOKS:
        p = plan(fleet, runbook)
        assert (p.max_parallel, p.stop_on_failure) == (1, True)
        assert p.canary is not None
        assert p.canary.name == "c"
        assert [m.name for m in p.order] == ["c", "a", "b", "d", "e"]  # the canary first
    told = plan(fleet, "06-failover", max_parallel=2, keep_going=True)  # told otherwise
    assert (told.max_parallel, told.stop_on_failure) == (2, False)
    assert told.canary is not None  # the canary still goes first
    assert "canary c first" in plan(fleet, "06-failover").describe()


def test_destructive_runbooks_are_those_behind_the_confirmation_gate() -> None:
    """A runbook whose steps module calls ``confirm(`` is destructive over a fleet, and no other."""
    gated = set()
    for twin in (ROOT / "runbooks").glob("*.py"):
        tree = ast.parse(twin.read_text())
        modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "aurora_kit.steps"
                   for a in n.names]  # fmt: skip
        for module in modules:
            source = (ROOT / "aurora_kit" / "steps" / f"{module}.py").read_text()
            if re.search(r"\bconfirm\(\s*run\b", source):
                gated.add(twin.stem)
    assert gated == set(DESTRUCTIVE_RUNBOOKS)


def test_fleet_summaries_are_not_unsealed_records(tmp_path: Path) -> None:
    (tmp_path / audit.FLEETS_DIR / "x").mkdir(parents=True)
    (tmp_path / "20260101T000000Z-04-verify-read-write-abcdef").mkdir()
    assert audit.unsealed(tmp_path) == ["20260101T000000Z-04-verify-read-write-abcdef"]


def _seal_many(args: tuple[str, int, int]) -> None:
    root, worker, count = args
    for n in range(count):
        record = audit.RunRecord(Path(root), f"20260101T000000Z-04-verify-read-write-{worker:02d}{n:03d}", "04")
        record.create()
        (record.dir / "04.ipynb").write_text(json.dumps({"worker": worker, "n": n}))
        now = datetime.now(timezone.utc).isoformat()
        audit.seal(record, {"outcome": "passed", "started_at": now, "operator": f"w{worker}"})


def test_parallel_runs_sealing_into_one_index_keep_the_chain_valid(tmp_path: Path) -> None:
    """Fleet workers are processes: each seals its record under the index lock; 8 of them × 25 records at once."""
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.map(_seal_many, [(str(tmp_path), w, 25) for w in range(8)])
    entries = audit.read_index(tmp_path)
    assert len(entries) == 200
    assert len({e["run_id"] for e in entries}) == 200
    result = audit.verify(tmp_path)
    assert result.ok, result.problems[:3]
    assert result.entries == 200


@pytest.mark.parametrize("name", ["local.example.yaml", "aws.example.yaml"])
def test_the_example_fleets_load(name: str) -> None:
    fleet = load_fleet(ROOT / "parameters" / "fleets" / name)
    for runbook in RUNBOOKS:
        fleet.check_for(runbook)
    assert fleet.canary_member.name == fleet.canary


@pytest.mark.integration
def test_a_select_that_matches_nothing_is_refused(tmp_path: Path, fresh_local_root: Path) -> None:
    body = {"defaults": {"local_root": str(fresh_local_root)}, "clusters": [{"select": {"match": "nothing-*"}}]}
    error = _refused(_fleet(tmp_path, body))
    assert error.field == "clusters[0].select"
    assert "matched no cluster" in str(error)
    assert "clusters there: none" in str(error)


@pytest.mark.parametrize(
    ("body", "overrides"),
    [
        ({"defaults": {"teardown": {"confirm_cluster_id": "{cluster_id}"}}}, None),
        ({"clusters": [{"cluster_id": "ak-a", "teardown": {"confirm_cluster_id": "{cluster_id}"}}]}, None),
        ({}, ["teardown.confirm_cluster_id={cluster_id}"]),
    ],
    ids=["defaults", "entry", "override"],
)
def test_the_typed_cluster_id_cannot_be_generated_for_every_cluster(
    tmp_path: Path, body: dict[str, Any], overrides: list[str] | None
) -> None:
    """Typing the cluster id again is the last safeguard before a deletion: one placeholder must not type it for
    every cluster of a fleet."""
    body = {"clusters": [{"cluster_id": "ak-a"}, {"cluster_id": "ak-b"}], **body}
    err = _refused(_fleet(tmp_path, body), overrides)
    assert err.field == "teardown.confirm_cluster_id"
    assert "typed per cluster" in err.reason
