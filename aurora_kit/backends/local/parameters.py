"""The cluster parameter group of a local cluster: ``parameters.conf`` in the cluster dir, included by every node.

``apply_parameters`` checks every name and value against the server before anything changes:

* names: must exist in ``pg_settings`` (or ``postgres --describe-config`` when no instance runs), must not be
  ``internal`` (read-only) nor one the backend manages (port, replication, archiving...);
* values: each ``name=value`` is parsed by the server itself (``postgres -C name -c name=value`` against the node's
  config, the same check hooks as at startup); ``shared_preload_libraries`` entries must exist in ``$libdir``.

Then the file is rewritten atomically and every running instance reloads (SIGHUP). ``sighup``/``user``-context
parameters take effect now (``immediate``); ``postmaster``-context ones are ``pending-reboot`` until the instance
restarts — read back from ``pg_settings.pending_restart`` on each instance, as Aurora shows
``DBClusterParameterGroupStatus``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from aurora_kit.backends.base import Instance, ParameterChange, ParameterChangeResult
from aurora_kit.backends.local.binaries import run_tool
from aurora_kit.backends.local.config import MANAGED_ALLOWED_VALUES, MANAGED_REASONS, quote, write_file
from aurora_kit.errors import BackendOperationError, InvalidParameterError, InvalidStateError
from aurora_kit.polling import wait_for

if TYPE_CHECKING:
    from aurora_kit.backends.local.backend import LocalBackend

_NAME = re.compile(r"^[a-z_][a-z0-9_.]*$")
_SERVER_MESSAGE = re.compile(r"(FATAL|ERROR):\s+(.*)")


def _running(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any]) -> list[str]:
    return [iid for iid in backend._ordered(cl) if backend.controller(cluster_id, iid, cl).pm_status() == "ready"]


def _data_dir(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any]) -> Path:
    """A data dir whose config the server-side value check can read (any instance, or the seed)."""
    p = backend.paths(cluster_id)
    for iid in backend._ordered(cl):
        if p.data_dir(iid).exists():
            return p.data_dir(iid)
    if p.seed.exists():
        return p.seed
    raise InvalidStateError(f"DB cluster {cluster_id!r} has no storage to check parameters against")


def catalog(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """name → {context, vartype, setting} for every server parameter."""
    running = _running(backend, cluster_id, cl)
    if running:
        rows = backend.query(
            cluster_id, running[0], "SELECT name, context, vartype, current_setting(name) FROM pg_settings"
        )
        return {r[0]: {"context": r[1], "vartype": r[2], "setting": r[3]} for r in rows}
    out = run_tool([backend.bins(cl).tool("postgres"), "--describe-config"], what="postgres --describe-config")
    result: dict[str, dict[str, str]] = {}
    for line in out.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) >= 5:
            result[cols[0]] = {"context": cols[1], "vartype": cols[3].lower(), "setting": cols[4]}
    return result


def _check_value(backend: LocalBackend, cl: Mapping[str, Any], data_dir: Path, name: str, value: str) -> None:
    proc = run_tool(
        [backend.bins(cl).tool("postgres"), "-D", str(data_dir), "-C", name, "-c", f"{name}={value}"],
        check=False,
        what=f"check of {name}",
    )
    if proc.returncode != 0:
        found = _SERVER_MESSAGE.search(proc.stderr)
        detail = found.group(2).strip() if found else (proc.stderr.strip() or "rejected by the server")
        hint_match = re.search(r"HINT:\s+(.*)", proc.stderr)
        hint = hint_match.group(1).strip() if hint_match else None
        raise InvalidParameterError(name, value, detail + (f" ({hint})" if hint else ""))
    if name == "shared_preload_libraries":
        libdir = backend.bins(cl).bin_dir.parent / "lib" / "postgresql"
        for lib in (part.strip().strip('"') for part in value.split(",")):
            if lib and not (libdir / f"{lib}.so").exists() and not Path(lib).exists():
                raise InvalidParameterError(name, value, f"library {lib!r} is not installed in {libdir}")


def validate(
    backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any], parameters: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Normalised {name: value} after checking every name and value; raises before anything changes."""
    if not parameters:
        raise InvalidParameterError("parameters", {}, "give at least one parameter")
    known = catalog(backend, cluster_id, cl)
    wanted: dict[str, str] = {}
    for raw_name, raw_value in parameters.items():
        name = str(raw_name).strip().lower()
        value = ("on" if raw_value else "off") if isinstance(raw_value, bool) else str(raw_value).strip()
        if not _NAME.match(name) or name not in known:
            raise InvalidParameterError(name, raw_value, "unknown parameter (not in pg_settings)")
        if name in MANAGED_REASONS and value.lower() not in MANAGED_ALLOWED_VALUES.get(name, frozenset()):
            raise InvalidParameterError(name, raw_value, f"managed by the local backend: {MANAGED_REASONS[name]}")
        if known[name]["context"] == "internal":
            raise InvalidParameterError(name, raw_value, "read-only (internal) parameter")
        if "\n" in value or "\x00" in value:
            raise InvalidParameterError(name, raw_value, "value must be a single line")
        wanted[name] = value
    data_dir = _data_dir(backend, cluster_id, cl)
    for name, value in wanted.items():
        _check_value(backend, cl, data_dir, name, value)
    return wanted, known


def render(parameters: Mapping[str, str]) -> str:
    lines = ["# cluster parameter group (aurora_kit); written by apply_parameters"]
    lines += [f"{name} = {quote(value)}" for name, value in sorted(parameters.items())]
    return "\n".join(lines) + "\n"


def _reload_all(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any]) -> None:
    """SIGHUP every running instance and wait until each has re-read its configuration."""
    running = _running(backend, cluster_id, cl)
    before: dict[str, datetime] = {}
    for iid in running:
        before[iid] = backend.query(cluster_id, iid, "SELECT clock_timestamp()")[0][0]
    for iid in running:
        backend.controller(cluster_id, iid, cl).reload()
    for iid in running:
        wait_for(
            f"{iid} reloaded its configuration",
            lambda iid=iid: backend.query(cluster_id, iid, "SELECT pg_conf_load_time()")[0][0],  # type: ignore[misc]
            lambda t, iid=iid: t >= before[iid],  # type: ignore[misc]
            timeout=30,
            initial_delay=0.01,
            max_delay=0.2,
            retry_on=(psycopg.OperationalError,),
        )


def pending_instances(backend: LocalBackend, cluster_id: str, cl: Mapping[str, Any]) -> list[str]:
    out = []
    for iid in _running(backend, cluster_id, cl):
        if backend.query(cluster_id, iid, "SELECT EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart)")[0][0]:
            out.append(iid)
    return out


def apply_parameters(backend: LocalBackend, cluster_id: str, parameters: Mapping[str, Any]) -> ParameterChangeResult:
    cl = backend.cluster_state(cluster_id)
    if cl["status"] not in ("available", "stopped"):
        raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl['status']}; parameters change when available")
    wanted, known = validate(backend, cluster_id, cl, parameters)
    group: dict[str, str] = dict(cl.get("parameters") or {})
    changes = [
        ParameterChange(
            parameter_name=name,
            old_value=group.get(name, known[name]["setting"]),
            new_value=value,
            apply_type="static" if known[name]["context"] == "postmaster" else "dynamic",
            apply_method="pending-reboot" if known[name]["context"] == "postmaster" else "immediate",
        )
        for name, value in wanted.items()
        if group.get(name) != value
    ]
    if backend.dry_run:
        backend._record(
            "local",
            "ModifyDBClusterParameterGroup",
            DBClusterParameterGroupName=f"{cluster_id}-params",
            Parameters=[
                {"ParameterName": c.parameter_name, "ParameterValue": c.new_value, "ApplyMethod": c.apply_method}
                for c in changes
            ],
        )
        return ParameterChangeResult(cluster_id, changes, [], status="dry-run")
    if not changes:
        return ParameterChangeResult(cluster_id, [], pending_instances(backend, cluster_id, cl), status="no-change")
    with backend.store.cluster_lock(cluster_id):
        cl = backend.cluster_state(cluster_id)
        group = {**(cl.get("parameters") or {}), **{c.parameter_name: c.new_value for c in changes}}
        write_file(backend.paths(cluster_id).parameters, render(group), mode=0o644)
        with backend.update_cluster(cluster_id) as rec:
            rec["parameters"] = group
        try:
            _reload_all(backend, cluster_id, cl)
        except psycopg.Error as exc:
            raise BackendOperationError(f"reload after changing parameters of {cluster_id!r} failed: {exc}") from exc
        pending = pending_instances(backend, cluster_id, cl)
    return ParameterChangeResult(cluster_id, changes, pending, status="applied")


def get_parameters(backend: LocalBackend, cluster_id: str, names: list[str]) -> dict[str, str | None]:
    """Parameter group value when set, else the running writer's current value; None when unknown."""
    cl = backend.cluster_state(cluster_id)
    group: dict[str, str] = cl.get("parameters") or {}
    running = _running(backend, cluster_id, cl)
    out: dict[str, str | None] = {}
    for raw in names:
        name = raw.strip().lower()
        if name in group:
            out[raw] = group[name]
        elif running:
            out[raw] = backend.query(cluster_id, running[0], "SELECT current_setting(%s, true)", name)[0][0]
        else:
            out[raw] = None
    return out


def reboot_pending(backend: LocalBackend, cluster_id: str) -> list[Instance]:
    """Reboot every pending-reboot instance, readers first, then the writer; each waited for."""
    cl = backend.cluster_state(cluster_id)
    pending = pending_instances(backend, cluster_id, cl)
    writer = backend.writer_id(cl)
    order = [i for i in pending if i != writer] + [i for i in pending if i == writer]
    if backend.dry_run:
        for iid in order:
            backend._record("local", "RebootDBInstance", DBInstanceIdentifier=iid)
        return [
            Instance(**{**backend._instance_view(cluster_id, iid, cl).__dict__, "status": "dry-run"}) for iid in order
        ]
    return [backend.reboot_instance(cluster_id, iid) for iid in order]
