"""What a run reports: :class:`RunResult` (one runbook's run, as the runner returns it) and :class:`Terminal`, what
``aurora-kit run`` prints — one or two lines per runbook (outcome, duration, key figures or why not, the record),
the plan of mutating calls of a dry run as a table, a wait's live progress as one updating line, and the closing
line with the exit code and the command that verifies the records.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aurora_kit.display import duration, text_table
from aurora_kit.figures import one_line
from aurora_kit.outcome import NOT_RUN, Outcome, RunOutcome, batch_exit_code


def command_name() -> str:
    """How to call aurora-kit again from where it runs now, for the commands it prints: ``aurora-kit`` when that is
    what PATH finds, else the path it was started by (``.venv/bin/aurora-kit`` from ``make``)."""
    import os
    import shutil

    started = sys.argv[0] if sys.argv else ""
    if os.path.basename(started) != "aurora-kit":  # python -m aurora_kit.cli, a test: the installed name
        return "aurora-kit"
    found = shutil.which("aurora-kit")
    if found and os.path.realpath(found) == os.path.realpath(started):
        return "aurora-kit"
    return shlex.quote(started)


_ANSI = {Outcome.PASSED: "32", Outcome.FAILED: "31", Outcome.NOT_VERIFIED: "33", Outcome.DRY_RUN: "34"}
_INDENT = " " * 16


@dataclass
class RunResult:
    """One runbook's run: its outcome, where its record is, and what it measured."""

    runbook: str
    status: str  # an outcome ("passed" | "failed" | "not verified" | "dry run") or "not run"
    run_id: str | None = None
    record_dir: Path | None = None
    failure: dict[str, Any] | None = None
    error: str | None = None
    duration_s: float | None = None
    results: dict[str, Any] | None = None
    outcome: RunOutcome | None = None
    key_figures: dict[str, Any] = field(default_factory=dict)
    plan: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """Passed, a dry run, or not verified with --allow-unverified: a batch goes on, the exit code is 0."""
        return self.outcome is not None and self.outcome.accepted

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code if self.outcome is not None else 1


def exit_code(results: Sequence[RunResult]) -> int:
    """Of a batch: 1 if any run failed, else 3 if any was not verified (and not accepted), else 0."""
    ran = [r.outcome for r in results if r.outcome is not None]
    return batch_exit_code(ran) if ran or not results else 1


class Terminal:
    """``aurora-kit run``'s output (see the module docstring); colours and the live line only on a terminal."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._live = False
        self._last_seen: tuple[Any, ...] | None = None

    def _print(self, text: str = "") -> None:
        self._clear_live()
        print(text, file=self.out, flush=True)

    def _label(self, outcome: Outcome | None, text: str) -> str:
        padded = f"{text:<13}"
        if self.tty and outcome is not None:
            return f"\033[1;{_ANSI[outcome]}m{padded}\033[0m"
        return padded

    # -- a batch -------------------------------------------------------------------------------------------------
    def starting(self, runbook: str) -> None:
        self._print(f"  {'…':<13} {runbook:<26} running")

    def progress(self, payload: Mapping[str, Any]) -> None:
        """A wait's progress (see :mod:`aurora_kit.polling`): one line rewritten in place on a terminal; in a log,
        a line when what is awaited or its state changes, and when it ends."""
        from aurora_kit.polling import Progress

        text = _INDENT + Progress.line(dict(payload))
        if self.tty:
            width = 160
            self.out.write("\r\033[K" + text[:width])
            self.out.flush()
            self._live = True
            return
        seen = (payload.get("what"), payload.get("state"), payload.get("done"))
        if seen != self._last_seen:
            self._last_seen = seen
            print(text, file=self.out, flush=True)

    def _clear_live(self) -> None:
        if self._live:
            self.out.write("\r\033[K")
            self._live = False

    def finished(self, result: RunResult) -> None:
        """One line (outcome, runbook, duration, key figures or why not), the dry-run plan, the record."""
        outcome = result.outcome.outcome if result.outcome else None
        label = result.outcome.label if result.outcome else result.status
        took = duration(result.duration_s) if result.duration_s is not None else ""
        self._print(f"  {self._label(outcome, label)} {result.runbook:<26} {took:>8}   {self._detail(result)}")
        if outcome is Outcome.DRY_RUN:
            self._plan(result.plan)
        if result.record_dir is not None:
            self._print(f"{_INDENT}record: {result.record_dir}")

    def _plan(self, plan: Sequence[Mapping[str, Any]]) -> None:
        """The dry run's mutating calls as a table (as ``terraform plan`` shows them): what each targets first."""
        if not plan:
            self._print(_INDENT + "plan: no mutating call recorded")
            return
        self._print(_INDENT + f"plan: {len(plan)} mutating call(s), none made")
        rows = []
        for n, call in enumerate(plan, 1):
            target, rest = _target(str(call.get("call")), call.get("parameters"))
            rows.append([n, call.get("service"), call.get("call"), target, _params(rest)])
        for line in text_table(["#", "service", "call", "target", "parameters"], rows).splitlines():
            self._print(_INDENT + line)

    def _detail(self, result: RunResult) -> str:
        ro = result.outcome
        if ro is None:
            return result.error or ""
        if ro.outcome is Outcome.FAILED:
            f = result.failure or {}
            if f:
                return f"cell #{f.get('code_cell_number')}: {f.get('ename')}: {f.get('evalue')}"
            return result.error or ro.reason
        if ro.outcome is Outcome.NOT_VERIFIED:
            accepted = " (accepted: --allow-unverified)" if ro.accepted else ""
            figures = one_line(result.runbook, result.key_figures, limit=3)
            return f"not verified: {', '.join(ro.unverified)}{accepted}" + (f" · {figures}" if figures else "")
        if ro.outcome is Outcome.DRY_RUN:
            return "dry run: nothing changed, nothing verified"
        return one_line(result.runbook, result.key_figures, limit=3) or ro.reason

    def not_run(self, runbook: str, why: str) -> None:
        self._print(f"  {'-':<13} {runbook:<26} {'':>8}   {NOT_RUN} ({why})")

    def closing(self, results: Sequence[RunResult], audit_dir: Path) -> None:
        counts: dict[str, int] = {}
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        order = [o.value for o in Outcome] + [NOT_RUN]
        parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
        total = sum(r.duration_s or 0 for r in results)
        code = exit_code(results)
        meaning = {0: "ok", 1: "a run failed", 3: "checks not verified (--allow-unverified accepts them)"}[code]
        self._print(f"aurora-kit run: {', '.join(parts) or 'nothing run'} in {duration(total)}; exit {code}: {meaning}")
        verify = f"{command_name()} audit verify --audit-dir {shlex.quote(str(audit_dir))}"
        self._print(f"verify the records with: {verify}")
        from aurora_kit.audit import head

        digest, entries, _last = head(audit_dir)
        self._print(f"audit head: {digest} ({entries} records) — note it outside the folder, or use --audit-sink")


def _target(call: str, params: Any) -> tuple[str, dict[str, Any]]:
    """The identifier ``call`` acts on (``CreateDBInstance`` → ``DBInstanceIdentifier`` / ``instance_id``; the
    longest match wins) and the other parameters."""
    if not isinstance(params, Mapping):
        return "", {}
    rest = dict(params)
    verb = call.lower()

    def noun(key: str) -> str:
        return key.lower().replace("identifier", "").replace("_id", "").replace("_", "").removeprefix("db")

    ids = [k for k in rest if str(k).endswith(("Identifier", "_id")) and isinstance(rest[k], str)]
    named = sorted((k for k in ids if noun(str(k)) and noun(str(k)) in verb), key=lambda k: -len(noun(str(k))))
    key = named[0] if named else (ids[0] if ids else None)
    return ("", rest) if key is None else (str(rest.pop(key)), rest)


def _params(value: Any, width: int = 90) -> str:
    """A call's parameters on one line, cut at ``width`` (the record has them all)."""
    text = ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, Mapping) else str(value or "")
    return text if len(text) <= width else text[: width - 1] + "…"
