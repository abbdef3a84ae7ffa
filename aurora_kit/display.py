"""The one place for tables and number formatting, in notebooks (HTML) and terminals (aligned text).

``fmt`` renders one value for a person: floats to three decimals (thousands separated), booleans as yes/no, None
as an em dash, datetimes to the second, lists and dicts inline. ``quantity(value, unit)`` renders a measured
figure with its unit, rounded for people:

=========  ===================  ==========================================
unit       shown as             e.g.
=========  ===================  ==========================================
``s``      3 decimals           RTO ``0.140 s``
``ms``     1 decimal            lag p99 ``4.0 ms``
``x``      1 decimal + ×        speed-up ``19.5×``
``ratio``  3 decimals           recall ``0.970``
``%``      1 decimal            CPU ``12.5 %``
``bytes``  GiB, 2 decimals      FreeableMemory ``3.42 GiB`` (threshold ``0.0625 GiB``: 3 digits below 1)
``count``  integer              lost commits ``0``
``time``   to the second, UTC   ``2026-11-29 07:19:35 UTC``
=========  ===================  ==========================================

``duration`` renders elapsed time (``4.2 s``, ``3 min 12 s``, ``1 h 02 min``). Raw values stay in the records'
JSON (``summary.json``); only what a person reads goes through here.
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
        if not value:
            return "none"
        shown = ", ".join(fmt(v) for v in value[:MAX_ITEMS])
        return shown + (f", … (+{len(value) - MAX_ITEMS})" if len(value) > MAX_ITEMS else "")
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)


GIB = 1024**3


def quantity(value: Any, unit: str = "") -> str:
    """A measured figure with its unit, rounded for a person (see the module docstring)."""
    if value is None:
        return "—"
    if unit == "time":
        return timestamp(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return fmt(value)
    if unit == "s":
        return f"{value:,.3f} s"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "x":
        return f"{value:,.1f}×"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "%":
        return f"{value:,.1f} %"
    if unit == "bytes":
        gib = value / GIB
        return f"{gib:,.2f} GiB" if abs(gib) >= 1 else f"{gib:.3g} GiB"
    if unit == "count":
        return f"{round(value):,}"
    return fmt(value) + (f" {unit}" if unit else "")


def timestamp(value: Any) -> str:
    """A moment for people: ``2026-11-29 07:08:21 UTC`` (from a datetime or an ISO string)."""
    if not value:
        return "—"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    offset = moment.utcoffset()
    zone = "UTC" if offset is not None and not offset else moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}".strip()


#: a summary key's suffix → (what to drop from the label, unit): ``rto_s`` → "RTO", ``0.140 s``
_SUFFIX_UNITS = (("_per_s", " (per s)", "count"), ("_ms", "", "ms"), ("_s", "", "s"), ("_qps", " QPS", "count"))
_WORDS = {"rto": "RTO", "qps": "QPS", "id": "id", "ids": "ids", "pitr": "PITR", "ef": "ef"}


def measure(key: str, value: Any) -> tuple[str, str]:
    """(label, value) of a summary entry for people: ``("exact_p50_ms", 0.3958)`` → ``("exact p50", "0.4 ms")``,
    ``("rto_s", 0.14047)`` → ``("RTO", "0.140 s")``; other keys lose their underscores."""
    for suffix, label_suffix, unit in _SUFFIX_UNITS:
        if key.endswith(suffix) and isinstance(value, (int, float)) and not isinstance(value, bool):
            words = key[: -len(suffix)].split("_")
            return " ".join(_WORDS.get(w, w) for w in words) + label_suffix, quantity(value, unit)
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        return " ".join(_WORDS.get(w, w) for w in key.split("_")), timestamp(value)
    return " ".join(_WORDS.get(w, w) for w in key.split("_")), fmt(value)


def brief(value: Any, width: int = 400) -> str:
    """A recorded value on one line for people (floats rounded, nested values inline), cut at ``width``."""
    text = fmt(value)
    return text if len(text) <= width else text[: width - 1] + "… (full value in summary.json)"


def duration(seconds: float | None) -> str:
    """Elapsed time for a person: ``0.4 s``, ``42.1 s``, ``3 min 12 s``, ``1 h 02 min``."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


#: colour of each check status in verdict lines (the outcome colours of :mod:`aurora_kit.outcome`)
STATUS_COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "skipped": "#bf8700", "not requested": "#57606a"}


def verdict_html(status: str, line: str) -> str:
    """A verdict line (``PASS …`` / ``FAIL …`` / ``NOT VERIFIED …``) with its label in the status colour."""
    colour = STATUS_COLOURS.get(str(getattr(status, "value", status)), "#57606a")
    label, _, rest = line.partition(" ")
    if label == "NOT":  # NOT VERIFIED / NOT REQUESTED
        second, _, rest = rest.partition(" ")
        label = f"{label} {second}"
    return (
        f"<p style='margin:6px 0;font-family:monospace'><b style='color:{colour}'>{html.escape(label)}</b> "
        f"{html.escape(rest)}</p>"
    )


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
