"""The interactive DBA, end to end in a real browser: JupyterLab on loopback, headless Chromium driven by Playwright.

One JupyterLab server (a free loopback port, a token, a temporary root holding copies of the runbooks, its own
config/runtime/settings dirs) and one headless Chromium (Debian's ``chromium``, started here by pid and reached
over the DevTools protocol: no browser download), with a fresh ``AURORA_KIT_HOME`` and audit folder:

0. a real ``wait_for`` with progress shows the progress widget, live then final.
1. 01-create-cluster: Run All creates the local cluster; its record is sealed (passed).
2. 06-failover: the parameters cell is edited in the browser (crash failover), the parameters form refuses a
   negative RTO limit next to its field and applies a valid one, the run from the opening cell stops at the
   confirmation widget — the plan shows ``FailoverDBCluster`` and nothing has changed yet — Confirm is pressed,
   the failover runs, and the record is sealed: passed, the confirmation (button, operator, plan) and the edited
   parameters in ``summary.json``, the HTML record rendered.
3. 99-teardown: Cancel at the confirmation: one line, no traceback; the cluster still exists; the record is
   sealed failed with the decline in it.
4. ``aurora-kit audit verify`` accepts the chain.

Screenshots go to ``test-artifacts/jupyterlab/`` (git-ignored): the confirmation widget, the progress widget, the
sealed record (its HTML page), the parameters form refusing a value, the declined teardown.

Skips, saying why, only where no Chromium can be had (``.ci/run`` installs Debian's) or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "jupyterlab"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
OPERATOR = "dba-in-browser"
LAB_LOG: list[Path] = []
pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 20.0) -> None:
    """Stop one process this test started, by its pid (SIGKILL if it does not exit in time)."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium here: install Debian's (apt-get install chromium; .ci/run does) to run this test")
    return path


@pytest.fixture
def lab(fresh_local_root: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A JupyterLab server on loopback over copies of the runbooks; stopped by pid afterwards."""
    pytest.importorskip("playwright", reason="Playwright (pip install playwright) drives the browser")
    _chromium()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("01-create-cluster", "06-failover", "99-teardown"):
        shutil.copy(ROOT / "runbooks" / f"{name}.ipynb", notebooks)
    _wait_notebook(notebooks / "00-a-long-wait.ipynb")
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    audit_dir = tmp_path / "audit"
    port, token = _free_port(), os.urandom(16).hex()
    env = {
        **os.environ,
        "AURORA_KIT_HOME": str(fresh_local_root),
        "AURORA_KIT_AUDIT_DIR": str(audit_dir),
        "AURORA_KIT_OPERATOR": OPERATOR,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("AURORA_KIT_RUN_ID", "AURORA_KIT_REDACTION_KEY", "AURORA_KIT_INTERACTIVE", "JPY_SESSION_NAME"):
        env.pop(name, None)
    log = tmp_path / "jupyterlab.log"
    LAB_LOG[:] = [log]
    command = [
        str(Path(sys.executable).parent / "jupyter-lab"),
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebooks}",
        f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=notebooks)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", server, 90, log)
        url = f"http://127.0.0.1:{port}"
        yield {"url": url, "token": token, "audit": audit_dir, "log": log, "home": fresh_local_root}
    finally:
        _stop(server, signal.SIGTERM)  # the server shuts its kernels down first


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium started here (its pid is ours to stop), driven over the DevTools protocol."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    log = tmp_path / "chromium.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                _chromium(),
                *CHROMIUM_ARGS,
                f"--remote-debugging-port={port}",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "about:blank",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/json/version", proc, 60, log)
        with sync_playwright() as pw:
            chromium = pw.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        _stop(proc, signal.SIGTERM)


#: a real wait through aurora_kit.polling.wait_for with progress on (the local backend's waits last well under the
#: second after which a wait shows its progress, so the runbooks here show none)
WAIT_CELLS = [
    "import time\nfrom aurora_kit.polling import wait_for\n\nt0 = time.monotonic()",
    "wait_for('the demo deadline (6 s)', lambda: time.monotonic() - t0, lambda s: s > 6, timeout=30,\n"
    "         describe=lambda s: f'{s:.1f} s elapsed', initial_delay=0.2, max_delay=0.5, progress=True,\n"
    "         events=lambda: ['instance ak-local-2: rebooting', 'instance ak-local-2: available'])\n"
    "print('wait', 'over')",
]


def _wait_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in WAIT_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def _shot(page: Any, name: str, locator: Any = None) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    (locator or page).screenshot(path=str(path))
    return path


def _to_top(locator: Any) -> None:
    """Scroll the notebook so that the cell holding ``locator`` starts at the top of the view."""
    locator.evaluate("e => e.closest('.jp-Cell').scrollIntoView({block: 'start'})")
    locator.page.wait_for_timeout(300)


def _open(context: Any, lab: dict[str, Any], notebook: str) -> Any:
    """Open ``notebook`` in JupyterLab and wait until its kernel is idle."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    workspace = notebook.split("-")[0]  # a workspace per notebook: no other notebook is restored next to it
    page.goto(f"{lab['url']}/lab/workspaces/w{workspace}/tree/{notebook}?token={lab['token']}")
    page.wait_for_selector(".jp-CodeCell")
    page.wait_for_selector("text=/\\| Idle/", timeout=90_000)
    return page


def _run_all(page: Any) -> None:
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li.lm-Menu-item:has-text('Run All Cells')")


def _records(audit_dir: Path) -> list[dict[str, Any]]:
    from aurora_kit import audit

    return [audit.find(audit_dir, e["run_id"])["summary"] for e in audit.read_index(audit_dir)]


def _sealed(page: Any, audit_dir: Path, count: int) -> dict[str, Any]:
    """Wait for the cell that ends the run to show 'record sealed', then return the newest record's summary."""
    try:
        page.wait_for_selector(f"text=/record sealed: .*{audit_dir.name}/", timeout=120_000)
    except Exception:
        _shot(page, "failure")
        shutil.copy(LAB_LOG[0], ARTIFACTS / "jupyterlab.log")
        raise
    records = _records(audit_dir)
    assert len(records) == count, records
    return records[-1]


def test_a_dba_runs_runbooks_in_jupyterlab_and_every_run_is_sealed(lab: dict[str, Any], browser: Any) -> None:
    started = time.monotonic()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's screenshots only
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    audit_dir: Path = lab["audit"]

    # 0. a long wait shows a progress widget, then its final line
    page = _open(context, lab, "00-a-long-wait.ipynb")
    _run_all(page)
    widget = page.locator(".aurora-kit-progress")
    widget.wait_for()
    page.wait_for_timeout(1500)
    assert "waiting for the demo deadline" in widget.inner_text()
    _shot(page, "00-progress-widget", widget)
    page.wait_for_selector(".jp-OutputArea-output:has-text('wait over')")
    assert "waited for the demo deadline" in widget.inner_text()
    page.close()

    # 1. create the cluster: no gate; sealed at the last cell
    page = _open(context, lab, "01-create-cluster.ipynb")
    _run_all(page)
    created = _sealed(page, audit_dir, 1)
    assert created["mode"] == "interactive", created
    assert created["outcome"] == "passed", created
    assert created["operator"] == OPERATOR
    page.close()

    # 2. failover: edit the parameters cell, then the parameters form (a bad value is refused next to its field),
    # Apply, run from the opening cell, read the plan, Confirm
    page = _open(context, lab, "06-failover.ipynb")
    cells = page.locator(".jp-CodeCell")
    cells.nth(0).scroll_into_view_if_needed()
    cells.nth(0).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\nfailover['mode'] = 'crash'")
    page.keyboard.press("Shift+Enter")  # the parameters cell
    page.keyboard.press("Shift+Enter")  # the form cell
    parameters_form = page.locator(".aurora-kit-parameters-form")
    parameters_form.wait_for()
    field = parameters_form.locator(".widget-hbox", has=page.locator("code", has_text="failover.max_rto_s"))
    assert field.locator("input").input_value() == "15.0"
    assert (
        parameters_form.locator(".widget-hbox", has=page.locator("code", has_text="failover.mode"))
        .locator("select")
        .input_value()
        == "crash"
    )  # the edited cell's value
    field.locator("input").fill("-1")
    field.locator("text=greater than 0").wait_for()  # the model's message, next to the field
    apply = parameters_form.locator("button:has-text('Apply')")
    assert apply.is_disabled()
    _shot(page, "06-parameters-form-invalid", parameters_form)
    field.locator("input").fill("30")
    page.wait_for_function("b => !b.disabled", arg=apply.element_handle())
    apply.click()
    try:
        parameters_form.locator("text=/applied: .*failover.max_rto_s = 30.0/").wait_for(timeout=20_000)
    except Exception:
        _shot(page, "failure")
        raise
    cells.nth(2).locator(".jp-InputPrompt").click()  # the opening cell
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li.lm-Menu-item:has-text('Run Selected Cell and All Below')")
    gate = page.locator(".aurora-kit-confirm")
    gate.wait_for()
    assert "FailoverDBCluster" in gate.inner_text()
    assert "crash failover" in gate.inner_text()
    _to_top(gate)
    _shot(page, "06-confirm-widget")
    from aurora_kit.backends.local import LocalBackend

    backend = LocalBackend(root_dir=lab["home"])
    writer_before = backend.describe_cluster("ak-local").writer_id
    time.sleep(1.0)  # waiting for the click: nothing has happened meanwhile
    assert backend.describe_cluster("ak-local").writer_id == writer_before
    gate.locator("button:has-text('Confirm')").click()
    failover = _sealed(page, audit_dir, 2)
    assert failover["outcome"] == "passed", (failover["outcome_reason"], failover["failure"])
    assert failover["parameters"]["failover"]["mode"] == "crash"  # the edit of the parameters cell
    assert failover["parameters"]["failover"]["max_rto_s"] == 30.0  # applied with the form
    assert "failover.mode=crash" in failover["overrides"]
    assert "failover.max_rto_s=30.0" in failover["overrides"]
    [confirmation] = failover["confirmations"]
    assert confirmation["decision"] == "confirmed"
    assert confirmation["how"] == "Confirm button in JupyterLab"
    assert confirmation["operator"].startswith(OPERATOR + "@")
    assert [c["call"] for c in confirmation["plan"]] == ["FailoverDBCluster"]
    assert backend.describe_cluster("ak-local").writer_id != writer_before  # the step ran
    assert failover["results"]["failover"]["lost_commits"] == 0
    record_dir = audit_dir / failover["run_id"]
    record_html = (record_dir / "06-failover.html").read_text()
    assert "CONFIRMED" in record_html
    assert "crash failover" in record_html
    record_nb = json.loads((record_dir / "06-failover.ipynb").read_text())
    assert "application/vnd.jupyter.widget-view+json" not in json.dumps(record_nb)  # static only
    assert "failover['mode'] = 'crash'" in json.dumps(record_nb)  # the parameters cell as it ran
    page.locator("text=/record sealed: /").last.scroll_into_view_if_needed()
    _shot(page, "06-sealed-in-notebook")
    record_page = context.new_page()
    record_page.goto((record_dir / "06-failover.html").as_uri())
    _shot(record_page, "06-sealed-record")
    record_page.close()
    page.close()

    # 3. teardown: Cancel at the confirmation; nothing is deleted; the record says declined
    page = _open(context, lab, "99-teardown.ipynb")
    _run_all(page)
    gate = page.locator(".aurora-kit-confirm")
    gate.wait_for()
    assert "DeleteDBCluster" in gate.inner_text()
    assert "type ak-local" in gate.inner_text()
    gate.locator("button:has-text('Cancel')").click()
    declined = _sealed(page, audit_dir, 3)
    assert declined["outcome"] == "failed"
    assert declined["failure"]["ename"] == "ConfirmationDeclinedError"
    assert [c["decision"] for c in declined["confirmations"]] == ["declined"]
    error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").last
    assert error.inner_text().strip().count("\n") == 0, error.inner_text()  # one line, no traceback
    assert "ConfirmationDeclinedError" in error.inner_text()
    assert backend.describe_cluster("ak-local").status == "available"
    _to_top(gate)
    _shot(page, "99-declined")
    page.close()
    context.close()

    verified = subprocess.run(
        [str(Path(sys.executable).parent / "aurora-kit"), "audit", "verify", "--audit-dir", str(audit_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(f"FIGURE browser_test_s = {time.monotonic() - started:.1f}")
