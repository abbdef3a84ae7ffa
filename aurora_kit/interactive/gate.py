"""The confirmation widget of a destructive step in JupyterLab (:func:`aurora_kit.steps.common.confirm` asks it).

It shows the action and the cluster, the plan of this step's mutating calls — computed by running the step's own
control-plane call on a dry-run twin of the run's backend (:func:`planned_calls`: the same calls a dry run records)
— and, for a teardown, a field where the cluster id must be typed; then Confirm and Cancel. The cell waits for a
click (:mod:`aurora_kit.interactive.kernel`), at most :func:`timeout_s` (``$AURORA_KIT_CONFIRM_TIMEOUT_S``, 15 min
by default): a gate nobody answers stops its step, it never waits forever.

The display output holds the static rendering too: the plan and "waiting for confirmation", replaced by the
decision (who, when) once given, so the record shows what was asked and what was answered.
"""

from __future__ import annotations

import html
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aurora_kit.confirmation import CONFIRMED, DECLINED, TIMED_OUT, Confirmation, plan_rows
from aurora_kit.interactive import static

if TYPE_CHECKING:
    from aurora_kit.backends.base import ClusterBackend, PlannedCall
    from aurora_kit.runbook import Run

TIMEOUT_ENV = "AURORA_KIT_CONFIRM_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 15 * 60.0
HOW = "Confirm button in JupyterLab"

_RED, _MUTED = "#cf222e", "#57606a"


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        return DEFAULT_TIMEOUT_S


def planned_calls(run: Run, step: Callable[[ClusterBackend], Any] | None) -> list[PlannedCall]:
    """The mutating calls ``step(backend)`` makes, from a dry run of it on a twin of the run's backend (same
    parameters, ``dry_run: true``): the plan a dry run of the runbook records for this step. Errors the step
    raises before any call (validation) escape here, before anything is asked or changed."""
    if step is None:
        return []
    from aurora_kit.backends import from_parameters

    twin = from_parameters(run.params.model_copy(update={"dry_run": True}))
    twin.on_secret = run.backend.on_secret
    try:
        step(twin)
        return list(twin.plan)
    finally:
        twin.close()


@dataclass
class _Answer:
    decision: str | None = None
    typed: str | None = None


def _plan_html(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return f"<div style='color:{_MUTED}'>no mutating call is planned for this step</div>"
    cells = "".join(
        f"<tr><td style='padding:2px 10px 2px 0'>{n}</td><td style='padding:2px 10px 2px 0'>{html.escape(r['service'])}"
        f"</td><td style='padding:2px 10px 2px 0'><b>{html.escape(r['call'])}</b></td>"
        f"<td style='padding:2px 0;font-family:monospace;font-size:12px'>"
        f"{html.escape(', '.join(f'{k}={v!r}' for k, v in r['parameters'].items()))}</td></tr>"
        for n, r in enumerate(rows, start=1)
    )
    th = "<th style='text-align:left;padding:2px 10px 2px 0'>"
    head = "".join(f"{th}{h}</th>" for h in ("#", "service", "call", "parameters"))
    return f"<table style='border-collapse:collapse;font-size:13px'><tr>{head}</tr>{cells}</table>"


def _plan_text(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "  (no mutating call is planned for this step)"
    return "\n".join(
        f"  {n}. {r['service']}.{r['call']}(" + ", ".join(f"{k}={v!r}" for k, v in r["parameters"].items()) + ")"
        for n, r in enumerate(rows, start=1)
    )


def _static(action: str, cluster_id: str, rows: Sequence[dict[str, Any]], status: str) -> tuple[str, str]:
    text = f"CONFIRMATION: {action} on {cluster_id!r}\nplan of mutating calls:\n{_plan_text(rows)}\n{status}"
    body = (
        f"<div style='border:1px solid {_RED};border-left:8px solid {_RED};border-radius:6px;padding:8px 14px;"
        f"margin:4px 0'><div style='font-weight:600;color:{_RED}'>Confirmation: {html.escape(action)} on "
        f"{html.escape(cluster_id)}</div><div style='margin:4px 0;color:{_MUTED}'>plan of mutating calls</div>"
        f"{_plan_html(rows)}<div style='margin-top:6px'>{html.escape(status)}</div></div>"
    )
    return text, body


def ask(run: Run, action: str, calls: Sequence[PlannedCall], *, typed: bool) -> Confirmation:
    """Show the confirmation widget and wait for the answer (module docstring); returns the decision."""
    import ipywidgets as w

    from aurora_kit.interactive.kernel import routed_to_subshell

    cid = run.params.cluster_id
    rows = plan_rows(calls)
    limit = timeout_s()
    minutes = f"{limit / 60:.0f} min" if limit >= 60 else f"{limit:.0f} s"
    asks = f"type {cid} and press Confirm" if typed else "press Confirm"
    waiting = f"waiting for confirmation: {asks}, or Cancel (nothing changes until then; this stops after {minutes})"
    text, body = _static(action, cid, rows, waiting)

    header = w.HTML(
        f"<div style='font-size:15px;font-weight:600;color:{_RED}'>⚠ Confirm: {html.escape(action)} on "
        f"<code>{html.escape(cid)}</code></div><div style='color:{_MUTED};margin:2px 0 4px 0'>plan of mutating calls "
        f"(what a dry run of this step records); nothing has been changed yet</div>{_plan_html(rows)}"
    )
    typed_box = w.Text(placeholder=f"type {cid} to confirm", description="cluster id", layout=w.Layout(width="360px"))
    confirm_button = w.Button(description="Confirm", button_style="danger", icon="check")
    cancel_button = w.Button(description="Cancel", icon="times")
    status = w.HTML(f"<span style='color:{_MUTED}'>{html.escape(waiting)}</span>")
    rows_of_widgets: list[Any] = [header]
    if typed:
        rows_of_widgets.append(typed_box)
    rows_of_widgets += [w.HBox([confirm_button, cancel_button]), status]
    box = w.VBox(
        rows_of_widgets,
        layout=w.Layout(border=f"2px solid {_RED}", padding="8px 14px", margin="4px 0", width="fit-content"),
    )
    box.add_class("aurora-kit-confirm")

    answer = _Answer()
    decided = threading.Event()

    def on_confirm(_: Any) -> None:  # runs on the gate's subshell thread
        value = typed_box.value.strip()
        if typed and value != cid:
            status.value = (
                f"<span style='color:{_RED}'>the typed id {html.escape(value)!s} does not name the cluster "
                f"{html.escape(cid)}: type it exactly</span>"
            )
            return
        answer.decision, answer.typed = CONFIRMED, value if typed else None
        decided.set()

    def on_cancel(_: Any) -> None:
        answer.decision = DECLINED
        decided.set()

    confirm_button.on_click(on_confirm)
    cancel_button.on_click(on_cancel)
    handle = static.show(box, text, body)
    deadline = time.monotonic() + limit
    with routed_to_subshell([typed_box, confirm_button, cancel_button]):
        while not decided.wait(0.2):  # a kernel interrupt (KeyboardInterrupt) lands here too
            if time.monotonic() >= deadline:
                answer.decision = TIMED_OUT
                break
    decision = answer.decision or TIMED_OUT
    confirmation = Confirmation(
        action=action,
        cluster_id=cid,
        decision=decision,
        how=HOW,
        operator=f"{run.operator}@{run.host}",
        typed_cluster_id=answer.typed,
        plan=rows,
    )
    for control in (typed_box, confirm_button, cancel_button):
        control.disabled = True
    colour = "#1a7f37" if confirmation.confirmed else _RED
    status.value = f"<b style='color:{colour}'>{html.escape(confirmation.line())}</b>"
    text, body = _static(action, cid, rows, confirmation.line())
    static.settle(handle, box, text, body)
    return confirmation
