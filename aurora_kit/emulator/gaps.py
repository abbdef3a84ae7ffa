"""Where moto 5.2 answers differently from RDS, in one place: the patches both the plain moto server of the tests
and the emulator apply, and the moto version they were written against.

moto's classes are patched in the process that runs them (an in-process ``mock_aws`` test, a moto server, the
emulator); the aws backend itself carries no moto workaround. Each patch names what AWS does:

- ``DescribeEngineDefaultClusterParameters``: moto raises NotImplementedError (a server answers HTTP 500).
  Answered with an empty catalogue, so the backend's built-in ApplyType table decides, as it does when a Region's
  catalogue lacks a name.
- ``DBClusterMembers[].DBClusterParameterGroupStatus``: moto always says ``in-sync``. After a
  ModifyDBClusterParameterGroup with ``ApplyMethod=pending-reboot``, every member of a cluster using that group shows
  ``pending-reboot`` until it is rebooted (AWS: ``applying`` → ``pending-reboot``).
- ``RebootDBInstance`` answers ``DBInstanceStatus: rebooting`` as AWS does (moto: ``available``); on plain moto the
  reboot itself stays instant, so the next describe shows ``available`` again.
- ``PutMetricAlarm``: moto starts a new alarm ``OK`` and resets an updated one; CloudWatch starts it
  ``INSUFFICIENT_DATA`` ("Unchecked: Initial alarm creation") and leaves an updated alarm's state as it was.
- ``RestoreDBClusterFromSnapshot`` of a cluster created with ``ManageMasterUserPassword``: moto copies the source's
  settings with ``get_cfg``, which expects a plain master password and raises KeyError (HTTP 500). Fixed: a managed
  source has none to copy.

And those of the scaling and proxy calls, in :mod:`.gaps_capacity`.

The emulator (:mod:`aurora_kit.emulator.hooks`) layers real behaviour on top of these (statuses from the local
clusters, real reboots, real parameter status).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from aurora_kit.emulator.gaps_capacity import fill_moto_capacity_gaps

#: the moto minor version these patches were written against (pyproject pins moto[server]>=5.2,<5.3)
MOTO_SERIES = (5, 2)


class MotoVersionError(RuntimeError):
    """The installed moto is not the series the patches were written against."""


def check_moto_version() -> str:
    """moto's version, or MotoVersionError when it is not 5.2.x (the patches reach into its internals)."""
    import moto

    version = str(getattr(moto, "__version__", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts != MOTO_SERIES:
        raise MotoVersionError(
            f"moto {version} is installed; aurora_kit's emulator patches moto {MOTO_SERIES[0]}.{MOTO_SERIES[1]}.x "
            "internals: pip install 'moto[server]>=5.2,<5.3'"
        )
    return version


_MISSING = object()


class Patcher:
    """setattr with undo (pytest's MonkeyPatch has the same shape: tests pass either)."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def setattr(self, target: Any, name: str, value: Any, raising: bool = True) -> None:
        if raising and not hasattr(target, name):
            raise AttributeError(f"{target!r} has no attribute {name!r}")
        old = vars(target).get(name, _MISSING) if isinstance(target, type) else getattr(target, name, _MISSING)
        self._undo.append((target, name, old))
        setattr(target, name, value)

    def undo(self) -> None:
        while self._undo:
            target, name, old = self._undo.pop()
            if old is _MISSING:
                delattr(target, name)
            else:
                setattr(target, name, old)


#: on each moto RDSBackend (so moto's reset drops it): parameter group → instances rebooted since its last
#: pending-reboot change
_PENDING = "_aurora_kit_pending_reboot"


def _pending(backend: Any) -> dict[str, set[str]]:
    if not hasattr(backend, _PENDING):
        setattr(backend, _PENDING, {})
    pending: dict[str, set[str]] = getattr(backend, _PENDING)
    return pending


def fill_moto_rds_gaps(patch: Any, *, member_status: Callable[[Any, list[dict[str, Any]]], bool] | None = None) -> None:
    """Apply the patches of the module docstring with ``patch`` (a :class:`Patcher` or pytest's MonkeyPatch).

    ``member_status(cluster, rows)`` may fill ``DBClusterParameterGroupStatus`` itself (the emulator does, from the
    real servers) and return True; otherwise the pending-reboot bookkeeping above decides."""
    check_moto_version()
    from moto.core.responses import ActionResult
    from moto.rds import models, responses

    def describe_engine_default_cluster_parameters(self: Any) -> ActionResult:
        family = self._get_param("DBParameterGroupFamily")
        return ActionResult({"EngineDefaults": {"DBParameterGroupFamily": family, "Parameters": []}})

    modify = models.RDSBackend.modify_db_cluster_parameter_group

    def modify_db_cluster_parameter_group(self: Any, name: str, parameters: Any) -> Any:
        parameters = list(parameters)
        group = modify(self, name, parameters)
        if any(p.get("ApplyMethod") == "pending-reboot" for p in parameters):
            _pending(self)[name.lower()] = set()
        return group

    members = models.DBCluster.db_cluster_members

    def db_cluster_members(self: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = members.fget(self)  # type: ignore[attr-defined]
        if member_status is not None and member_status(self, rows):
            return rows
        rebooted = _pending(self.backend).get(str(self.parameter_group).lower())
        if rebooted is not None:
            for row in rows:
                if row["DBInstanceIdentifier"] not in rebooted:
                    row["DBClusterParameterGroupStatus"] = "pending-reboot"
        return rows

    reboot = models.RDSBackend.reboot_db_instance

    def reboot_db_instance(self: Any, db_instance_identifier: str) -> Any:
        instance = reboot(self, db_instance_identifier)
        for rebooted in _pending(self).values():
            rebooted.add(instance.db_instance_identifier)
        answer = copy.copy(instance)  # the answer says rebooting; the stored instance stays available
        answer.status = "rebooting"
        return answer

    get_cfg = models.DBCluster.get_cfg

    def safe_get_cfg(self: Any) -> dict[str, Any]:
        if "_master_user_password" not in vars(self):  # ManageMasterUserPassword: no plain password to copy
            self._master_user_password = None
            try:
                cfg: dict[str, Any] = get_cfg(self)
            finally:
                del self._master_user_password
            cfg.pop("master_user_password", None)
            return cfg
        return dict(get_cfg(self))

    from moto.cloudwatch import models as cw

    put_alarm = cw.CloudWatchBackend.put_metric_alarm

    def put_metric_alarm(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        before = self.alarms.get(name)
        alarm = put_alarm(self, name, *args, **kwargs)
        if before is not None:  # an update keeps the state
            for attr in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp"):
                setattr(alarm, attr, getattr(before, attr))
        else:
            alarm.state_value = "INSUFFICIENT_DATA"
        return alarm

    def describe_orderable_db_instance_options(self: Any, engine: str, engine_version: str) -> list[dict[str, Any]]:
        """moto's catalogue stops at aurora-postgresql 11 and ignores the class filter: answer the class asked for
        (when it is a DB instance class at all) with the Region's zones, as AWS does for an orderable class."""
        from aurora_kit.rules import check_instance_class

        if engine != "aurora-postgresql":
            return []
        wanted = getattr(self, "_aurora_kit_orderable_class", None)
        try:
            check_instance_class(str(wanted))
        except ValueError:
            return []
        zones = [{"Name": f"{self.region_name}{z}"} for z in "abcdef"]
        return [
            {"Engine": engine, "EngineVersion": engine_version or "16.4", "DBInstanceClass": wanted,
             "AvailabilityZones": zones, "SupportsIAMDatabaseAuthentication": True}
        ]  # fmt: skip

    def describe_orderable_response(self: Any) -> Any:
        backend = self.backend
        backend._aurora_kit_orderable_class = self._get_param("DBInstanceClass")
        return describe_response(self)

    describe_response = responses.RDSResponse.describe_orderable_db_instance_options
    patch.setattr(models.RDSBackend, "describe_orderable_db_instance_options", describe_orderable_db_instance_options)
    patch.setattr(responses.RDSResponse, "describe_orderable_db_instance_options", describe_orderable_response)
    patch.setattr(cw.CloudWatchBackend, "put_metric_alarm", put_metric_alarm)
    patch.setattr(
        responses.RDSResponse,
        "describe_engine_default_cluster_parameters",
        describe_engine_default_cluster_parameters,
        raising=False,
    )
    patch.setattr(models.RDSBackend, "modify_db_cluster_parameter_group", modify_db_cluster_parameter_group)
    patch.setattr(models.DBCluster, "db_cluster_members", property(db_cluster_members))
    patch.setattr(models.RDSBackend, "reboot_db_instance", reboot_db_instance)
    patch.setattr(models.DBCluster, "get_cfg", safe_get_cfg)
    fill_moto_capacity_gaps(patch)  # 08-scale / 09-proxy: proxies, their endpoints, scaling alarms
