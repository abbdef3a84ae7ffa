"""Runbook parameters — loading: the YAML file (every key required), ``-p key=value`` overrides typed by the
model, validation with errors that name the key, the value and the file, and the ``parameters`` cell a runbook
needs. The model itself: :mod:`aurora_kit.params.model`."""

from __future__ import annotations

import pprint
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from aurora_kit.backends.base import REDACTED
from aurora_kit.errors import InvalidParameterError
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
)
from aurora_kit.redaction import redact_patterns
from aurora_kit.rules import is_secret_key


# -- loading and validation -------------------------------------------------------------------------------------
def _refuse(field: str, value: Any, reason: str) -> InvalidParameterError:
    """The error for a bad value, never echoing a secret: the value of a secret-looking key is shown redacted, and
    the reason (which may quote the file) goes through the redaction patterns."""
    if any(is_secret_key(part) for part in str(field).split(".")):
        value = REDACTED
    return InvalidParameterError(field, value, redact_patterns(reason))


_MODEL_NAMES = {
    cls.__name__
    for cls in (
        AwsOptions,
        ParameterGroupSettings,
        PgvectorSettings,
        ProbeSettings,
        BackupRestoreSettings,
        FailoverSettings,
        MonitoringSettings,
        TeardownSettings,
    )
}


def _raise(exc: ValidationError, source: str, data: Mapping[str, Any]) -> typing.NoReturn:
    err = exc.errors()[0]
    # pydantic may put union member / validator names into the loc; keep only the keys
    loc = [str(p) for p in err["loc"] if str(p) not in _MODEL_NAMES and not str(p).startswith("function-")]
    field = ".".join(loc) or "parameters"
    where = f" in {source}" if source else ""
    kind = err["type"]
    if kind == "missing":
        raise InvalidParameterError(field, MISSING, f"required key missing{where}") from exc
    if kind == "extra_forbidden":
        key = loc[-1] if loc else field
        if is_secret_key(key):
            reason = f"secret-looking key{where}: secrets never go in parameters (use Secrets Manager / IAM auth)"
        else:
            reason = f"unknown key{where}; known keys: {', '.join(_known_keys(loc[:-1]))}"
        raise _refuse(field, err.get("input"), reason) from exc
    reason = str(err["msg"]).removeprefix("Value error, ")
    value = _lookup(data, loc) if loc else err.get("input")
    raise _refuse(field, value, f"{reason} ({source})" if source else reason) from exc


def _lookup(data: Mapping[str, Any], loc: Sequence[str]) -> Any:
    cur: Any = data
    for part in loc:
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur


def _model_of(loc: Sequence[str]) -> type[BaseModel]:
    model: type[BaseModel] = RunbookParameters
    for part in loc:
        ann = model.model_fields[part].annotation
        inner = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[0] if inner else typing.cast(type[BaseModel], ann)
    return model


def _known_keys(loc: Sequence[str]) -> list[str]:
    try:
        return list(_model_of(loc).model_fields)
    except (KeyError, TypeError, AttributeError):
        return []


# ClusterSpec field -> the parameter it comes from
_SPEC_FIELDS = {
    "instance_class": "instance_class",
    "availability_zone": "availability_zones",
    "instance_id": "cluster_id",
    "iam_database_authentication": "iam_auth",
    "kms_key_id": "aws.kms_key_id",
    "db_subnet_group_name": "aws.db_subnet_group_name",
    "vpc_security_group_ids": "aws.vpc_security_group_ids",
}


def _translate_inner(exc: InvalidParameterError, source: str) -> typing.NoReturn:
    parts = exc.field.split(".")
    field = next((_SPEC_FIELDS[p] for p in reversed(parts) if p in _SPEC_FIELDS), exc.field)
    raise _refuse(field, exc.value, f"{exc.reason} ({source})" if source else exc.reason) from exc


def validate(data: Mapping[str, Any], *, source: str = "", require: Iterable[str] = SECTIONS) -> RunbookParameters:
    """Validate raw parameters; ``require`` lists the sections that must not be ``None``.

    Raises :class:`InvalidParameterError` naming the key (``failover.mode``), the value and ``source``.
    """
    if not isinstance(data, Mapping):
        raise InvalidParameterError("parameters", data, f"must be a mapping of keys to values{' in ' + source}")
    try:
        params = RunbookParameters(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        loc = [str(p) for p in first["loc"] if str(p) not in _MODEL_NAMES and not str(p).startswith("function-")]
        if isinstance(cause, InvalidParameterError):
            if loc:  # a rule checked one field: name it by its place in the file
                where = f" ({source})" if source else ""
                place = ".".join(loc)  # a section's own check may name the key inside it (proxy.max_connections_…)
                name = cause.field if cause.field.startswith(place + ".") else place
                raise _refuse(name, cause.value, cause.reason + where) from exc
            _translate_inner(cause, source)  # a ClusterSpec check: name the parameter it comes from
        _raise(exc, source, data)
    where = f" in {source}" if source else ""
    for name in require:
        if name not in data:  # a parameters file names every section, even one it sets to null
            raise InvalidParameterError(name, MISSING, f"required key missing{where}")
        if getattr(params, name) is None:
            raise InvalidParameterError(name, None, f"section required{where}")
    return params


#: a parameters file is a few kilobytes; anything near this is not one
MAX_FILE_BYTES = 1 << 20
#: values a file may expand to through YAML aliases (a "billion laughs" file expands to 10^9)
MAX_EXPANDED_NODES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the last one would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (shared nodes counted each time)."""
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a recursive alias counts once
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(_expanded_size(v, memo) for v in node.value)
        else:
            size = 1
        memo[key] = size
    return memo[key]


def read_yaml(path: Path, *, field: str = "parameters file") -> Any:
    """The parsed file, or InvalidParameterError saying in one sentence why not (missing, a directory, not
    UTF-8, too large, not YAML, a duplicate key, alias expansion past :data:`MAX_EXPANDED_NODES`). ``field`` names
    the file in the error (a fleet file reads through here too)."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidParameterError(field, shown, "no such file") from exc
    except IsADirectoryError as exc:
        raise InvalidParameterError(
            field,
            shown,
            "is a directory; give the YAML file"
            + (" (-f parameters/<env>.yaml)" if field == "parameters file" else ""),
        ) from exc
    except PermissionError as exc:
        raise InvalidParameterError(field, shown, "cannot be read (permission denied)") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidParameterError(field, shown, f"is {len(raw):,} bytes; a {field} is at most {MAX_FILE_BYTES:,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParameterError(field, shown, f"is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_EXPANDED_NODES:
            raise InvalidParameterError(
                field, shown, f"expands to {size:,} values through YAML aliases (at most {MAX_EXPANDED_NODES:,})"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _refuse(field, shown, f"not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def load(path: str | Path, overrides: Sequence[str] = ()) -> RunbookParameters:
    """Load ``parameters/<env>.yaml``, apply ``-p key=value`` overrides, validate every section."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InvalidParameterError("parameters file", str(path), "must hold a mapping of keys to values")
    source = str(path)
    for item in overrides:
        data = apply_override(data, item)
        source = f"{path} with -p overrides"
    return validate(_relative_to(path, data), source=source)


def _relative_to(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A relative ``aws.ca_bundle`` is relative to the parameters file (runbooks run in another directory)."""
    aws = data.get("aws")
    bundle = aws.get("ca_bundle") if isinstance(aws, dict) else None
    if isinstance(bundle, str) and bundle and not Path(bundle).is_absolute():
        assert isinstance(aws, dict)
        data = {**data, "aws": {**aws, "ca_bundle": str((path.parent / bundle).resolve())}}
    return data


def for_runbook(
    runbook: str, namespace: Mapping[str, Any], *, sections: Iterable[str] | None = None
) -> RunbookParameters:
    """Validate the parameters a runbook received (its ``globals()``): every top-level key must be defined,
    and the runbook's own sections (:data:`RUNBOOK_SECTIONS`, or ``sections``) must not be ``None``."""
    if sections is None:
        if runbook not in RUNBOOK_SECTIONS:
            raise InvalidParameterError("runbook", runbook, f"unknown; one of {', '.join(RUNBOOKS)}")
        sections = RUNBOOK_SECTIONS[runbook]
    values = {k: namespace[k] for k in RunbookParameters.model_fields if k in namespace}
    return validate(values, source=f"runbook {runbook}", require=sections)


# -- -p key=value -----------------------------------------------------------------------------------------------
def _accepts_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_str(a) for a in typing.get_args(annotation) if a is not type(None))
    return False


def apply_override(data: Mapping[str, Any], item: str) -> dict[str, Any]:
    """Apply one ``key=value`` (``section.key=value`` for sections) to a copy of ``data``.

    The value is typed by the model: for a string field it stays the literal text (``null``/``~`` mean None
    where allowed); otherwise it is read as YAML (``3``, ``true``, ``[10, 40]``, ``{a: b}``).
    """
    if "=" not in item:
        raise _refuse(redact_patterns(item), MISSING, "an override is key=value (section.key=value for sections)")
    key, raw = item.split("=", 1)
    path = key.strip().split(".")
    model: type[BaseModel] = RunbookParameters
    for depth, part in enumerate(path):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(path[:depth]) or "parameters"
            raise _refuse(key, raw, f"unknown key in {where}; known keys: {', '.join(fields)}")
        if depth < len(path) - 1:
            try:
                model = _model_of(path[: depth + 1])
            except (KeyError, TypeError, AttributeError) as exc:
                raise _refuse(key, raw, f"{part} has no sub-keys") from exc
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise _refuse(key, raw, f"{part} has no sub-keys")
    annotation = model.model_fields[path[-1]].annotation
    value: Any
    if _accepts_str(annotation) and raw not in {"null", "~"}:
        value = raw
    else:
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as exc:
            raise _refuse(key, raw, f"not a valid YAML value: {exc}") from exc
    out: dict[str, Any] = dict(data)
    cur = out
    for part in path[:-1]:
        sub = cur.get(part)
        cur[part] = dict(sub) if isinstance(sub, Mapping) else {}
        cur = cur[part]
    cur[path[-1]] = value
    return out


# -- helpers for runbook authors --------------------------------------------------------------------------------
def parameters_cell(source: str | Path | RunbookParameters, runbook: str | None = None) -> str:
    """Source of a ``parameters`` cell defining the keys ``runbook`` receives (every key without one) with the
    values of ``source`` (a YAML path, validated first, or loaded parameters)."""
    params = source if isinstance(source, RunbookParameters) else load(source)
    lines = [
        f"{key} = {pprint.pformat(value, width=110, sort_dicts=False)}"
        for key, value in params.injected(runbook).items()
    ]
    return "\n".join(lines) + "\n"
