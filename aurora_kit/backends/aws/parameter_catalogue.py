"""Cluster parameter knowledge of the ``aws`` backend, as plain functions (split from :mod:`.decisions`, which
re-exports them): static vs dynamic parameters, ApplyMethod, the ``shared_preload_libraries`` merge, allowed
values, and the plan of a ModifyDBClusterParameterGroup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aurora_kit.errors import InvalidParameterError

ENGINE = "aurora-postgresql"
ApplyMethodRequest = Literal["auto", "immediate", "pending-reboot"]

# -- parameter knowledge ---------------------------------------------------------------------------------
#: Fallback when the catalogue (DescribeDBClusterParameters / DescribeEngineDefaultClusterParameters) has no
#: ApplyType for a name, e.g. against moto, which returns only the parameters set by the user. Values are the
#: ApplyType Aurora PostgreSQL reports for these cluster-level parameters.
STATIC_PARAMETERS = frozenset(
    {
        "shared_preload_libraries",
        "max_connections",
        "max_worker_processes",
        "max_logical_replication_workers",
        "max_wal_senders",
        "max_replication_slots",
        "max_locks_per_transaction",
        "max_pred_locks_per_transaction",
        "max_prepared_transactions",
        "autovacuum_max_workers",
        "track_activity_query_size",
        "track_commit_timestamp",
        "rds.logical_replication",
        "pg_stat_statements.max",
        "shared_buffers",
        "huge_pages",
        "max_files_per_process",
        "apg_plan_mgmt.max_plans",
    }
)
DYNAMIC_PARAMETERS = frozenset(
    {
        "log_min_duration_statement",
        "log_statement",
        "log_connections",
        "log_disconnections",
        "log_lock_waits",
        "log_temp_files",
        "log_autovacuum_min_duration",
        "work_mem",
        "maintenance_work_mem",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "random_page_cost",
        "effective_cache_size",
        "default_statistics_target",
        "max_parallel_workers",
        "max_parallel_workers_per_gather",
        "max_parallel_maintenance_workers",
        "track_io_timing",
        "pg_stat_statements.track",
        "pg_stat_statements.save",
        "auto_explain.log_min_duration",
        "autovacuum_naptime",
        "autovacuum_vacuum_scale_factor",
        "autovacuum_analyze_scale_factor",
        "rds.force_ssl",
        "ssl_min_protocol_version",
        "password_encryption",
        "search_path",
        "timezone",
        "synchronous_commit",
        "rds.log_retention_period",
    }
)
#: The engine default for ``shared_preload_libraries`` when the catalogue does not say (Aurora PostgreSQL ships
#: pg_stat_statements preloaded); setting the parameter replaces the list, so we merge with it.
DEFAULT_PRELOAD = ("pg_stat_statements",)
#: Extensions people try to preload but that are installed with CREATE EXTENSION only.
NOT_PRELOAD = frozenset(
    {"vector", "pgvector", "postgis", "pg_trgm", "hstore", "citext", "pgcrypto", "uuid-ossp", "btree_gin", "btree_gist"}
)


def parameter_group_family(engine_version: str) -> str:
    """``16.4`` → ``aurora-postgresql16`` (the DBParameterGroupFamily of cluster parameter groups)."""
    major = engine_version.split(".")[0]
    if not major.isdigit():
        raise InvalidParameterError("engine_version", engine_version, "must start with the major version number")
    return f"{ENGINE}{major}"


def default_parameter_group_name(cluster_id: str) -> str:
    """Name of the custom cluster parameter group we create when the spec names none: ``default.*`` groups
    cannot be modified, and every runbook after 01 needs to set parameters."""
    return f"{cluster_id}-cluster-params"


def apply_type_of(name: str, catalogue: Mapping[str, Mapping[str, Any]]) -> str:
    """``static`` or ``dynamic`` for ``name``: the catalogue's ApplyType first, then the built-in table.

    Unknown names raise InvalidParameterError (before anything changes)."""
    entry = catalogue.get(name)
    if entry is not None and entry.get("ApplyType") in ("static", "dynamic"):
        return str(entry["ApplyType"])
    if name in STATIC_PARAMETERS:
        return "static"
    if name in DYNAMIC_PARAMETERS:
        return "dynamic"
    raise InvalidParameterError(
        name,
        None,
        "unknown cluster parameter: not in the parameter group, the engine defaults, nor aurora_kit's table",
        hint="check the name against `aws rds describe-engine-default-cluster-parameters`",
    )


def choose_apply_method(name: str, apply_type: str, requested: ApplyMethodRequest = "auto") -> str:
    """ApplyMethod for ModifyDBClusterParameterGroup. Static parameters cannot use ``immediate`` (AWS answers
    InvalidParameterCombination); we refuse before any call."""
    if requested == "auto":
        return "pending-reboot" if apply_type == "static" else "immediate"
    if requested == "immediate" and apply_type == "static":
        raise InvalidParameterError(
            name,
            "immediate",
            "is a static parameter: it can only be applied with ApplyMethod=pending-reboot",
            hint="use apply_method='auto' or 'pending-reboot', then reboot_pending()",
        )
    if requested not in ("immediate", "pending-reboot"):
        raise InvalidParameterError("apply_method", requested, "must be auto, immediate or pending-reboot")
    return requested


def _split_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def merge_preload_libraries(requested: str, current: str | None, engine_default: str | None) -> str:
    """``shared_preload_libraries`` replaces the list, so keep what is loaded now (or the engine default) and
    append the requested libraries. Extensions that are not preload libraries (``vector``...) are rejected."""
    wanted = _split_list(requested)
    bad = [lib for lib in wanted if lib.lower() in NOT_PRELOAD]
    if bad:
        raise InvalidParameterError(
            "shared_preload_libraries",
            requested,
            f"{', '.join(bad)} is not a preload library; install it with CREATE EXTENSION in the database",
            hint="pgvector needs no preload: run `CREATE EXTENSION vector;`",
        )
    base = _split_list(current) or _split_list(engine_default) or list(DEFAULT_PRELOAD)
    merged = list(base)
    merged.extend(lib for lib in wanted if lib not in merged)
    return ",".join(merged)


def check_allowed_value(name: str, value: str, entry: Mapping[str, Any] | None) -> None:
    """Reject values outside the catalogue's AllowedValues (``a-b`` ranges, ``x,y`` lists) and parameters that
    are not modifiable. Silently accepts what the catalogue does not describe (AWS validates again)."""
    if entry is None:
        return
    if entry.get("IsModifiable") is False:
        raise InvalidParameterError(name, value, "is not modifiable in Aurora PostgreSQL")
    allowed = entry.get("AllowedValues")
    if not allowed or value.startswith("{"):  # formulas like {DBInstanceClassMemory/9531392}
        return
    data_type = entry.get("DataType", "string")
    if data_type == "integer" and "-" in allowed.lstrip("-"):
        low, _, high = allowed.lstrip("-").partition("-")
        lo = -int(low) if allowed.startswith("-") else int(low)
        try:
            number = int(value)
        except ValueError as exc:
            raise InvalidParameterError(name, value, f"must be an integer in {allowed}") from exc
        if not lo <= number <= int(high):
            raise InvalidParameterError(name, value, f"must be in {allowed}")
        return
    if data_type in ("string", "list", "boolean") and "," in allowed:
        options = {o.strip().lower() for o in allowed.split(",")}
        items = _split_list(value) if data_type == "list" else [value.strip()]
        unknown = [i for i in items if i.lower() not in options]
        if unknown:
            raise InvalidParameterError(name, value, f"{', '.join(unknown)} not among the allowed values {allowed}")


@dataclass(frozen=True)
class PlannedParameter:
    name: str
    old_value: str | None
    new_value: str
    apply_type: str
    apply_method: str


def plan_parameter_changes(
    requested: Mapping[str, str],
    catalogue: Mapping[str, Mapping[str, Any]],
    *,
    apply_method: ApplyMethodRequest = "auto",
    engine_defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[PlannedParameter]:
    """Validate every requested parameter and decide its ApplyMethod; drop those already at the value.

    ``catalogue`` is the parameter group's parameters by name (DescribeDBClusterParameters), ``engine_defaults``
    the family's defaults (DescribeEngineDefaultClusterParameters), either possibly partial (moto). Raises
    InvalidParameterError before anything is changed."""
    defaults = engine_defaults or {}
    merged_catalogue = {**defaults, **{k: {**defaults.get(k, {}), **v} for k, v in catalogue.items()}}
    out: list[PlannedParameter] = []
    for name, raw in requested.items():
        value = str(raw)
        apply_type = apply_type_of(name, merged_catalogue)
        entry = merged_catalogue.get(name)
        current = entry.get("ParameterValue") if entry else None
        if name == "shared_preload_libraries":
            default_value = defaults.get(name, {}).get("ParameterValue")
            value = merge_preload_libraries(value, current, default_value)
        check_allowed_value(name, value, entry)
        method = choose_apply_method(name, apply_type, apply_method)
        if current is not None and str(current) == value:
            continue
        out.append(PlannedParameter(name, current, value, apply_type, method))
    return out


def batches(items: Sequence[Any], size: int = 20) -> list[Sequence[Any]]:
    """ModifyDBClusterParameterGroup accepts at most 20 parameters per call."""
    return [items[i : i + size] for i in range(0, len(items), size)]
