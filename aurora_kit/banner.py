"""The banner at the top of every record: what ran, its outcome in colour, where, by whom, when, how long, and the
runbook's key figures — what a DBA reads first when opening a record.

The runner writes it when it seals a record (:func:`dress`), from the same facts as ``summary.json``: a markdown
cell tagged :data:`BANNER_TAG` inserted first in the executed notebook (and so in its HTML render), and a comment
on the runbook's ``parameters`` cell saying that this run's values are those of the injected cell below it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from aurora_kit.display import duration, timestamp
from aurora_kit.figures import shown
from aurora_kit.outcome import Outcome, parse

BANNER_TAG = "aurora-kit-banner"
DEFAULTS_MARK = "# ▲ DEFAULTS of this runbook — OVERRIDDEN in this run by the injected-parameters cell below"

_FONT = "-apple-system,Segoe UI,Helvetica,Arial,sans-serif"  # no quotes: the banner's attributes are single-quoted
_MUTED = "#57606a"


def when(value: Any) -> str:
    """An ISO timestamp for people: ``2026-11-29 07:08:21 UTC``."""
    return timestamp(value)


def where(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(cluster, backend) of a record, from its parameters."""
    p = summary.get("parameters") or {}
    return str(p.get("cluster_id") or "—"), str(summary.get("backend") or p.get("backend") or "—")


def headline(summary: Mapping[str, Any]) -> str:
    """Why the outcome is what it is, in one sentence (empty for a plain pass)."""
    outcome = parse(str(summary.get("outcome")))
    failure = summary.get("failure") or {}
    if outcome is Outcome.FAILED:
        if failure:
            cell = failure.get("code_cell_number")
            return f"failed in code cell #{cell}: {failure.get('ename')}: {failure.get('evalue')}"
        return str(summary.get("error") or summary.get("outcome_reason") or "failed")
    if outcome is Outcome.NOT_VERIFIED:
        accepted = " — accepted with --allow-unverified" if summary.get("allowed_unverified") else ""
        return str(summary.get("outcome_reason") or "not verified") + accepted
    if outcome is Outcome.DRY_RUN:
        return "dry run: the plan of mutating calls is below; nothing was changed and nothing was verified"
    return ""


def label(summary: Mapping[str, Any]) -> str:
    """PASS / FAIL / NOT VERIFIED / DRY RUN of a record, "(accepted)" when unverified checks were accepted."""
    outcome = parse(str(summary.get("outcome")))
    accepted = outcome is Outcome.NOT_VERIFIED and bool(summary.get("allowed_unverified"))
    return outcome.label + (" (accepted)" if accepted else "")


def banner_html(summary: Mapping[str, Any]) -> str:
    """The banner of a record (one HTML block without blank lines, so markdown renders it as is)."""
    outcome = parse(str(summary.get("outcome")))
    colour = outcome.colour
    text = label(summary)
    cluster, backend = where(summary)
    runbook = str(summary.get("runbook") or "")
    esc = html.escape
    figures = shown(runbook, summary.get("key_figures") or {})
    tiles = "".join(
        f"<div style='min-width:90px'><div style='font-size:12px;color:{_MUTED};text-transform:uppercase;"
        f"letter-spacing:.04em'>{esc(name)}</div><div style='font-size:22px;font-weight:600'>{esc(value)}</div></div>"
        for name, value in figures
    )
    if not tiles:
        tiles = f"<div style='color:{_MUTED}'>no key figures (nothing was measured)</div>"
    why = headline(summary)
    unverified = summary.get("unverified") or []
    why_html = ""
    if why:
        why_html = f"<div style='margin:6px 0;color:{colour};font-weight:600'>{esc(why)}</div>"
    if unverified and outcome is Outcome.NOT_VERIFIED:
        items = "".join(f"<li>{esc(str(u))}</li>" for u in unverified)
        why_html += f"<div style='color:{_MUTED}'>not verified:</div><ul style='margin:2px 0 6px 0'>{items}</ul>"
    p = summary.get("parameters") or {}
    flags = (
        ", ".join(f for f, on in (("dry run", p.get("dry_run")), ("confirmed", p.get("confirm"))) if on)
        or "no dry run, not confirmed"
    )
    if summary.get("mode") == "interactive":  # confirm is not a parameter there: a person answers each gate
        answers = [f"{c.get('action')}: {c.get('decision')}" for c in summary.get("confirmations") or []]
        asked = "; ".join(answers) or "no confirmation asked"
        flags = ("dry run; " if p.get("dry_run") else "") + f"in JupyterLab: {asked}"
    source = " ".join(
        str(x) for x in [summary.get("parameters_file") or "", *(f"-p {o}" for o in summary.get("overrides") or [])]
    )
    facts = [
        ("operator", f"{summary.get('operator')}@{summary.get('host')}"),
        ("start", when(summary.get("started_at"))),
        ("end", when(summary.get("ended_at"))),
        ("duration", duration(summary.get("duration_s"))),
        ("parameters", f"{source.strip() or '—'} ({flags})"),
        ("run id", str(summary.get("run_id") or "—")),
    ]
    rows = "".join(
        f"<tr><td style='color:{_MUTED};padding:1px 14px 1px 0;text-align:left'>{esc(k)}</td>"
        f"<td style='text-align:left;padding:1px 0'>{esc(v)}</td></tr>"
        for k, v in facts
    )
    return (
        f"<div class='{BANNER_TAG}' style='border:1px solid {colour};border-left:12px solid {colour};"
        f"border-radius:6px;padding:10px 16px;margin:0 0 16px 0;font-family:{_FONT}'>"
        f"<div style='display:flex;align-items:center;gap:12px;flex-wrap:wrap'>"
        f"<span data-outcome='{esc(outcome.value)}' style='background:{colour};color:#fff;font-weight:700;"
        f"font-size:20px;padding:3px 12px;border-radius:4px'>{esc(text)}</span>"
        f"<span style='font-size:20px;font-weight:600'>{esc(runbook)}</span>"
        f"<span style='color:{_MUTED};font-size:16px'>cluster <b>{esc(cluster)}</b> · backend {esc(backend)}</span>"
        "</div>"
        f"{why_html}"
        f"<div style='display:flex;gap:28px;flex-wrap:wrap;margin:10px 0'>{tiles}</div>"
        f"<table style='border-collapse:collapse;font-size:13px;margin:0'>{rows}</table></div>"
    )


def dress(nb: Any, summary: Mapping[str, Any]) -> None:
    """Put the banner first in ``nb`` (replacing an earlier one) and mark its defaults cell as overridden."""
    import nbformat

    nb.cells = [c for c in nb.cells if BANNER_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = nbformat.v4.new_markdown_cell(banner_html(summary), metadata={"tags": [BANNER_TAG]})
    nb.cells.insert(0, cell)
    injected = any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    for c in nb.cells:
        if injected and "parameters" in c.get("metadata", {}).get("tags", []) and DEFAULTS_MARK not in c.source:
            c.source = f"{DEFAULTS_MARK}\n{c.source}"
            break
