"""Notebook display for check results: one summary table, one detail table, a pass/fail badge.

Every result class derives from :class:`CheckResult` and provides ``problems()`` (empty when the claim holds),
``summary()`` (plain JSON-able key figures for audit records) and the rows shown in the notebook.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from aurora_kit.errors import VerificationError
from aurora_kit.jsonable import jsonable


def fmt(value: Any) -> str:
    """Human format for a table cell: floats to 3 decimals, None as an em dash, datetimes ISO."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, (list, tuple)):
        shown = ", ".join(fmt(v) for v in value[:20])
        return shown + (f", … (+{len(value) - 20})" if len(value) > 20 else "")
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    return str(value)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(fmt(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class CheckResult:
    """Base of every check result: HTML display, JSON summary, and ``assert_ok()`` raising VerificationError."""

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

    def summary_rows(self) -> list[tuple[str, Any]]:
        """(label, value) pairs of the headline table; defaults to the summary's items."""
        return [(k, v) for k, v in self.summary().items() if not isinstance(v, (list, dict))]

    def detail_table(self) -> tuple[list[str], list[list[Any]]] | None:
        """Optional second table (headers, rows), e.g. one row per reader or per table."""
        return None

    def _raise_if(self, problems: list[str]) -> None:
        if problems:
            raise VerificationError(
                f"{self.title} failed: " + "; ".join(problems),
                problems=problems,
                evidence=self.summary(),
            )

    def assert_ok(self) -> CheckResult:
        """Raise :class:`VerificationError` (with the evidence) unless the check passed; returns self."""
        self._raise_if(self.problems())
        return self

    def to_json(self) -> str:
        return json.dumps(jsonable(self.summary(), strict=False), indent=2, sort_keys=True)

    def _repr_html_(self) -> str:
        problems = self.problems()
        colour, verdict = ("#1a7f37", "PASS") if not problems else ("#cf222e", "FAIL")
        parts = [
            f"<h4 style='margin:4px 0'>{html.escape(self.title)} "
            f"<span style='color:{colour};font-weight:bold'>{verdict}</span></h4>",
            html_table(["measure", "value"], self.summary_rows()),
        ]
        detail = self.detail_table()
        if detail is not None and detail[1]:
            parts.append(html_table(*detail))
        if problems:
            items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
            parts.append(f"<ul style='color:{colour}'>{items}</ul>")
        return "\n".join(parts)

    def __str__(self) -> str:
        lines = [f"{self.title}: {'PASS' if self.ok else 'FAIL'}"]
        lines += [f"  {label}: {fmt(value)}" for label, value in self.summary_rows()]
        lines += [f"  ! {p}" for p in self.problems()]
        return "\n".join(lines)
