"""The one place for tables and number formatting, in notebooks (HTML) and terminals (aligned text).

``fmt`` renders one value for a person: floats to three decimals (thousands separated), booleans as yes/no, None
as an em dash, datetimes to the second, lists and dicts inline. Raw values stay in the records' JSON; only what a
person reads goes through here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: list items shown before "… (+N)"
MAX_ITEMS = 20


def fmt(value: Any) -> str:
    """A table cell for a person (see the module docstring)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (list, tuple)):
        shown = ", ".join(fmt(v) for v in value[:MAX_ITEMS])
        return shown + (f", … (+{len(value) - MAX_ITEMS})" if len(value) > MAX_ITEMS else "")
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(fmt(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns for a terminal (the header underlined)."""
    cells = [[str(h) for h in headers], *[[fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class Table:
    """Rows of dicts, shown as an HTML table in a notebook and as aligned text elsewhere."""

    rows: list[dict[str, Any]]
    title: str = ""

    @property
    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for row in self.rows:
            cols.update(dict.fromkeys(row))
        return list(cols)

    def _repr_html_(self) -> str:
        cols = self.columns
        title = f"<h4 style='margin:4px 0'>{html.escape(self.title)}</h4>" if self.title else ""
        empty = "" if self.rows else "<p><i>(none)</i></p>"
        return title + html_table(cols, [[r.get(c) for c in cols] for r in self.rows]) + empty

    def __str__(self) -> str:
        lines = [self.title] if self.title else []
        if self.rows:
            cols = self.columns
            lines.append(text_table(cols, [[r.get(c) for c in cols] for r in self.rows]))
        else:
            lines.append("(none)")
        return "\n".join(lines)

    __repr__ = __str__


def show(value: Any) -> None:
    """Display ``value`` in the notebook (its HTML) when a kernel runs this, else print it."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        print(value)
        return
    if get_ipython() is not None:
        display(value)
    else:
        print(value)
