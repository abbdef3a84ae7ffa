"""run_many finishes records (HTML, summary, seal) in the background while the next runbook executes: the index
stays in run order, every record is complete when it returns, and a late render failure still stops the batch."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from aurora_kit import audit, params, runner

pytestmark = pytest.mark.notebooks  # every test here starts a kernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "tests" / "notebooks"
NAMES = ["01-create-cluster", "02-configure-parameters", "03-extensions", "04-verify-read-write"]


@pytest.fixture(autouse=True)
def _local_root(fresh_local_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins named like the runbooks: the runner opens the local backend before the first kernel (preflight),
    on a root of the test's own, never the default one."""
    monkeypatch.setenv("AURORA_KIT_HOME", str(fresh_local_root))


def _books(tmp_path: Path) -> list[Path]:
    books = tmp_path / "runbooks"
    books.mkdir()
    for name in NAMES:
        shutil.copy(NOTEBOOKS / "passing.ipynb", books / f"{name}.ipynb")
    return [books / f"{name}.ipynb" for name in NAMES]


def _parameters() -> dict[str, object]:
    return dict(params.load(ROOT / "parameters" / "local.yaml").injected())


def test_records_are_complete_and_sealed_in_run_order(tmp_path: Path) -> None:
    audit_dir = tmp_path / "audit"
    out = io.StringIO()
    results = runner.run_many(_books(tmp_path)[:3], _parameters(), audit_dir=audit_dir, out=out)
    assert [r.status for r in results] == ["passed"] * 3
    entries = audit.read_index(audit_dir)
    assert [e["runbook"] for e in entries] == NAMES[:3]
    for result, entry in zip(results, entries, strict=True):
        assert result.run_id == entry["run_id"]
        assert result.results == {"answer": 43, "cluster": "ak-local", "readers": 2}  # the full result, not a stub
        assert set(entry["files"]) == {f"{result.runbook}.ipynb", f"{result.runbook}.html", "summary.json"}
    assert audit.verify(audit_dir).ok
    assert len(re.findall(r"^  PASS ", out.getvalue(), re.MULTILINE)) == 3


def test_a_render_failure_after_success_stops_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audit_dir = tmp_path / "audit"
    render = audit.render_html

    def flaky(notebook: Path, html: Path) -> None:
        if notebook.stem == NAMES[0]:
            raise RuntimeError("no templates")
        render(notebook, html)

    monkeypatch.setattr(audit, "render_html", flaky)
    out = io.StringIO()
    results = runner.run_many(_books(tmp_path), _parameters(), audit_dir=audit_dir, out=out)
    # the first is failed (its record says why); the one already executing when that was known (if any) is
    # finished and kept, the rest are not run
    assert results[0].status == "failed"
    assert "HTML render failed: no templates" in (results[0].error or "")
    assert results[1].status in ("passed", "not run")
    assert [r.status for r in results[2:]] == ["not run"] * (len(NAMES) - 2)
    entries = audit.read_index(audit_dir)
    ran = [(r.runbook, r.status) for r in results if r.status != "not run"]
    assert [(e["runbook"], e["outcome"]) for e in entries] == ran
    assert audit.verify(audit_dir).ok
    assert re.search(rf"FAIL +{NAMES[0]} .*HTML render failed: no templates", out.getvalue())


def test_kernels_started_ahead_carry_their_run_and_none_is_left(tmp_path: Path) -> None:
    """From the second runbook on, each runs on a kernel launched while the one before ran (aurora_kit.kernels): it
    has its own run's id and key in its environment, its record says when it was launched, and every kernel has
    exited when the batch returns."""
    import nbformat

    from aurora_kit.deadline import kernels

    books = _books(tmp_path)[:3]
    for book in books:
        nb = nbformat.read(str(book), as_version=4)
        nb.cells.append(
            nbformat.v4.new_code_cell(
                "import os\naurora_kit.record_result('kernel_run_id', os.environ['AURORA_KIT_RUN_ID'])\n"
                "aurora_kit.record_result('has_key', bool(os.environ.get('AURORA_KIT_REDACTION_KEY')))"
            )
        )
        nbformat.write(nb, str(book))
    audit_dir = tmp_path / "audit"
    before = {p.pid for p in kernels()}
    results = runner.run_many(books, _parameters(), audit_dir=audit_dir, out=io.StringIO())
    assert [r.status for r in results] == ["passed"] * 3
    assert [p.pid for p in kernels() if p.pid not in before] == []
    for n, result in enumerate(results):
        assert result.results["kernel_run_id"] == result.run_id
        assert result.results["has_key"] is True
        summary = audit.find(audit_dir, result.run_id)["summary"]
        if n == 0:
            assert "kernel_started_at" not in summary  # the first starts its own kernel, inside its duration
        else:
            assert summary["kernel_started_at"] <= summary["started_at"]
    assert audit.verify(audit_dir).ok
