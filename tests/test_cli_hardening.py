"""Hardening through the command a user types (``aurora-kit``): unusable inputs end in one message and exit 2, never
a traceback; the audit head can be noted and anchored outside the folder (``audit head``, ``--audit-sink``) and a
rewritten chain is then caught by ``audit verify``. No kernel starts: every run here is refused before one would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aurora_kit import audit
from aurora_kit.cli import main

LOCAL = Path(__file__).resolve().parents[1] / "parameters" / "local.yaml"


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the command; it must refuse (exit 2) with one message naming the problem, no traceback."""
    assert main(argv) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert "aurora-kit: error:" in out.err
    return out.err


def test_a_parameters_path_that_is_a_directory_is_refused_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(capsys, ["run", "04", "-f", str(tmp_path), "--audit-dir", str(tmp_path / "audit")])
    assert str(tmp_path) in err
    assert "directory" in err


def test_a_parameters_file_that_is_not_utf8_is_refused_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(LOCAL.read_bytes() + "# caf\u00e9\n".encode("latin-1"))
    err = _refused(capsys, ["run", "04", "-f", str(latin), "--audit-dir", str(tmp_path / "audit")])
    assert "UTF-8" in err
    assert "latin.yaml" in err


def test_an_audit_dir_that_is_a_file_is_refused_by_run_and_by_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "records"
    file.write_text("not a folder")
    err = _refused(capsys, ["run", "04", "-f", str(LOCAL), "--audit-dir", str(file)])
    assert "is a file, not a folder" in err
    for command in (["audit", "list"], ["audit", "verify"], ["audit", "head"]):
        assert "is a file, not a folder" in _refused(capsys, [*command, "--audit-dir", str(file)])
    assert file.read_text() == "not a folder"  # untouched


def test_audit_head_prints_the_head_that_verify_accepts_and_a_rewritten_tail_is_caught_by_the_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_dir, sink = tmp_path / "audit", tmp_path / "anchor.log"
    # two refused runs: each seals a record of its refusal into the chain and notes its head in the sink
    for value in ("-1", "99"):
        _refused(
            capsys,
            [
                "run",
                "04",
                "-f",
                str(LOCAL),
                "-p",
                f"backup_retention_period={value}",
                "--audit-dir",
                str(audit_dir),
                "--audit-sink",
                str(sink),
            ],
        )
    entries = audit.read_index(audit_dir)
    assert len(entries) == 2
    noted = sink.read_text().splitlines()
    assert len(noted) == 2
    assert entries[-1]["hash"] in noted[-1]

    assert main(["audit", "head", "--audit-dir", str(audit_dir)]) == 0
    head = capsys.readouterr().out.split()[0]
    assert head == entries[-1]["hash"]
    assert main(["audit", "verify", "--audit-dir", str(audit_dir), "--expect-head", head, "--sink", str(sink)]) == 0
    assert "audit chain intact" in capsys.readouterr().out

    # rewrite the last record and re-hash the chain's tail consistently: the chain alone is fooled, the sink is not
    last = entries[-1]
    summary_path = audit_dir / last["dir"] / audit.SUMMARY
    summary = json.loads(summary_path.read_text())
    summary["reason"] = "nothing was refused"
    summary_path.write_text(json.dumps(summary))
    last["files"] = {p.name: audit.sha256_file(p) for p in sorted((audit_dir / last["dir"]).iterdir())}
    last["hash"] = audit.entry_hash(last)
    (audit_dir / audit.INDEX).write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
    assert main(["audit", "verify", "--audit-dir", str(audit_dir)]) == 0  # the chain alone cannot tell
    capsys.readouterr()
    assert main(["audit", "verify", "--audit-dir", str(audit_dir), "--sink", str(sink)]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED" in out
    assert f"first suspect record: {last['run_id']}" in out
    assert main(["audit", "verify", "--audit-dir", str(audit_dir), "--expect-head", head]) == 1


def test_ctrl_c_says_what_it_leaves_and_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run interrupted with Ctrl-C: no traceback; the message says the record is unsealed and nothing was
    undone; the exit code is the shell's 130."""
    import aurora_kit.commands.audit as audit_command

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_command, "list_records", interrupted)
    assert main(["audit", "list"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err
    assert "left unsealed" in err
    assert "Traceback" not in err
