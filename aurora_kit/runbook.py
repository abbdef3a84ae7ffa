"""What a runbook calls first, and how it hands results to its audit record.

A runbook's first code cells::

    # cell tagged "parameters": every top-level key of parameters/local.yaml, local defaults
    backend = "local"
    cluster_id = "ak-local"
    ...
    failover = {"mode": "planned", "target_instance_id": None, "max_rto_s": 15, "max_lost_commits": 0}
    pgvector = None          # sections other runbooks use are None here

    # next cell
    import aurora_kit
    run = aurora_kit.runbook.start("06-failover", globals())

API
---
``start(runbook, namespace, *, sections=None, show=True) -> Run``
    Validates the parameters found in ``namespace`` (the notebook's ``globals()``) with
    :func:`aurora_kit.params.for_runbook`: every top-level key must be defined, the runbook's own sections must be
    set, values are typed and checked (:class:`InvalidParameterError` naming key and value otherwise, before
    anything is touched). Shows a header (run id, operator, backend, cluster, dry run) and returns a :class:`Run`.
    Unknown runbook names need ``sections=(...)`` (test notebooks use ``sections=()``).

``Run``
    ``run.params`` (:class:`~aurora_kit.params.RunbookParameters`), ``run.spec`` (the :class:`ClusterSpec`),
    ``run.backend`` (built on first use with :func:`aurora_kit.get_backend`), ``run.run_id``, ``run.operator``,
    ``run.runbook``, ``run.section("failover")`` (typed section), ``run.record(name, value)`` /
    ``run.record_all(mapping)``. The backend declares every password it hands out as a secret of this run
    (``backend.on_secret``), whoever asks for it; the confirmation gate is :func:`aurora_kit.steps.common.confirm`.

``record_result(name, value)`` / ``record_results(mapping)``
    Put a key result into the notebook as a display output of mimetype :data:`RESULT_MIME`
    (``{"name": ..., "value": ...}``, JSON) plus a ``text/plain`` line for readers. The runner collects every such
    output of the executed notebook into the record's ``results`` (a later value of a name replaces an earlier
    one). Values: JSON-compatible; datetimes become ISO strings, RDS-shaped results ``as_rds()``, pydantic
    models ``model_dump(mode="json")``, other dataclasses ``asdict``.

``record_check(check, verdict)``
    The trace of one check (:class:`aurora_kit.outcome.Check`) as a display output of mimetype
    :data:`aurora_kit.outcome.CHECK_MIME`, whose ``text/plain``/``text/html`` is the check's visible verdict line
    (PASS / FAIL / NOT VERIFIED). :func:`aurora_kit.steps.common.verify` calls it for every check; the runner
    computes the run's outcome from these traces (:mod:`aurora_kit.outcome`).

``record_plan(calls)``
    The mutating calls a dry run recorded (mimetype :data:`PLAN_MIME`, the last one wins), so the runner can print
    the plan in the terminal. ``run.record_all`` sends it in a dry run; :func:`aurora_kit.steps.common.plan_table`
    too.

``register_secret(value)``
    Declare a value the audit record must never contain (a generated password, a token). The kernel sends only
    an HMAC of it, keyed with the per-run key the engine provides (``$AURORA_KIT_REDACTION_KEY``); the engine
    then redacts every occurrence from every save. Register *before* the value can appear in any output.

Plain papermill works too (``papermill runbooks/06-failover.ipynb out.ipynb -f parameters/local.yaml``); add
``--engine aurora_kit`` so its saves are redacted as well (``aurora-kit run`` always uses that engine).

Run identity: the runner passes ``$AURORA_KIT_RUN_ID``/``$AURORA_KIT_OPERATOR`` to the kernel; under plain
papermill (no runner) ``start`` makes its own run id.
"""

from __future__ import annotations

import dataclasses
import getpass
import html
import json
import os
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aurora_kit import params as params_mod
from aurora_kit.jsonable import jsonable
from aurora_kit.outcome import CHECK_MIME, Check
from aurora_kit.redaction import KEY_ENV, SECRET_MIME, secret_digest

if TYPE_CHECKING:
    from aurora_kit.backends.base import ClusterBackend
    from aurora_kit.specs import ClusterSpec

RESULT_MIME = "application/vnd.aurora-kit.result+json"
PLAN_MIME = "application/vnd.aurora-kit.plan+json"
RUN_ID_ENV = "AURORA_KIT_RUN_ID"
OPERATOR_ENV = "AURORA_KIT_OPERATOR"
#: the parameters file the runner loaded (``-f``), so hints can name the command to run next
PARAMETERS_FILE_ENV = "AURORA_KIT_PARAMETERS_FILE"


def operator() -> str:
    """Who runs this: ``$AURORA_KIT_OPERATOR`` or the login name."""
    explicit = os.environ.get(OPERATOR_ENV)
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry in some containers
        return "unknown"


def new_run_id(runbook: str, now: datetime | None = None) -> str:
    """``20261126T222000Z-06-failover-3fa2c1``: sortable, readable, unique."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{runbook}-{secrets.token_hex(3)}"


def _display(data: dict[str, Any]) -> None:
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is not None:
        display(data, raw=True)
    elif "text/plain" in data:
        print(data["text/plain"])


def record_result(name: str, value: Any) -> None:
    """Record one key result (e.g. ``record_result("rto_seconds", 0.42)``) for the audit record."""
    from aurora_kit.display import brief

    payload = {"name": str(name), "value": jsonable(value)}
    json.dumps(payload)  # fail here, in the cell, if it is not serialisable
    shown = f"{name} = {brief(payload['value'])}"  # rounded for people; the raw value goes to summary.json
    html_line = f"<div style='font-family:monospace;font-size:12px;margin:1px 0'>{html.escape(shown)}</div>"
    _display({RESULT_MIME: payload, "text/plain": shown, "text/html": html_line})


def record_results(results: Mapping[str, Any]) -> None:
    """Record several results at once (e.g. ``record_results(probe.summary())``)."""
    for name, value in results.items():
        record_result(name, value)


def record_check(check: Check, verdict: str) -> None:
    """The trace of one check, shown as its verdict line (see the module docstring)."""
    from aurora_kit.display import verdict_html

    _display({CHECK_MIME: check.to_json(), "text/plain": verdict, "text/html": verdict_html(check.status, verdict)})


def record_plan(calls: Sequence[Mapping[str, Any]]) -> None:
    """The dry run's planned calls (``[{"service", "call", "parameters"}]``) for the terminal (module docstring)."""
    rows = [jsonable(dict(c), strict=False) for c in calls]
    _display({PLAN_MIME: rows, "text/plain": f"dry-run plan: {len(rows)} mutating call(s) recorded, none made"})


def register_secret(value: str | None) -> None:
    """Declare ``value`` secret: every save of this run's notebook has it redacted (see module docstring)."""
    if not value:
        return
    key = os.environ.get(KEY_ENV)
    if not key:
        return  # not run by the redacting engine: nothing listens (and nothing is sent)
    marker = {"hmac": secret_digest(bytes.fromhex(key), value), "length": len(value)}
    _display({SECRET_MIME: marker, "text/plain": f"(a {len(value)}-character secret is redacted from this record)"})


@dataclasses.dataclass
class Run:
    """One execution of a runbook (see the module docstring)."""

    runbook: str
    params: params_mod.RunbookParameters
    run_id: str
    operator: str
    host: str
    started_at: datetime
    _backend: ClusterBackend | None = dataclasses.field(default=None, repr=False)
    #: an interactive run whose record is sealed: its record folder (:mod:`aurora_kit.interactive.session`)
    sealed: str | None = None

    @property
    def spec(self) -> ClusterSpec:
        return self.params.to_cluster_spec()

    @property
    def backend(self) -> ClusterBackend:
        if self.sealed is not None:
            from aurora_kit.errors import RunSealedError

            raise RunSealedError(f"run {self.run_id} has ended; its record is sealed in {self.sealed}")
        if self._backend is None:
            from aurora_kit.backends import from_parameters

            self._backend = from_parameters(self.params)
            self._backend.on_secret = register_secret  # every password it hands out is declared first
        return self._backend

    def section(self, name: str) -> Any:
        return self.params.section(name)

    def record(self, name: str, value: Any) -> None:
        record_result(name, value)

    def record_all(self, results: Mapping[str, Any]) -> None:
        """Record ``results``; in a dry run also the plan of mutating calls so far (the runner prints it)."""
        record_results(results)
        if self._backend is not None and self._backend.dry_run:
            record_plan(planned_calls(self._backend))

    def header(self, *, interactive: bool = False) -> str:
        """The run's header; ``interactive``: run by hand in JupyterLab, where a person confirms each destructive
        step (:mod:`aurora_kit.interactive`) whatever ``confirm`` says."""
        from aurora_kit.backends import backend_class

        p = self.params
        confirm = "yes" if p.confirm else "no — destructive steps will stop"
        if interactive:
            confirm = "asked here at each destructive step (the plan, a Confirm button)"
        rows = [
            ("runbook", self.runbook),
            ("run id", self.run_id),
            ("operator", f"{self.operator}@{self.host}"),
            ("backend", p.backend + (f" ({p.region})" if backend_class(p.backend).traits.regional else "")),
            ("cluster", f"{p.cluster_id}: 1 writer + {p.readers} readers, {p.instance_class}, {p.engine_version}"),
            ("dry run", "yes — no mutating call will be made" if p.dry_run else "no"),
            ("confirm", confirm),
            ("started", self.started_at.isoformat(timespec="seconds")),
        ]
        return "\n".join(f"{k:>9}: {v}" for k, v in rows)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def planned_calls(backend: ClusterBackend) -> list[dict[str, Any]]:
    """The calls ``backend`` recorded in its dry run, as rows (service, call, parameters)."""
    return [{"service": c.service, "call": c.operation, "parameters": c.params} for c in backend.plan]


def start(
    runbook: str,
    namespace: Mapping[str, Any],
    *,
    sections: Iterable[str] | None = None,
    show: bool = True,
    interactive: bool = False,
) -> Run:
    """Validate the runbook's parameters and open the run (see the module docstring)."""
    params = params_mod.for_runbook(runbook, namespace, sections=sections)
    run = Run(
        runbook=runbook,
        params=params,
        run_id=os.environ.get(RUN_ID_ENV) or new_run_id(runbook),
        operator=operator(),
        host=socket.gethostname(),
        started_at=datetime.now(timezone.utc),
    )
    if show:
        _display({"text/plain": run.header(interactive=interactive)})
    return run
