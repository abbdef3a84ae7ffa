"""One interactive kernel's session: which run is open, and when its record is sealed.

``wf.start(...)`` (every runbook's opening cell) calls :func:`attach`: in a kernel driven by hand from JupyterLab
(:func:`aurora_kit.interactive.kernel.frontend_is_live`) the first call installs the session — the recorder of
executions (:mod:`.recorder`), a per-session redaction key handed to :func:`aurora_kit.runbook.register_secret`
through ``$AURORA_KIT_REDACTION_KEY`` (the kernel then declares every secret by HMAC, as under the runner), and the
hooks below — and every call opens a run. Elsewhere it does nothing and returns None.

A run's record holds the executions since the previous run's record was sealed (the parameters cell run before the
opening cell belongs to the run it opens) and is sealed (:func:`aurora_kit.interactive.record.seal`):

- after the runbook's last code cell ran (its cell id, or its source, is the last code cell of the runbook);
- after a cell of the run failed: an error, a declined confirmation, or a kernel interrupt (``KeyboardInterrupt``
  is a cell's error too) — a headless run stops there as well;
- when the opening cell is run again before the run ended (the old run is sealed as ended early);
- when the kernel shuts down or restarts with a run still open (``atexit``), as ended early.

A sealed run's backend refuses further calls (:class:`~aurora_kit.errors.RunSealedError`), so no change happens
outside a record: run the opening cell again to start a new run. The sealed record's banner is shown in the cell
that ended the run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import sys
import threading
from typing import TYPE_CHECKING, Any

from aurora_kit.interactive import kernel

if TYPE_CHECKING:
    from aurora_kit.interactive.recorder import Recorder
    from aurora_kit.runbook import Run

SESSION_NAME_ENV = "JPY_SESSION_NAME"  # jupyter_server: the path of the notebook this kernel was started for


class Session:
    """See the module docstring."""

    def __init__(self, recorder: Recorder, key: bytes, opened: str | None) -> None:
        self.recorder = recorder
        self.key = key
        self.opened = opened
        self.run: Run | None = None
        self.start_index = 0  # first execution of the open run's record
        self.last_cell: tuple[str | None, str | None] = (None, None)
        self.sealed: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # -- runs ---------------------------------------------------------------------------------------------------
    def open(self, run: Run) -> None:
        from aurora_kit.interactive.record import last_code_cell, runbook_notebook

        if self.run is not None and self.run.sealed is None:
            current = len(self.recorder.executions) - 1  # the opening cell now running starts the new run
            self.seal(error="ended early: the runbook's opening cell was run again before its last cell", upto=current)
            self.start_index = current
        self.run = run
        self.last_cell = last_code_cell(runbook_notebook(run.runbook, self.opened))
        _warm_up_html()

    def seal(self, *, error: str | None = None, upto: int | None = None, show: bool = True) -> dict[str, Any] | None:
        """Seal the open run's record (module docstring); returns its summary, None when nothing is open."""
        from aurora_kit.interactive.record import seal

        with self._lock:
            run = self.run
            if run is None or run.sealed is not None:
                return None
            self.recorder.flush()
            executions = self.recorder.since(self.start_index)
            if upto is not None:
                executions = executions[: max(upto - self.start_index, 0)]
            summary = seal(run, executions, key=self.key, opened=self.opened, error=error)
            run.sealed = summary["record_dir"]
            run.close()
            self.start_index = upto if upto is not None else len(self.recorder.executions)
            self.sealed.append(summary)
        if show:
            _show_sealed(summary)
        return summary

    # -- hooks ------------------------------------------------------------------------------------------------------
    def post_run_cell(self, result: Any) -> None:
        run = self.run
        execution = self.recorder.current
        if run is None or run.sealed is not None or execution is None:
            return
        failed = bool(getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None))
        last_id, last_source = self.last_cell
        finished = (last_id is not None and execution.cell_id == last_id) or (
            last_source is not None and execution.source.strip() == last_source.strip()
        )
        if failed or finished:
            try:
                self.seal()
            except Exception as exc:  # say so in the cell; the run stays open (a later trigger seals it)
                import traceback

                traceback.print_exc(file=sys.__stderr__)  # the kernel's log (JupyterLab's terminal)
                print(f"aurora_kit: the record of run {run.run_id} could not be sealed: {type(exc).__name__}: {exc}")

    def at_exit(self) -> None:
        with contextlib.suppress(Exception):  # nothing to show a failure to at exit
            self.seal(error="ended early: the kernel shut down or restarted before the runbook's last cell", show=False)


_session: Session | None = None


def current() -> Session | None:
    return _session


def install() -> Session | None:
    """Install this kernel's interactive session if a person drives it from a notebook frontend (module
    docstring); the existing one on later calls; None elsewhere. ``wf.start`` calls it first thing, before the
    opening cell shows anything, so the opening cell's outputs are recorded from the start."""
    global _session
    if _session is not None:
        return _session
    if not kernel.frontend_is_live():
        return None
    from IPython import get_ipython

    from aurora_kit.interactive.recorder import Recorder
    from aurora_kit.redaction import KEY_ENV

    shell = get_ipython()
    recorder = Recorder(shell).install()
    recorder.backfill()  # the cells run before (the parameters cell...) and the opening cell now running
    key = secrets.token_bytes(32)
    os.environ[KEY_ENV] = key.hex()  # register_secret sends HMACs keyed with it, as under the runner
    session = Session(recorder, key, os.environ.get(SESSION_NAME_ENV))
    shell.events.register("post_run_cell", session.post_run_cell)
    atexit.register(session.at_exit)
    _session = session
    return session


def attach(run: Run) -> Session | None:
    """Open ``run`` in this kernel's interactive session (installing it when needed); None when there is none."""
    session = install()
    if session is None:
        return None
    session.open(run)
    _announce(run)
    return session


def can_ask(run: Run) -> bool:
    """The gate may ask a person: ``run`` is open in an interactive session, and the kernel can show widgets and
    wait for their clicks."""
    session = _session
    return (
        session is not None
        and session.run is run
        and kernel.widgets_available()
        and kernel.can_wait_for_clicks()
        and kernel.frontend_is_live()
    )


def _announce(run: Run) -> None:
    from IPython.display import display

    from aurora_kit.audit import audit_root

    asks = (
        "destructive steps ask for confirmation here (plan, Confirm button)"
        if kernel.widgets_available() and kernel.can_wait_for_clicks()
        else "this kernel cannot wait for a click: destructive steps need confirm = True in the parameters cell"
    )
    text = f"interactive run: {asks}; the record is sealed into {audit_root()} when the run ends"
    display({"text/plain": text}, raw=True)


def _show_sealed(summary: dict[str, Any]) -> None:
    from IPython.display import display

    from aurora_kit.banner import banner_html

    text = f"record sealed: {summary['record_dir']} ({summary.get('outcome')})"
    display({"text/plain": text, "text/html": banner_html(summary) + f"<div><code>{text}</code></div>"}, raw=True)


def _warm_up_html() -> None:
    """Load nbconvert's templates and what a record names (papermill's, nbconvert's versions) in the background, so
    sealing takes a fraction of a second (0.15 s warm, 2-3 s cold here) — at a kernel shutdown the server waits
    5 s (jupyter_client's ``shutdown_wait_time``) before it terminates the kernel."""
    from aurora_kit.audit import versions
    from aurora_kit.runner import _warm_up_html as warm

    def both() -> None:
        warm()
        versions()

    threading.Thread(target=both, name="aurora-kit-seal-warm-up", daemon=True).start()
