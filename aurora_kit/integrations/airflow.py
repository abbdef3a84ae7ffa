"""Apache Airflow: run a runbook as a task, and a fleet file as a DAG (``pip install 'aurora_kit[airflow]'``).

:class:`AuroraRunbookOperator` runs a runbook exactly as ``aurora-kit run`` does: the parameters file (or a fleet
member) and the ``-p`` overrides are validated first, the ``parameters`` cell is checked, the backend is opened
once, the notebook runs with the redacting engine, and the record is sealed into the audit chain
(:func:`aurora_kit.fleet.worker.run_one`). ``parameters_file``, ``fleet_file``, ``overrides`` and ``audit_dir`` are
templated (``overrides=["backup_restore.snapshot_id=nightly-{{ ds_nodash }}"]``).

Outcome → task state: ``passed`` and ``dry run`` succeed (the XCom ``return_value`` holds the outcome, run id,
record and key figures). ``failed`` and ``not verified`` raise :class:`AirflowFailException`: the task is
**failed, without retries** — a failed check is a finding, not a glitch to retry (and retrying a failover or a
teardown on its own is not what a DBA wants), and a check that did not run must alert like a failure, as exit 3
does under cron; a *skipped* state would read as "nothing to do" in the UI and skip its downstream tasks quietly.
The outcome itself (``not verified`` and the checks it names) is in the task log, the XCom ``aurora_kit`` and the
record. ``allow_unverified=True`` accepts skipped checks explicitly, as ``--allow-unverified`` does: the task
succeeds and the record says so. Parameters refused before running also fail the task without retries.

:func:`fleet_dag` turns a fleet file into a DAG: one task per cluster (task id = the cluster's name in the fleet),
``max_active_tasks`` = the fleet's concurrency limit (per DAG run), one DAG run at a time, an optional ``pool`` to
bound runs across DAGs (e.g. one pool per AWS account), and for destructive runbooks the canary rule: the canary
task first, then the others in waves of ``max_parallel`` (one by one by default), each wave after the previous one
succeeded — a failed or not verified run leaves the later clusters ``upstream_failed`` (not run). Airflow's
executors (Celery, Kubernetes) then spread the tasks over machines; each task is one process, as in
``aurora-kit run --fleet``.

The fleet file is validated when the DAG file is parsed (an invalid fleet is an import error in Airflow's UI),
without templated overrides (they render only at run time), and again, whole, in each task before its run. A fleet
with ``select:`` entries calls the backend's describe at every parse: list the clusters explicitly for Airflow, or
parse rarely.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from aurora_kit.deadline import Deadline

#: XCom key holding a run's outcome (also on failure: pushed before the task fails)
XCOM_KEY = "aurora_kit"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120] or "run"


class AuroraRunbookOperator(BaseOperator):
    """Run one runbook on one cluster, exactly as ``aurora-kit run`` does (see the module docstring).

    :param runbook: ``04``, ``04-verify-read-write`` or a path to a notebook
    :param parameters_file: a parameters file (``-f``); or ``fleet_file`` + ``member``
    :param fleet_file: a fleet file; ``member`` names the cluster (its ``name``, default its cluster id)
    :param overrides: ``key=value`` items as ``-p`` takes them (templated; ``{cluster_id}`` is the cluster's id)
    :param audit_dir: where records go (default ``$AURORA_KIT_AUDIT_DIR``, else ``<project>/audit``)
    :param allow_unverified: accept skipped checks (the task succeeds; the record says so)
    :param run_timeout_s: the run's time limit (its kernel is interrupted and the run fails; Airflow's own
        ``execution_timeout`` is a harder stop that may leave no record: keep it longer)
    """

    template_fields: Sequence[str] = ("parameters_file", "fleet_file", "overrides", "audit_dir")
    ui_color = "#e3f0fb"

    def __init__(
        self,
        *,
        runbook: str,
        parameters_file: str | None = None,
        fleet_file: str | None = None,
        member: str | None = None,
        overrides: Sequence[str] = (),
        audit_dir: str | None = None,
        allow_unverified: bool = False,
        run_timeout_s: float | None = None,
        kernel_name: str | None = None,
        runbooks_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        if (parameters_file is None) == (fleet_file is None):
            raise ValueError("give exactly one of parameters_file or fleet_file (+ member)")
        if fleet_file is not None and not member:
            raise ValueError("fleet_file needs member: the cluster's name in the fleet")
        self.runbook = runbook
        self.parameters_file = parameters_file
        self.fleet_file = fleet_file
        self.member = member
        self.overrides = list(overrides)
        self.audit_dir = audit_dir
        self.allow_unverified = allow_unverified
        self.run_timeout_s = run_timeout_s
        self.kernel_name = kernel_name
        self.runbooks_dir = runbooks_dir
        self._deadline: Deadline | None = None

    def _parameters(self, notebook: Path, audit_dir: Path, batch: str) -> tuple[dict[str, Any], str]:
        """(validated parameters to inject, the parameters file the record names)."""
        from aurora_kit import params

        if self.parameters_file is not None:
            return params.load(self.parameters_file, self.overrides).injected(), str(self.parameters_file)
        from aurora_kit.audit import FLEETS_DIR
        from aurora_kit.fleet import load_fleet
        from aurora_kit.fleet.run import write_parameters

        assert self.fleet_file is not None
        assert self.member is not None
        fleet = load_fleet(self.fleet_file, self.overrides)  # the whole fleet, again, before this run
        fleet.check_for(notebook.stem)
        member = fleet.member(self.member)
        written = write_parameters(fleet, audit_dir / FLEETS_DIR / batch / "parameters", only=[member.name])
        return member.parameters.injected(), str(written[member.name])

    def execute(self, context: Any) -> dict[str, Any]:
        from aurora_kit import audit, runner
        from aurora_kit.errors import AuroraKitError
        from aurora_kit.fleet.worker import run_one

        ti = context["ti"]
        batch = _safe(f"airflow-{ti.dag_id}-{ti.run_id}")
        audit_dir = audit.audit_root(self.audit_dir)
        try:
            kwargs = {"runbooks_dir": Path(self.runbooks_dir)} if self.runbooks_dir else {}
            notebook = runner.resolve(self.runbook, **kwargs)
            parameters, parameters_file = self._parameters(notebook, audit_dir, batch)
            self._deadline = Deadline(self.run_timeout_s)
            result = run_one(
                notebook,
                parameters,
                audit_dir=audit_dir,
                batch_id=batch,
                allow_unverified=self.allow_unverified,
                parameters_file=parameters_file,
                overrides=self.overrides,
                kernel_name=self.kernel_name,
                deadline=self._deadline,
            )
        except AuroraKitError as exc:  # refused before running: bad parameters, unknown runbook, unusable root
            raise AirflowFailException(f"refused before running (nothing ran, no record): {exc}") from exc
        ro = result.outcome
        payload = {
            "runbook": result.runbook,
            "cluster_id": parameters.get("cluster_id"),
            "outcome": result.status,
            "label": ro.label if ro is not None else result.status,
            "accepted": result.accepted,
            "exit_code": result.exit_code,
            "reason": ro.reason if ro is not None else result.error,
            "unverified": list(ro.unverified) if ro is not None else [],
            "run_id": result.run_id,
            "record_dir": str(result.record_dir) if result.record_dir else None,
            "key_figures": result.key_figures,
        }
        ti.xcom_push(key=XCOM_KEY, value=payload)
        self.log.info("%s %s on %s: %s; record %s", payload["label"], result.runbook, payload["cluster_id"],
                      payload["reason"], payload["record_dir"])  # fmt: skip
        if not result.accepted:
            raise AirflowFailException(
                f"{result.runbook} on {payload['cluster_id']}: {payload['label']} — {payload['reason']} "
                f"(record {payload['record_dir']})"
            )
        return payload

    def on_kill(self) -> None:
        """Airflow stops the task: interrupt the kernel so the run can still seal its record."""
        if self._deadline is not None:
            self._deadline.stop("stopped: Airflow killed the task")


def _templated(item: str) -> bool:
    return "{{" in item or "{%" in item


def fleet_dag(
    fleet_file: str | Path,
    runbook: str,
    *,
    dag_id: str | None = None,
    schedule: Any = None,
    start_date: datetime | None = None,
    overrides: Sequence[str] = (),
    audit_dir: str | None = None,
    max_parallel: int | None = None,
    run_timeout_s: float | None = None,
    keep_going: bool = False,
    stop_on_failure: bool = False,
    allow_unverified: bool = False,
    pool: str | None = None,
    runbooks_dir: str | None = None,
    **dag_kwargs: Any,
) -> DAG:
    """A DAG running ``runbook`` over every cluster of ``fleet_file`` (see the module docstring); the rules
    (concurrency, canary, stop) are those of ``aurora-kit run --fleet`` (:func:`aurora_kit.fleet.run.plan`)."""
    from aurora_kit import runner
    from aurora_kit.fleet import load_fleet
    from aurora_kit.fleet.plan import plan

    fleet = load_fleet(fleet_file, [o for o in overrides if not _templated(o)])
    kwargs = {"runbooks_dir": Path(runbooks_dir)} if runbooks_dir else {}
    stem = runner.resolve(runbook, **kwargs).stem
    fleet.check_for(stem)
    the_plan = plan(
        fleet,
        stem,
        max_parallel=max_parallel,
        run_timeout_s=run_timeout_s,
        keep_going=keep_going,
        stop_on_failure=stop_on_failure,
    )
    dag = DAG(
        dag_id=dag_id or _safe(f"aurora_kit_{fleet.name}_{stem}"),
        schedule=schedule,
        start_date=start_date or datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,  # two runs of one fleet would act on the same clusters at once
        max_active_tasks=the_plan.max_parallel,
        tags=["aurora_kit", fleet.name, stem],
        doc_md=f"`{stem}` over fleet **{fleet.name}** ({the_plan.describe()}); fleet file `{fleet.path}`.",
        **dag_kwargs,
    )
    timeout = timedelta(seconds=the_plan.run_timeout_s + 300)  # a hard stop past the run's own limit
    tasks = {}
    with dag:
        for member in the_plan.order:
            tasks[member.name] = AuroraRunbookOperator(
                task_id=member.name,
                runbook=runbook,
                fleet_file=str(fleet.path),
                member=member.name,
                overrides=list(overrides),
                audit_dir=audit_dir,
                allow_unverified=allow_unverified,
                run_timeout_s=the_plan.run_timeout_s,
                runbooks_dir=runbooks_dir,
                execution_timeout=timeout,
                **({"pool": pool} if pool else {}),
            )
        if the_plan.canary is not None or the_plan.stop_on_failure:
            order = [tasks[m.name] for m in the_plan.order]
            first, rest = ([order[0]], order[1:]) if the_plan.canary is not None else ([], order)
            waves = [first] if first else []
            if the_plan.stop_on_failure:
                step = the_plan.max_parallel
                waves += [rest[i : i + step] for i in range(0, len(rest), step)]
            elif rest:
                waves.append(rest)  # --keep-going: after the canary, the rest at once (max_active_tasks bounds)
            for before, after in itertools.pairwise(waves):
                for task in after:
                    task.set_upstream(before)
    return dag
