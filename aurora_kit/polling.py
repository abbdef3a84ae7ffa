"""The one polling helper every wait goes through (AWS statuses, PostgreSQL readiness, failover done...).

Unlike boto3's waiters (fixed 30 s delay) it starts polling fast and backs off, has a hard deadline, shows live
progress, and raises :class:`WaitTimeoutError` naming what was awaited and the last state seen.

Progress (``progress=True``) is one line per wait — what is awaited, the last state, the time elapsed against the
deadline and, when the caller passes ``events``, the most recent events (RDS events on the aws backend) — shown
only once a wait has lasted :data:`SHOW_AFTER_S`, so quick waits leave no trace:

- in JupyterLab (a live frontend and ipywidgets: :mod:`aurora_kit.interactive`), a progress widget — status,
  elapsed against the deadline, recent events — whose display output also holds the static line, final when the
  wait ends (:mod:`aurora_kit.interactive.progress`);
- in any other notebook kernel (papermill, nbval), a display updated in place (the record keeps its final state,
  e.g. ``waited 12 min 31 s for cluster ak-prod available: available``); its payload (mimetype
  :data:`PROGRESS_MIME`) is what the runner's engine forwards to the terminal as the live line of ``aurora-kit run``;
- in a terminal, one line rewritten in place on stderr;
- elsewhere (a pipe, a log file), nothing until the final line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aurora_kit.errors import InvalidStateError, WaitTimeoutError

T = TypeVar("T")

PROGRESS_MIME = "application/vnd.aurora-kit.progress+json"
#: a wait shorter than this shows no progress at all
SHOW_AFTER_S = 1.0
#: at most one progress update per this many seconds
UPDATE_EVERY_S = 1.0
#: ``events`` is asked at most this often (an API call on the aws backend)
EVENTS_EVERY_S = 15.0


def wait_for(
    what: str,
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float = 600.0,
    initial_delay: float = 0.05,
    max_delay: float = 5.0,
    backoff: float = 1.5,
    describe: Callable[[T], str] = repr,
    progress: bool = False,
    retry_on: tuple[type[BaseException], ...] = (),
    fail_if: Callable[[T], str | None] | None = None,
    events: Callable[[], Sequence[str]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``probe`` until ``done(result)`` is true; return that result.

    ``retry_on`` lists exceptions from ``probe`` that mean "not yet" (e.g. connection refused while a server
    starts); any other exception escapes at once. ``fail_if(result)`` returns a reason when the state is terminal
    (``failed``, ``incompatible-parameters``...): the wait stops at once with :class:`InvalidStateError` instead of
    running to its deadline. The delay between probes starts at ``initial_delay`` and grows
    by ``backoff`` up to ``max_delay``, never sleeping past the deadline. ``events()`` (optional, progress only)
    returns recent events about the awaited resource, newest last; it may fail — progress never breaks a wait.
    """
    deadline = clock() + timeout
    delay = initial_delay
    last_state: object = "<not probed yet>"
    line = Progress(what, timeout, clock=clock, events=events) if progress else None
    outcome = "gave up"
    try:
        while True:
            try:
                result = probe()
            except retry_on as exc:
                last_state = f"{type(exc).__name__}: {exc}".strip()
            else:
                last_state = describe(result)
                if done(result):
                    outcome = "done"
                    return result
                reason = fail_if(result) if fail_if is not None else None
                if reason:
                    raise InvalidStateError(f"gave up waiting for {what}: {reason}", what=what, last_state=last_state)
            if line is not None:
                line.update(str(last_state))
            remaining = deadline - clock()
            if remaining <= 0:
                outcome = "timed out"
                raise WaitTimeoutError(what, timeout, last_state)
            sleep(min(delay, remaining))
            delay = min(delay * backoff, max_delay)
    finally:
        if line is not None:
            line.close(outcome, str(last_state))


def _elapsed(seconds: float) -> str:
    from aurora_kit.display import duration

    return duration(seconds)


class Progress:
    """The live line of one wait (see the module docstring)."""

    def __init__(
        self,
        what: str,
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        events: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.what = what
        self.timeout = timeout
        self.clock = clock
        self.started = clock()
        self.events_source = events
        self.events: list[str] = []
        self.state = ""
        self._last_update = float("-inf")
        self._last_events = float("-inf")
        self._shown = False
        self._handle: Any = None
        self._widget: Any = None
        self._tty = False

    # -- what is shown ---------------------------------------------------------------------------------------------
    def payload(self, *, done: str | None = None) -> dict[str, Any]:
        return {
            "what": self.what,
            "state": self.state,
            "elapsed_s": round(self.clock() - self.started, 1),
            "timeout_s": self.timeout,
            "events": self.events[-3:],
            "done": done,
        }

    @staticmethod
    def line(payload: dict[str, Any]) -> str:
        """One line for a person, from a payload (the runner's terminal uses it too)."""
        elapsed = _elapsed(payload["elapsed_s"])
        last = f" · last event: {payload['events'][-1]}" if payload.get("events") else ""
        if payload.get("done"):
            verb = "waited" if payload["done"] == "done" else f"{payload['done']} after"
            return f"{verb} {elapsed} for {payload['what']}: {payload['state']}{last}"
        return (
            f"waiting for {payload['what']}: {payload['state']} · {elapsed} of {_elapsed(payload['timeout_s'])}{last}"
        )

    # -- updates ------------------------------------------------------------------------------------------------
    def update(self, state: str) -> None:
        self.state = state
        now = self.clock()
        if now - self.started < SHOW_AFTER_S or now - self._last_update < UPDATE_EVERY_S:
            return
        self._last_update = now
        self._refresh_events(now)
        self._show(self.payload())

    def close(self, outcome: str, state: str) -> None:
        self.state = state
        if not self._shown and self.clock() - self.started < SHOW_AFTER_S:
            return  # a quick wait leaves no trace
        self._refresh_events(self.clock(), force=outcome != "done")
        self._show(self.payload(done=outcome), final=True)

    def _refresh_events(self, now: float, *, force: bool = False) -> None:
        if self.events_source is None or (not force and now - self._last_events < EVENTS_EVERY_S):
            return
        self._last_events = now
        try:
            self.events = [str(e) for e in self.events_source()]
        except Exception:  # progress must never break a wait (no permission, an API hiccup...)
            self.events_source = None

    def _show(self, payload: dict[str, Any], *, final: bool = False) -> None:
        text = self.line(payload)
        data = {PROGRESS_MIME: payload, "text/plain": text}
        if not self._shown:
            self._shown = True
            self._widget = _widget(payload, text)
            if self._widget is None:
                self._handle = _kernel_display(data)
        if self._widget is not None:
            if final:
                self._widget.close(payload, text)
            else:
                self._widget.update(payload)
            return
            self._tty = self._handle is None and sys.stderr.isatty()
        elif self._handle is not None:
            self._handle.update(data, raw=True)
        if self._handle is None and self._tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
            sys.stderr.flush()
        elif self._handle is None and final:
            print(text, file=sys.stderr)


def _widget(payload: dict[str, Any], text: str) -> Any:
    """A progress widget when a person watches in JupyterLab (:mod:`aurora_kit.interactive`); None elsewhere."""
    from aurora_kit.interactive import kernel

    if not (kernel.widgets_available() and kernel.frontend_is_live()):
        return None
    from aurora_kit.interactive.progress import ProgressWidget

    return ProgressWidget(payload, text, PROGRESS_MIME)


def _kernel_display(data: dict[str, Any]) -> Any:
    """Show ``data`` as an updatable display when running in a notebook kernel; None elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return None
    if get_ipython() is None or not hasattr(get_ipython(), "kernel"):
        return None
    return display(data, raw=True, display_id=True)
