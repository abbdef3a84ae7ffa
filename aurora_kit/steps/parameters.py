"""02-configure-parameters: current vs wanted, apply (dynamic now, static pending-reboot), the rolling reboot
(readers first, needs ``confirm``), then ``SHOW`` on every instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aurora_kit.display import Table
from aurora_kit.steps.common import *  # noqa: F403 - every runbook module re-exports the common steps
from aurora_kit.steps.common import __all__ as _common
from aurora_kit.steps.common import check_step, confirm, connect_timeout

if TYPE_CHECKING:
    from aurora_kit.backends.base import ParameterChangeResult
    from aurora_kit.checks.settings import SettingsReport
    from aurora_kit.runbook import Run


def wanted(run: Run) -> dict[str, str]:
    return dict(run.section("parameter_group").parameters)


def diff(run: Run) -> Table:
    """Current vs wanted value of each parameter, and whether it changes."""
    want = wanted(run)
    current = run.backend.get_parameters(run.params.cluster_id, list(want))
    rows = [
        {"parameter": name, "current": current.get(name), "wanted": value, "change": current.get(name) != value}
        for name, value in want.items()
    ]
    changing = sum(1 for r in rows if r["change"])
    return Table(rows, f"{changing} of {len(rows)} parameters change")


def apply(run: Run) -> ParameterChangeResult:
    """Apply the wanted parameters to the cluster parameter group: dynamic ones take effect now, static ones
    leave the instances ``pending-reboot``. Every name and value is checked before anything changes."""
    return run.backend.apply_parameters(run.params.cluster_id, wanted(run))


def changes_table(result: ParameterChangeResult) -> Table:
    rows = [
        {
            "parameter": c.parameter_name,
            "old": c.old_value,
            "new": c.new_value,
            "apply type": c.apply_type,
            "apply method": c.apply_method,
        }
        for c in result.changes
    ]
    pending = ", ".join(result.pending_reboot_instances) or "none"
    return Table(rows, f"{result.status}; pending-reboot instances: {pending}")


@dataclass(frozen=True)
class RebootOutcome:
    """Which instances the rolling reboot restarted, and which stay pending-reboot (reboot not allowed)."""

    rebooted: list[str]
    still_pending: list[str]
    static: list[str] = field(default_factory=list)  # parameters that take effect only at a reboot

    def summary(self) -> dict[str, Any]:
        return {"rebooted": list(self.rebooted), "still_pending": list(self.still_pending), "static": self.static}

    def __str__(self) -> str:
        pending = ", ".join(self.still_pending) or "none"
        return f"rebooted: {', '.join(self.rebooted) or 'none'}; still pending-reboot: {pending}"

    __repr__ = __str__


def rolling_reboot(run: Run, result: ParameterChangeResult) -> RebootOutcome:
    """Reboot the pending-reboot instances (readers first, then the writer) when ``allow_reboot``; needs
    ``confirm``. Prints what it did or why not."""
    pending = list(result.pending_reboot_instances)
    static = [c.parameter_name for c in result.changes if c.apply_method == "pending-reboot"]
    if not pending:
        print("no instance is pending-reboot: nothing to reboot")
        return RebootOutcome([], [], static)
    if not run.section("parameter_group").allow_reboot:
        print(
            f"allow_reboot is false: {', '.join(pending)} stay pending-reboot; static parameters take effect at "
            "their next reboot"
        )
        return RebootOutcome([], pending, static)
    cid = run.params.cluster_id
    confirm(run, "rolling reboot of " + ", ".join(pending), plan=lambda backend: backend.reboot_pending(cid))
    rebooted = [i.db_instance_identifier for i in run.backend.reboot_pending(cid)]
    if run.params.dry_run:
        print("dry run: no reboot made")
        return RebootOutcome([], pending, static)
    return RebootOutcome(rebooted, [], static)


@check_step("parameters on every instance")
def settings(run: Run, reboot: RebootOutcome | None = None) -> SettingsReport:
    """``SHOW`` of each wanted parameter on every instance (instances still pending-reboot are excused for the
    static parameters that wait for that reboot)."""
    from aurora_kit.checks.settings import read_settings

    cid = run.params.cluster_id
    infos = {
        i.db_instance_identifier: run.backend.connection_info(cid, i.db_instance_identifier)
        for i in run.backend.describe_instances(cid)
    }
    reboot = reboot or RebootOutcome([], [])
    return read_settings(
        infos,
        wanted(run),
        still_pending=reboot.still_pending,
        static=reboot.static,
        connect_timeout=connect_timeout(run),
    )


__all__ = [*_common, "RebootOutcome", "apply", "changes_table", "diff", "rolling_reboot", "settings", "wanted"]
