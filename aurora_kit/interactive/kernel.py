"""What the interactive mode needs from the kernel: is there a live frontend, and how a cell waits for a click.

Waiting for a click inside a cell
---------------------------------
A widget's click reaches the kernel as a ``comm_msg`` on the shell channel, and the kernel handles shell messages
one at a time on its main thread — the thread that is running the cell waiting for that click. ipykernel 6 let a
waiting cell pump the queue itself (``kernel.do_one_iteration()``, what ``jupyter_ui_poll`` does); ipykernel 7
removed that. It has kernel subshells instead (JEP 91): threads of their own, each handling the shell messages
routed to it, and it routes a comm's messages to the subshell :meth:`Comm._reply_subshell_for` names. So while a
gate waits, :func:`routed_to_subshell` creates a subshell, routes the gate's widgets' messages to it, and the cell
blocks on a :class:`threading.Event` that the widgets' callbacks (running on the subshell's thread) set. Messages
for other comms, and the execute requests of the cells queued behind (Run All), wait on the main thread as usual.
When the gate is done the routing is removed and the subshell deleted.

This relies on ipykernel >= 7.4 (``shell_channel_thread``, ``Comm._reply_subshell_for``); :func:`can_wait_for_clicks`
says whether the running kernel has it, and the gate falls back to the headless ``confirm`` parameter when not.
"""

from __future__ import annotations

import contextlib
import os
import queue
from collections.abc import Iterator, Sequence
from typing import Any

#: ``0``: never interactive (headless behaviour even in JupyterLab); ``1``: interactive whenever a kernel runs
INTERACTIVE_ENV = "AURORA_KIT_INTERACTIVE"


def _kernel() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None)


#: what ``aurora-kit run`` and the redacting engine set in a kernel's environment (``aurora_kit.runbook.RUN_ID_ENV``,
#: ``aurora_kit.redaction.KEY_ENV``; named here so that this module, which polling imports, imports neither — a
#: test keeps the names equal)
RUNNER_ENV = ("AURORA_KIT_RUN_ID", "AURORA_KIT_REDACTION_KEY")


def _runner_env() -> bool:
    """Started by ``aurora-kit run`` or the redacting papermill engine."""
    return any(os.environ.get(name) for name in RUNNER_ENV)


#: the kernel's environment as it started: an interactive session later sets the redaction key itself
_STARTED_BY_RUNNER = _runner_env()


def current_cell_id() -> str | None:
    """The frontend's id of the cell executing now (JupyterLab sends it), else None."""
    kernel = _kernel()
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent("shell")
    except Exception:  # pragma: no cover - an older kernel without channels
        return None
    metadata = (parent or {}).get("metadata") or {}
    cell_id = metadata.get("cellId")
    return str(cell_id) if cell_id else None


def frontend_is_live() -> bool:
    """A notebook frontend is driving this kernel by hand (see the package docstring)."""
    forced = os.environ.get(INTERACTIVE_ENV)
    if forced == "0" or _kernel() is None or _STARTED_BY_RUNNER:
        return False
    return forced == "1" or current_cell_id() is not None


def widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def can_wait_for_clicks() -> bool:
    """The running kernel can route a widget's messages to a subshell (module docstring)."""
    kernel = _kernel()
    thread = getattr(kernel, "shell_channel_thread", None)
    manager = getattr(thread, "manager", None)
    if manager is None or not hasattr(manager, "_create_subshell"):
        return False
    if not getattr(kernel, "_supports_kernel_subshells", False):
        return False
    try:
        from ipykernel.comm.comm import BaseComm
    except ImportError:  # pragma: no cover
        return False
    return hasattr(BaseComm, "_reply_subshell_for")


def _on_shell_channel_thread(kernel: Any, fn: Any) -> Any:
    """Run ``fn()`` on the kernel's shell-channel thread (where subshells are made) and return its result."""
    answer: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def call() -> None:
        try:
            answer.put((True, fn()))
        except BaseException as exc:  # handed back to the caller
            answer.put((False, exc))

    kernel.shell_channel_thread.io_loop.add_callback(call)
    ok, value = answer.get(timeout=10)
    if not ok:
        raise value
    return value


@contextlib.contextmanager
def routed_to_subshell(widgets: Sequence[Any]) -> Iterator[str]:
    """While in the block, ``widgets``' messages from the frontend are handled on a subshell of their own, so the
    main thread may block until one of their callbacks fires (module docstring). Yields the subshell id."""
    kernel = _kernel()
    manager = kernel.shell_channel_thread.manager
    subshell_id: str = _on_shell_channel_thread(kernel, manager._create_subshell)

    def route(data: Any, default: Any) -> str:
        return subshell_id

    comms = [w.comm for w in widgets if getattr(w, "comm", None) is not None]
    for comm in comms:
        comm._reply_subshell_for = route  # the instance attribute shadows the class's routing
    try:
        yield subshell_id
    finally:
        for comm in comms:
            comm.__dict__.pop("_reply_subshell_for", None)
        with contextlib.suppress(Exception):  # a kernel shutting down may have removed it already
            _on_shell_channel_thread(kernel, lambda: manager._delete_subshell(subshell_id))
