"""The parameter model: one YAML file per environment drives every runbook, validated before any kernel starts.

Layout of ``parameters/<env>.yaml`` (every key is required; unknown keys are errors)::

    # common: every runbook reads these
    backend: local                 # local | aws
    cluster_id: ak-local
    region: us-east-1              # aws region (local: a label in records)
    engine_version: "16.4"
    readers: 2                     # instances = 1 writer + readers
    availability_zones: [us-east-1a, us-east-1b, us-east-1c]
    instance_class: db.r6g.large
    backup_retention_period: 1     # days, 1-35
    preferred_backup_window: "03:00-04:00"
    preferred_maintenance_window: "sun:05:00-sun:05:30"   # or null: AWS picks one
    deletion_protection: false
    iam_auth: false                # IAM database authentication
    tags: {project: aurora_kit}
    dry_run: false                 # plan mutating calls, make none
    confirm: false                 # destructive steps run only with -p confirm=true
    local_root: null               # local backend: cluster root dir (null = the backend's default)
    aws: {profile, ca_bundle, db_subnet_group_name, vpc_security_group_ids, kms_key_id, sns_topic_arn,
          iam_db_user, endpoint_overrides}
    # one section per runbook concern
    parameter_group: {...}         # 02-configure-parameters
    pgvector: {...}                # 03-extensions
    probe: {...}                   # 04-verify-read-write, 06-failover
    backup_restore: {...}          # 05-backup-restore
    failover: {...}                # 06-failover
    monitoring: {...}              # 07-monitoring
    scale: {...}                   # 08-scale (aurora_kit.params.scaling)
    proxy: {...}                   # 09-proxy (aurora_kit.params.scaling)
    teardown: {...}                # 99-teardown

A runbook receives the common keys and its own sections only (:func:`injected_for`; plain papermill with
``-f`` injects every key, which is harmless), so each runbook's ``parameters`` cell defines exactly those, with
local defaults. :func:`parameters_cell` makes such a cell from a YAML file
(``aurora-kit run 06 -f parameters/local.yaml --print-parameters-cell``). Inside a runbook,
:func:`aurora_kit.runbook.start` validates the injected values with :func:`for_runbook`, which requires the
sections that runbook uses (:data:`RUNBOOK_SECTIONS`).

No secret ever goes in a parameters file: there is no field for one, and a secret-looking key is rejected with
that reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aurora_kit.errors import InvalidParameterError
from aurora_kit.params.scaling import ProxySettings, ScaleSettings
from aurora_kit.rules import (
    check_acu_capacity,
    check_alarm_can_fire,
    check_alarm_period,
    check_backup_window,
    check_identifier,
    check_maintenance_window,
    check_retention,
    is_secret_key,
)
from aurora_kit.specs import AlarmSpec, ClusterSpec

#: runbooks in execution order (``aurora-kit run --all``)
RUNBOOKS: tuple[str, ...] = (
    "01-create-cluster",
    "02-configure-parameters",
    "03-extensions",
    "04-verify-read-write",
    "05-backup-restore",
    "06-failover",
    "07-monitoring",
    "08-scale",
    "09-proxy",
    "99-teardown",
)

#: sections each runbook needs (besides the common keys); other sections may be ``None`` in its namespace
RUNBOOK_SECTIONS: dict[str, tuple[str, ...]] = {
    "01-create-cluster": (),
    "02-configure-parameters": ("parameter_group",),
    "03-extensions": ("pgvector",),
    "04-verify-read-write": ("probe",),
    "05-backup-restore": ("backup_restore",),
    "06-failover": ("failover", "probe"),
    "07-monitoring": ("monitoring",),
    "08-scale": ("scale", "probe"),
    "09-proxy": ("proxy", "probe"),
    "99-teardown": ("teardown",),
}

SECTIONS: tuple[str, ...] = (
    "parameter_group",
    "pgvector",
    "probe",
    "backup_restore",
    "failover",
    "monitoring",
    "scale",
    "proxy",
    "teardown",
)


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # an inf threshold never fires


# -- sections -------------------------------------------------------------------------------------------------
class AwsOptions(_Model):
    """Options only the ``aws`` backend reads (the local backend ignores them)."""

    profile: str | None
    ca_bundle: str | None  # path to the RDS CA bundle, for sslmode=verify-full
    db_subnet_group_name: str | None
    vpc_security_group_ids: list[str]
    kms_key_id: str | None
    sns_topic_arn: str | None
    #: the database user that logs in with IAM tokens when ``iam_auth`` (01 creates it, grants rds_iam); the master
    #: user keeps its password (the managed secret)
    iam_db_user: str | None
    #: ``{"<endpoint hostname>" or "*.<suffix>": "address:port"}``: connect there (a tunnel, a bastion, the emulator)
    #: while TLS still verifies the RDS hostname (it stays libpq's host; the address goes in hostaddr)
    endpoint_overrides: dict[str, str]

    @field_validator("sns_topic_arn")
    @classmethod
    def _sns(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$", v):
            raise ValueError("must be an SNS topic ARN such as 'arn:aws:sns:eu-west-1:123456789012:aurora-alarms'")
        return v

    @field_validator("iam_db_user")
    @classmethod
    def _db_user(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[a-z_][a-z0-9_]{0,62}$", v):
            raise ValueError("must be a PostgreSQL role name: lowercase letters, digits, '_', at most 63")
        return v

    @field_validator("vpc_security_group_ids")
    @classmethod
    def _sgs(cls, v: list[str]) -> list[str]:
        for sg in v:
            if not re.match(r"^sg-[0-9a-f]{8,17}$", sg):
                raise ValueError(f"{sg!r} is not a security group id such as 'sg-0123456789abcdef0'")
        return v


class ParameterGroupSettings(_Model):
    """02-configure-parameters: cluster parameters to apply (values as strings, RDS-style)."""

    parameters: dict[str, str]
    allow_reboot: bool  # reboot pending-reboot instances (readers first) so static parameters take effect

    @field_validator("parameters", mode="before")
    @classmethod
    def _as_strings(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: _param_str(val) for k, val in v.items()}
        return v


def _param_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    return value


class PgvectorSettings(_Model):
    """03-extensions: pgvector dataset and HNSW recall/QPS measurement."""

    rows: int = Field(ge=10, le=10_000_000)
    dim: int = Field(ge=2, le=16_000)
    k: int = Field(ge=1, le=1000)
    queries: int = Field(ge=1, le=100_000)
    ef_search: list[int] = Field(min_length=1)
    hnsw_m: int = Field(ge=2, le=100)
    hnsw_ef_construction: int = Field(ge=4, le=1000)
    min_recall: float = Field(ge=0, le=1)

    @field_validator("ef_search")
    @classmethod
    def _ef(cls, v: list[int]) -> list[int]:
        bad = [e for e in v if not 1 <= e <= 1000]
        if bad:
            raise ValueError(f"every ef_search value must be 1-1000 (hnsw.ef_search range); got {bad[0]}")
        return v

    @model_validator(mode="after")
    def _k(self) -> PgvectorSettings:
        if self.k > self.rows:
            raise ValueError(f"k={self.k} exceeds rows={self.rows}")
        return self


class ProbeSettings(_Model):
    """04-verify-read-write and 06-failover: the timestamped write probe and the replica-lag probe."""

    interval_s: float = Field(gt=0, le=60)  # one probe write every interval
    duration_s: float = Field(gt=0, le=3600)  # how long 04 probes (06: how long after the failover)
    rows: int = Field(ge=1, le=1_000_000)  # rows 04 writes and reads back through the reader endpoint
    max_replica_lag_s: float = Field(gt=0)
    connect_timeout_s: float = Field(gt=0, le=300)


class BackupRestoreSettings(_Model):
    """05-backup-restore: manual snapshot, restore from it and/or point-in-time restore, then verify."""

    snapshot_id: str | None  # None: <cluster_id>-<run time>
    restore_cluster_id: str
    restore_mode: Literal["snapshot", "pitr", "both"]
    restore_time: datetime | None  # PITR target (tz-aware); None = latest restorable time
    restore_instances: int = Field(ge=1, le=16)
    delete_restored_cluster: bool

    @field_validator("snapshot_id", "restore_cluster_id")
    @classmethod
    def _ids(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier("identifier", v)

    @field_validator("restore_time")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a timezone, e.g. '2026-11-26T21:00:00Z'")
        return v


class FailoverSettings(_Model):
    """06-failover."""

    mode: Literal["planned", "crash"]
    target_instance_id: str | None  # None: the backend picks the best reader
    max_rto_s: float = Field(gt=0)  # VerificationError when the measured write outage exceeds this
    max_lost_commits: int = Field(ge=0)  # acknowledged commits allowed to vanish (Aurora: 0)
    failback: bool = False  # afterwards, a planned failover back to the old writer (optional key)

    @field_validator("target_instance_id")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier("target_instance_id", v)


class MonitoringSettings(_Model):
    """07-monitoring: alarm thresholds (CloudWatch on aws; evaluated locally on the local backend)."""

    replica_lag_ms: float = Field(gt=0)
    cpu_percent: float = Field(gt=0, le=100)
    freeable_memory_mb: float = Field(gt=0)
    max_connections: int = Field(ge=1)
    period_s: int
    evaluation_periods: int = Field(ge=1)

    @field_validator("period_s")
    @classmethod
    def _period(cls, v: int) -> int:
        return check_alarm_period(v)

    def alarm_specs(self) -> list[AlarmSpec]:
        common: dict[str, Any] = {"period_s": self.period_s, "evaluation_periods": self.evaluation_periods}
        return [
            AlarmSpec(metric="AuroraReplicaLag", threshold=self.replica_lag_ms, statistic="Maximum", **common),
            AlarmSpec(metric="CPUUtilization", threshold=self.cpu_percent, **common),
            AlarmSpec(
                metric="FreeableMemory",
                threshold=self.freeable_memory_mb * 2**20,
                comparison="LessThanThreshold",
                **common,
            ),
            AlarmSpec(metric="DatabaseConnections", threshold=self.max_connections, statistic="Maximum", **common),
        ]


class TeardownSettings(_Model):
    """99-teardown: the final-snapshot choice is explicit — exactly one of the two. Besides ``confirm``, the
    operator types the cluster to delete: ``confirm_cluster_id`` must equal ``cluster_id`` or nothing is deleted.
    ``delete_automated_backups`` (RDS ``DeleteAutomatedBackups``, true as the RDS API's default): false keeps the
    automated backups as retained backups, restorable until the retention period expires."""

    final_snapshot_id: str | None
    skip_final_snapshot: bool
    lift_deletion_protection: bool
    #: DeleteDBCluster's DeleteAutomatedBackups: false keeps them for their retention period (both backends)
    delete_automated_backups: bool
    confirm_cluster_id: str | None  # must equal cluster_id to delete it (-p teardown.confirm_cluster_id=<id>)

    @field_validator("final_snapshot_id", "confirm_cluster_id")
    @classmethod
    def _id(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else check_identifier(str(info.field_name), v)

    @model_validator(mode="after")
    def _choice(self) -> TeardownSettings:
        if (self.final_snapshot_id is None) == (not self.skip_final_snapshot):
            raise ValueError("give exactly one of final_snapshot_id or skip_final_snapshot: true")
        return self


# -- the whole file ---------------------------------------------------------------------------------------------
class RunbookParameters(_Model):
    """Every key papermill injects into a runbook. Sections are ``None`` in runbooks that do not use them."""

    backend: Literal["local", "aws"]
    cluster_id: str
    region: str
    engine_version: str
    readers: int = Field(ge=0, le=15)
    availability_zones: list[str]
    instance_class: str
    backup_retention_period: int
    preferred_backup_window: str
    preferred_maintenance_window: str | None  # ddd:hh:mm-ddd:hh:mm UTC, ≥ 30 min, clear of backups; null: AWS's
    deletion_protection: bool
    iam_auth: bool
    tags: dict[str, str]
    dry_run: bool
    confirm: bool
    local_root: str | None
    aws: AwsOptions
    # a runbook receives only its own sections (the others default to None there); a parameters file must hold
    # them all (load() requires every section)
    parameter_group: ParameterGroupSettings | None = None
    pgvector: PgvectorSettings | None = None
    probe: ProbeSettings | None = None
    backup_restore: BackupRestoreSettings | None = None
    failover: FailoverSettings | None = None
    monitoring: MonitoringSettings | None = None
    scale: ScaleSettings | None = None
    proxy: ProxySettings | None = None
    teardown: TeardownSettings | None = None

    @field_validator("cluster_id")
    @classmethod
    def _cluster(cls, v: str) -> str:
        return check_identifier("cluster_id", v)

    @field_validator("engine_version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 16.4 as a float (and 16.10 as 16.1): only whole numbers may go unquoted
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        if isinstance(v, float):
            raise ValueError(f'quote the version: engine_version: "{v}" (YAML reads {v} as a number)')
        return v

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_text(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            secret = next((str(k) for k in v if is_secret_key(str(k))), None)
            if secret is not None:  # tags are copied to snapshots and shown to anyone who may describe the cluster
                raise InvalidParameterError(
                    f"tags.{secret}", "***redacted***", "a secret-looking tag key: no secret goes in tags"
                )
            return {
                str(k): str(val) if isinstance(val, (int, float)) and not isinstance(val, bool) else val
                for k, val in v.items()
            }
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", v):
            raise ValueError("must be an AWS region such as 'eu-west-1'")
        return v

    @field_validator("preferred_backup_window")
    @classmethod
    def _window(cls, v: str) -> str:
        return check_backup_window(v)

    @field_validator("backup_retention_period", mode="before")  # before: pydantic would read true as 1
    @classmethod
    def _retention(cls, v: Any) -> int:
        return check_retention(v)

    @field_validator("preferred_maintenance_window")
    @classmethod
    def _maintenance(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        return check_maintenance_window(v, info.data.get("preferred_backup_window"))

    @model_validator(mode="after")
    def _consistent(self) -> RunbookParameters:
        from aurora_kit.backends import backend_class

        cls = backend_class(self.backend)
        if self.iam_auth and not cls.traits.iam_database_auth:
            raise InvalidParameterError("iam_auth", True, f"the {cls.name} backend has no IAM database authentication")
        cls.check_parameters(self)
        if self.backup_restore is not None:
            restore = self.backup_restore.restore_cluster_id
            if restore in (self.cluster_id, f"{self.cluster_id}-pitr"):
                raise InvalidParameterError(
                    "backup_restore.restore_cluster_id",
                    restore,
                    "must differ from cluster_id: a restore creates a new cluster",
                )
            if self.backup_restore.restore_mode == "both":  # the second restore goes to <id>-pitr
                check_identifier("backup_restore.restore_cluster_id", f"{restore}-pitr")
        self.to_cluster_spec()  # surfaces ClusterSpec's own checks (window length, instance class...)
        self._scale_and_proxy(cls)
        wanted = (self.parameter_group.parameters if self.parameter_group else {}).get("max_connections", "")
        if self.monitoring is not None and wanted.isdigit():
            check_alarm_can_fire(self.monitoring.max_connections, int(wanted))
        return self

    def _scale_and_proxy(self, cls: Any) -> None:
        """08/09 settings that depend on the rest: readers left after a removal, 0 ACUs needs a recent engine,
        IAM through the proxy needs a backend with IAM authentication."""
        if self.scale is not None:
            if self.scale.min_readers > self.readers + self.scale.add_readers:
                raise InvalidParameterError(
                    "scale.min_readers",
                    self.scale.min_readers,
                    f"more than the cluster will have ({self.readers} + {self.scale.add_readers} added)",
                )
            if self.scale.serverless is not None:
                check_acu_capacity(
                    self.scale.serverless.min_capacity,
                    self.scale.serverless.max_capacity,
                    engine_version=self.engine_version,
                    field="scale.serverless",
                )
        if self.proxy is not None and self.proxy.iam_auth and not cls.traits.iam_database_auth:
            raise InvalidParameterError("proxy.iam_auth", True, f"the {cls.name} backend has no IAM authentication")

    # -- derived objects --------------------------------------------------------------------------------------
    def to_cluster_spec(self) -> ClusterSpec:
        """The :class:`ClusterSpec` these parameters describe (writer + ``readers`` readers over the AZs)."""
        return ClusterSpec.with_readers(
            self.cluster_id,
            self.readers,
            availability_zones=self.availability_zones,
            instance_class=self.instance_class,
            engine_version=self.engine_version,
            backup_retention_period=self.backup_retention_period,
            preferred_backup_window=self.preferred_backup_window,
            preferred_maintenance_window=self.preferred_maintenance_window,
            deletion_protection=self.deletion_protection,
            iam_database_authentication=self.iam_auth,
            kms_key_id=self.aws.kms_key_id,
            db_subnet_group_name=self.aws.db_subnet_group_name,
            vpc_security_group_ids=self.aws.vpc_security_group_ids,
            tags=self.tags,
        )

    def injected(self, runbook: str | None = None) -> dict[str, Any]:
        """The values papermill injects, JSON-compatible: the common keys and ``runbook``'s own sections (every
        key when ``runbook`` is None or not one of :data:`RUNBOOKS`)."""
        return injected_for(runbook, self.model_dump(mode="json"))

    def section(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise InvalidParameterError(name, None, "this runbook needs the section; set it in the parameters")
        return value


def injected_for(runbook: str | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the sections ``runbook`` does not use (all of them for an unknown or no runbook): what
    papermill injects into that runbook, and what its ``parameters`` cell defines."""
    used = RUNBOOK_SECTIONS.get(runbook or "")
    if used is None:
        return dict(values)
    return {k: v for k, v in values.items() if k not in SECTIONS or k in used}
