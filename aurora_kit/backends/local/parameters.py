"""The cluster parameter group of a local cluster: ``parameters.conf`` in the cluster dir, included by every node.

:func:`changes` checks every name and value against the server before anything changes:

* names: must exist in ``pg_settings`` (or ``postgres --describe-config`` when no instance runs), must not be
  ``internal`` (read-only) nor one the backend manages (port, replication, archiving...);
* values: each ``name=value`` is parsed by the server itself (``postgres -C name -c name=value`` against the node's
  config, the same check hooks as at startup); ``shared_preload_libraries`` entries must exist in ``$libdir``.

Then :func:`apply` rewrites the file atomically and every running instance reloads (SIGHUP). ``sighup``/``user``
context parameters take effect now (``immediate``); ``postmaster``-context ones are ``pending-reboot`` until the
instance restarts — read back from ``pg_settings.pending_restart`` on each instance, as Aurora shows
``DBClusterParameterGroupStatus``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from aurora_kit.backends.base import ParameterChange
from aurora_kit.backends.local.binaries import run_tool
from aurora_kit.backends.local.config import MANAGED_ALLOWED_VALUES, MANAGED_REASONS, quote, write_file
from aurora_kit.backends.local.nodes import Nodes
from aurora_kit.backends.local.state import ClusterRecord
from aurora_kit.errors import BackendOperationError, InvalidParameterError, InvalidStateError
from aurora_kit.polling import wait_for

_NAME = re.compile(r"^[a-z_][a-z0-9_.]*$")
_SERVER_MESSAGE = re.compile(r"(FATAL|ERROR):\s+(.*)")


def _data_dir(nodes: Nodes, cl: ClusterRecord) -> Path:
    """A data dir whose config the server-side value check can read (any instance, or the seed)."""
    p = nodes.paths(cl.cluster_id)
    for iid in cl.ordered:
        if p.data_dir(iid).exists():
            return p.data_dir(iid)
    if p.seed.exists():
        return p.seed
    raise InvalidStateError(f"DB cluster {cl.cluster_id!r} has no storage to check parameters against")


def catalog(nodes: Nodes, cl: ClusterRecord) -> dict[str, dict[str, str]]:
    """name → {context, vartype, setting} for every server parameter."""
    running = nodes.running(cl.cluster_id, cl)
    if running:
        rows = nodes.query(
            cl.cluster_id, running[0], "SELECT name, context, vartype, current_setting(name) FROM pg_settings"
        )
        return {r[0]: {"context": r[1], "vartype": r[2], "setting": r[3]} for r in rows}
    out = run_tool([nodes.bins(cl).tool("postgres"), "--describe-config"], what="postgres --describe-config")
    result: dict[str, dict[str, str]] = {}
    for line in out.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) >= 5:
            result[cols[0]] = {"context": cols[1], "vartype": cols[3].lower(), "setting": cols[4]}
    return result


def _check_value(nodes: Nodes, cl: ClusterRecord, data_dir: Path, name: str, value: str) -> None:
    proc = run_tool(
        [nodes.bins(cl).tool("postgres"), "-D", str(data_dir), "-C", name, "-c", f"{name}={value}"],
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
        libdir = nodes.bins(cl).bin_dir.parent / "lib" / "postgresql"
        for lib in (part.strip().strip('"') for part in value.split(",")):
            if lib and not (libdir / f"{lib}.so").exists() and not Path(lib).exists():
                raise InvalidParameterError(name, value, f"library {lib!r} is not installed in {libdir}")


def validate(
    nodes: Nodes, cl: ClusterRecord, parameters: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Normalised {name: value} after checking every name and value; raises before anything changes."""
    if not parameters:
        raise InvalidParameterError("parameters", {}, "give at least one parameter")
    known = catalog(nodes, cl)
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
    data_dir = _data_dir(nodes, cl)
    for name, value in wanted.items():
        _check_value(nodes, cl, data_dir, name, value)
    return wanted, known


def changes(nodes: Nodes, cluster_id: str, parameters: Mapping[str, Any]) -> list[ParameterChange]:
    """What applying ``parameters`` would change (static = ``pending-reboot``); every name and value checked,
    nothing changed."""
    cl = nodes.store.cluster(cluster_id)
    if cl.status not in ("available", "stopped"):
        raise InvalidStateError(f"DB cluster {cluster_id!r} is {cl.status}; parameters change when available")
    wanted, known = validate(nodes, cl, parameters)
    static = {name for name in wanted if known[name]["context"] == "postmaster"}
    return [
        ParameterChange(
            parameter_name=name,
            old_value=cl.parameters.get(name, known[name]["setting"]),
            new_value=value,
            apply_type="static" if name in static else "dynamic",
            apply_method="pending-reboot" if name in static else "immediate",
        )
        for name, value in wanted.items()
        if cl.parameters.get(name) != value
    ]


def render(parameters: Mapping[str, str]) -> str:
    lines = ["# cluster parameter group (aurora_kit); written by apply_parameters"]
    lines += [f"{name} = {quote(value)}" for name, value in sorted(parameters.items())]
    return "\n".join(lines) + "\n"


def _reload_all(nodes: Nodes, cl: ClusterRecord) -> None:
    """SIGHUP every running instance and wait until each has re-read its configuration."""
    cid = cl.cluster_id
    running = nodes.running(cid, cl)
    before: dict[str, datetime] = {}
    for iid in running:
        before[iid] = nodes.query(cid, iid, "SELECT clock_timestamp()")[0][0]
    for iid in running:
        nodes.controller(cid, iid, cl).reload()
    for iid in running:
        wait_for(
            f"{iid} reloaded its configuration",
            lambda iid=iid: nodes.query(cid, iid, "SELECT pg_conf_load_time()")[0][0],  # type: ignore[misc]
            lambda t, iid=iid: t >= before[iid],  # type: ignore[misc]
            timeout=30,
            initial_delay=0.01,
            max_delay=0.2,
            retry_on=(psycopg.OperationalError,),
        )


def pending_instances(nodes: Nodes, cluster_id: str) -> list[str]:
    """Running instances with a setting waiting for a restart (``pg_settings.pending_restart``), writer first."""
    cl = nodes.store.cluster(cluster_id)
    out = []
    for iid in nodes.running(cluster_id, cl):
        if nodes.query(cluster_id, iid, "SELECT EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart)")[0][0]:
            out.append(iid)
    return out


def apply(nodes: Nodes, cluster_id: str, changed: list[ParameterChange]) -> list[str]:
    """Write the parameter group with ``changed`` and reload every running instance (caller holds the cluster
    lock); returns the instances now pending a reboot."""
    cl = nodes.store.cluster(cluster_id)
    group = {**cl.parameters, **{c.parameter_name: c.new_value for c in changed}}
    write_file(nodes.paths(cluster_id).parameters, render(group), mode=0o644)
    cl = nodes.store.set_fields(cluster_id, parameters=group)
    try:
        _reload_all(nodes, cl)
    except psycopg.Error as exc:
        raise BackendOperationError(f"reload after changing parameters of {cluster_id!r} failed: {exc}") from exc
    return pending_instances(nodes, cluster_id)


def get_parameters(nodes: Nodes, cluster_id: str, names: list[str]) -> dict[str, str | None]:
    """Parameter group value when set, else the running writer's current value; None when unknown."""
    cl = nodes.store.cluster(cluster_id)
    running = nodes.running(cluster_id, cl)
    out: dict[str, str | None] = {}
    for raw in names:
        name = raw.strip().lower()
        if name in cl.parameters:
            out[raw] = cl.parameters[name]
        elif running:
            out[raw] = nodes.query(cluster_id, running[0], "SELECT current_setting(%s, true)", name)[0][0]
        else:
            out[raw] = None
    return out
