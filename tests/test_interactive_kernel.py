"""An interactive session in a real kernel (nbclient; ``AURORA_KIT_INTERACTIVE=1`` stands in for JupyterLab's cell
ids): the record is built from the kernel and sealed like a headless one — at the runbook's last cell, redacted of
the secrets the kernel registered by HMAC, judged, chained — the sealed run refuses its backend, and a run still
open when the kernel shuts down is sealed as ended early. The browser test drives the widgets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

from aurora_kit import audit

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.notebooks, pytest.mark.integration]


def _execute(nb: Any, env: dict[str, str], cwd: Path) -> Any:
    from nbclient import NotebookClient

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from jupyter_client.manager import KernelManager

        # a kernel asked to shut down gets 20 s before it is terminated (JupyterLab: 5 s; the seal takes 0.15 s
        # once warmed up, more on a loaded machine)
        km = KernelManager(kernel_name="python3", shutdown_wait_time=20.0)
        client = NotebookClient(nb, km=km, timeout=300, allow_errors=True, resources={"metadata": {"path": str(cwd)}})
        try:
            client.execute()
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=False)  # graceful: a shutdown request, then the wait above
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _env(home: Path, audit_dir: Path) -> dict[str, str]:
    return {
        "AURORA_KIT_HOME": str(home),
        "AURORA_KIT_AUDIT_DIR": str(audit_dir),
        "AURORA_KIT_INTERACTIVE": "1",
        "AURORA_KIT_OPERATOR": "ana",
    }


def test_an_interactive_run_is_sealed_redacted_and_closed(fresh_local_root: Path, tmp_path: Path) -> None:
    nb = nbformat.read(str(ROOT / "runbooks" / "01-create-cluster.ipynb"), as_version=4)
    params_at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells[params_at].source += "\nreaders = 1"  # an edit of the parameters cell
    leak = "print('password:', run.backend.connection_info(cluster_id, 'cluster').password)"
    nb.cells.insert(len(nb.cells) - 1, nbformat.v4.new_code_cell(leak))
    nb.cells.append(nbformat.v4.new_code_cell("run.backend"))  # after the last cell: the run is sealed
    audit_dir = tmp_path / "audit"
    _execute(nb, _env(fresh_local_root, audit_dir), tmp_path)

    [entry] = audit.read_index(audit_dir)
    summary = audit.find(audit_dir, entry["run_id"])["summary"]
    assert summary["mode"] == "interactive"
    assert summary["outcome"] == "passed", (summary["outcome_reason"], summary["failure"])
    assert summary["operator"] == "ana"
    assert summary["parameters"]["readers"] == 1
    assert "readers=1" in summary["overrides"]
    assert summary["confirmations"] == []  # 01 has no destructive step
    assert audit.verify(audit_dir).ok

    from aurora_kit.backends.local import LocalBackend

    password = LocalBackend(root_dir=fresh_local_root).connection_info("ak-local", "cluster").password
    assert password
    printed = [o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    assert any(password in t for t in printed)  # the live notebook shows it (the person asked for it)...
    record_dir = audit_dir / entry["run_id"]
    for name in ("01-create-cluster.ipynb", "01-create-cluster.html", "summary.json"):
        text = (record_dir / name).read_text()
        assert password not in text, name  # ...the record never holds it
    record_nb = nbformat.read(str(record_dir / "01-create-cluster.ipynb"), as_version=4)
    assert "password: ***redacted***" in json.dumps(record_nb.dict())
    assert "readers = 1" in record_nb.cells[2].source  # the parameters cell as it ran, under the banner and title
    sealed_error = nb.cells[-1].outputs[-1]
    assert sealed_error.ename == "RunSealedError"
    assert len(sealed_error.traceback) == 1  # one line, no traceback through aurora_kit


def test_a_run_still_open_at_kernel_shutdown_is_sealed_as_ended_early(fresh_local_root: Path, tmp_path: Path) -> None:
    nb = nbformat.read(str(ROOT / "runbooks" / "01-create-cluster.ipynb"), as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if "wf.start(" in c.source)
    nb.cells = nb.cells[: start + 1]
    audit_dir = tmp_path / "audit"
    _execute(nb, _env(fresh_local_root, audit_dir), tmp_path)

    [entry] = audit.read_index(audit_dir)
    summary = audit.find(audit_dir, entry["run_id"])["summary"]
    assert summary["outcome"] == "failed"
    assert "ended early: the kernel shut down" in summary["error"]
    assert audit.verify(audit_dir).ok


def test_a_confirmation_nobody_answers_stops_the_step_and_changes_nothing(
    fresh_local_root: Path, tmp_path: Path
) -> None:
    """99 in a kernel where nobody can click: the gate shows its widget, waits (on a kernel subshell) until its
    timeout, then stops the step with one line; the record says who was asked, what, and that nobody answered."""
    from aurora_kit.backends.local import LocalBackend
    from aurora_kit.specs import ClusterSpec

    backend = LocalBackend(root_dir=fresh_local_root)
    backend.create_cluster(ClusterSpec.with_readers("ak-local", 0, deletion_protection=False))
    nb = nbformat.read(str(ROOT / "runbooks" / "99-teardown.ipynb"), as_version=4)
    audit_dir = tmp_path / "audit"
    _execute(nb, {**_env(fresh_local_root, audit_dir), "AURORA_KIT_CONFIRM_TIMEOUT_S": "2"}, tmp_path)

    assert backend.describe_cluster("ak-local").status == "available"  # nothing was deleted
    [entry] = audit.read_index(audit_dir)
    summary = audit.find(audit_dir, entry["run_id"])["summary"]
    assert summary["outcome"] == "failed"
    assert summary["failure"]["ename"] == "ConfirmationDeclinedError"
    [asked] = summary["confirmations"]
    assert asked["decision"] == "not confirmed in time"
    assert asked["how"] == "Confirm button in JupyterLab"
    assert [c["call"] for c in asked["plan"]] == ["DeleteDBInstance", "DeleteDBCluster"]
    gate_cell = next(c for c in nb.cells if "wf.teardown(" in c.source)
    [error] = [o for o in gate_cell.outputs if o.output_type == "error"]
    assert len(error.traceback) == 1
    assert "record sealed" in gate_cell.outputs[-1].data["text/plain"]  # the run ended in this cell
    shown = [o.data["text/plain"] for o in gate_cell.outputs if "data" in o]
    assert any(text.startswith("CONFIRMATION: deleting the cluster on 'ak-local'") for text in shown)  # static
