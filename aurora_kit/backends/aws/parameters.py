"""Cluster parameter groups on Aurora: read, change (dynamic ``immediate``, static ``pending-reboot``; the
catalogue and engine defaults decide which), wait until every member shows the new state, rolling reboot."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from aurora_kit.backends.aws import decisions as d
from aurora_kit.backends.aws.api import RDS, AwsApi, _cluster_terminal, _lower
from aurora_kit.backends.aws.translate import (
    to_instance,
    to_members,
)
from aurora_kit.backends.base import (
    Instance,
    ParameterChange,
    ParameterChangeResult,
)
from aurora_kit.errors import (
    InvalidStateError,
)
from aurora_kit.rules import reboot_order


class ParameterGroupOps(AwsApi):
    """The parameter operations of :class:`~aurora_kit.backends.aws.AwsBackend`."""

    def _group_of(self, cluster: Mapping[str, Any]) -> str:
        group = cluster.get("DBClusterParameterGroup")
        if not group:
            raise InvalidStateError(
                f"cluster {cluster.get('DBClusterIdentifier')!r} reports no cluster parameter group",
                cluster_id=cluster.get("DBClusterIdentifier"),
            )
        return str(group)

    def _group_parameters(self, group: str) -> dict[str, dict[str, Any]]:
        rows = self._pages(RDS, "DescribeDBClusterParameters", "Parameters", DBClusterParameterGroupName=group)
        return {r["ParameterName"]: r for r in rows}

    def _engine_default_parameters(self, family: str) -> dict[str, dict[str, Any]]:
        """DescribeEngineDefaultClusterParameters (paginated under EngineDefaults), cached per family once read.
        A failure raises a typed error and caches nothing (the next call asks AWS again)."""
        if family not in self._engine_defaults:
            rows = self._pages(
                RDS,
                "DescribeEngineDefaultClusterParameters",
                "EngineDefaults.Parameters",
                DBParameterGroupFamily=family,
            )
            self._engine_defaults[family] = {r["ParameterName"]: r for r in rows}
        return self._engine_defaults[family]

    def get_parameters(self, cluster_id: str, names: list[str]) -> dict[str, str | None]:
        cluster_id = _lower(cluster_id)
        group = self._group_of(self._cluster(cluster_id))
        params = self._group_parameters(group)
        return {n: (params[n].get("ParameterValue") if n in params else None) for n in names}

    def apply_parameters(
        self,
        cluster_id: str,
        parameters: Mapping[str, str],
        *,
        apply_method: d.ApplyMethodRequest = "auto",
    ) -> ParameterChangeResult:
        """ModifyDBClusterParameterGroup: dynamic → ``immediate``, static → ``pending-reboot`` (``apply_method``
        may force ``pending-reboot``; forcing ``immediate`` on a static parameter is refused before any call).
        ``shared_preload_libraries`` is merged with what is loaded now / the engine default."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        group = self._group_of(cluster)
        if group.startswith("default."):
            raise InvalidStateError(
                f"cluster {cluster_id!r} uses the default parameter group {group!r}, which cannot be modified",
                hint="create a custom cluster parameter group and attach it (create_cluster does this by default)",
                cluster_id=cluster_id,
            )
        family = d.parameter_group_family(str(cluster.get("EngineVersion", "")))
        planned = d.plan_parameter_changes(
            parameters,
            self._group_parameters(group),
            apply_method=apply_method,
            engine_defaults=self._engine_default_parameters(family),
        )
        changes = [ParameterChange(p.name, p.old_value, p.new_value, p.apply_type, p.apply_method) for p in planned]
        if not planned:
            return ParameterChangeResult(cluster_id, [], self._pending_reboot(cluster), status="no-change")
        for batch in d.batches(planned):
            self._call(
                RDS,
                "ModifyDBClusterParameterGroup",
                DBClusterParameterGroupName=group,
                Parameters=[
                    {"ParameterName": p.name, "ParameterValue": p.new_value, "ApplyMethod": p.apply_method}
                    for p in batch
                ],
            )
        if self.dry_run:
            static = [c for c in changes if c.apply_method == "pending-reboot"]
            pending = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers") or []] if static else []
            return ParameterChangeResult(cluster_id, changes, pending, status="dry-run")
        cluster = self._wait_parameters_settled(cluster_id, group, planned)
        return ParameterChangeResult(cluster_id, changes, self._pending_reboot(cluster))

    def _wait_parameters_settled(
        self, cluster_id: str, group: str, planned: Sequence[d.PlannedParameter]
    ) -> dict[str, Any]:
        """Right after ModifyDBClusterParameterGroup the members may still say ``in-sync`` (they have not started
        ``applying``), so "nothing is applying" proves nothing. Wait first until the group reports every new
        ParameterValue, then until every member reaches the state the change leads to: ``pending-reboot`` when any
        change waits for a reboot, else no longer ``applying``."""
        wanted = {p.name: p.new_value for p in planned}
        self._wait(
            f"parameter group {group} showing the new values",
            lambda: self._group_parameters(group),
            lambda params: all((params.get(n) or {}).get("ParameterValue") == v for n, v in wanted.items()),
            operation="parameters",
            describe=lambda params: ", ".join(f"{n}={(params.get(n) or {}).get('ParameterValue')!r}" for n in wanted),
        )
        if any(p.apply_method == "pending-reboot" for p in planned):
            what, settled = "pending-reboot", lambda status: status == "pending-reboot"
        else:  # a member left pending-reboot by an earlier change stays so: only "applying" is unsettled
            what, settled = "done applying", lambda status: status != "applying"
        return self._wait(
            f"members of {cluster_id} {what}",
            lambda: self._cluster(cluster_id),
            lambda c: all(settled(m.get("DBClusterParameterGroupStatus")) for m in c.get("DBClusterMembers") or []),
            describe=lambda c: ", ".join(
                f"{m['DBInstanceIdentifier']}:{m.get('DBClusterParameterGroupStatus')}"
                for m in c.get("DBClusterMembers") or []
            ),
            operation="parameters",
            fail_if=_cluster_terminal,
        )

    @staticmethod
    def _pending_reboot(cluster: Mapping[str, Any]) -> list[str]:
        return [
            m["DBInstanceIdentifier"]
            for m in cluster.get("DBClusterMembers") or []
            if m.get("DBClusterParameterGroupStatus") == "pending-reboot"
        ]

    def reboot_pending(self, cluster_id: str) -> list[Instance]:
        """Reboot every pending-reboot member, readers first then the writer; each must come back
        ``available`` and ``in-sync`` before the next is rebooted."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        order = reboot_order(to_members(cluster))
        rebooted: list[Instance] = []
        for instance_id in order:
            response = self._call(RDS, "RebootDBInstance", DBInstanceIdentifier=instance_id)
            if self.dry_run:
                inst = self._find_instance(instance_id) or {"DBInstanceIdentifier": instance_id}
                rebooted.append(dataclasses.replace(to_instance(inst, cluster), status="dry-run"))
                continue
            rebooted.append(self._wait_instance_rebooted(cluster_id, instance_id, response, require_in_sync=True))
        return rebooted
