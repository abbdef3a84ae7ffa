"""The kernel's own account of an interactive run: every cell it executed, in order, with the outputs it published.

Where an interactive record is read from (the choice, and why)
--------------------------------------------------------------
The notebook a person sees lives in the browser; the server's copy (the contents API) is whatever JupyterLab last
saved — maybe minutes old, maybe never, and unredacted. The kernel, on the other hand, sees every execute request
(the code as it ran, with the frontend's cell id) and publishes every output itself. So the record is built from
the kernel's side: each execution's source (edits to the ``parameters`` cell included) and the outputs it sent on
IOPub, captured as they are sent (:class:`Recorder`); the runbook's markdown cells come from its ``.ipynb`` file
and are placed before the executed cells by cell id (:mod:`aurora_kit.interactive.record`). Nothing is written to
disk before the record is sealed, redacted, in the audit folder; the working copy JupyterLab saves is the DBA's,
not the record.

How the outputs are captured: every IOPub message of ipykernel (streams, display data and its updates, results,
errors, clear_output) is sent through the kernel's one ``Session.send``; the recorder wraps that method on the
kernel's session object, keeps a copy of each output message whose parent is an execute request, and sends it on
unchanged. Messages are converted with nbformat's own ``output_from_msg``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

OUTPUT_TYPES = frozenset({"stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"})


@dataclass
class Execution:
    """One execution of one cell."""

    msg_id: str
    cell_id: str | None
    source: str
    execution_count: int | None
    started_at: datetime
    ended_at: datetime | None = None
    outputs: list[Any] = field(default_factory=list)
    failed: bool = False
    _clear_pending: bool = False

    def add(self, output: Any) -> int:
        """Append an output (joining a stream chunk to the previous chunk of the same stream); its index."""
        if self._clear_pending:
            self.outputs.clear()
            self._clear_pending = False
        last = self.outputs[-1] if self.outputs else None
        if (
            output.get("output_type") == "stream"
            and last is not None
            and last.get("output_type") == "stream"
            and last.get("name") == output.get("name")
        ):
            last["text"] = last.get("text", "") + output.get("text", "")
            return len(self.outputs) - 1
        self.outputs.append(output)
        return len(self.outputs) - 1


class Recorder:
    """Captures executions and their outputs in a kernel (module docstring). ``install()`` once per kernel."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.kernel = shell.kernel
        self.executions: list[Execution] = []
        self._by_msg: dict[str, Execution] = {}
        self._displays: dict[str, list[tuple[Execution, int]]] = {}
        self._lock = threading.Lock()
        self._original_send: Callable[..., Any] | None = None
        self.current: Execution | None = None

    # -- installation --------------------------------------------------------------------------------------------
    def install(self) -> Recorder:
        session = self.kernel.session
        original = session.send

        def send(*args: Any, **kwargs: Any) -> Any:
            msg = original(*args, **kwargs)
            with contextlib.suppress(Exception):  # recording must never break the kernel's messaging
                self._capture(msg)
            return msg

        self._original_send = original
        session.send = send
        self.shell.events.register("pre_run_cell", self._pre_run_cell)
        self.shell.events.register("post_run_cell", self._post_run_cell)
        return self

    def uninstall(self) -> None:
        if self._original_send is not None:
            self.kernel.session.__dict__.pop("send", None)
            self._original_send = None
        for event, hook in (("pre_run_cell", self._pre_run_cell), ("post_run_cell", self._post_run_cell)):
            with contextlib.suppress(ValueError):
                self.shell.events.unregister(event, hook)

    def backfill(self) -> None:
        """Installed while a cell runs: add the cells this kernel ran before (their source, from IPython's input
        history; their outputs are gone) and the cell running now (from its execute request)."""
        history = list(self.shell.user_ns.get("In") or [])
        now = datetime.now(timezone.utc)
        with self._lock:
            for number, source in enumerate(history[1:-1], start=1):
                self.executions.append(Execution(f"history-{number}", None, str(source), number, now, now))
        self._pre_run_cell(None)

    # -- executions ------------------------------------------------------------------------------------------------
    def _pre_run_cell(self, info: Any) -> None:
        parent = self.kernel.get_parent("shell") or {}
        header = parent.get("header") or {}
        metadata = parent.get("metadata") or {}
        source = getattr(info, "raw_cell", None)
        if source is None:
            source = (parent.get("content") or {}).get("code", "")
        execution = Execution(
            msg_id=str(header.get("msg_id") or f"local-{len(self.executions)}"),
            cell_id=getattr(info, "cell_id", None) or metadata.get("cellId"),
            source=str(source),
            execution_count=self.shell.execution_count,
            started_at=datetime.now(timezone.utc),
        )
        with self._lock:
            self.executions.append(execution)
            self._by_msg[execution.msg_id] = execution
            self.current = execution

    def _post_run_cell(self, result: Any) -> None:
        execution = self.current
        if execution is None:
            return
        execution.ended_at = datetime.now(timezone.utc)
        execution.failed = bool(getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None))

    def flush(self) -> None:
        """Let pending stream output reach IOPub (and so the recorder) before the record is built."""
        import sys

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream at shutdown
                stream.flush()

    # -- outputs ---------------------------------------------------------------------------------------------------
    def _capture(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        kind = (msg.get("header") or {}).get("msg_type")
        if kind not in OUTPUT_TYPES:
            return
        content = msg.get("content") or {}
        parent_id = (msg.get("parent_header") or {}).get("msg_id")
        with self._lock:
            if kind == "update_display_data":
                self._update_display(content)
                return
            execution = self._by_msg.get(str(parent_id)) if parent_id else None
            if execution is None:
                return  # output of a widget callback or a comm: not part of a cell's record
            if kind == "clear_output":
                if content.get("wait"):
                    execution._clear_pending = True
                else:
                    execution.outputs.clear()
                return
            import nbformat

            output = nbformat.v4.output_from_msg(msg)
            index = execution.add(output)
            display_id = (content.get("transient") or {}).get("display_id")
            if display_id:
                self._displays.setdefault(str(display_id), []).append((execution, index))

    def _update_display(self, content: dict[str, Any]) -> None:
        display_id = (content.get("transient") or {}).get("display_id")
        for execution, index in self._displays.get(str(display_id), []):
            if index < len(execution.outputs):
                output = execution.outputs[index]
                output["data"] = dict(content.get("data") or {})
                output["metadata"] = dict(content.get("metadata") or {})

    def since(self, start: int) -> list[Execution]:
        with self._lock:
            return list(self.executions[start:])
