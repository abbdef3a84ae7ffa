"""The progress widget of a long wait in JupyterLab (:func:`aurora_kit.polling.wait_for` shows it).

What is awaited and its last state, the time elapsed against the wait's deadline (a thin bar: how much of the
deadline is used, amber past 80 %), and the most recent events (RDS events on the aws backend). It is a wait, not a
count of work done, so there is no percentage of completion: a bar of tqdm's would read as one.

The widget updates live (at most once a second, :data:`aurora_kit.polling.UPDATE_EVERY_S`); its display output
carries the static line too (``text/plain``, ``text/html`` and the :data:`aurora_kit.polling.PROGRESS_MIME`
payload), written when the wait starts and replaced by the final line when it ends — what the record keeps.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from aurora_kit.interactive import static

_OK, _WARN, _FAIL, _MUTED = "#1a7f37", "#9a6700", "#cf222e", "#57606a"


def _duration(seconds: float) -> str:
    from aurora_kit.display import duration

    return duration(seconds)


def static_html(payload: Mapping[str, Any], line: str) -> str:
    done = payload.get("done")
    colour = _MUTED if not done else (_OK if done == "done" else _FAIL)
    mark = "⏳" if not done else ("✓" if done == "done" else "✗")
    style = f"font-family:monospace;font-size:12px;color:{colour};margin:2px 0"
    return f"<div style='{style}'>{mark} {html.escape(line)}</div>"


class ProgressWidget:
    """One wait's widget (see the module docstring)."""

    def __init__(self, payload: Mapping[str, Any], line: str, extra_mime: str) -> None:
        import ipywidgets as w

        self._mime = extra_mime
        self.title = w.HTML()
        self.bar = w.FloatProgress(
            value=0.0,
            min=0.0,
            max=max(float(payload["timeout_s"]), 1e-6),
            bar_style="info",
            layout=w.Layout(width="420px", height="10px"),
        )
        self.clock = w.HTML()
        self.events = w.HTML()
        self.box = w.VBox(
            [self.title, w.HBox([self.bar, self.clock]), self.events],
            layout=w.Layout(border="1px solid #d0d7de", padding="4px 10px", margin="2px 0", width="fit-content"),
        )
        self.box.add_class("aurora-kit-progress")
        self._refresh(payload)
        self.handle = static.show(self.box, line, static_html(payload, line), {extra_mime: dict(payload)})

    def _refresh(self, payload: Mapping[str, Any]) -> None:
        done = payload.get("done")
        what, state = html.escape(str(payload["what"])), html.escape(str(payload["state"]))
        if done:
            colour, verb = (_OK, "waited for") if done == "done" else (_FAIL, f"{done}:")
        else:
            colour, verb = "#0969da", "waiting for"
        self.title.value = f"<span style='color:{colour};font-weight:600'>{verb} {what}</span> · {state}"
        elapsed, timeout = float(payload["elapsed_s"]), float(payload["timeout_s"])
        self.bar.value = min(elapsed, timeout)
        used = elapsed / timeout if timeout else 1.0
        running = "warning" if used > 0.8 else "info"
        self.bar.bar_style = "success" if done == "done" else ("danger" if done else running)
        self.clock.value = (
            f"<span style='font-family:monospace;font-size:12px;color:{_MUTED}'>&nbsp;{_duration(elapsed)} "
            f"of the {_duration(timeout)} deadline</span>"
        )
        events = [html.escape(str(e)) for e in payload.get("events") or []]
        self.events.value = (
            "<div style='font-size:12px;color:#57606a'>" + "<br>".join(f"· {e}" for e in events) + "</div>"
            if events
            else ""
        )

    def update(self, payload: Mapping[str, Any]) -> None:
        self._refresh(payload)

    def close(self, payload: Mapping[str, Any], line: str) -> None:
        self._refresh(payload)
        static.settle(self.handle, self.box, line, static_html(payload, line), {self._mime: dict(payload)})
