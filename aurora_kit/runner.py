"""Run runbooks headless with papermill and keep an audit record of each run.

``aurora-kit run 06 -f parameters/local.yaml`` (see :mod:`aurora_kit.commands.run`) does, in order:

1. load and validate the parameters file and ``-p`` overrides (:func:`aurora_kit.params.load`) — before any
   kernel starts;
2. resolve the runbooks (``06``, ``06-failover``, a path; ``--all`` = 01…09, 99) and check that each one's
   ``parameters`` cell assigns every key that will be injected (papermill itself only warns);
3. execute each with ``papermill.execute_notebook`` and the redacting engine (:mod:`aurora_kit.engine`),
   writing the executed notebook straight into its record folder (redacted at every save);
4. compute the run's outcome from the checks it traced (:mod:`aurora_kit.outcome`) and its key figures
   (:mod:`aurora_kit.figures`), put the banner on top of the executed notebook (:mod:`aurora_kit.banner`), render
   HTML, write ``summary.json``, append to the hash-chained index (:mod:`aurora_kit.audit`);
5. with several runbooks, stop at the first run that is not accepted (failed, or not verified without
   ``allow_unverified``) unless ``keep_going``; the rest are reported as not run.

Before any kernel starts, the parameters are validated, every ``parameters`` cell is checked, and the run's
backend is opened once (:func:`preflight`: a local root the PostgreSQL user cannot traverse is refused here).
"""

from __future__ import annotations

import ast
import contextlib
import pprint
import secrets
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from aurora_kit import audit, banner
from aurora_kit.confirmation import confirmations_in
from aurora_kit.engine import ENGINE_NAME, RedactingEngine, redactor_for, temporary_environ
from aurora_kit.errors import InvalidParameterError
from aurora_kit.figures import key_figures
from aurora_kit.outcome import NOT_RUN, RunOutcome, checks_in, decide
from aurora_kit.params import RUNBOOKS, injected_for
from aurora_kit.report import RunResult, Terminal
from aurora_kit.runbook import OPERATOR_ENV, PARAMETERS_FILE_ENV, PLAN_MIME, RUN_ID_ENV, new_run_id, operator

if TYPE_CHECKING:
    from aurora_kit.deadline import Deadline
    from aurora_kit.kernels import StartedKernel

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
    """Every runbook (:data:`aurora_kit.params.RUNBOOKS`), in order; every one must exist."""
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


# -- before any kernel ---------------------------------------------------------------------------------------------
def preflight(parameters: Mapping[str, Any]) -> None:
    """Open the run's backend once and close it, before any kernel starts: what it checks when opened (local: the
    root dir can be created and the PostgreSQL system user can traverse it) is refused here, with what to do,
    rather than in the first cell of the first runbook."""
    from aurora_kit.backends import from_parameters
    from aurora_kit.params import validate

    backend = from_parameters(validate(parameters, source="parameters", require=()))
    backend.close()


def backend_label(parameters: Mapping[str, Any]) -> str:
    """``local``, or ``aws (eu-west-1)`` for a backend whose clusters live in a region."""
    from aurora_kit.backends import backend_class

    name = str(parameters.get("backend"))
    try:
        regional = backend_class(name).traits.regional
    except Exception:  # an unknown backend was refused long before; a record must still be sealed
        regional = False
    region = parameters.get("region")
    return f"{name} ({region})" if regional and region else name


def _python_translator() -> type:
    """papermill's Python translator, writing the injected cell one readable assignment per key (long values
    wrapped like the runbooks' own ``parameters`` cells) instead of one line per dict."""
    import ast as _ast

    from papermill.translators import PythonTranslator

    class ReadableTranslator(PythonTranslator):
        @classmethod
        def codify(cls, parameters: Mapping[str, Any], comment: str = "Parameters") -> str:
            lines = [cls.comment(f"{comment} of this run (aurora-kit run -f/-p): they override the defaults above")]
            for name, value in parameters.items():
                text = pprint.pformat(value, width=110, sort_dicts=False)
                try:
                    same = _ast.literal_eval(text) == value
                except (ValueError, SyntaxError):
                    same = False
                lines.append(f"{name} = {text if same else cls.translate(value)}")
            return "\n".join(lines) + "\n"

    return ReadableTranslator


# -- running ------------------------------------------------------------------------------------------------------
@dataclass
class _Executed:
    """A run whose kernel is done: what :func:`_finish` needs to judge, dress, render, summarize and seal it."""

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
    allow_unverified: bool = False
    parameters_file: str | None = None
    overrides: Sequence[str] = field(default_factory=tuple)
    kernel_started: datetime | None = None  # a kernel launched ahead (aurora_kit.kernels): when

    @property
    def outcome(self) -> RunOutcome:
        """The outcome as the executed notebook tells it (:func:`_finish` may still fail it: HTML render)."""
        failure = audit.failure_of(self.nb)
        why = self.error or (f"{failure['ename']}: {failure['evalue']}" if failure else "")
        return decide(
            checks_in(self.nb),
            failed=bool(self.error or failure),
            dry_run=bool(self.parameters.get("dry_run")),
            allow_unverified=self.allow_unverified,
            failure=why,
        )

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
    allow_unverified: bool = False,
    parameters_file: str | None = None,
    overrides: Sequence[str] = (),
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    kernel: StartedKernel | None = None,
    on_kernel_ready: Callable[..., Awaitable[None]] | None = None,
) -> _Executed:
    """Execute one notebook with ``parameters`` injected into its (already created) record folder; on ``kernel``
    (launched ahead for this run by :func:`_launch_ahead`: its run id and redactor are this run's) if given."""
    import papermill as pm
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillExecutionError
    from papermill.translators import papermill_translators

    papermill_engines.register(ENGINE_NAME, RedactingEngine)  # explicit, whatever the entry points say
    papermill_translators.register("python", _python_translator())
    runbook = notebook.stem
    parameters = injected_for(runbook, parameters)  # a runbook receives only the sections it uses
    check_parameters_cell(notebook, list(parameters))
    started = datetime.now(timezone.utc)
    run_id = kernel.run_id if kernel is not None else new_run_id(runbook, started)
    record = audit.RunRecord(audit_dir, run_id, runbook).create()
    who = operator()
    error: str | None = None
    # one keyed redactor for the engine's saves and for this record's summary: the engine collects the secrets
    # the kernel registers into it, so an error text below is redacted of them too
    redactor = kernel.redactor if kernel is not None else _redactor(parameters)
    ahead: dict[str, Any] = {"km": kernel.km} if kernel is not None else {}
    if on_kernel_ready is not None:
        ahead["on_notebook_start"] = on_kernel_ready  # nbclient awaits it once the kernel answered, before cell 1
    with temporary_environ(**_kernel_environ(run_id, who, parameters_file)):
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
                on_progress=on_progress,
                **ahead,
            )
        except PapermillExecutionError:
            pass  # the failing cell is marked in the notebook; read it back below
        except Exception as exc:  # kernel died, timeout, unreadable notebook: still seal a record
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    ended = datetime.now(timezone.utc)

    import nbformat

    nb: Any = nbformat.v4.new_notebook()
    if record.notebook.exists():
        nb = nbformat.read(str(record.notebook), as_version=4)
    return _Executed(
        notebook,
        parameters,
        record,
        batch_id,
        started,
        ended,
        who,
        redactor,
        nb,
        error,
        allow_unverified,
        parameters_file,
        tuple(overrides),
        kernel.launched_at if kernel is not None else None,
    )


def _kernel_environ(run_id: str, who: str, parameters_file: str | None) -> dict[str, str]:
    """What a run's kernel finds in its environment: its run id, the operator, the parameters file if any."""
    environ = {RUN_ID_ENV: run_id, OPERATOR_ENV: who}
    if parameters_file:
        environ[PARAMETERS_FILE_ENV] = parameters_file
    return environ


def _redactor(parameters: Mapping[str, Any]) -> Any:
    return redactor_for({"metadata": {"papermill": {"parameters": dict(parameters)}}}, key=secrets.token_bytes(32))


async def _launch_ahead(
    notebook: Path,
    parameters: Mapping[str, Any],
    *,
    kernel_name: str | None = None,
    cwd: Path | None = None,
    parameters_file: str | None = None,
    **_options: Any,
) -> StartedKernel | None:
    """Launch the kernel of the run of ``notebook`` now, to be ready when it begins (:mod:`aurora_kit.kernels`);
    None when it cannot be launched (that run then starts its own kernel, as a single run does)."""
    import nbformat
    from papermill.utils import nb_kernel_name

    from aurora_kit import kernels
    from aurora_kit.redaction import KEY_ENV

    try:
        redactor = _redactor(injected_for(notebook.stem, parameters))
        key = redactor.key
        assert key is not None
        redactor.add([key.hex()])
        run_id = new_run_id(notebook.stem)
        environ = {**_kernel_environ(run_id, operator(), parameters_file), KEY_ENV: key.hex()}
        name = kernel_name or str(nb_kernel_name(nbformat.read(str(notebook), as_version=4), None))
        return await kernels.launch(
            kernel_name=name, cwd=str(cwd or notebook.parent), environ=environ, run_id=run_id, redactor=redactor
        )
    except Exception:
        return None


def planned_calls(nb: Any) -> list[dict[str, Any]]:
    """The dry-run plan the notebook recorded last (:func:`aurora_kit.runbook.record_plan`)."""
    plan: list[dict[str, Any]] = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            rows = (output.get("data") or {}).get(PLAN_MIME)
            if isinstance(rows, list):
                plan = [dict(r) for r in rows]
    return plan


def _write(run: _Executed) -> None:
    import nbformat

    nbformat.write(run.redactor.redacted_copy(run.nb), str(run.record.notebook))


def _finish(run: _Executed) -> RunResult:
    """Judge the run, put the banner on its notebook, render the HTML, write ``summary.json`` and seal the record
    into the index (in the order called)."""
    error = run.error
    record = run.record
    run.redactor.absorb(run.nb)
    outcome = run.outcome
    results = audit.collect_results(run.nb)
    figures = key_figures(record.runbook, results)
    fields = {
        "notebook_path": run.notebook,
        "parameters": run.parameters,
        "started_at": run.started,
        "ended_at": run.ended,
        "operator": run.operator,
        "redactor": run.redactor,
        "batch_id": run.batch_id,
        "parameters_file": run.parameters_file,
        "overrides": run.overrides,
        "backend": backend_label(run.parameters),
    }

    def summarize(outcome: RunOutcome, error: str | None) -> dict[str, Any]:
        failure = audit.failure_of(run.nb)  # cell indices of the record as sealed (banner included)
        summary = audit.build_summary(
            record,
            outcome=audit.Outcome(outcome, failure, results, figures),
            error=run.redactor.text(error) if error else None,
            **fields,
        )
        summary["confirmations"] = run.redactor.obj(confirmations_in(run.nb))  # who confirmed what (the gate)
        if run.kernel_started is not None:  # booted while the previous runbook ran (aurora_kit.kernels)
            summary["kernel_started_at"] = run.kernel_started.isoformat()
        return summary

    banner.dress(run.nb, summarize(outcome, error))
    wrote = record.notebook.exists() or bool(run.nb.cells)
    if wrote:
        _write(run)
        try:
            audit.render_html(record.notebook, record.html)
        except Exception as exc:  # a render failure must not lose the record; the run is failed
            error = error or f"HTML render failed: {exc}"
            outcome = decide(outcome.checks, failed=True, dry_run=False, failure=error)
            banner.dress(run.nb, summarize(outcome, error))
            _write(run)
    summary = summarize(outcome, error)
    audit.seal(record, summary)
    return RunResult(
        runbook=record.runbook,
        status=outcome.outcome.value,
        run_id=record.run_id,
        record_dir=record.dir,
        failure=summary["failure"],
        error=summary["error"],
        duration_s=summary["duration_s"],
        results=summary["results"],
        outcome=outcome,
        key_figures=summary["key_figures"],
        plan=planned_calls(run.nb),
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
    allow_unverified: bool = False,
    parameters_file: str | None = None,
    overrides: Sequence[str] = (),
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    deadline: Deadline | None = None,
) -> RunResult:
    """Execute one notebook with ``parameters`` injected; always leaves a sealed record (even on failure). The
    result's ``outcome`` says passed / failed / not verified / dry run (``allow_unverified`` accepts skipped
    checks: the record says so).

    ``deadline`` (:class:`aurora_kit.deadline.Deadline`, used by fleets and the Airflow operator) bounds the whole
    run: past it, the kernel is interrupted and the record is sealed failed, its error saying why."""
    with deadline if deadline is not None else contextlib.nullcontext():
        executed = _execute(
            notebook,
            parameters,
            audit_dir=audit_dir,
            batch_id=batch_id,
            kernel_name=kernel_name,
            progress_bar=progress_bar,
            execution_timeout=execution_timeout,
            cwd=cwd,
            allow_unverified=allow_unverified,
            parameters_file=parameters_file,
            overrides=overrides,
            on_progress=on_progress,
        )
    if deadline is not None:
        executed.error = deadline.note(executed.error)
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


def run_many(
    notebooks: Sequence[Path],
    parameters: Mapping[str, Any],
    *,
    audit_dir: Path,
    out: TextIO | None = None,
    keep_going: bool = False,
    allow_unverified: bool = False,
    parameters_file: str | None = None,
    overrides: Sequence[str] = (),
    **kwargs: Any,
) -> list[RunResult]:
    """Run ``notebooks`` in order; prints one or two lines per runbook (:class:`aurora_kit.report.Terminal`).

    Stops at the first run that is not accepted — failed, or not verified without ``allow_unverified`` — unless
    ``keep_going``; the rest are reported as not run. Rendering, summarizing and sealing an accepted runbook's
    record (:func:`_finish`) runs on one background thread while the next runbook executes: records are still
    sealed one at a time in run order (the index chain is the same), and every record is sealed before this
    returns. A runbook that is not accepted is finished in the foreground before deciding whether to go on. If a
    record's HTML render fails after its runbook passed, that runbook is reported failed and nothing after the
    runbook already executing is run (unless ``keep_going``).

    Each runbook after the first runs on a kernel launched while the runbook before it ran, and a finished
    runbook's kernel exits while the next one runs (:mod:`aurora_kit.kernels`: what the records say then); every
    kernel has exited when this returns.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    terminal = Terminal(out)
    for notebook in notebooks:  # all parameter cells are checked before the first kernel starts
        check_parameters_cell(notebook, list(injected_for(notebook.stem, parameters)))
    if any(n.stem in RUNBOOKS for n in notebooks):  # the runbooks open the backend in their first cell
        preflight(parameters)
    batch_id = secrets.token_hex(4) if len(notebooks) > 1 else None
    results: list[RunResult] = []
    pending: list[tuple[int, Future[RunResult]]] = []  # (index in results, finishing in the background)
    stopped: str | None = None  # why the batch stopped
    options = dict(
        allow_unverified=allow_unverified,
        parameters_file=parameters_file,
        overrides=overrides,
        on_progress=terminal.progress,
        **kwargs,
    )

    def settle(result: RunResult) -> None:
        nonlocal stopped
        if not result.accepted and not keep_going and stopped is None:
            stopped = f"{result.runbook} {result.status}"

    def collect(*, wait: bool) -> None:
        """Take in finished records; a render failure makes its runbook failed (and stops the batch)."""
        while pending and (wait or pending[0][1].done()):
            index, future = pending.pop(0)
            result = future.result()
            shown, results[index] = results[index], result
            if result.status != shown.status:  # its HTML render failed: say so
                terminal.finished(result)
            settle(result)

    ahead: dict[int, StartedKernel | None] = {}  # position -> its kernel, launched during the previous runbook
    retiring: list[StartedKernel] = []  # kernels asked to shut down, not yet reaped

    def reap(kernels: list[StartedKernel]) -> None:
        for kernel in kernels:
            with contextlib.suppress(Exception):  # a kernel that would not go was killed; nothing to report
                kernel.reap()

    with contextlib.ExitStack() as kernels_left:
        kernels_left.callback(lambda: reap([*retiring, *(k for k in ahead.values() if k is not None)]))
        sealer = kernels_left.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="aurora-kit-seal"))
        if len(notebooks) > 1:
            sealer.submit(_warm_up_html)  # overlaps the first runbook; a failure here shows in the real render
        for position, notebook in enumerate(notebooks, start=1):
            collect(wait=False)
            if stopped:
                results.append(RunResult(notebook.stem, NOT_RUN))
                terminal.not_run(notebook.stem, f"stopped after {stopped}; --keep-going runs the rest")
                continue
            terminal.starting(notebook.stem)
            kernel = ahead.pop(position, None)
            if kernel is not None and not kernel.alive():  # it died booting: this run starts its own
                retiring.append(kernel)
                kernel = None
            boot_next = None
            if position < len(notebooks):  # the next runbook's kernel boots while this one runs, once it is ready

                async def boot_next(notebook: Any = None, following: int = position + 1) -> None:
                    ahead[following] = await _launch_ahead(notebooks[following - 1], parameters, **options)

            previous, retiring[:] = list(retiring), []
            try:
                executed = _execute(
                    notebook,
                    parameters,
                    audit_dir=audit_dir,
                    batch_id=batch_id,
                    kernel=kernel,
                    on_kernel_ready=boot_next,
                    **options,
                )
            finally:
                if kernel is not None:
                    kernel.retire()  # exits while the next runbook runs
                    retiring.append(kernel)
                reap(previous)  # retired a whole runbook ago: gone by now (else terminated, then killed)
            outcome = executed.outcome
            if not outcome.accepted or position == len(notebooks):  # nothing to overlap with
                collect(wait=True)  # earlier records first: the index stays in run order
                result = sealer.submit(_finish, executed).result()
                results.append(result)
                terminal.finished(result)
                settle(result)
                continue
            results.append(
                RunResult(
                    executed.record.runbook,
                    outcome.outcome.value,
                    run_id=executed.record.run_id,
                    record_dir=executed.record.dir,
                    duration_s=executed.duration_s,
                    outcome=outcome,
                    key_figures=key_figures(executed.record.runbook, audit.collect_results(executed.nb)),
                    plan=planned_calls(executed.nb),
                )
            )
            pending.append((len(results) - 1, sealer.submit(_finish, executed)))
            terminal.finished(results[-1])
        collect(wait=True)
    terminal.closing(results, audit_dir)
    return results
