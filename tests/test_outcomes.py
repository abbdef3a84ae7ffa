"""Outcomes without kernels: the model (passed / failed / not verified / dry run and their exit codes), the traces
verify() leaves, key figures, the record banner, the terminal lines, progress lines and the CLI's help and audit
commands."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest

from aurora_kit import audit, banner, figures, outcome, polling
from aurora_kit.checks.result import Findings
from aurora_kit.cli import main
from aurora_kit.display import duration, quantity
from aurora_kit.errors import DeletionProtectionError, VerificationError
from aurora_kit.outcome import Check, CheckStatus, Outcome, RunOutcome, checks_in, decide
from aurora_kit.redaction import Redactor
from aurora_kit.report import RunResult, Terminal, exit_code
from aurora_kit.runbook import new_run_id
from aurora_kit.steps import common as wf

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 29, 7, 8, 21, tzinfo=timezone.utc)
PASSED, FAILED, SKIPPED = CheckStatus.PASSED, CheckStatus.FAILED, CheckStatus.SKIPPED


# -- the model -----------------------------------------------------------------------------------------------------
def test_every_check_ran_and_passed_is_passed() -> None:
    run = decide([Check("a", PASSED), Check("b", PASSED)], failed=False, dry_run=False)
    assert (run.outcome, run.exit_code, run.accepted) == (Outcome.PASSED, 0, True)


def test_a_skipped_check_makes_the_run_not_verified_and_names_it() -> None:
    run = decide([Check("a", PASSED), Check("lag", SKIPPED, "data plane not reachable")], failed=False, dry_run=False)
    assert (run.outcome, run.exit_code, run.accepted) == (Outcome.NOT_VERIFIED, 3, False)
    assert run.unverified == ("lag",)
    same = [Check(n, SKIPPED, "data plane not reachable: x") for n in ("roles", "lag", "pool")]
    assert decide(same, failed=False, dry_run=False).reason == "3 of 3 checks not verified: data plane not reachable: x"
    assert run.reason == "1 of 2 checks not verified: data plane not reachable"
    accepted = decide([Check("lag", SKIPPED)], failed=False, dry_run=False, allow_unverified=True)
    assert (accepted.outcome, accepted.exit_code, accepted.label) == (
        Outcome.NOT_VERIFIED,
        0,
        "NOT VERIFIED (accepted)",
    )


def test_failed_beats_everything_and_a_dry_run_verifies_nothing() -> None:
    assert decide([Check("a", SKIPPED)], failed=True, dry_run=True).outcome is Outcome.FAILED
    bad = decide([Check("a", PASSED), Check("b", FAILED, "FAIL b: lost 1")], failed=False, dry_run=False)
    assert (bad.outcome, bad.exit_code, bad.reason) == (Outcome.FAILED, 1, "FAIL b: lost 1")
    dry = decide([Check("a", SKIPPED)], failed=False, dry_run=True)
    assert (dry.outcome, dry.exit_code, dry.label) == (Outcome.DRY_RUN, 0, "DRY RUN")


def test_a_run_that_checked_nothing_is_not_a_pass() -> None:
    for checks in ([], [Check("restore from snapshot", CheckStatus.NOT_REQUESTED)]):
        run = decide(checks, failed=False, dry_run=False)
        assert run.outcome is Outcome.NOT_VERIFIED
        assert run.reason == "the run recorded no check"
    # not requested is not unverified when something else ran
    assert (
        decide(
            [Check("pitr", PASSED), Check("snapshot", CheckStatus.NOT_REQUESTED)], failed=False, dry_run=False
        ).outcome
        is Outcome.PASSED
    )
    # allow_unverified does not turn "nothing checked" into an accepted run by accident of an empty list
    assert decide([], failed=False, dry_run=False, allow_unverified=True).accepted is True


def test_a_name_seen_twice_keeps_its_worst_status() -> None:
    merged = outcome.merge([Check("probe", PASSED), Check("probe", SKIPPED, "x"), Check("roles", PASSED)])
    assert merged == [Check("probe", SKIPPED, "x"), Check("roles", PASSED)]


def test_batch_exit_code_and_summary_round_trip() -> None:
    p, f, n = (
        RunOutcome(Outcome.PASSED),
        RunOutcome(Outcome.FAILED),
        RunOutcome(Outcome.NOT_VERIFIED, unverified=("x",)),
    )
    assert outcome.batch_exit_code([p, n]) == 3
    assert outcome.batch_exit_code([n, f, p]) == 1
    assert outcome.batch_exit_code([p, RunOutcome(Outcome.DRY_RUN)]) == 0
    run = decide([Check("lag", SKIPPED, "why")], failed=False, dry_run=False, allow_unverified=True)
    back = outcome.of_summary(json.loads(json.dumps(run.summary())))
    assert (back.outcome, back.unverified, back.allowed_unverified, back.exit_code) == (
        Outcome.NOT_VERIFIED,
        ("lag",),
        True,
        0,
    )
    assert outcome.of_summary({"outcome": "succeeded"}).outcome is Outcome.NOT_VERIFIED  # records from before


def test_exit_codes_are_documented_where_operators_look() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "| 3 |" in readme
    assert "--allow-unverified" in readme
    assert [o.exit_code for o in Outcome] == [0, 1, 3, 0]
    assert outcome.EXIT_REFUSED == 2


def test_the_outcome_modules_import_without_the_notebook_stack() -> None:
    code = (
        "import sys, aurora_kit.outcome, aurora_kit.figures, aurora_kit.banner, aurora_kit.report; "
        "print(sorted(m for m in ('pydantic', 'boto3', 'psycopg', 'IPython', 'papermill', 'yaml') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- traces in the notebook ----------------------------------------------------------------------------------------
@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the kernel would display (outside a kernel, runbook._display prints text/plain)."""
    import aurora_kit.runbook as runbook

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(runbook, "_display", seen.append)
    return seen


def _as_notebook(displays: list[dict[str, Any]]) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("wf.verify(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data=d) for d in displays]
    return nbformat.v4.new_notebook(cells=[cell])


def test_verify_leaves_one_trace_per_check_with_its_verdict_line(shown: list[dict[str, Any]]) -> None:
    wf.verify(Findings("roles", {"n": 3}, [], judged_against="3 instances"))
    wf.verify(wf.Skipped("replica lag", "data plane not reachable: no route"))
    wf.verify(wf.Skipped.not_requested("restore from snapshot", "restore_mode: pitr"))
    with pytest.raises(VerificationError):
        wf.verify(Findings("write probe", {"lost": 1}, ["1 acknowledged commit lost"]))
    traces = [d for d in shown if outcome.CHECK_MIME in d]
    assert [d["text/plain"] for d in traces] == [
        "PASS roles (3 instances)",
        "NOT VERIFIED replica lag: data plane not reachable: no route",
        "NOT REQUESTED restore from snapshot: restore_mode: pitr",
        "FAIL write probe: 1 acknowledged commit lost",
    ]
    assert "color:#bf8700" in traces[1]["text/html"]  # amber, not green
    checks = checks_in(_as_notebook(shown))
    assert [(c.name, c.status) for c in checks] == [
        ("roles", PASSED),
        ("replica lag", SKIPPED),
        ("restore from snapshot", CheckStatus.NOT_REQUESTED),
        ("write probe", FAILED),
    ]


def test_recorded_results_are_rounded_for_people_and_raw_for_the_record(shown: list[dict[str, Any]]) -> None:
    from aurora_kit.runbook import RESULT_MIME, record_result

    record_result("failover", {"rto_s": 0.14047528100002182, "lost_commits": 0})
    assert shown[-1][RESULT_MIME]["value"]["rto_s"] == 0.14047528100002182
    assert shown[-1]["text/plain"] == "failover = rto_s=0.140, lost_commits=0"
    assert "0.14047" not in shown[-1]["text/html"]


def test_plot_returns_nothing_so_a_cell_shows_no_repr(capsys: pytest.CaptureFixture[str]) -> None:
    assert wf.plot(wf.Skipped("write probe", "dry run")) is None
    assert "nothing to plot" in capsys.readouterr().out


# -- key figures and the banner ------------------------------------------------------------------------------------
RESULTS = {
    "06-failover": {"failover": {"rto_s": 0.14047528100002182, "lost_commits": 0, "new_writer": "ak-local-3"}},
    "03-extensions": {
        "pgvector_proof": {"best_recall": 0.998, "best_speedup": 19.46},
        "extension": {"installed": "0.8.5"},
    },
    "04-verify-read-write": {"lag": {"worst_p99_ms": 3.04}, "round_trip": {"visible_after_s": 0.0113}},
    "05-backup-restore": {
        "pitr_restore": {
            "missing_count": 0,
            "rows_after_cutoff": 0,
            "extra_count": 0,
            "expected_checksum": "a",
            "restored_checksum": "a",
        },
        "snapshot_restore": {"tables_compared": 5, "tables_matching": 5},
    },
    "07-monitoring": {"alarms": {"states": {"OK": 8, "ALARM": 1}}},
    "99-teardown": {"gone": {"exists": False}, "final_snapshot": None},
    "01-create-cluster": {"cluster": {"writer": "ak-local-1", "readers": ["ak-local-2"], "status": "available"}},
    "02-configure-parameters": {"changes": [{}, {}], "reboot": {"rebooted": ["ak-local-2"], "still_pending": []}},
    "08-scale": {
        "scale": {
            "class_change_gap_s": 0.2318,
            "class_change_lost_commits": 0,
            "added": ["ak-local-4"],
            "autoscaling_added": ["application-autoscaling-1a2b3c4d"],
        }
    },
    "09-proxy": {
        "proxy": {
            "planned": {"proxy_gap_s": 0.4104, "cluster_endpoint_gap_s": 0.4251, "reduction": 0.035},
            "multiplexing_ratio": 4.0,
        }
    },
}


def test_key_figures_of_every_runbook_raw_in_the_record_rounded_for_people() -> None:
    assert set(RESULTS) == set(figures.KEY_FIGURES)
    got = {name: figures.key_figures(name, results) for name, results in RESULTS.items()}
    assert got["06-failover"] == {"rto_s": 0.14047528100002182, "lost_commits": 0, "new_writer": "ak-local-3"}
    assert figures.one_line("06-failover", got["06-failover"]) == "RTO 0.140 s · lost commits 0 · new writer ak-local-3"
    assert (
        figures.one_line("03-extensions", got["03-extensions"], limit=2) == "recall@k 0.998 · speed-up vs exact 19.5×"
    )
    assert figures.one_line("04-verify-read-write", got["04-verify-read-write"]).startswith("replica lag p99 3.0 ms")
    assert got["05-backup-restore"] == {"pitr_exact": True, "snapshot_tables_identical": "5/5"}
    assert got["07-monitoring"] == {"alarms": 9, "firing": 1}
    assert got["99-teardown"] == {"deleted": True, "final_snapshot": "none"}
    assert figures.one_line("08-scale", got["08-scale"], limit=2) == "class change write gap 0.232 s · lost commits 0"
    assert figures.one_line("09-proxy", got["09-proxy"]) == (
        "write gap via proxy 0.410 s · via cluster endpoint 0.425 s · multiplexing 4.0×"
    )
    assert figures.one_line("02-configure-parameters", got["02-configure-parameters"]).endswith(
        "still pending reboot none"
    )
    # a skipped measurement is absent, never zero
    assert figures.key_figures("06-failover", {"failover": {"write_probe": "skipped (dry run)"}}) == {}
    assert figures.key_figures("04-verify-read-write", {"lag": "skipped (data plane not reachable)"}) == {}


def test_display_rounds_for_people() -> None:
    assert quantity(0.14047528100002182, "s") == "0.140 s"
    assert quantity(67108864, "bytes") == "0.0625 GiB"
    assert quantity(3.5 * 2**30, "bytes") == "3.50 GiB"
    assert quantity(19.46, "x") == "19.5×"
    assert quantity("2026-11-29T07:19:35.12+00:00", "time") == "2026-11-29 07:19:35 UTC"
    assert [duration(s) for s in (0.42, 192, 3725)] == ["0.4 s", "3 min 12 s", "1 h 02 min"]


def _summary(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "run_id": "20261129T070821Z-06-failover-abc123",
        "runbook": "06-failover",
        "operator": "dba-alice",
        "host": "bastion",
        "started_at": T0.isoformat(),
        "ended_at": (T0 + timedelta(seconds=4.4)).isoformat(),
        "duration_s": 4.4,
        "backend": "local",
        "parameters": {"cluster_id": "ak-local", "backend": "local", "confirm": True, "dry_run": False},
        "parameters_file": "parameters/local.yaml",
        "overrides": ["confirm=true"],
        **decide([Check("write probe", PASSED)], failed=False, dry_run=False).summary(),
        "key_figures": figures.key_figures("06-failover", RESULTS["06-failover"]),
        "failure": None,
    }
    return base | changes


def test_the_banner_says_outcome_cluster_operator_times_and_key_figures() -> None:
    html = banner.banner_html(_summary())
    for text in (
        ">PASS<",
        "06-failover",
        "ak-local",
        "dba-alice@bastion",
        "2026-11-29 07:08:21 UTC",
        "2026-11-29 07:08:25 UTC",
        "4.4 s",
        "0.140 s",
        "lost commits",
        "parameters/local.yaml -p confirm=true",
    ):
        assert text in html, text
    assert "data-outcome='passed'" in html
    assert "#1a7f37" in html
    assert "\n\n" not in html  # one HTML block: markdown renders it as is
    unverified = _summary(**decide([Check("write probe", SKIPPED, "no route")], failed=False, dry_run=False).summary())
    html = banner.banner_html(unverified)
    assert ">NOT VERIFIED<" in html
    assert "<li>write probe</li>" in html
    accepted = _summary(**decide([Check("x", SKIPPED)], failed=False, dry_run=False, allow_unverified=True).summary())
    assert "NOT VERIFIED (accepted)" in banner.banner_html(accepted)
    assert "accepted with --allow-unverified" in banner.banner_html(accepted)
    failed = _summary(
        outcome="failed", failure={"code_cell_number": 3, "ename": "ClusterNotFoundError", "evalue": "gone"}
    )
    assert "failed in code cell #3: ClusterNotFoundError: gone" in banner.banner_html(failed)


def test_dress_puts_the_banner_first_and_marks_the_defaults_cell() -> None:
    params_cell = nbformat.v4.new_code_cell("cluster_id = 'ak-local'")
    params_cell.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("cluster_id = 'prod'")
    injected.metadata["tags"] = ["injected-parameters"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 06"), params_cell, injected])
    banner.dress(nb, _summary())
    banner.dress(nb, _summary(outcome="failed"))  # sealing again replaces it
    assert [c.metadata.get("tags") for c in nb.cells][:1] == [[banner.BANNER_TAG]]
    assert len(nb.cells) == 4
    assert ">FAIL<" in nb.cells[0].source
    assert nb.cells[2].source == f"{banner.DEFAULTS_MARK}\ncluster_id = 'ak-local'"
    nbformat.validate(nb)


# -- the terminal --------------------------------------------------------------------------------------------------
def _result(status: str, **kw: Any) -> RunResult:
    judged = kw.pop("outcome", None) or RunOutcome(Outcome(status))
    return RunResult("06-failover", status, record_dir=Path("/audit/x"), duration_s=4.4, outcome=judged, **kw)


def test_one_or_two_lines_per_runbook_and_the_plan_of_a_dry_run() -> None:
    out = io.StringIO()
    terminal = Terminal(out)
    terminal.finished(_result("passed", key_figures={"rto_s": 0.14047, "lost_commits": 0}))
    terminal.finished(
        _result(
            "not verified",
            outcome=decide([Check("write probe", SKIPPED)], failed=False, dry_run=False),
        )
    )
    terminal.finished(
        _result(
            "dry run",
            plan=[{"service": "rds", "call": "FailoverDBCluster", "parameters": {"DBClusterIdentifier": "ak"}}],
        )
    )
    terminal.closing(
        [_result("passed"), _result("not verified", outcome=RunOutcome(Outcome.NOT_VERIFIED, unverified=("x",)))],
        Path("/audit dir"),
    )
    text = out.getvalue()
    assert re.search(r"PASS +06-failover +4.4 s +RTO 0.140 s · lost commits 0\n +record: /audit/x", text)
    assert re.search(r"NOT VERIFIED +06-failover .*not verified: write probe", text)
    assert re.search(
        r"DRY RUN .*\n +plan: 1 mutating call\(s\), none made\n +# +service +call +target +parameters", text
    )
    assert re.search(r"1 +rds +FailoverDBCluster +ak\n", text)
    assert "exit 3: checks not verified (--allow-unverified accepts them)" in text
    assert "aurora-kit audit verify --audit-dir '/audit dir'" in text
    assert exit_code([_result("failed"), _result("passed")]) == 1


def test_progress_of_a_wait_in_a_log_is_a_line_per_state(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    terminal = Terminal(out)
    payload = {"what": "cluster ak available", "state": "creating", "elapsed_s": 61.0, "timeout_s": 3600, "events": []}
    terminal.progress(payload)
    terminal.progress(payload | {"elapsed_s": 62.0})  # same state: nothing new for a log
    terminal.progress(payload | {"state": "available", "done": "done", "events": ["07:10:02 ak: DB cluster created"]})
    lines = out.getvalue().splitlines()
    assert lines == [
        " " * 16 + "waiting for cluster ak available: creating · 1 min 01 s of 1 h 00 min",
        " " * 16
        + "waited 1 min 01 s for cluster ak available: available · last event: 07:10:02 ak: DB cluster created",
    ]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_long_wait_shows_progress_with_events_a_quick_one_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    clock = _Clock()
    states = iter(["creating"] * 8 + ["available"])
    polling.wait_for("x up", lambda: "up", lambda s: True, progress=True, clock=clock, sleep=clock.sleep)
    assert capsys.readouterr().err == ""  # quick: no trace
    polling.wait_for(
        "cluster ak available",
        lambda: next(states),
        lambda s: s == "available",
        describe=str,
        progress=True,
        initial_delay=1.0,
        backoff=1.0,
        events=lambda: ["07:10:02 ak: DB cluster created"],
        clock=clock,
        sleep=clock.sleep,
    )
    err = capsys.readouterr().err
    assert (
        err.strip() == "waited 8.0 s for cluster ak available: available · last event: 07:10:02 ak: DB cluster created"
    )

    def broken() -> list[str]:
        raise PermissionError("rds:DescribeEvents denied")

    states = iter(["creating"] * 3 + ["available"])
    polling.wait_for(
        "y",
        lambda: next(states),
        lambda s: s == "available",
        describe=str,
        progress=True,
        initial_delay=1.0,
        backoff=1.0,
        events=broken,
        clock=clock,
        sleep=clock.sleep,
    )
    assert "waited 3.0 s for y: available" in capsys.readouterr().err  # events failing never break a wait


# -- the CLI -------------------------------------------------------------------------------------------------------
def test_no_arguments_prints_the_commands_and_version_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("local", "run", "audit", "exit codes"):
        assert command in out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert re.fullmatch(r"aurora-kit \d+\.\d+\.\d+\n", capsys.readouterr().out)


def test_local_up_help_shows_its_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["local", "up", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: ak-local)" in out
    assert "(default: 2)" in out


def test_local_down_names_the_cli_flag_not_the_python_argument() -> None:
    assert "--force" in str(DeletionProtectionError("ak"))
    assert "lift_deletion_protection=True" not in str(DeletionProtectionError("ak"))
    assert "-p teardown.lift_deletion_protection=true" in str(DeletionProtectionError("ak"))


def _record(root: Path, runbook: str, n: int, judged: RunOutcome, figures_: dict[str, Any]) -> None:
    record = audit.RunRecord(root, new_run_id(runbook, T0 + timedelta(minutes=n)), runbook).create()
    nbformat.write(nbformat.v4.new_notebook(), str(record.notebook))
    summary = audit.build_summary(
        record,
        notebook_path=Path(f"runbooks/{runbook}.ipynb"),
        parameters={"cluster_id": "ak-local", "backend": "local"},
        started_at=T0,
        ended_at=T0 + timedelta(seconds=n + 1.5),
        outcome=audit.Outcome(judged, None, {}, figures_),
        operator="dba-alice",
        redactor=Redactor([]),
    )
    audit.seal(record, summary)


@pytest.fixture
def records(tmp_path: Path) -> Path:
    root = tmp_path / "audit"
    _record(root, "06-failover", 0, RunOutcome(Outcome.PASSED), {"rto_s": 0.14047, "lost_commits": 0})
    _record(root, "04-verify-read-write", 1, RunOutcome(Outcome.NOT_VERIFIED, unverified=("endpoint roles",)), {})
    _record(root, "06-failover", 2, RunOutcome(Outcome.FAILED), {})
    return root


def test_audit_list_has_a_header_duration_cluster_outcome_and_key_figure(
    records: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "list", "--audit-dir", str(records)]) == 0  # --audit-dir after the action works
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "started",
        "runbook",
        "outcome",
        "duration",
        "cluster",
        "key",
        "figures",
        "operator",
        "run",
        "id",
    ]
    assert re.search(r"06-failover +PASS +1.5 s +ak-local \(local\) +RTO 0.140 s · lost commits 0 +dba-alice", lines[2])
    assert re.search(r"04-verify-read-write +NOT VERIFIED +2.5 s .*not verified: endpoint roles", lines[3])
    assert re.search(r"06-failover +FAIL +3.5 s", lines[4])


def test_audit_show_accepts_latest_a_runbook_or_a_run_id(records: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = audit.read_index(records)
    assert main(["audit", "show", "latest", "--audit-dir", str(records)]) == 0
    assert f"run id: {entries[2]['run_id']}" in capsys.readouterr().out
    assert main(["audit", "--audit-dir", str(records), "show", "04"]) == 0
    shown_ = capsys.readouterr().out
    assert f"run id: {entries[1]['run_id']}" in shown_
    assert "NOT VERIFIED (not verified, exit 3)" in shown_
    assert main(["audit", "show", "06-failover", "--audit-dir", str(records)]) == 0  # its latest run
    assert f"run id: {entries[2]['run_id']}" in capsys.readouterr().out
    assert main(["audit", "show", entries[0]["run_id"][:30], "--audit-dir", str(records)]) == 0
    assert "RTO 0.140 s" in capsys.readouterr().out
    assert main(["audit", "show", "07", "--audit-dir", str(records)]) == 2
    assert main(["audit", "verify", "--audit-dir", str(records)]) == 0


def test_a_step_that_cannot_run_names_the_check_its_result_would_have() -> None:
    from aurora_kit.checks.endpoints import EndpointRoleReport, InstanceRolesReport
    from aurora_kit.checks.lag import ReplicaLagReport
    from aurora_kit.checks.pooling import PoolCheckReport
    from aurora_kit.checks.restore import PitrReport, RestoreReport
    from aurora_kit.checks.roundtrip import RoundTripReport
    from aurora_kit.checks.settings import SettingsReport
    from aurora_kit.checks.vector import ExtensionReport, VectorProofReport
    from aurora_kit.steps import backup, extensions, failover, parameters, readwrite

    produces = {
        readwrite.endpoint_roles: EndpointRoleReport,
        readwrite.instance_roles: InstanceRolesReport,
        failover.instance_roles: InstanceRolesReport,
        readwrite.round_trip: RoundTripReport,
        readwrite.replica_lag: ReplicaLagReport,
        readwrite.pool: PoolCheckReport,
        extensions.install_pgvector: ExtensionReport,
        extensions.prove_pgvector: VectorProofReport,
        parameters.settings: SettingsReport,
        backup.verify_snapshot_restore: RestoreReport,
        backup.verify_pitr: PitrReport,
    }
    down = wf.DataPlane(False, "no route")
    for step, report in produces.items():
        assert step.check_title == report.title, step  # type: ignore[attr-defined]
        assert wf.when(down, step).what == report.title


def test_the_kernel_is_not_interrupted_when_it_is_shut_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """jupyter_client sends SIGINT before its shutdown request; landing in a message handler it makes ipykernel log
    'ERROR | KeyboardInterrupt caught in kernel' after runs that went well. The engine's manager skips it then."""
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    from aurora_kit.engine import _kernel_manager_class

    sent: list[str] = []

    async def interrupt(self: Any) -> None:
        sent.append("SIGINT")

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", interrupt)
    manager = _kernel_manager_class()()
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())
    assert sent == []
    manager.shutting_down = False  # a timeout's interrupt during a cell still goes through
    asyncio.run(manager._async_interrupt_kernel())
    assert sent == ["SIGINT"]


def test_printed_commands_name_aurora_kit_as_it_was_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make rehearse` starts .venv/bin/aurora-kit, which is not on PATH: the printed command must say that path."""
    from aurora_kit.report import command_name

    script = tmp_path / "venv bin" / "aurora-kit"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "run"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert command_name() == shlex.quote(str(script))  # quoted: a space in the path
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin")
    assert command_name() == "aurora-kit"  # what PATH finds is the one running
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/dist-packages/pytest", "-q"])
    assert command_name() == "aurora-kit"
