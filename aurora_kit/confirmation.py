"""The trace every confirmation gate leaves: who confirmed (or declined) which destructive action, when, how, and
the plan of mutating calls they were shown.

:func:`aurora_kit.steps.common.confirm` is the one gate; whatever it decides, it leaves one display output of
mimetype :data:`CONFIRMATION_MIME` in the cell (``{"action", "cluster_id", "decision", "how", "operator", "at",
"typed_cluster_id", "plan"}``) next to a visible line (``CONFIRMED failover on ak-local by ana@db1 at ...``).
Records read them back with :func:`confirmations_in` into ``summary.json``'s ``confirmations``: a headless run's
confirmation is the ``confirm`` parameter (``how``: ``parameter confirm: true``, no plan shown); an interactive
run's is a person pressing Confirm (``how``: ``Confirm button in JupyterLab``) after seeing ``plan``, the calls a
dry run of this very step recorded. Standard library only.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

CONFIRMATION_MIME = "application/vnd.aurora-kit.confirmation+json"

CONFIRMED = "confirmed"
DECLINED = "declined"
TIMED_OUT = "not confirmed in time"

_COLOURS = {CONFIRMED: "#1a7f37", DECLINED: "#cf222e", TIMED_OUT: "#9a6700"}


@dataclass(frozen=True)
class Confirmation:
    """One decision at a confirmation gate."""

    action: str
    cluster_id: str
    decision: str  # CONFIRMED / DECLINED / TIMED_OUT
    how: str  # "parameter confirm: true" | "Confirm button in JupyterLab" | ...
    operator: str
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    typed_cluster_id: str | None = None
    #: the mutating calls shown before deciding ({"service", "call", "parameters"}); None: not shown (headless)
    plan: list[dict[str, Any]] | None = None

    @property
    def confirmed(self) -> bool:
        return self.decision == CONFIRMED

    def line(self) -> str:
        """One line for people: ``CONFIRMED planned failover on 'ak-local' by ana@db1 at 2026-11-29T08:00:01+00:00
        (Confirm button in JupyterLab; plan: 1 mutating call)``."""
        plan = "" if self.plan is None else f"; plan: {len(self.plan)} mutating call(s)"
        typed = f"; cluster typed: {self.typed_cluster_id}" if self.typed_cluster_id else ""
        return (
            f"{self.decision.upper()} {self.action} on {self.cluster_id!r} by {self.operator} at {self.at} "
            f"({self.how}{typed}{plan})"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Confirmation:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def plan_rows(calls: Sequence[Any]) -> list[dict[str, Any]]:
    """``PlannedCall``s (or rows already) as ``{"service", "call", "parameters"}`` rows."""
    rows = []
    for c in calls:
        if isinstance(c, Mapping):
            rows.append(dict(c))
        else:
            rows.append({"service": c.service, "call": c.operation, "parameters": dict(c.params)})
    return rows


def html_line(c: Confirmation) -> str:
    colour = _COLOURS.get(c.decision, "#57606a")
    head, _, rest = c.line().partition(" ")
    return (
        f"<div style='font-family:monospace;font-size:12px;margin:2px 0'><b style='color:{colour}'>"
        f"{html.escape(head)}</b> {html.escape(rest)}</div>"
    )


def record(c: Confirmation) -> None:
    """Leave the confirmation's trace in the running cell (see the module docstring)."""
    from IPython import get_ipython
    from IPython.display import display

    data = {CONFIRMATION_MIME: c.to_json(), "text/plain": c.line(), "text/html": html_line(c)}
    if get_ipython() is not None:
        display(data, raw=True)
    else:
        print(c.line())


def confirmations_in(nb: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every confirmation trace of an executed notebook, in order."""
    found: list[dict[str, Any]] = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            payload = (output.get("data") or {}).get(CONFIRMATION_MIME)
            if isinstance(payload, Mapping):
                found.append(dict(payload))
    return found
