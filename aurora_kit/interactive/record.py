"""Sealing an interactive run into the audit folder, exactly like a headless one.

The record's notebook is built from the kernel's account of the run (:mod:`aurora_kit.interactive.recorder`):
each execution becomes a code cell — its source as it ran, its outputs, its execution count — in the order the
cells ran, preceded by the runbook's markdown (and the code cells that did not run, marked so) by cell id, taken
from the notebook file JupyterLab opened (``$JPY_SESSION_NAME``) or else the project's runbook. Widget views are
dropped (the static rendering next to each stays, :mod:`aurora_kit.interactive.static`).

Then, as :mod:`aurora_kit.runner` does for a headless run: one keyed :class:`~aurora_kit.redaction.Redactor` (the
session's key, so the secrets the kernel registered by HMAC — :func:`aurora_kit.runbook.register_secret` — are
found; secret-looking parameter and environment values; the patterns) redacts the notebook and the summary; the
outcome comes from the check traces (:mod:`aurora_kit.outcome`), the key figures from the recorded results, the
banner is put on top (:mod:`aurora_kit.banner`), the HTML rendered, and :func:`aurora_kit.audit.seal` writes
``summary.json`` and appends to the hash-chained index. ``summary.json`` also says ``"mode": "interactive"``,
lists every confirmation given (:mod:`aurora_kit.confirmation`), and names as ``overrides`` the parameters whose
values differ from the runbook's defaults (edits to the parameters cell or made with the parameters form).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aurora_kit.interactive.static import WIDGET_VIEW_MIME

if TYPE_CHECKING:
    from aurora_kit.interactive.recorder import Execution
    from aurora_kit.runbook import Run

NOT_RUN_TAG = "not-run-in-this-session"


def runbook_notebook(runbook: str, opened: str | None) -> Any | None:
    """The runbook's notebook as a file: the one JupyterLab opened when it is this runbook, else the project's."""
    import nbformat

    from aurora_kit.audit import PROJECT_ROOT

    candidates = [Path(opened)] if opened and opened.endswith(".ipynb") else []
    candidates.append(PROJECT_ROOT / "runbooks" / f"{runbook}.ipynb")
    for path in candidates:
        try:
            return nbformat.read(str(path), as_version=4)
        except (OSError, ValueError, json.JSONDecodeError):
            continue
    return None


def last_code_cell(nb: Any | None) -> tuple[str | None, str | None]:
    """(id, source) of the runbook's last code cell: when it has run, the run is over."""
    if nb is None:
        return None, None
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    return (code[-1].get("id"), code[-1].source) if code else (None, None)


def _code_cell(execution: Execution, template: Any | None) -> Any:
    import nbformat

    outputs = []
    for output in execution.outputs:
        output = nbformat.from_dict(json.loads(json.dumps(output)))  # a copy the redaction may change
        if "data" in output:
            output["data"].pop(WIDGET_VIEW_MIME, None)
            if not output["data"]:
                continue
        outputs.append(output)
    metadata: dict[str, Any] = {}
    if template is not None and template.get("metadata", {}).get("tags"):
        metadata["tags"] = list(template.metadata.tags)
    metadata["aurora_kit"] = {
        "started": execution.started_at.isoformat(timespec="milliseconds"),
        "ended": execution.ended_at.isoformat(timespec="milliseconds") if execution.ended_at else None,
    }
    cell = nbformat.v4.new_code_cell(execution.source, metadata=metadata, outputs=outputs)
    cell.execution_count = execution.execution_count
    return cell


def _assigned(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def _by_source(source: str, template: Sequence[Any], placed: set[int]) -> int | None:
    """The runbook cell an execution without a cell id ran: the code cell with the same source, else the
    ``parameters`` cell when the execution assigns every name that cell assigns (the cell as edited)."""
    text = source.strip()
    code = [(n, c) for n, c in enumerate(template) if c.cell_type == "code" and n not in placed]
    for n, cell in code:
        if cell.source.strip() == text:
            return n
    assigned = _assigned(source)
    for n, cell in code:
        names = _assigned(cell.source)
        if "parameters" in cell.metadata.get("tags", []) and names and names <= assigned:
            return n
    return None


def build_notebook(executions: Sequence[Execution], source: Any | None) -> Any:
    """The record's notebook (module docstring)."""
    import copy

    import nbformat

    nb = nbformat.v4.new_notebook()
    if source is not None:
        nb.metadata = copy.deepcopy(source.metadata)
    nb.metadata["aurora_kit"] = {"mode": "interactive"}
    template = list(source.cells) if source is not None else []
    index = {c.get("id"): n for n, c in enumerate(template) if c.get("id")}
    placed: set[int] = set()

    def place_before(n: int) -> None:
        for j in range(n):
            if j in placed:
                continue
            placed.add(j)
            cell = copy.deepcopy(template[j])
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
                cell.metadata.setdefault("tags", []).append(NOT_RUN_TAG)
            nb.cells.append(cell)

    for execution in executions:
        # by the frontend's cell id; cells run before the session began (from the input history) by their source
        n = index.get(execution.cell_id) if execution.cell_id else _by_source(execution.source, template, placed)
        if n is not None:
            place_before(n)
            placed.add(n)
        nb.cells.append(_code_cell(execution, template[n] if n is not None else None))
    if executions:  # what the run did not reach: shown, marked as not run (as a headless record shows it)
        place_before(len(template))
    return nb  # every cell keeps an id of its own: a runbook cell placed once, each execution a new one


def _literal_assignments(source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return values
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return values


def overrides(used: Mapping[str, Any], source: Any | None) -> list[str]:
    """``key=value`` for every parameter whose value differs from the runbook's ``parameters`` cell as saved."""
    cells = [c for c in (source.cells if source is not None else []) if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        return []
    defaults = json.loads(json.dumps(_literal_assignments(cells[0].source), default=str))
    out: list[str] = []
    for key, value in used.items():
        default = defaults.get(key)
        if isinstance(value, Mapping) and isinstance(default, Mapping):
            out += [f"{key}.{k}={v}" for k, v in value.items() if default.get(k) != v]
        elif key in defaults and default != value:
            out.append(f"{key}={value}")
    return out


def seal(
    run: Run,
    executions: Sequence[Execution],
    *,
    key: bytes,
    opened: str | None,
    error: str | None = None,
) -> dict[str, Any]:
    """Build, redact, judge, dress, render and seal the record of ``run`` (module docstring); returns the summary
    as sealed, with ``record_dir``."""
    import nbformat

    from aurora_kit import audit, banner
    from aurora_kit.confirmation import confirmations_in
    from aurora_kit.engine import redactor_for
    from aurora_kit.figures import key_figures
    from aurora_kit.outcome import checks_in, decide
    from aurora_kit.runner import backend_label

    ended = datetime.now(timezone.utc)
    parameters = run.params.injected(run.runbook)
    source = runbook_notebook(run.runbook, opened)
    nb = build_notebook(executions, source)
    redactor = redactor_for({"metadata": {"papermill": {"parameters": parameters}}}, key=key)
    redactor.add([key.hex()])  # the key itself never goes in a record (it would ease guessing HMACs)
    redactor.redact_notebook(nb)  # also collects the HMACs of the secrets the kernel registered

    record = audit.RunRecord(audit.audit_root(), run.run_id, run.runbook).create()
    failure = audit.failure_of(nb)
    why = error or (f"{failure['ename']}: {failure['evalue']}" if failure else "")
    outcome = decide(checks_in(nb), failed=bool(error or failure), dry_run=run.params.dry_run, failure=why)
    results = audit.collect_results(nb)
    figures = key_figures(run.runbook, results)
    fields: dict[str, Any] = {
        "notebook_path": Path(opened) if opened else record.notebook,
        "parameters": parameters,
        "started_at": run.started_at,
        "ended_at": ended,
        "operator": run.operator,
        "redactor": redactor,
        "parameters_file": f"interactive: the parameters cell of {Path(opened).name if opened else run.runbook}",
        "overrides": overrides(parameters, source),
        "backend": backend_label(parameters),
    }

    def summarize(outcome: Any, error: str | None) -> dict[str, Any]:
        summary = audit.build_summary(
            record,
            outcome=audit.Outcome(outcome, audit.failure_of(nb), results, figures),
            error=redactor.text(error) if error else None,
            **fields,
        )
        summary["mode"] = "interactive"
        summary["confirmations"] = redactor.obj(confirmations_in(nb))
        summary["cells_executed"] = len(executions)
        return summary

    banner.dress(nb, summarize(outcome, error))
    nbformat.write(redactor.redacted_copy(nb), str(record.notebook))
    try:
        audit.render_html(record.notebook, record.html)
    except Exception as exc:  # the record is kept; the run is failed, as a headless one would be
        error = error or f"HTML render failed: {exc}"
        outcome = decide(outcome.checks, failed=True, dry_run=False, failure=error)
        banner.dress(nb, summarize(outcome, error))
        nbformat.write(redactor.redacted_copy(nb), str(record.notebook))
    summary = summarize(outcome, error)
    audit.seal(record, summary)
    return {**summary, "record_dir": str(record.dir)}
