"""What every check returns: :class:`CheckResult` — a verdict (PASS/FAIL with the limits), a table for people, plain
JSON figures for the record, and ``assert_ok()`` raising :class:`~aurora_kit.errors.VerificationError` with the
evidence when the claim fails.

A check with its own measurements subclasses :class:`CheckResult` and provides ``problems()`` (empty when the claim
holds), ``summary()`` (JSON-able key figures) and, optionally, ``summary_rows()``/``detail_table()``. A check that
is only a list of findings (roles agree, alarms quiet, a cluster is gone) returns a :class:`Findings`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aurora_kit.display import html_table, measure
from aurora_kit.errors import VerificationError
from aurora_kit.jsonable import jsonable

PASS_COLOUR, FAIL_COLOUR = "#1a7f37", "#cf222e"


class CheckResult:
    """Base of every check result: HTML display, JSON summary, one verdict line, and ``assert_ok()``."""

    title: ClassVar[str] = "check"

    def problems(self) -> list[str]:
        """What contradicts the claim, one sentence each; empty when the check passes."""
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        return not self.problems()

    def summary(self) -> dict[str, Any]:
        """Key results as plain JSON types (``json.dumps`` works as is), for the run's audit record."""
        raise NotImplementedError

    def limits(self) -> str:
        """The limits the verdict was judged against, for the verdict line ('' when the check has none)."""
        return ""

    def summary_rows(self) -> list[tuple[str, Any]]:
        """(label, value) pairs of the headline table; defaults to the summary's items."""
        return [(k, v) for k, v in self.summary().items() if not isinstance(v, (list, dict))]

    def detail_table(self) -> tuple[list[str], list[list[Any]]] | None:
        """Optional second table (headers, rows), e.g. one row per reader or per table."""
        return None

    def verdict(self) -> str:
        """``PASS <title> (<limits>)`` or ``FAIL <title>: <problems>`` — the same line in every runbook."""
        limits = self.limits()
        if self.ok:
            return f"PASS {self.title}" + (f" ({limits})" if limits else "")
        return f"FAIL {self.title}: " + "; ".join(self.problems())

    def _raise_if(self, problems: list[str]) -> None:
        if problems:
            raise VerificationError(
                f"{self.title} failed: " + "; ".join(problems),
                problems=problems,
                evidence=jsonable(self.summary(), strict=False),
            )

    def assert_ok(self) -> CheckResult:
        """Raise :class:`VerificationError` (with the evidence) unless the check passed; returns self."""
        self._raise_if(self.problems())
        return self

    def to_json(self) -> str:
        return json.dumps(jsonable(self.summary(), strict=False), indent=2, sort_keys=True)

    def _repr_html_(self) -> str:
        problems = self.problems()
        colour, verdict = (PASS_COLOUR, "PASS") if not problems else (FAIL_COLOUR, "FAIL")
        parts = [
            f"<h4 style='margin:4px 0'>{html.escape(self.title)} "
            f"<span style='color:{colour};font-weight:bold'>{verdict}</span></h4>",
        ]
        rows = self.summary_rows()
        if rows:
            parts.append(html_table(["measure", "value"], [measure(str(k), v) for k, v in rows]))
        detail = self.detail_table()
        if detail is not None and detail[1]:
            parts.append(html_table(*detail))
        if problems:
            items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
            parts.append(f"<ul style='color:{colour}'>{items}</ul>")
        return "\n".join(parts)

    def __str__(self) -> str:
        lines = [f"{self.title}: {'PASS' if self.ok else 'FAIL'}"]
        lines += ["  {}: {}".format(*measure(str(label), value)) for label, value in self.summary_rows()]
        lines += [f"  ! {p}" for p in self.problems()]
        return "\n".join(lines)

    __repr__ = __str__


@dataclass(repr=False)
class Findings(CheckResult):
    """A check whose result is what it found: ``found`` (JSON figures), an optional table, and the problems."""

    name: str
    found: dict[str, Any] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    columns: Sequence[str] = ()
    rows: list[list[Any]] = field(default_factory=list)
    judged_against: str = ""

    @property
    def title(self) -> str:  # type: ignore[override]
        return self.name

    def problems(self) -> list[str]:
        return list(self.issues)

    def summary(self) -> dict[str, Any]:
        return dict(self.found)

    def limits(self) -> str:
        return self.judged_against

    def detail_table(self) -> tuple[list[str], list[list[Any]]] | None:
        return (list(self.columns), self.rows) if self.columns else None
