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
from aurora_kit.params import RUNBOOKS, injected_for
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


@dataclass
class _Executed:
    """A run whose kernel is done: what :func:`_finish` needs to render, summarize and seal its record."""

    notebook: Path
    parameters: Mapping[str, Any]
    record: audit.RunRecord
    batch_id: str | None
    started: datetime
    ended: datetime
    operator: str
    redactor: Any
    nb: Any
    error: str | None

    @property
    def status(self) -> str:
        """The outcome as the executed notebook tells it (:func:`_finish` may still fail it: HTML render)."""
        return "failed" if self.error or audit.failure_of(self.nb) else "succeeded"

    @property
    def duration_s(self) -> float:
        return round((self.ended - self.started).total_seconds(), 3)


def _execute(
    notebook: Path,
    parameters: Mapping[str, Any],
    *,
    audit_dir: Path,
    batch_id: str | None = None,
    kernel_name: str | None = None,
    progress_bar: bool = False,
    execution_timeout: int | None = None,
    cwd: Path | None = None,
) -> _Executed:
    """Execute one notebook with ``parameters`` injected into its (already created) record folder."""
    import papermill as pm
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillExecutionError

    papermill_engines.register(ENGINE_NAME, RedactingEngine)  # explicit, whatever the entry points say
    runbook = notebook.stem
    parameters = injected_for(runbook, parameters)  # a runbook receives only the sections it uses
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
    return _Executed(notebook, parameters, record, batch_id, started, ended, who, redactor, nb, error)


def _finish(run: _Executed) -> RunResult:
    """Render the HTML, write ``summary.json`` and seal the record into the index (in the order called)."""
    error = run.error
    record = run.record
    run.redactor.absorb(run.nb)
    if record.notebook.exists():
        try:
            audit.render_html(record.notebook, record.html)
        except Exception as exc:  # a render failure must not lose the record
            error = error or f"HTML render failed: {exc}"
    failure = audit.failure_of(run.nb)
    status = "failed" if failure or error else "succeeded"
    outcome = audit.Outcome(status, failure, audit.collect_results(run.nb))
    summary = audit.build_summary(
        record,
        notebook_path=run.notebook,
        parameters=run.parameters,
        started_at=run.started,
        ended_at=run.ended,
        outcome=outcome,
        operator=run.operator,
        redactor=run.redactor,
        batch_id=run.batch_id,
        error=run.redactor.text(error) if error else None,
    )
    audit.seal(record, summary)
    return RunResult(
        runbook=record.runbook,
        status=status,
        run_id=record.run_id,
        record_dir=record.dir,
        failure=summary["failure"],
        error=summary["error"],
        duration_s=summary["duration_s"],
        results=summary["results"],
    )


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
    executed = _execute(
        notebook,
        parameters,
        audit_dir=audit_dir,
        batch_id=batch_id,
        kernel_name=kernel_name,
        progress_bar=progress_bar,
        execution_timeout=execution_timeout,
        cwd=cwd,
    )
    return _finish(executed)


def _warm_up_html() -> None:
    """Load nbconvert's exporter and run one tiny render (templates, lexers, markdown regexes compile once per
    process): done in the background while the first runbook executes, the first real render is as fast as the
    others."""
    import nbformat

    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# warm-up\n\n*text* `code`"), nbformat.v4.new_code_cell("x = 1\nx")]
    )
    audit._html_exporter().from_notebook_node(nb)


def _report(result: RunResult, out: TextIO) -> None:
    mark = "ok" if result.status == "succeeded" else "FAIL"
    print(f"  {mark:<3} {result.runbook:<26} {result.status} in {result.duration_s:.1f}s", file=out)
    if result.status != "succeeded":
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


def run_many(
    notebooks: Sequence[Path],
    parameters: Mapping[str, Any],
    *,
    audit_dir: Path,
    out: TextIO | None = None,
    **kwargs: Any,
) -> list[RunResult]:
    """Run ``notebooks`` in order, stopping at the first failure; prints one line per runbook.

    Rendering, summarizing and sealing a succeeded runbook's record (:func:`_finish`) runs on one background
    thread while the next runbook executes: records are still sealed one at a time in run order (the index chain
    is the same), and every record is sealed before this returns. A runbook that fails in its cells is finished
    in the foreground before stopping. If a record's HTML render fails after its runbook succeeded, that runbook
    is reported failed and nothing after the runbook already executing is run.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    out = out or sys.stdout
    for notebook in notebooks:  # all parameter cells are checked before the first kernel starts
        check_parameters_cell(notebook, list(injected_for(notebook.stem, parameters)))
    batch_id = secrets.token_hex(4) if len(notebooks) > 1 else None
    results: list[RunResult] = []
    pending: list[tuple[int, Future[RunResult]]] = []  # (index in results, finishing in the background)
    failed = False

    def collect(*, wait: bool) -> None:
        """Take in finished records; a render failure makes its runbook failed (and stops the batch)."""
        nonlocal failed
        while pending and (wait or pending[0][1].done()):
            index, future = pending.pop(0)
            result = future.result()
            results[index] = result
            if result.status != "succeeded":
                failed = True
                _report(result, out)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aurora-kit-seal") as sealer:
        if len(notebooks) > 1:
            sealer.submit(_warm_up_html)  # overlaps the first runbook; a failure here shows in the real render
        for position, notebook in enumerate(notebooks, start=1):
            collect(wait=False)
            if failed:
                results.append(RunResult(notebook.stem, "not run"))
                print(f"  -  {notebook.stem:<26} not run (an earlier runbook failed)", file=out)
                continue
            print(f"  …  {notebook.stem:<26} running", file=out, flush=True)
            executed = _execute(notebook, parameters, audit_dir=audit_dir, batch_id=batch_id, **kwargs)
            if executed.status != "succeeded" or position == len(notebooks):  # nothing to overlap with
                collect(wait=True)  # earlier records first: the index stays in run order
                result = sealer.submit(_finish, executed).result()
                results.append(result)
                failed = failed or result.status != "succeeded"
                _report(result, out)
                continue
            results.append(
                RunResult(
                    executed.record.runbook,
                    "succeeded",
                    run_id=executed.record.run_id,
                    record_dir=executed.record.dir,
                    duration_s=executed.duration_s,
                )
            )
            pending.append((len(results) - 1, sealer.submit(_finish, executed)))
            _report(results[-1], out)
        collect(wait=True)
    return results
