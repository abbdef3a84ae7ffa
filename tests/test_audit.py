"""Audit records: hash-chained index, tamper detection, and the ``aurora-kit audit`` commands."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest

from aurora_kit import audit
from aurora_kit.backends.base import REDACTED
from aurora_kit.cli import main
from aurora_kit.outcome import Outcome, RunOutcome
from aurora_kit.redaction import Redactor
from aurora_kit.runbook import RESULT_MIME, new_run_id

T0 = datetime(2026, 11, 26, 22, 0, tzinfo=timezone.utc)


def _record(root: Path, runbook: str, n: int, outcome: str = "passed") -> audit.RunRecord:
    record = audit.RunRecord(root, new_run_id(runbook, T0 + timedelta(minutes=n)), runbook).create()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = {n}")])
    nbformat.write(nb, str(record.notebook))
    record.html.write_text(f"<html>{n}</html>")
    summary = audit.build_summary(
        record,
        notebook_path=Path(f"runbooks/{runbook}.ipynb"),
        parameters={"cluster_id": "ak-local", "master_password": "hunter2", "aws": {"profile": None}},
        started_at=T0,
        ended_at=T0 + timedelta(seconds=n + 1),
        outcome=audit.Outcome(RunOutcome(Outcome(outcome)), None, {"rto_seconds": 0.5 * n}, {"rto_s": 0.14047 * n}),
        operator="dba-alice",
        redactor=Redactor(["hunter2"]),
    )
    audit.seal(record, summary)
    return record


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "audit"
    for n, name in enumerate(("01-create-cluster", "06-failover", "99-teardown")):
        _record(root, name, n)
    return root


def test_chain_of_three_verifies(root: Path) -> None:
    result = audit.verify(root)
    assert result.ok, result.problems
    assert result.entries == 3
    entries = audit.read_index(root)
    assert entries[0]["prev"] == audit.GENESIS
    assert [e["prev"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    assert result.head == entries[-1]["hash"]
    assert set(entries[0]["files"]) == {"01-create-cluster.ipynb", "01-create-cluster.html", "summary.json"}


def test_summary_has_the_run_facts_and_no_secret(root: Path) -> None:
    entry = audit.read_index(root)[1]
    summary = json.loads((root / entry["dir"] / "summary.json").read_text())
    assert summary["parameters"]["master_password"] == REDACTED
    assert "hunter2" not in (root / entry["dir"] / "summary.json").read_text()
    assert summary["operator"] == "dba-alice"
    assert summary["duration_s"] == 2.0
    assert summary["results"] == {"rto_seconds": 0.5}
    assert set(summary) >= {"run_id", "host", "started_at", "ended_at", "outcome", "git", "versions", "runbook"}


@pytest.mark.parametrize("name", ["06-failover.ipynb", "06-failover.html", "summary.json"])
def test_verify_detects_an_edited_record_file(root: Path, name: str) -> None:
    entry = audit.read_index(root)[1]
    path = root / entry["dir"] / name
    path.write_text(path.read_text().replace("1", "7", 1) + " ")
    result = audit.verify(root)
    assert not result.ok
    assert result.problems == [f"{entry['run_id']}: {name} was modified after the record was sealed"]


def test_verify_detects_a_deleted_or_added_file(root: Path) -> None:
    entry = audit.read_index(root)[0]
    (root / entry["dir"] / "01-create-cluster.html").unlink()
    (root / entry["dir"] / "notes.txt").write_text("added later")
    problems = audit.verify(root).problems
    assert any("01-create-cluster.html is missing" in p for p in problems)
    assert any("files added after sealing: notes.txt" in p for p in problems)


def test_verify_detects_an_edited_index_entry(root: Path) -> None:
    index = root / audit.INDEX
    lines = index.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["outcome"] = "passed" if entry["outcome"] == "failed" else "failed"
    lines[1] = json.dumps(entry, sort_keys=True)
    index.write_text("\n".join(lines) + "\n")
    problems = audit.verify(root).problems
    assert any("index entry edited" in p for p in problems)


@pytest.mark.parametrize("files", ["drop", None, "not-a-mapping", ["06-failover.ipynb"]])
def test_verify_reports_an_entry_without_a_file_list_instead_of_crashing(root: Path, files: Any) -> None:
    index = root / audit.INDEX
    lines = index.read_text().splitlines()
    entry = json.loads(lines[1])
    if files == "drop":
        del entry["files"]
    else:
        entry["files"] = files
    entry["hash"] = audit.entry_hash(entry)  # a careful forger rehashes the entry...
    lines[1] = json.dumps(entry, sort_keys=True)
    index.write_text("\n".join(lines) + "\n")
    result = audit.verify(root)
    assert not result.ok
    assert any("no file list" in p for p in result.problems), result.problems
    assert any("chain broken" in p for p in result.problems)  # ...but the next entry still names the old hash


@pytest.mark.parametrize("line", ["[1, 2]", '"an entry"', "42", "null"])
def test_verify_reports_an_index_line_that_is_not_an_object(root: Path, line: str) -> None:
    index = root / audit.INDEX
    lines = index.read_text().splitlines()
    lines[1] = line
    index.write_text("\n".join(lines) + "\n")
    result = audit.verify(root)
    assert result.entries == 3
    assert "index line 2: not a JSON object (edited?)" in result.problems
    assert any("chain broken" in p for p in result.problems)


def test_verify_detects_a_removed_entry(root: Path) -> None:
    index = root / audit.INDEX
    lines = index.read_text().splitlines()
    index.write_text("\n".join([lines[0], lines[2]]) + "\n")
    problems = audit.verify(root).problems
    assert any("chain broken" in p for p in problems)


def test_verify_detects_a_rewritten_tail_against_the_noted_head(root: Path) -> None:
    head = audit.verify(root).head
    index = root / audit.INDEX
    lines = index.read_text().splitlines()
    dropped = json.loads(lines[2])["run_id"]
    index.write_text("\n".join(lines[:2]) + "\n")  # last entry dropped: the rest still chains
    cut = audit.verify(root)  # its sealed folder is still there: the index was cut
    assert not cut.ok
    assert cut.first_suspect == dropped
    with_head = audit.verify(root, expect_head=head)
    assert any("the noted head" in p and "is in no entry" in p for p in with_head.problems)
    shutil.rmtree(root / dropped)  # folder gone too: only the noted head can tell
    assert audit.verify(root).ok
    assert not audit.verify(root, expect_head=head).ok


def test_a_deleted_index_is_tampering_not_an_empty_trail(root: Path) -> None:
    (root / audit.INDEX).unlink()
    result = audit.verify(root)
    assert not result.ok
    assert "index.jsonl is missing while 3 record folder(s) exist" in result.problems[0]


def test_a_noted_head_followed_by_new_runs_is_fine(root: Path) -> None:
    entries = audit.read_index(root)
    result = audit.verify(root, expect_head=entries[0]["hash"])
    assert result.ok
    assert result.notes == [f"2 run(s) sealed after the noted head, the first {entries[1]['run_id']}"]


def test_the_sink_anchors_the_head_and_names_the_first_rewritten_record(tmp_path: Path) -> None:
    sink = tmp_path / "heads.log"
    root = tmp_path / "audit"
    for n in range(3):
        rec = audit.RunRecord(root, f"20261126T22000{n}Z-06-failover-{n:06x}", "06-failover").create()
        (rec.dir / "06-failover.ipynb").write_text("{}")
        audit.seal(rec, {"run_id": rec.run_id, "outcome": "passed", "started_at": "x", "operator": "o"}, sink=str(sink))
    assert len(sink.read_text().splitlines()) == 3
    assert audit.verify(root, sink=sink).ok
    entries = audit.read_index(root)
    # rewrite the last two entries consistently (recompute the chain) after editing the second record
    second = root / entries[1]["dir"] / "06-failover.ipynb"
    second.write_text('{"edited": true}')
    prev = entries[0]["hash"]
    for e in entries[1:]:
        e["files"] = {p.name: audit.sha256_file(p) for p in sorted((root / e["dir"]).iterdir())}
        e["prev"] = prev
        e["hash"] = audit.entry_hash(e)
        prev = e["hash"]
    (root / audit.INDEX).write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
    assert audit.verify(root).ok  # a consistent rewrite fools the chain alone
    anchored = audit.verify(root, sink=sink)
    assert not anchored.ok
    assert anchored.first_suspect == entries[1]["run_id"]


def test_an_audit_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    from aurora_kit.errors import InvalidParameterError

    file = tmp_path / "records"
    file.write_text("x")
    with pytest.raises(InvalidParameterError, match="is a file, not a folder"):
        audit.audit_root(file)


def test_results_and_failure_are_read_from_the_notebook() -> None:
    nb = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("record")
    ok.outputs = [
        nbformat.v4.new_output("display_data", data={RESULT_MIME: {"name": "lag_ms", "value": 3}}),
        nbformat.v4.new_output("display_data", data={RESULT_MIME: {"name": "lag_ms", "value": 4}}),
    ]
    bad = nbformat.v4.new_code_cell("raise X")
    bad.execution_count = 2
    bad.outputs = [nbformat.v4.new_output("error", ename="VerificationError", evalue="lost 1", traceback=[])]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), ok, bad]
    assert audit.collect_results(nb) == {"lag_ms": 4}
    failure = audit.failure_of(nb)
    assert failure is not None
    assert (failure["cell_index"], failure["code_cell_number"], failure["ename"]) == (2, 2, "VerificationError")
    nb.cells = nb.cells[:2]
    assert audit.failure_of(nb) is None


def test_audit_dir_default_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(audit.AUDIT_DIR_ENV, raising=False)
    assert audit.audit_root() == audit.PROJECT_ROOT / "audit"
    monkeypatch.setenv(audit.AUDIT_DIR_ENV, str(tmp_path))
    assert audit.audit_root() == tmp_path
    assert audit.audit_root(tmp_path / "x") == tmp_path / "x"


def test_audit_dir_is_git_ignored() -> None:
    ignored = (audit.PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert "audit/" in ignored


def test_cli_list_show_verify(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--audit-dir", str(root), "list"]) == 0
    listing = capsys.readouterr().out
    entries = audit.read_index(root)
    assert all(e["run_id"] in listing for e in entries)
    assert main(["audit", "--audit-dir", str(root), "show", entries[1]["run_id"][:28]]) == 0
    shown = capsys.readouterr().out
    assert "06-failover" in shown
    assert "rto_seconds = 0.5" in shown
    assert main(["audit", "--audit-dir", str(root), "verify"]) == 0
    assert "audit chain intact" in capsys.readouterr().out
    (root / entries[2]["dir"] / "summary.json").write_text("{}")
    assert main(["audit", "--audit-dir", str(root), "verify"]) == 1
    assert "TAMPERED" in capsys.readouterr().out
    assert main(["audit", "--audit-dir", str(root), "show", "nope"]) == 2


def test_an_interrupted_run_shows_as_unsealed(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "20261126T230000Z-05-backup-restore-abcdef").mkdir()
    assert audit.unsealed(root) == ["20261126T230000Z-05-backup-restore-abcdef"]
    assert main(["audit", "--audit-dir", str(root), "list"]) == 0
    assert re.search(r"05-backup-restore-abcdef +unsealed", capsys.readouterr().out)
    assert audit.verify(root).ok  # not tampering: nothing was sealed


def test_a_refused_run_leaves_a_sealed_record_of_the_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aurora_kit.cli import main

    audit_dir = tmp_path / "audit"
    local = Path(__file__).resolve().parents[1] / "parameters" / "local.yaml"
    sentinel = "Sentinel-pw-7731"
    code = main(["run", "04", "-f", str(local), "-p", f"master_password={sentinel}", "--audit-dir", str(audit_dir)])
    assert code == 2
    (entry,) = audit.read_index(audit_dir)
    assert entry["outcome"] == "refused"
    summary = json.loads((audit_dir / entry["dir"] / audit.SUMMARY).read_text())
    assert summary["kind"] == "refusal"
    assert "master_password" in summary["reason"]
    assert summary["request"]["runbook"] == "04"
    assert summary["operator"]
    assert sentinel not in json.dumps(summary)
    assert audit.verify(audit_dir).ok
    capsys.readouterr()
    assert main(["audit", "list", "--audit-dir", str(audit_dir)]) == 0
    assert "REFUSED" in capsys.readouterr().out
    assert sentinel not in capsys.readouterr().err
