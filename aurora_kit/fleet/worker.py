"""One run of a fleet, in a process of its own: ``python -m aurora_kit.fleet.worker`` reads its job (JSON) on
standard input, runs the runbook exactly as ``aurora-kit run`` does (:func:`run_one`) and writes where its record is
to the job's ``result`` file.

Why a process per run, not a thread: the runner hands each kernel its run id and its redaction key through the
process environment (:func:`aurora_kit.engine.temporary_environ`) — two runs started by threads of one process
could hand a kernel the other run's key, and its registered secrets would then not be redacted. A process per run
also uses both cores (papermill's loop and the HTML render hold the GIL) and keeps a crash to one cluster, as
Airflow's executors do with one task per process.

:func:`run_one` is also what the Airflow operator calls (:mod:`aurora_kit.integrations.airflow`).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aurora_kit.deadline import Deadline
from aurora_kit.report import RunResult


def run_one(
    notebook: Path,
    parameters: Mapping[str, Any],
    *,
    audit_dir: Path,
    batch_id: str | None = None,
    run_timeout_s: float | None = None,
    allow_unverified: bool = False,
    parameters_file: str | None = None,
    overrides: Sequence[str] = (),
    kernel_name: str | None = None,
    execution_timeout: int | None = None,
    preflight: bool = True,
    deadline: Deadline | None = None,
) -> RunResult:
    """What ``aurora-kit run`` does for one runbook, with validated ``parameters`` (every key): check the
    runbook's ``parameters`` cell, open the backend once (``preflight``), execute with the redacting engine, seal
    the record. ``run_timeout_s`` bounds the whole run (:class:`~aurora_kit.deadline.Deadline`)."""
    from aurora_kit import runner
    from aurora_kit.params import RUNBOOKS, injected_for

    runner.check_parameters_cell(notebook, list(injected_for(notebook.stem, parameters)))
    if preflight and notebook.stem in RUNBOOKS:
        runner.preflight(parameters)
    return runner.run_notebook(
        notebook,
        parameters,
        audit_dir=audit_dir,
        batch_id=batch_id,
        allow_unverified=allow_unverified,
        parameters_file=parameters_file,
        overrides=overrides,
        kernel_name=kernel_name,
        execution_timeout=execution_timeout,
        deadline=deadline or Deadline(run_timeout_s),
    )


def main() -> int:
    job: dict[str, Any] = json.load(sys.stdin)
    deadline = Deadline(job.get("run_timeout_s"), grace_s=float(job.get("grace_s", 30.0)))

    def stop(signum: int, _frame: Any) -> None:  # the fleet was interrupted: end this run with a sealed record
        deadline.stop(f"stopped: the fleet run was interrupted ({signal.Signals(signum).name})")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    result = run_one(
        Path(job["notebook"]),
        job["parameters"],
        audit_dir=Path(job["audit_dir"]),
        batch_id=job.get("batch_id"),
        allow_unverified=bool(job.get("allow_unverified")),
        parameters_file=job.get("parameters_file"),
        overrides=job.get("overrides") or (),
        kernel_name=job.get("kernel_name"),
        execution_timeout=job.get("execution_timeout"),
        preflight=False,  # the fleet opened every backend before the first run
        deadline=deadline,
    )
    Path(job["result"]).write_text(
        json.dumps({"run_id": result.run_id, "record_dir": str(result.record_dir), "status": result.status}),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a process by aurora_kit.fleet.run
    sys.exit(main())
