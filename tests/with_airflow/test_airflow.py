"""The Airflow integration, in Airflow's own environment (``make test-airflow``: ``.venv-airflow``): the DAGs the
factory makes parse (tasks, dependencies, concurrency, the canary rule; an invalid fleet file is an import error),
and DAGs run end to end with Airflow's in-process runner (``dag.test()``) against local clusters — records sealed
into an intact chain, ``{{ ds }}`` rendered into the parameters, and task states matching outcomes: passed →
success, failed → failed, not verified → failed (unless accepted), later clusters of a destructive fleet
``upstream_failed`` after its canary failed.

Airflow runs in child processes with their own ``AIRFLOW_HOME`` (a SQLite metadata DB migrated once per module),
so its configuration and logging never touch this pytest process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

pytest.importorskip("airflow")

from aurora_kit import audit

pytestmark = [pytest.mark.airflow, pytest.mark.notebooks, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "tests" / "notebooks"
LOCAL = ROOT / "parameters" / "local.yaml"
AIRFLOW = Path(sys.executable).parent / "airflow"

# stand-in notebooks: bad* raises, unv* skips its check, the rest passes
BEHAVIOUR = [
    "from aurora_kit.checks.result import Findings\nfrom aurora_kit.steps import common as wf",
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


def _fleet(path: Path, clusters: list[dict[str, Any]], root: Path, **extra: Any) -> Path:
    body = {
        "parameters": str(LOCAL),
        "defaults": {"local_root": str(root), "readers": 1},
        **extra,
        "clusters": clusters,
    }
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print("BAG " + json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {
        "max_active_tasks": d.max_active_tasks, "max_active_runs": d.max_active_runs, "tags": sorted(d.tags),
        "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "pool": t.pool, "retries": t.retries,
                              "templated": list(t.template_fields)} for t in d.tasks},
    } for d in bag.dags.values()},
}))
"""


def _parse(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PARSE, str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BAG ")), None)
    assert line, done.stdout[-2000:] + done.stderr[-2000:]
    parsed: dict[str, Any] = json.loads(line[4:])
    return parsed


@pytest.mark.timeout(300)
def test_the_dags_parse_with_the_fleet_rules(tmp_path: Path, airflow_env: dict[str, str]) -> None:
    books = tmp_path / "books"
    _stand_in(books, "06-failover")
    clusters = [{"cluster_id": c} for c in ("a", "b", "c", "d", "e")]
    fleet = _fleet(tmp_path / "fleet.yaml", clusters, tmp_path / "root", max_parallel=2, canary="c")
    (tmp_path / "bad.yaml").write_text(f"parameters: {LOCAL}\nclusters: [{{cluster_id: a}}, {{cluster_id: a}}]\n")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "fleets.py").write_text(
        "from aurora_kit.integrations.airflow import fleet_dag\n"
        f"verify = fleet_dag({str(fleet)!r}, '04', dag_id='verify', pool='aurora_test',\n"
        "                  overrides=['backup_restore.snapshot_id=nightly-{{ ds_nodash }}-{cluster_id}'])\n"
        f"game_day = fleet_dag({str(fleet)!r}, '06-failover', dag_id='game_day', runbooks_dir={str(books)!r})\n"
        f"waves = fleet_dag({str(fleet)!r}, '06-failover', dag_id='waves', runbooks_dir={str(books)!r},"
        " max_parallel=2)\n"
    )
    bad = str(tmp_path / "bad.yaml")
    (dags / "broken.py").write_text(
        f"from aurora_kit.integrations.airflow import fleet_dag\ndag = fleet_dag({bad!r}, '04')\n"
    )
    bag = _parse(dags, airflow_env)
    (error,) = [v for k, v in bag["errors"].items() if k.endswith("broken.py")]
    assert "invalid cluster_id='a'" in error
    assert "same cluster" in error
    assert not [k for k in bag["errors"] if k.endswith("fleets.py")], bag["errors"]

    verify = bag["dags"]["verify"]
    assert (verify["max_active_tasks"], verify["max_active_runs"]) == (2, 1)
    assert verify["tags"] == ["04-verify-read-write", "aurora_kit", "fleet"]
    assert sorted(verify["tasks"]) == ["a", "b", "c", "d", "e"]
    for task in verify["tasks"].values():  # read-only: independent tasks, bounded by max_active_tasks and the pool
        assert (task["upstream"], task["pool"], task["retries"]) == ([], "aurora_test", 0)
        assert "overrides" in task["templated"]

    game_day = bag["dags"]["game_day"]["tasks"]  # destructive: canary c, then one at a time, in file order
    assert bag["dags"]["game_day"]["max_active_tasks"] == 1
    assert {k: v["upstream"] for k, v in game_day.items()} == {"c": [], "a": ["c"], "b": ["a"], "d": ["b"], "e": ["d"]}
    waves = bag["dags"]["waves"]["tasks"]  # told otherwise: waves of two after the canary
    assert {k: v["upstream"] for k, v in waves.items()} == {
        "c": [],
        "a": ["c"],
        "b": ["c"],
        "d": ["a", "b"],
        "e": ["a", "b"],
    }


RUN = """
import json, sys
from datetime import datetime, timezone
import importlib.util
spec = importlib.util.spec_from_file_location("fleet_dags", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for name in sys.argv[2:]:
    dr = getattr(module, name).test(logical_date=datetime(2026, 11, 28, tzinfo=timezone.utc))
    print("STATES " + json.dumps({"dag": name, "run": str(dr.state),
                                  "tasks": {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}}))
"""


@pytest.mark.timeout(600)
def test_dags_run_end_to_end_and_task_states_match_outcomes(
    tmp_path: Path, airflow_env: dict[str, str], fresh_local_root: Path
) -> None:
    from aurora_kit.backends.local import LocalBackend
    from aurora_kit.specs import ClusterSpec

    backend = LocalBackend(root_dir=fresh_local_root)
    for cid in ("af-a", "af-b"):
        backend.create_cluster(ClusterSpec.with_readers(cid, 1, deletion_protection=False))
    books = tmp_path / "books"
    _stand_in(books, "06-failover")
    unverified = _stand_in(books, "checking")
    audit_dir = tmp_path / "audit"
    fleet = _fleet(tmp_path / "fleet.yaml", [{"cluster_id": c} for c in ("af-a", "af-b", "af-x")], fresh_local_root)
    canary_fleet = _fleet(
        tmp_path / "canary.yaml",
        [{"cluster_id": c} for c in ("ok-1", "bad-2", "ok-3")],
        fresh_local_root,
        canary="bad-2",
    )
    single = tmp_path / "unv.yaml"
    data = yaml.safe_load(LOCAL.read_text())
    single.write_text(yaml.safe_dump({**data, "cluster_id": "unv-1", "local_root": str(fresh_local_root)}))
    dags = Path(airflow_env["AIRFLOW__CORE__DAGS_FOLDER"])
    dag_file = dags / "aurora_fleets.py"
    dag_file.write_text(
        "from aurora_kit.integrations.airflow import AuroraRunbookOperator, fleet_dag\n"
        "from airflow.sdk import DAG\n"
        f"verify = fleet_dag({str(fleet)!r}, '04', dag_id='e2e_verify', audit_dir={str(audit_dir)!r},\n"
        "                  overrides=[\"tags={project: aurora_kit, nightly: 'n-{{ ds }}'}\"])\n"
        f"game_day = fleet_dag({str(canary_fleet)!r}, '06-failover', dag_id='e2e_game_day',\n"
        f"                    audit_dir={str(audit_dir)!r}, runbooks_dir={str(books)!r}, overrides=['confirm=true'])\n"
        "with DAG('e2e_unverified', schedule=None, catchup=False) as unverified:\n"
        f"    AuroraRunbookOperator(task_id='skips', runbook={str(unverified)!r}, parameters_file={str(single)!r},\n"
        f"                          audit_dir={str(audit_dir)!r})\n"
        f"    AuroraRunbookOperator(task_id='skips_accepted', runbook={str(unverified)!r},\n"
        f"                          parameters_file={str(single)!r}, audit_dir={str(audit_dir)!r},"
        " allow_unverified=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(dag_file), "verify", "unverified", "game_day"],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    runs = {r["dag"]: r for r in (json.loads(x[7:]) for x in done.stdout.splitlines() if x.startswith("STATES "))}
    assert set(runs) == {"verify", "unverified", "game_day"}, done.stdout[-3000:] + done.stderr[-3000:]
    assert runs["verify"]["tasks"] == {"af-a": "success", "af-b": "success", "af-x": "failed"}
    assert runs["unverified"]["tasks"] == {"skips": "failed", "skips_accepted": "success"}  # not verified ≠ success
    assert runs["game_day"]["tasks"] == {"bad-2": "failed", "ok-1": "upstream_failed", "ok-3": "upstream_failed"}
    assert {r["run"] for r in runs.values()} == {"failed"}

    records = [json.loads((audit_dir / e["dir"] / "summary.json").read_text()) for e in audit.read_index(audit_dir)]
    seen = {(r["runbook"], r["parameters"]["cluster_id"]): r for r in records}
    assert {k: r["outcome"] for k, r in seen.items()} == {
        ("04-verify-read-write", "af-a"): "passed",
        ("04-verify-read-write", "af-b"): "passed",
        ("04-verify-read-write", "af-x"): "failed",
        ("checking", "unv-1"): "not verified",
        ("06-failover", "bad-2"): "failed",  # the canary; ok-1 and ok-3 never ran: no record
    }
    assert [r["allowed_unverified"] for r in records if r["runbook"] == "checking"] in ([False, True], [True, False])
    for cid in ("af-a", "af-b"):
        verify = seen[("04-verify-read-write", cid)]
        assert verify["parameters"]["tags"]["nightly"] == "n-2026-11-28"  # {{ ds }} rendered
        assert verify["batch_id"].startswith("airflow-e2e_verify-")
        assert verify["key_figures"]["lag_p99_ms"] >= 0
        assert Path(verify["parameters_file"]).exists()  # the cluster's own parameters, as the task ran them
    result = audit.verify(audit_dir)
    assert result.ok, result.problems
    assert result.entries == 6
