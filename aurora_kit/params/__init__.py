"""Runbook parameters: one YAML file per environment drives every runbook, validated before any kernel starts.

:mod:`.model` holds the typed model (every key, its sections, what each runbook receives); :mod:`.load` reads a
file, applies ``-p`` overrides and turns pydantic's errors into :class:`~aurora_kit.errors.InvalidParameterError`
naming the key, the value and the file. ``from aurora_kit import params`` gives both.
"""

from aurora_kit.params.load import apply_override, for_runbook, load, parameters_cell, validate
from aurora_kit.params.model import (
    MISSING,
    RUNBOOK_SECTIONS,
    RUNBOOKS,
    SECTIONS,
    AwsOptions,
    BackupRestoreSettings,
    FailoverSettings,
    MonitoringSettings,
    ParameterGroupSettings,
    PgvectorSettings,
    ProbeSettings,
    RunbookParameters,
    TeardownSettings,
    injected_for,
)

__all__ = [
    "MISSING",
    "RUNBOOKS",
    "RUNBOOK_SECTIONS",
    "SECTIONS",
    "AwsOptions",
    "BackupRestoreSettings",
    "FailoverSettings",
    "MonitoringSettings",
    "ParameterGroupSettings",
    "PgvectorSettings",
    "ProbeSettings",
    "RunbookParameters",
    "TeardownSettings",
    "apply_override",
    "for_runbook",
    "injected_for",
    "load",
    "parameters_cell",
    "validate",
]
