"""Outcomes end to end, through ``aurora-kit run`` and real kernels: exit codes, what the record says (banner,
summary.json), --allow-unverified, --all / --keep-going, the printed verify hint executed, a missing cluster failing
03 and 04 with commands that work, and the aws path with unreachable endpoints giving ``not verified``."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from aurora_kit import audit, params
from aurora_kit.cli import main

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "tests" / "notebooks"
LOCAL = ROOT / "parameters" / "local.yaml"
BANNER = re.compile(
    r"""<div class=["']aurora-kit-banner["'].*?data-outcome=["']([^"']+)["'][^>]*>([^<]+)</span>""", re.DOTALL
)


def _stand_in(tmp_path: Path, name: str, cells: list[str]) -> Path:
    """passing.ipynb with ``cells`` in place of its own (after the parameters and start cells)."""
    nb = nbformat.read(str(NOTEBOOKS / "passing.ipynb"), as_version=4)
    nb.cells[3:] = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


SKIPPING = [
    "from aurora_kit.checks.result import Findings\nfrom aurora_kit.steps import common as wf",
    'wf.verify(Findings("control plane", {"ok": 1}, [], judged_against="as described"))',
    'wf.verify(wf.Skipped("replica lag", "data plane not reachable: 10.0.0.5:5432 unreachable"))',
]


def _summary(audit_dir: Path, index: int = -1) -> tuple[dict[str, Any], Path]:
    entry = audit.read_index(audit_dir)[index]
    record = audit_dir / entry["dir"]
    return json.loads((record / "summary.json").read_text()), record


def _banner(record: Path) -> tuple[str, str]:
    html = next(record.glob("*.html")).read_text()
    found = BANNER.search(html)
    assert found, f"no banner in {record}"
    return found.group(1), found.group(2)


def test_a_skipped_check_is_not_verified_exit_3_unless_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_dir = tmp_path / "audit"
    book = _stand_in(tmp_path, "skipping", SKIPPING)
    assert main(["run", str(book), "-f", str(LOCAL), "--audit-dir", str(audit_dir)]) == 3
    out = capsys.readouterr()
    assert re.search(r"NOT VERIFIED +skipping .*not verified: replica lag", out.out)
    assert "exit 3: checks not verified" in out.out
    assert "skipping not verified; see" in out.err
    summary, record = _summary(audit_dir)
    assert (summary["outcome"], summary["exit_code"], summary["unverified"]) == ("not verified", 3, ["replica lag"])
    assert summary["allowed_unverified"] is False
    assert [c["status"] for c in summary["checks"]] == ["passed", "skipped"]
    assert _banner(record) == ("not verified", "NOT VERIFIED")
    assert audit.read_index(audit_dir)[-1]["outcome"] == "not verified"

    assert main(["run", str(book), "-f", str(LOCAL), "--audit-dir", str(audit_dir), "--allow-unverified"]) == 0
    assert "(accepted: --allow-unverified)" in capsys.readouterr().out
    summary, record = _summary(audit_dir)
    assert (summary["outcome"], summary["exit_code"], summary["allowed_unverified"]) == ("not verified", 0, True)
    assert _banner(record) == ("not verified", "NOT VERIFIED (accepted)")
    assert "accepted with --allow-unverified" in next(record.glob("*.html")).read_text()


def test_a_dry_run_prints_its_plan_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit_dir = tmp_path / "audit"
    book = _stand_in(
        tmp_path,
        "planning",
        [
            "from aurora_kit.runbook import record_plan\n\n"
            'record_plan([{"service": "rds", "call": "CreateDBCluster", "parameters": {"DBClusterIdentifier": "ak"}},'
            ' {"service": "rds", "call": "CreateDBInstance", "parameters": {"DBInstanceIdentifier": "ak-1"}}])',
        ],
    )
    code = main(["run", str(book), "-f", str(LOCAL), "-p", "dry_run=true", "--audit-dir", str(audit_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"DRY RUN +planning .*\n +plan: 2 mutating call\(s\), none made", out)
    assert re.search(r"1 +rds +CreateDBCluster +ak\n", out)
    assert re.search(r"2 +rds +CreateDBInstance +ak-1\n", out)
    summary, record = _summary(audit_dir)
    assert summary["outcome"] == "dry run"
    assert _banner(record) == ("dry run", "DRY RUN")


def test_the_printed_verify_hint_is_a_command_that_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit_dir = tmp_path / "audit dir"  # a space: the hint must quote it
    assert main(["run", str(NOTEBOOKS / "passing.ipynb"), "-f", str(LOCAL), "--audit-dir", str(audit_dir)]) == 0
    out = capsys.readouterr().out
    hint = re.search(r"verify the records with: (aurora-kit audit verify .*)", out)
    assert hint, out
    argv = shlex.split(hint.group(1))
    assert argv[0] == "aurora-kit"
    printed_head = re.search(r"audit head: ([0-9a-f]{64}) \(1 records\)", out)
    assert printed_head, out  # the head is printed after every run, to be noted outside the folder
    assert main([*argv[1:], "--expect-head", printed_head.group(1)]) == 0
    assert "audit chain intact" in capsys.readouterr().out


def test_all_stops_at_a_run_not_verified_unless_keep_going(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fresh_local_root: Path
) -> None:
    monkeypatch.setenv("AURORA_KIT_HOME", str(fresh_local_root))  # the runner opens the backend first (preflight)
    books = tmp_path / "runbooks"
    books.mkdir()
    for name in params.RUNBOOKS:
        source = _stand_in(tmp_path, "s", SKIPPING) if name == "03-extensions" else NOTEBOOKS / "passing.ipynb"
        nbformat.write(nbformat.read(str(source), as_version=4), str(books / f"{name}.ipynb"))
    common = ["run", "--all", "-f", str(LOCAL), "--runbooks-dir", str(books)]
    assert main([*common, "--audit-dir", str(tmp_path / "a")]) == 3
    out = capsys.readouterr().out
    assert [e["outcome"] for e in audit.read_index(tmp_path / "a")] == ["passed", "passed", "not verified"]
    assert re.search(r"04-verify-read-write +not run \(stopped after 03-extensions not verified; --keep-going", out)
    assert main([*common, "--audit-dir", str(tmp_path / "b"), "--keep-going"]) == 3
    outcomes = [e["outcome"] for e in audit.read_index(tmp_path / "b")]
    assert outcomes == ["passed", "passed", "not verified", *["passed"] * (len(params.RUNBOOKS) - 3)]
    assert f"aurora-kit run: {len(params.RUNBOOKS) - 1} passed, 1 not verified in" in capsys.readouterr().out
    assert main([*common, "--audit-dir", str(tmp_path / "c"), "--allow-unverified"]) == 0  # accepted: goes on
    assert len(audit.read_index(tmp_path / "c")) == len(params.RUNBOOKS)


def test_an_untraversable_local_root_is_refused_before_any_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("only root runs PostgreSQL as another user, who then needs to traverse the root")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)  # what `mktemp -d` makes
    private.chmod(0o700)
    monkeypatch.setenv("AURORA_KIT_HOME", str(private / "root"))
    audit_dir = tmp_path / "audit"
    assert main(["run", "04", "-f", str(LOCAL), "--audit-dir", str(audit_dir)]) == 2
    err = capsys.readouterr().err
    assert "cannot traverse" in err
    assert "chmod" in err
    assert "AURORA_KIT_HOME" in err
    assert [e["outcome"] for e in audit.read_index(audit_dir)] == ["refused"]  # nothing started: a refusal record


# -- real runbooks on the local backend ----------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.timeout(240)
def test_a_missing_cluster_fails_03_and_04_and_the_hint_commands_work(
    fresh_local_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AURORA_KIT_HOME", str(fresh_local_root))
    audit_dir = tmp_path / "audit"
    missing = ["-f", str(LOCAL), "-p", "cluster_id=ak-missing", "--audit-dir", str(audit_dir)]
    for runbook in ("03", "04"):
        assert main(["run", runbook, *missing]) == 1, runbook
        summary, record = _summary(audit_dir)
        assert summary["outcome"] == "failed"
        assert summary["failure"]["ename"] == "ClusterNotFoundError"
        assert "wf.start(" in summary["failure"]["source"]
        assert _banner(record) == ("failed", "FAIL")
    hint = summary["failure"]["evalue"]
    commands = re.findall(r"(aurora-kit [^;]+?)(?:;|$)", hint)
    assert [c.split()[1] for c in commands] == ["run", "local"], hint
    capsys.readouterr()
    listing = shlex.split(commands[1])
    assert main(listing[1:]) == 0
    assert f"no clusters under {fresh_local_root}" in capsys.readouterr().out
    create = shlex.split(commands[0])
    assert create[1:3] == ["run", "01"]
    assert main([*create[1:], "--audit-dir", str(audit_dir)]) == 0  # what the hint says, verbatim
    assert main(["run", "04", *missing]) == 0  # and then 04 passes on that cluster
    summary, record = _summary(audit_dir)
    assert summary["outcome"] == "passed"
    assert _banner(record) == ("passed", "PASS")


# -- the aws path: the endpoints moto hands out are not reachable --------------------------------------------------
def _aws_file(tmp_path: Path) -> Path:
    data = yaml.safe_load(LOCAL.read_text())
    data.update(
        backend="aws",
        cluster_id="ak-moto",
        availability_zones=["us-east-1a", "us-east-1b"],
        readers=1,
        aws={**data["aws"], "ca_bundle": str(tmp_path / "rds-ca.pem"), "profile": None},
    )
    path = tmp_path / "aws-moto.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.timeout(240)
def test_unreachable_endpoints_give_not_verified_with_exit_3(
    moto_server_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_dir = tmp_path / "audit"
    args = ["-f", str(_aws_file(tmp_path)), "--audit-dir", str(audit_dir)]
    assert main(["run", "01", *args]) == 3  # created (control plane checked), who answers: not verified
    summary, record = _summary(audit_dir)
    assert summary["unverified"] == ["who answers on each endpoint"]
    assert [c["status"] for c in summary["checks"]] == ["passed", "not requested", "skipped"]  # iam_auth: false
    assert summary["key_figures"] == {"writer": "ak-moto-1", "readers": ["ak-moto-2"], "status": "available"}
    assert summary["backend"] == "aws (us-east-1)"

    assert main(["run", "04", *args]) == 3
    out = capsys.readouterr().out
    assert re.search(r"NOT VERIFIED +04-verify-read-write .*not verified: endpoint roles, ", out)
    summary, record = _summary(audit_dir)
    assert summary["outcome"] == "not verified"
    assert summary["unverified"] == [
        "endpoint roles",
        "every instance's role, from the instance itself",
        "write on the writer, read back on the reader endpoint",
        "replica lag",
        "connection pool check",
    ]
    assert all("data plane not reachable" in c["detail"] for c in summary["checks"])
    assert summary["key_figures"] == {}  # nothing measured: no figure, certainly not a zero
    assert _banner(record) == ("not verified", "NOT VERIFIED")

    assert main(["run", "04", *args, "--allow-unverified"]) == 0  # a control-plane-only run, accepted explicitly
    summary, record = _summary(audit_dir)
    assert (summary["outcome"], summary["allowed_unverified"], summary["exit_code"]) == ("not verified", True, 0)


def test_a_long_wait_is_one_live_line_in_the_terminal_and_its_final_state_in_the_record(tmp_path: Path) -> None:
    import io

    from aurora_kit import runner
    from aurora_kit.polling import PROGRESS_MIME

    book = _stand_in(
        tmp_path,
        "waiting",
        [
            "import time\n\nfrom aurora_kit.polling import wait_for\n\nt0 = time.monotonic()\n"
            'wait_for("cluster ak available", lambda: "available" if time.monotonic() - t0 > 2.5 else "creating",\n'
            '         lambda s: s == "available", describe=str, progress=True, initial_delay=0.2, max_delay=0.2)',
        ],
    )
    out = io.StringIO()  # not a terminal: a line when the state changes and when the wait ends
    [result] = runner.run_many([book], params.load(LOCAL).injected(), audit_dir=tmp_path / "audit", out=out)
    lines = [line.strip() for line in out.getvalue().splitlines()]
    assert any(re.fullmatch(r"waiting for cluster ak available: creating · \d\.\d s of 10 min 00 s", x) for x in lines)
    assert any(re.fullmatch(r"waited 2\.\d s for cluster ak available: available", x) for x in lines), lines
    assert result.record_dir is not None
    nb = nbformat.read(str(result.record_dir / "waiting.ipynb"), as_version=4)
    shown = [o for c in nb.cells for o in c.get("outputs", []) if PROGRESS_MIME in o.get("data", {})]
    assert len(shown) == 1  # one display, updated in place: the record keeps its final state
    assert re.fullmatch(r"waited 2\.\d s for cluster ak available: available", shown[0]["data"]["text/plain"])
