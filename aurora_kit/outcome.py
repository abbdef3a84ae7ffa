"""A run's outcome: one of four, computed from the checks the run owns — the one model behind the CLI's exit code,
``audit list``, the record's banner, and whatever reports runs later (a fleet summary, an Airflow task state).

=================  =====  ==========================================================================================
outcome            exit   when
=================  =====  ==========================================================================================
``passed``         0      every check the run owns ran and passed
``failed``         1      a check failed or a step raised (the failing cell is in the record)
``not verified``   3      the run completed but at least one check was skipped (they are named); exit 0 when the
                          operator accepted that explicitly (``aurora-kit run --allow-unverified``)
``dry run``        0      plan only: nothing was changed, nothing was verified
=================  =====  ==========================================================================================

Exit code 2 stays "refused before running" (invalid parameters, unknown runbook, an unusable local root): no
kernel started, no record. A run that recorded no check at all is ``not verified`` — a verification tool must never
pass without verifying.

Each check leaves a trace in the executed notebook: a display output of mimetype :data:`CHECK_MIME`
(``{"name", "status", "detail"}``) next to its visible verdict line (``aurora_kit.steps.common.verify`` writes it,
:func:`aurora_kit.runbook.record_check` is the kernel side). :func:`checks_in` reads them back from a notebook and
:func:`decide` turns them into a :class:`RunOutcome`; :func:`of_summary` rebuilds one from a record's
``summary.json``. Standard library only: importable anywhere without the notebook stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

CHECK_MIME = "application/vnd.aurora-kit.check+json"

#: exit code for a run refused before any kernel started (bad parameters, unknown runbook, unusable root)
EXIT_REFUSED = 2
#: the shell's convention for a command stopped by SIGINT (128 + 2)
EXIT_INTERRUPTED = 130
#: status of a runbook of a batch that was not started because an earlier one was not accepted
NOT_RUN = "not run"


class Outcome(str, Enum):
    """The four outcomes (values are what records and the index store)."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_VERIFIED = "not verified"
    DRY_RUN = "dry run"

    @property
    def label(self) -> str:
        """What a person reads: PASS / FAIL / NOT VERIFIED / DRY RUN."""
        return _LABELS[self]

    @property
    def colour(self) -> str:
        return _COLOURS[self]

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]

    def __str__(self) -> str:
        return self.value


_LABELS = {
    Outcome.PASSED: "PASS",
    Outcome.FAILED: "FAIL",
    Outcome.NOT_VERIFIED: "NOT VERIFIED",
    Outcome.DRY_RUN: "DRY RUN",
}
_COLOURS = {
    Outcome.PASSED: "#1a7f37",  # green
    Outcome.FAILED: "#cf222e",  # red
    Outcome.NOT_VERIFIED: "#bf8700",  # amber
    Outcome.DRY_RUN: "#0969da",  # blue
}
_EXIT_CODES = {Outcome.PASSED: 0, Outcome.FAILED: 1, Outcome.NOT_VERIFIED: 3, Outcome.DRY_RUN: 0}

#: records sealed before outcomes existed said "succeeded" for anything that did not raise: nothing is known about
#: their checks, so they read as not verified
LEGACY = {"succeeded": Outcome.NOT_VERIFIED}


class CheckStatus(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # could not run here (data plane unreachable, nothing to check in a dry run...)
    NOT_REQUESTED = "not requested"  # the parameters asked for no such check (restore_mode: pitr...)


#: a name that appears more than once keeps its worst status
_SEVERITY = {CheckStatus.FAILED: 3, CheckStatus.SKIPPED: 2, CheckStatus.PASSED: 1, CheckStatus.NOT_REQUESTED: 0}


@dataclass(frozen=True)
class Check:
    """One check of a run as its trace records it: its name, status and its verdict line (or why it was skipped)."""

    name: str
    status: CheckStatus
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Check:
        return cls(str(data.get("name", "?")), CheckStatus(str(data.get("status"))), str(data.get("detail") or ""))


def checks_in(nb: Mapping[str, Any]) -> list[Check]:
    """Every check traced in an executed notebook (a dict or NotebookNode), in order, one per name (worst status)."""
    found: list[Check] = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            payload = (output.get("data") or {}).get(CHECK_MIME)
            if isinstance(payload, Mapping):
                try:
                    found.append(Check.from_json(payload))
                except ValueError:  # an unknown status is not a pass either
                    found.append(Check(str(payload.get("name", "?")), CheckStatus.FAILED, "unreadable check trace"))
    return merge(found)


def merge(checks: Iterable[Check]) -> list[Check]:
    """One entry per name, in first-seen order, keeping the worst status (failed > skipped > passed)."""
    merged: dict[str, Check] = {}
    for check in checks:
        seen = merged.get(check.name)
        if seen is None or _SEVERITY[check.status] > _SEVERITY[seen.status]:
            merged[check.name] = check
    return list(merged.values())


@dataclass(frozen=True)
class RunOutcome:
    """A run's outcome and what it rests on (see the module docstring)."""

    outcome: Outcome
    checks: tuple[Check, ...] = ()
    allowed_unverified: bool = False
    reason: str = ""  # one sentence: why failed / not verified
    unverified: tuple[str, ...] = field(default=())

    @property
    def accepted(self) -> bool:
        """Passed, a dry run, or not verified with the operator's explicit acceptance: exit 0, a batch goes on."""
        if self.outcome is Outcome.NOT_VERIFIED:
            return self.allowed_unverified and bool(self.unverified)
        return self.outcome in (Outcome.PASSED, Outcome.DRY_RUN)

    @property
    def exit_code(self) -> int:
        return 0 if self.accepted else self.outcome.exit_code

    @property
    def label(self) -> str:
        """PASS / FAIL / NOT VERIFIED / DRY RUN, with "(accepted)" when unverified checks were accepted."""
        accepted = self.outcome is Outcome.NOT_VERIFIED and self.accepted
        return self.outcome.label + (" (accepted)" if accepted else "")

    def summary(self) -> dict[str, Any]:
        """The fields ``summary.json`` carries."""
        return {
            "outcome": self.outcome.value,
            "outcome_reason": self.reason,
            "unverified": list(self.unverified),
            "allowed_unverified": self.allowed_unverified,
            "checks": [c.to_json() for c in self.checks],
            "exit_code": self.exit_code,
        }


def decide(
    checks: Sequence[Check],
    *,
    failed: bool,
    dry_run: bool,
    allow_unverified: bool = False,
    failure: str = "",
) -> RunOutcome:
    """The outcome of a run from its checks and whether it raised (``failed``, described by ``failure``)."""
    checks = tuple(merge(checks))
    bad = [c for c in checks if c.status is CheckStatus.FAILED]
    if failed or bad:
        reason = failure or "; ".join(c.detail or c.name for c in bad)
        return RunOutcome(Outcome.FAILED, checks, allow_unverified, reason)
    if dry_run:
        return RunOutcome(Outcome.DRY_RUN, checks, allow_unverified, "dry run: no change made, nothing verified")
    skipped = [c for c in checks if c.status is CheckStatus.SKIPPED]
    ran = [c for c in checks if c.status is CheckStatus.PASSED]
    if skipped:
        why = dict.fromkeys(c.detail or c.name for c in skipped)  # one reason usually covers them all
        reason = f"{len(skipped)} of {len(skipped) + len(ran)} checks not verified: " + "; ".join(why)
        unverified = tuple(c.name for c in skipped)
        return RunOutcome(Outcome.NOT_VERIFIED, checks, allow_unverified, reason, unverified)
    if not ran:
        return RunOutcome(Outcome.NOT_VERIFIED, checks, allow_unverified, "the run recorded no check", ("no check",))
    return RunOutcome(Outcome.PASSED, checks, allow_unverified, f"{len(ran)} checks passed")


def parse(value: str) -> Outcome:
    """An outcome from its stored value (records older than outcomes: see :data:`LEGACY`)."""
    return LEGACY.get(value) or Outcome(value)


def of_summary(summary: Mapping[str, Any]) -> RunOutcome:
    """The outcome a sealed record's ``summary.json`` states (for reports built on records)."""
    checks = tuple(Check.from_json(c) for c in summary.get("checks") or [])
    return RunOutcome(
        parse(str(summary.get("outcome"))),
        checks,
        bool(summary.get("allowed_unverified")),
        str(summary.get("outcome_reason") or ""),
        tuple(summary.get("unverified") or ()),
    )


def batch_exit_code(outcomes: Iterable[RunOutcome]) -> int:
    """The exit code of several runs: failed (1) over not verified (3) over accepted (0)."""
    codes = {o.exit_code for o in outcomes}
    for code in (_EXIT_CODES[Outcome.FAILED], _EXIT_CODES[Outcome.NOT_VERIFIED]):
        if code in codes:
            return code
    return 0
