"""The papermill runner end to end on small notebooks (tests/notebooks/, real python3 kernels): records sealed,
failures marked, secrets kept out of every save. Redaction's own rules: tests/test_redaction.py."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from aurora_kit import audit, params, runner
from aurora_kit.backends.base import REDACTED
from aurora_kit.cli import main
from aurora_kit.errors import InvalidParameterError

pytestmark = pytest.mark.notebooks  # every test here starts a kernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "tests" / "notebooks"
LOCAL = ROOT / "parameters" / "local.yaml"


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


def _only_record(audit_dir: Path) -> tuple[dict[str, Any], Path]:
    entries = audit.read_index(audit_dir)
    assert len(entries) == 1
    record_dir = audit_dir / entries[0]["dir"]
    return json.loads((record_dir / "summary.json").read_text()), record_dir


# -- end to end --------------------------------------------------------------------------------------------------
def test_passing_runbook_leaves_a_sealed_record(
    audit_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AURORA_KIT_OPERATOR", "dba-alice")
    code = main(
        ["run", str(NOTEBOOKS / "passing.ipynb"), "-f", str(LOCAL), "-p", "readers=1", "--audit-dir", str(audit_dir)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    summary, record_dir = _only_record(audit_dir)
    assert f"record: {record_dir}" in out
    assert summary["outcome"] == "passed"
    assert summary["exit_code"] == 0
    assert summary["checks"] == [{"name": "the answer", "status": "passed", "detail": "PASS the answer (answer = 43)"}]
    assert summary["failure"] is None
    assert summary["operator"] == "dba-alice"
    assert summary["results"] == {"answer": 43, "cluster": "ak-local", "readers": 1}  # later value wins
    assert summary["parameters"]["readers"] == 1
    assert summary["versions"]["papermill"]
    assert summary["versions"]["aurora_kit"]
    assert "revision" in summary["git"]
    assert "dirty" in summary["git"]
    assert {p.name for p in record_dir.iterdir()} == {"passing.ipynb", "passing.html", "summary.json"}
    nb = nbformat.read(str(record_dir / "passing.ipynb"), as_version=4)
    assert "aurora-kit-banner" in nb.cells[0].metadata.tags  # the banner first, written when sealed
    header = "".join(o.get("data", {}).get("text/plain", "") for o in nb.cells[4].outputs)
    assert summary["run_id"] in header
    assert "dba-alice" in header
    assert "injected-parameters" in nb.cells[3].metadata.tags
    assert nb.cells[2].source.startswith("# ▲ DEFAULTS of this runbook — OVERRIDDEN")
    assert "answer = 43" in (record_dir / "passing.html").read_text()
    assert audit.verify(audit_dir).ok


def test_failing_runbook_exits_non_zero_marks_the_cell_and_records_failure(
    audit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(NOTEBOOKS / "failing.ipynb"), "-f", str(LOCAL), "--audit-dir", str(audit_dir)])
    out = capsys.readouterr()
    assert code == 1
    summary, record_dir = _only_record(audit_dir)
    assert summary["outcome"] == "failed"
    failure = summary["failure"]
    assert failure["ename"] == "VerificationError"
    assert "3 acknowledged commits lost" in failure["evalue"]
    assert re.search(r"FAIL +failing .* cell #5: VerificationError: 3 acknowledged commits lost", out.out)
    assert str(record_dir) in out.err
    nb = nbformat.read(str(record_dir / "failing.ipynb"), as_version=4)
    failed = nb.cells[failure["cell_index"]]
    assert "raise VerificationError" in failed.source
    assert failed.metadata.papermill.status == "failed"
    assert "aurora-kit-banner" in nb.cells[0].metadata.get("tags", [])  # ours, then papermill's error banner
    assert "papermill-error-cell-tag" in nb.cells[1].metadata.get("tags", [])
    never = nb.cells[failure["cell_index"] + 1]
    assert never.execution_count is None
    assert never.outputs == []
    assert audit.verify(audit_dir).ok


def test_all_stops_at_the_first_failure(
    audit_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fresh_local_root: Path,
) -> None:
    monkeypatch.setenv("AURORA_KIT_HOME", str(fresh_local_root))  # the runner opens the backend first (preflight)
    books = tmp_path / "runbooks"
    books.mkdir()
    for name in params.RUNBOOKS:
        source = "failing" if name == "02-configure-parameters" else "passing"
        shutil.copy(NOTEBOOKS / f"{source}.ipynb", books / f"{name}.ipynb")
    code = main(["run", "--all", "-f", str(LOCAL), "--audit-dir", str(audit_dir), "--runbooks-dir", str(books)])
    out = capsys.readouterr().out
    assert code == 1
    entries = audit.read_index(audit_dir)
    assert [(e["runbook"], e["outcome"]) for e in entries] == [
        ("01-create-cluster", "passed"),
        ("02-configure-parameters", "failed"),
    ]
    for name in params.RUNBOOKS[2:]:
        assert re.search(rf"{name} +not run \(stopped after 02-configure-parameters failed", out)
    batch = {json.loads((audit_dir / e["dir"] / "summary.json").read_text())["batch_id"] for e in entries}
    assert len(batch) == 1
    assert None not in batch


def test_missing_parameters_cell_key_fails_before_any_kernel(audit_dir: Path, tmp_path: Path) -> None:
    nb = nbformat.read(str(NOTEBOOKS / "passing.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("confirm ="))
    broken = tmp_path / "broken.ipynb"
    nbformat.write(nb, str(broken))
    with pytest.raises(InvalidParameterError) as exc:
        runner.run_many([broken], params.load(LOCAL).injected(), audit_dir=audit_dir)
    assert exc.value.field == "confirm"
    assert "parameters cell does not define it" in str(exc.value)
    assert not audit_dir.exists()


def test_invalid_parameters_fail_before_any_kernel(audit_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["run", str(NOTEBOOKS / "passing.ipynb"), "-f", str(LOCAL), "-p", "readers=99", "--audit-dir", str(audit_dir)]
    )
    assert code == 2
    assert "invalid readers=99" in capsys.readouterr().err
    (entry,) = audit.read_index(audit_dir)  # no kernel, no run record: only the refusal's
    assert entry["outcome"] == "refused"
    assert [p.name for p in (audit_dir / entry["dir"]).iterdir()] == ["summary.json"]


def test_resolve_accepts_number_name_or_path(tmp_path: Path) -> None:
    for name in ("06-failover", "07-monitoring"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    assert runner.resolve("06", tmp_path).name == "06-failover.ipynb"
    assert runner.resolve("06-failover", tmp_path).name == "06-failover.ipynb"
    assert runner.resolve(str(tmp_path / "07-monitoring.ipynb"), tmp_path).name == "07-monitoring.ipynb"
    with pytest.raises(InvalidParameterError, match="no such runbook"):
        runner.resolve("05", tmp_path)
    with pytest.raises(InvalidParameterError, match="missing from"):
        runner.resolve_all(tmp_path)


def test_parameters_cell_names_reads_assignments(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("a = 1\nb: int = 2\nc, d = 3, 4\nimport os\ne += 1\n# f = 5\n")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_code_cell("z = 0"), cell]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, str(path))
    assert runner.parameters_cell_names(path) == {"a", "b", "c", "d"}
    nb.cells = [nbformat.v4.new_code_cell("z = 0")]
    nbformat.write(nb, str(path))
    with pytest.raises(InvalidParameterError, match="tagged 'parameters'"):
        runner.parameters_cell_names(path)


# -- secrets never reach disk --------------------------------------------------------------------------------------
def test_secrets_are_redacted_in_every_save_and_in_the_record(
    audit_dir: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import papermill.iorw as iorw

    runtime = "rt-" + secrets.token_hex(8)  # known only to the kernel (registered there as an HMAC)
    env_secret = "env-" + secrets.token_hex(8)  # PGPASSWORD of the run
    param_secret = "par-" + secrets.token_hex(8)  # a secret-looking parameter
    shapes = {  # printed by the kernel in shapes only the patterns recognise (no one registers them)
        "pgpassword": "pg-" + secrets.token_hex(6),
        "json": "js-" + secrets.token_hex(6),
        "uri": "uri-" + secrets.token_hex(6),
        "access_key_id": "AKIA" + secrets.token_hex(8).upper(),
        "secret_access_key": "Ab1" + secrets.token_urlsafe(40).replace("-", "x").replace("_", "Y")[:37],
        "token": "tok-" + secrets.token_hex(6),
        "sig": secrets.token_hex(32),
    }
    monkeypatch.setenv("AK_TEST_VALUE", runtime)
    monkeypatch.setenv("AK_TEST_SHAPES", json.dumps(shapes))
    monkeypatch.setenv("PGPASSWORD", env_secret)
    forbidden = [runtime, env_secret, param_secret, *shapes.values()]
    writes: list[tuple[str, str]] = []
    original = iorw.papermill_io.write

    def spy(buf: str, path: str, *args: Any, **kwargs: Any) -> Any:
        writes.append((path, buf))
        return original(buf, path, *args, **kwargs)

    monkeypatch.setattr(iorw.papermill_io, "write", spy)
    injected = params.load(LOCAL).injected() | {"db_password": param_secret}
    result = runner.run_notebook(NOTEBOOKS / "secret.ipynb", injected, audit_dir=audit_dir)

    assert result.status == "failed"
    assert len(writes) >= 12  # papermill saved at the start and end of every cell
    running_saves = [
        buf
        for _, buf in writes
        for c in json.loads(buf)["cells"]
        if c["metadata"].get("papermill", {}).get("status") == "running" and "time.sleep" in "".join(c["source"])
    ]
    assert running_saves, "no save happened while the slow cell was running"
    for path, buf in writes:
        for secret in forbidden:
            assert secret not in buf, f"{secret!r} written to {path}"
    files = [p for p in audit_dir.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".ipynb", ".html", ".json", ".jsonl"}
    for file in files:
        text = file.read_text(errors="replace")
        for secret in forbidden:
            assert secret not in text, f"{secret!r} in {file}"
    # the cells did run, and their output is there, redacted
    final = writes[-1][1]
    assert f"connecting with {REDACTED}" in final
    assert f"param: {REDACTED}" in final
    assert f"PGPASSWORD={REDACTED} psql" in final
    # the output of a process a cell started reached the terminal (and a cron log) through the runner, redacted
    terminal = capfd.readouterr()
    assert f"child {REDACTED}" in terminal.out
    assert f"PGPASSWORD={REDACTED}" in terminal.err
    for secret in forbidden:
        assert secret not in terminal.out + terminal.err, f"{secret!r} reached the terminal"
    summary = json.loads((result.record_dir / "summary.json").read_text())  # type: ignore[operator]
    assert summary["failure"]["evalue"] == f"authentication failed for password {REDACTED}"
    assert summary["parameters"]["db_password"] == REDACTED
    assert summary["results"]["connection"] == {"user": "app", "note": f"pw {REDACTED}"}


def test_an_error_outside_the_cells_is_redacted_of_kernel_registered_secrets(audit_dir: Path) -> None:
    """The runner's own error text (here nbclient's timeout, which quotes the cell) is redacted with the secrets
    the kernel registered during the run, not only with parameters and patterns."""
    runtime = "rt-" + secrets.token_hex(8)
    nb = nbformat.read(str(NOTEBOOKS / "passing.ipynb"), as_version=4)
    nb.cells[3:] = [
        nbformat.v4.new_code_cell(f'import aurora_kit\n\nlogin = "{runtime}"\naurora_kit.register_secret(login)'),
        nbformat.v4.new_code_cell(f'import time\n\ntime.sleep(60)  # waiting for "{runtime}" to be accepted'),
    ]
    path = audit_dir.parent / "timeout.ipynb"
    nbformat.write(nb, str(path))
    result = runner.run_notebook(path, params.load(LOCAL).injected(), audit_dir=audit_dir, execution_timeout=2)
    assert result.status == "failed"
    assert result.error is not None
    assert "timed out" in result.error
    assert REDACTED in result.error
    summary, record_dir = _only_record(audit_dir)
    assert summary["error"] == result.error
    for file in record_dir.iterdir():
        assert runtime not in file.read_text(errors="replace"), f"the registered secret is in {file.name}"


# -- plain papermill (no runner) -----------------------------------------------------------------------------------
def test_plain_papermill_cli_runs_a_notebook_with_the_parameters_file(tmp_path: Path) -> None:
    papermill = Path(sys.executable).parent / "papermill"
    out = tmp_path / "out.ipynb"
    done = subprocess.run(
        [str(papermill), str(NOTEBOOKS / "passing.ipynb"), str(out), "-f", str(LOCAL), "--engine", "aurora_kit"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Passed unknown parameter" not in done.stderr
    assert "without encryption" not in done.stderr  # our engine talks to the kernel over private Unix sockets
    nb = nbformat.read(str(out), as_version=4)
    assert audit.collect_results(nb)["cluster"] == "ak-local"
    failed = subprocess.run(
        [str(papermill), str(NOTEBOOKS / "failing.ipynb"), str(tmp_path / "f.ipynb"), "-f", str(LOCAL)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode != 0
    assert "VerificationError" in failed.stderr
