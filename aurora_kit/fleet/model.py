"""The fleet file: one runbook over many clusters, each inheriting from one parameters file, validated as a whole
before anything starts.

Layout of ``fleet.yaml`` (unknown keys are errors; paths are relative to the fleet file)::

    name: staging                   # optional: the fleet's label (default: the file's stem)
    parameters: local.yaml          # the base parameters file every cluster inherits (all keys, validated)
    defaults:                       # optional: overrides for every cluster (any parameters key; mappings merge)
      readers: 1
      backup_restore: {restore_cluster_id: "{cluster_id}-restored"}   # {cluster_id}: each cluster's own id
    max_parallel: 4                 # optional (default 4): runs at once for read-only runbooks
    run_timeout_s: 3600             # optional (default 7200): one run's time limit; past it the run fails
    canary: ak-fleet-1              # optional: the cluster a destructive runbook runs on first (default: the first)
    clusters:
      - cluster_id: ak-fleet-1                      # one cluster (overrides as in `defaults`)
      - cluster_id: analytics
        name: eu-analytics                          # optional label (default: cluster_id); unique in the fleet
        region: eu-west-1
        aws: {profile: prod-eu}
      - select: {match: "orders-*", tags: {env: staging}}   # every cluster found by the backend's describe calls
        region: eu-west-1                                     # ... in this account/region

Each cluster's parameters are, in order: the base file, ``defaults``, its entry, then the command line's ``-p``
overrides; ``{cluster_id}`` in a string of ``defaults``, an entry or a ``-p`` override becomes the cluster's id.
Each result is validated like a parameters file (errors name the key, the value and ``fleet.yaml clusters[2]``).
A ``select`` entry is resolved through the backend (``list_clusters``: ``DescribeDBClusters`` on aws) before anything
runs: a glob on the cluster id and/or tags that must all match; a cluster also listed explicitly keeps its explicit
entry; a select that matches nothing is refused. Then the fleet as a whole: names unique, no two entries on the
same cluster (same backend, root or profile, region when the backend is regional, id), and what the runbook is
about to create (restored clusters, snapshots) unique across the fleet (:meth:`Fleet.check_for`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aurora_kit.errors import InvalidParameterError
from aurora_kit.params import RunbookParameters, apply_override, validate
from aurora_kit.params.load import read_yaml

#: runbooks that pass the confirmation gate (rolling reboot, failover, rolling class change and reader removal,
#: failovers through the proxy, delete): over a fleet they run on a canary first, then one cluster at a time unless
#: told otherwise, and stop at the first run not accepted
DESTRUCTIVE_RUNBOOKS: tuple[str, ...] = (
    "02-configure-parameters",
    "06-failover",
    "08-scale",
    "09-proxy",
    "99-teardown",
)

DEFAULT_MAX_PARALLEL = 4
DEFAULT_RUN_TIMEOUT_S = 7200.0
PLACEHOLDER = "{cluster_id}"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # also an Airflow task id
_TOP_KEYS = ("name", "parameters", "defaults", "max_parallel", "run_timeout_s", "canary", "clusters")
_ENTRY_KEYS = ("name", "select")


@dataclass(frozen=True)
class Member:
    """One cluster of the fleet: its label, its validated parameters and where they came from."""

    name: str
    parameters: RunbookParameters
    source: str  # "fleet.yaml clusters[2]" (+ " select 'orders-*'")

    @property
    def cluster_id(self) -> str:
        return self.parameters.cluster_id

    def namespace(self) -> tuple[Any, ...]:
        """Where identifiers are unique: the backend, its root or account profile, and the region when the
        backend is regional (a local region is only a label)."""
        from aurora_kit.backends import backend_class

        p = self.parameters
        regional = backend_class(p.backend).traits.regional
        return (p.backend, p.local_root, p.aws.profile, p.region if regional else None)

    def target(self) -> tuple[Any, ...]:
        return (*self.namespace(), self.cluster_id.lower())

    def where(self) -> str:
        """``ak-fleet-1`` or ``orders (eu-west-1, profile prod)`` — for tables."""
        from aurora_kit.backends import backend_class

        p = self.parameters
        extra = [p.region] if backend_class(p.backend).traits.regional else []
        if p.aws.profile:
            extra.append(f"profile {p.aws.profile}")
        return p.cluster_id + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class Fleet:
    """A loaded, validated fleet file (see the module docstring)."""

    path: Path
    name: str
    base: Path
    members: tuple[Member, ...]
    max_parallel: int = DEFAULT_MAX_PARALLEL
    run_timeout_s: float = DEFAULT_RUN_TIMEOUT_S
    canary: str | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def canary_member(self) -> Member:
        return self.member(self.canary) if self.canary else self.members[0]

    def check_for(self, runbook: str) -> None:
        """What ``runbook`` creates (restored clusters, snapshots with a given id) must be unique across the fleet
        and must not be another member's cluster: parallel runs would otherwise collide half way."""
        clusters = {m.target(): m for m in self.members}
        seen: dict[tuple[Any, ...], Member] = {}
        for m in self.members:
            for kind, key, ident in created_ids(runbook, m.parameters):
                slot = (*m.namespace(), kind, ident.lower())
                other = seen.get(slot)
                if other is not None:
                    raise InvalidParameterError(
                        key,
                        ident,
                        f"{m.name} and {other.name} would both create {kind} {ident!r} ({self.path}); "
                        f"give each its own, e.g. in defaults: {key.split('.')[-1]}: '{PLACEHOLDER}-...'",
                    )
                seen[slot] = m
                owner = clusters.get((*m.namespace(), ident.lower())) if kind == "cluster" else None
                if owner is not None:
                    raise InvalidParameterError(
                        key, ident, f"{m.name} would create {kind} {ident!r}, which is fleet member {owner.name}"
                    )


def created_ids(runbook: str, p: RunbookParameters) -> list[tuple[str, str, str]]:
    """(kind, parameter, identifier) of what ``runbook`` creates under a name the parameters give."""
    out: list[tuple[str, str, str]] = []
    if runbook == "05-backup-restore" and p.backup_restore is not None:
        s = p.backup_restore
        out.append(("cluster", "backup_restore.restore_cluster_id", s.restore_cluster_id))
        if s.restore_mode == "both":
            out.append(("cluster", "backup_restore.restore_cluster_id", f"{s.restore_cluster_id}-pitr"))
        if s.snapshot_id:
            out.append(("snapshot", "backup_restore.snapshot_id", s.snapshot_id))
    if runbook == "99-teardown" and p.teardown is not None and p.teardown.final_snapshot_id:
        out.append(("snapshot", "teardown.final_snapshot_id", p.teardown.final_snapshot_id))
    return out


# -- loading ----------------------------------------------------------------------------------------------------
def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: mappings merge key by key (a section, or ``tags``, keeps the keys an override does not
    name); anything else, lists included, is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


#: values an operator types per cluster on purpose: a placeholder would generate them for every cluster at once
TYPED_BY_HAND = ("teardown.confirm_cluster_id",)


def _refuse_generated_confirmation(value: Any, where: str) -> None:
    """``teardown.confirm_cluster_id`` is the cluster id typed again before a deletion: a ``{cluster_id}`` there
    (in defaults, an entry or ``-p teardown.confirm_cluster_id={cluster_id}``) would type it for every cluster of
    the fleet, defeating the safeguard — refused; type each id in its cluster's entry."""
    if isinstance(value, str):
        text = value
    else:
        text = str((value.get("teardown") or {}).get("confirm_cluster_id") if isinstance(value, Mapping) else "")
    if PLACEHOLDER in text and ("confirm_cluster_id" in text or not isinstance(value, str)):
        raise InvalidParameterError(
            "teardown.confirm_cluster_id",
            text,
            f"must be typed per cluster, not generated from {PLACEHOLDER}: write each id in its entry ({where})",
        )


def _fill(value: Any, cluster_id: str) -> Any:
    """``{cluster_id}`` in every string of ``value`` replaced by ``cluster_id``."""
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, cluster_id)
    if isinstance(value, Mapping):
        return {k: _fill(v, cluster_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, cluster_id) for v in value]
    return value


def _number(data: Mapping[str, Any], key: str, default: float, low: float, high: float, source: str) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InvalidParameterError(key, value, f"must be a number from {low:g} to {high:g} ({source})")
    return float(value)


@dataclass(frozen=True)
class _Entry:
    index: int
    name: str | None
    select: dict[str, Any] | None
    overrides: dict[str, Any]

    def source(self, path: Path) -> str:
        return f"{path} clusters[{self.index}]"


def _entries(raw: Any, path: Path) -> list[_Entry]:
    if not isinstance(raw, list) or not raw:
        raise InvalidParameterError("clusters", raw, f"must be a non-empty list of clusters ({path})")
    out = []
    for i, item in enumerate(raw):
        where = f"{path} clusters[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidParameterError(f"clusters[{i}]", item, f"must be a mapping such as {{cluster_id: x}} ({path})")
        overrides = {k: v for k, v in item.items() if k not in _ENTRY_KEYS}
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
            raise InvalidParameterError(
                f"clusters[{i}].name", name, f"letters, digits, '.', '_', '-' (at most 63) ({where})"
            )
        select = item.get("select")
        if select is not None:
            select = _selector(select, f"clusters[{i}].select", where)
            if "cluster_id" in overrides or name is not None:
                raise InvalidParameterError(
                    f"clusters[{i}]",
                    "select",
                    f"a select entry names no cluster_id or name: they come from the match ({where})",
                )
        elif "cluster_id" not in overrides:
            raise InvalidParameterError(
                f"clusters[{i}].cluster_id", None, f"each cluster names its cluster_id, or select: ({where})"
            )
        out.append(_Entry(i, name, select, overrides))
    return out


def _selector(raw: Any, key: str, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or set(raw) - {"match", "tags"} or not raw:
        raise InvalidParameterError(
            key, raw, f"must be {{match: 'glob', tags: {{key: value}}}} (one or both) ({where})"
        )
    match = raw.get("match", "*")
    tags = raw.get("tags") or {}
    if not isinstance(match, str) or not match:
        raise InvalidParameterError(f"{key}.match", match, f"a glob on the cluster id, e.g. 'orders-*' ({where})")
    if not isinstance(tags, Mapping) or not all(isinstance(v, (str, int, float)) for v in tags.values()):
        raise InvalidParameterError(f"{key}.tags", tags, f"a mapping of tag keys to values ({where})")
    return {"match": match, "tags": {str(k): str(v) for k, v in tags.items()}}


def _validated(data: Mapping[str, Any], overrides: Sequence[str], source: str) -> RunbookParameters:
    cid = str(data.get("cluster_id"))
    for item in overrides:
        _refuse_generated_confirmation(item, f"-p {item}")
        data = apply_override(data, _fill(item, cid))
    return validate(data, source=source + (" with -p overrides" if overrides else ""))


def _resolve(entry: _Entry, data: dict[str, Any], overrides: Sequence[str], path: Path) -> list[tuple[str, str]]:
    """(cluster_id, how it was found) of every cluster a select entry matches, found by the backend's describe
    calls with the entry's parameters (its account, region, local root)."""
    from aurora_kit.backends import from_parameters

    assert entry.select is not None
    source = entry.source(path)
    backend = from_parameters(_validated(data, overrides, source))  # the base's cluster_id stands in
    try:
        found = backend.list_clusters()
    finally:
        backend.close()
    match, tags = entry.select["match"], entry.select["tags"]
    hits = [
        c.db_cluster_identifier
        for c in found
        if fnmatch.fnmatchcase(c.db_cluster_identifier, match) and all(c.tags.get(k) == v for k, v in tags.items())
    ]
    if not hits:
        seen = ", ".join(c.db_cluster_identifier for c in found[:20]) or "none"
        raise InvalidParameterError(
            f"clusters[{entry.index}].select", entry.select, f"matched no cluster ({source}); clusters there: {seen}"
        )
    return [(cid, f"{source} select {match!r}") for cid in sorted(hits)]


def load_fleet(path: str | Path, overrides: Sequence[str] = ()) -> Fleet:
    """Read, resolve and validate ``fleet.yaml`` (see the module docstring); ``overrides`` are ``-p key=value``
    items applied to every cluster last. InvalidParameterError names what is wrong, before anything starts."""
    path = Path(path)
    raw = read_yaml(path, field="fleet file")
    if not isinstance(raw, Mapping):
        raise InvalidParameterError("fleet file", str(path), "must hold a mapping (parameters:, clusters: ...)")
    unknown = [k for k in raw if k not in _TOP_KEYS]
    if unknown:
        raise InvalidParameterError(
            unknown[0], raw[unknown[0]], f"unknown key in {path}; known keys: {', '.join(_TOP_KEYS)}"
        )
    base_name = raw.get("parameters")
    if not isinstance(base_name, str) or not base_name:
        raise InvalidParameterError("parameters", base_name, f"the base parameters file, relative to {path}")
    base_path = (path.parent / base_name) if not Path(base_name).is_absolute() else Path(base_name)
    base = read_yaml(base_path)
    if not isinstance(base, Mapping):
        raise InvalidParameterError("parameters file", str(base_path), "must hold a mapping of keys to values")
    validate(base, source=str(base_path))  # the base stands on its own: a mistake there is named once, there
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise InvalidParameterError("defaults", defaults, f"a mapping of parameter overrides ({path})")
    name = raw.get("name") or path.stem
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidParameterError("name", name, f"letters, digits, '.', '_', '-' (at most 63) ({path})")
    max_parallel = _number(raw, "max_parallel", DEFAULT_MAX_PARALLEL, 1, 64, str(path))
    if max_parallel != int(max_parallel):
        raise InvalidParameterError("max_parallel", raw.get("max_parallel"), f"a whole number ({path})")
    run_timeout_s = _number(raw, "run_timeout_s", DEFAULT_RUN_TIMEOUT_S, 1, 7 * 86400, str(path))

    entries = _entries(raw.get("clusters"), path)
    _refuse_generated_confirmation(defaults, f"{path} defaults")
    for e in entries:
        _refuse_generated_confirmation(e.overrides, e.source(path))
    listed: dict[int, Member] = {}
    for e in entries:  # explicit entries first: a select skips the clusters they list
        if e.select is None:
            cid = str(e.overrides["cluster_id"])
            data = _merge(_merge(base, _fill(defaults, cid)), _fill(e.overrides, cid))
            source = e.source(path) + f" ({e.name or cid})"
            listed[e.index] = Member(e.name or cid, _validated(data, overrides, source), e.source(path))
    members: list[Member] = []
    for e in entries:
        if e.select is None:
            members.append(listed[e.index])
            continue
        taken = {m.target() for m in [*listed.values(), *members]}
        for cid, how in _resolve(e, _merge(_merge(base, defaults), e.overrides), overrides, path):
            data = _merge(_merge(base, _fill(defaults, cid)), {**_fill(e.overrides, cid), "cluster_id": cid})
            member = Member(cid, _validated(data, overrides, f"{how} ({cid})"), how)
            if member.target() not in taken:
                members.append(member)
    _check_unique(members, path)
    canary = raw.get("canary")
    if canary is not None and canary not in {m.name for m in members}:
        raise InvalidParameterError(
            "canary", canary, f"not a cluster of the fleet ({path}); one of {', '.join(m.name for m in members)}"
        )
    return Fleet(path, name, base_path, tuple(members), int(max_parallel), run_timeout_s, canary, tuple(overrides))


def _check_unique(members: Iterable[Member], path: Path) -> None:
    names: dict[str, Member] = {}
    targets: dict[tuple[Any, ...], Member] = {}
    for m in members:
        other = targets.get(m.target())
        if other is not None:
            raise InvalidParameterError(
                "cluster_id",
                m.cluster_id,
                f"{other.source} and {m.source} are the same cluster: one run per cluster at a time",
            )
        targets[m.target()] = m
        if m.name in names:
            raise InvalidParameterError(
                "name",
                m.name,
                f"two clusters of {path} are named so ({names[m.name].source}, {m.source}): give each a name:",
            )
        names[m.name] = m
