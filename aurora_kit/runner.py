"""Run runbooks headless with papermill and keep an audit record of each run.

``aurora-kit run 06 -f parameters/local.yaml`` (see :mod:`aurora_kit.commands.run`) does, in order:

1. load and validate the parameters file and ``-p`` overrides (:func:`aurora_kit.params.load`) — before any
   kernel starts;
2. resolve the runbooks (``06``, ``06-failover``, a path; ``--all`` = 01…07, 99) and check that each one's
   ``parameters`` cell assigns every key that will be injected (papermill itself only warns);
3. execute each with ``papermill.execute_notebook`` and the redacting engine (:mod:`aurora_kit.engine`),
   writing the executed notebook straight into its record folder (redacted at every save);
4. render HTML, write ``summary.json``, append to the hash-chained index (:mod:`aurora_kit.audit`);
5. with several runbooks, stop at the first failure; the rest are reported as not run.
"""

from __future__ import annotations

import ast
import secrets
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from aurora_kit import audit
from aurora_kit.engine import ENGINE_NAME, RedactingEngine, redactor_for, temporary_environ
from aurora_kit.errors import InvalidParameterError
from aurora_kit.params import RUNBOOKS
from aurora_kit.runbook import OPERATOR_ENV, RUN_ID_ENV, new_run_id, operator

RUNBOOKS_DIR = audit.PROJECT_ROOT / "runbooks"


# -- resolving runbooks -------------------------------------------------------------------------------------------
def resolve(name: str, runbooks_dir: Path = RUNBOOKS_DIR) -> Path:
    """``06`` / ``06-failover`` / ``06-failover.ipynb`` / a path → the notebook path."""
    candidate = Path(name)
    if candidate.suffix == ".ipynb" and candidate.exists():
        return candidate
    stem = candidate.name.removesuffix(".ipynb")
    matches = sorted(p for p in runbooks_dir.glob("*.ipynb") if p.stem == stem or p.stem.split("-", 1)[0] == stem)
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(p.stem for p in sorted(runbooks_dir.glob("*.ipynb"))) or "none"
    reason = "ambiguous" if matches else "no such runbook"
    raise InvalidParameterError("runbook", name, f"{reason} in {runbooks_dir} (available: {available})")


def resolve_all(runbooks_dir: Path = RUNBOOKS_DIR) -> list[Path]:
    """The eight runbooks, in order; every one must exist."""
    missing = [r for r in RUNBOOKS if not (runbooks_dir / f"{r}.ipynb").exists()]
    if missing:
        raise InvalidParameterError("runbooks", missing, f"missing from {runbooks_dir}")
    return [runbooks_dir / f"{r}.ipynb" for r in RUNBOOKS]


# -- the parameters cell ------------------------------------------------------------------------------------------
def parameters_cell_names(notebook: Path) -> set[str]:
    """Names assigned at top level of the cell tagged ``parameters`` (``x = ...``, ``x: int = ...``)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise InvalidParameterError("parameters cell", str(notebook), "no code cell is tagged 'parameters'")
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as exc:
        raise InvalidParameterError("parameters cell", str(notebook), f"not valid Python: {exc}") from exc
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            elts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
            names |= {e.id for e in elts if isinstance(e, ast.Name)}
    return names


def check_parameters_cell(notebook: Path, keys: Sequence[str]) -> None:
    """Every injected key must be assigned in the runbook's ``parameters`` cell."""
    defined = parameters_cell_names(notebook)
    missing = [k for k in keys if k not in defined]
    if missing:
        raise InvalidParameterError(
            missing[0],
            "<injected>",
            f"{notebook.name}'s parameters cell does not define it"
            + (f" (nor {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + "; add it with its local default",
        )


# -- running ------------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    runbook: str
    status: str  # succeeded | failed | not run
    run_id: str | None = None
    record_dir: Path | None = None
    failure: dict[str, Any] | None = None
    error: str | None = None
    duration_s: float | None = None
    results: dict[str, Any] | None = None


def run_notebook(
    notebook: Path,
    parameters: Mapping[str, Any],
    *,
    audit_dir: Path,
    batch_id: str | None = None,
    kernel_name: str | None = None,
    progress_bar: bool = False,
    execution_timeout: int | None = None,
    cwd: Path | None = None,
) -> RunResult:
    """Execute one notebook with ``parameters`` injected; always leaves a sealed record (even on failure)."""
    import papermill as pm
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillExecutionError

    papermill_engines.register(ENGINE_NAME, RedactingEngine)  # explicit, whatever the entry points say
    runbook = notebook.stem
    check_parameters_cell(notebook, list(parameters))
    started = datetime.now(timezone.utc)
    run_id = new_run_id(runbook, started)
    record = audit.RunRecord(audit_dir, run_id, runbook).create()
    who = operator()
    error: str | None = None
    # one keyed redactor for the engine's saves and for this record's summary: the engine collects the secrets
    # the kernel registers into it, so an error text below is redacted of them too
    redactor = redactor_for({"metadata": {"papermill": {"parameters": dict(parameters)}}}, key=secrets.token_bytes(32))
    with temporary_environ(**{RUN_ID_ENV: run_id, OPERATOR_ENV: who}):
        try:
            pm.execute_notebook(
                str(notebook),
                str(record.notebook),
                parameters=dict(parameters),
                engine_name=ENGINE_NAME,
                kernel_name=kernel_name,
                progress_bar=progress_bar,
                log_output=False,
                cwd=str(cwd or notebook.parent),
                execution_timeout=execution_timeout,
                redactor=redactor,
            )
        except PapermillExecutionError:
            pass  # the failing cell is marked in the notebook; read it back below
        except Exception as exc:  # kernel died, timeout, unreadable notebook: still seal a record
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    ended = datetime.now(timezone.utc)

    import nbformat

    nb: Any = {"cells": []}
    if record.notebook.exists():
        nb = nbformat.read(str(record.notebook), as_version=4)
        redactor.absorb(nb)
        try:
            audit.render_html(record.notebook, record.html)
        except Exception as exc:  # a render failure must not lose the record
            error = error or f"HTML render failed: {exc}"
    failure = audit.failure_of(nb)
    status = "failed" if failure or error else "succeeded"
    outcome = audit.Outcome(status, failure, audit.collect_results(nb))
    summary = audit.build_summary(
        record,
        notebook_path=notebook,
        parameters=parameters,
        started_at=started,
        ended_at=ended,
        outcome=outcome,
        operator=who,
        redactor=redactor,
        batch_id=batch_id,
        error=redactor.text(error) if error else None,
    )
    audit.seal(record, summary)
    return RunResult(
        runbook=runbook,
        status=status,
        run_id=run_id,
        record_dir=record.dir,
        failure=summary["failure"],
        error=summary["error"],
        duration_s=summary["duration_s"],
        results=summary["results"],
    )


def run_many(
    notebooks: Sequence[Path],
    parameters: Mapping[str, Any],
    *,
    audit_dir: Path,
    out: TextIO | None = None,
    **kwargs: Any,
) -> list[RunResult]:
    """Run ``notebooks`` in order, stopping at the first failure; prints one line per runbook."""
    out = out or sys.stdout
    for notebook in notebooks:  # all parameter cells are checked before the first kernel starts
        check_parameters_cell(notebook, list(parameters))
    batch_id = secrets.token_hex(4) if len(notebooks) > 1 else None
    results: list[RunResult] = []
    failed = False
    for notebook in notebooks:
        if failed:
            results.append(RunResult(notebook.stem, "not run"))
            print(f"  -  {notebook.stem:<26} not run (an earlier runbook failed)", file=out)
            continue
        print(f"  …  {notebook.stem:<26} running", file=out, flush=True)
        result = run_notebook(notebook, parameters, audit_dir=audit_dir, batch_id=batch_id, **kwargs)
        results.append(result)
        mark = "ok" if result.status == "succeeded" else "FAIL"
        print(f"  {mark:<3} {result.runbook:<26} {result.status} in {result.duration_s:.1f}s", file=out)
        if result.status != "succeeded":
            failed = True
            f = result.failure or {}
            if f:
                print(
                    f"      failing cell: #{f.get('code_cell_number')} (index {f.get('cell_index')}, "
                    f"execution count {f.get('execution_count')}): {f.get('ename')}: {f.get('evalue')}",
                    file=out,
                )
            if result.error:
                print(f"      error: {result.error}", file=out)
        print(f"      record: {result.record_dir}", file=out)
    return results
