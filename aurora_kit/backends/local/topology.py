"""What a cluster tells its clients about its members, published whenever members or roles change.

Two outputs, written from the cluster's record:

* ``topology.json`` in the cluster dir — read on every node by ``pg_catalog.aurora_replica_status()`` (:mod:`.sql`),
  so each instance lists every other one as on Aurora, the writer row included while a reader's stream is down::

      {"cluster_id": "ak", "published_at": "2026-...+00:00", "writer": "ak-2",
       "instances": [{"id": "ak-1", "role": "reader", "status": "rebooting", "address": "127.0.0.3", "port": 5432},
                     ...]}

* the cluster's names in the hosts file (:class:`.addressing.HostsFile`, when the backend manages it): every
  instance, the cluster endpoint (the writer) and the reader endpoint.

And :class:`WrapperRecipe`, what an Aurora-aware client (the AWS Advanced Python Wrapper) needs beyond a conninfo.

Published at the end of a create, after an instance is added or removed, right after a failover's new writer is
writable (before the old writer is rewound: Aurora's DNS follows the writer too), and at start; withdrawn when the
cluster is deleted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from aurora_kit.backends.local import addressing
from aurora_kit.backends.local.config import ClusterPaths, write_file
from aurora_kit.backends.local.state import ClusterRecord
from aurora_kit.errors import InvalidStateError


def document(cl: ClusterRecord, now: datetime | None = None) -> dict[str, Any]:
    """The topology file's content for ``cl`` (writer first)."""
    return {
        "cluster_id": cl.cluster_id,
        "published_at": (now or datetime.now(timezone.utc)).isoformat(),
        "writer": cl.writer_id,
        "instances": [
            {
                "id": iid,
                "role": cl.instances[iid].role,
                "status": cl.instances[iid].status,
                "address": cl.instances[iid].address,
                "port": cl.instances[iid].port,
            }
            for iid in cl.ordered
        ],
    }


def members(cl: ClusterRecord) -> list[addressing.Member]:
    """The instances that get a name (not those being deleted)."""
    return [
        addressing.Member(iid, cl.instances[iid].address, cl.instances[iid].is_writer)
        for iid in cl.ordered
        if cl.instances[iid].status != "deleting"
    ]


def publish(root: Path, paths: ClusterPaths, cl: ClusterRecord, hosts: addressing.HostsFile) -> None:
    """Write the topology file (atomically) and, where managed, the cluster's block of the hosts file.

    Never raises: it runs inside operations (a failover's promotion) that must not stop half-way because a file
    could not be written; a failure is reported on stderr and the next publication repairs it."""
    try:
        write_file(paths.topology, json.dumps(document(cl), indent=1) + "\n", mode=0o600)
    except OSError as exc:
        _warn(f"could not publish the topology of {cl.cluster_id!r} to {paths.topology}: {exc}")
    _sync_names(hosts, root, cl.cluster_id, addressing.entries(root, cl.cluster_id, members(cl)))


def withdraw(root: Path, cluster_id: str, hosts: addressing.HostsFile) -> None:
    """Remove the cluster's names (its files go with the cluster dir); never raises, as :func:`publish`."""
    _sync_names(hosts, root, cluster_id, None)


def _sync_names(hosts: addressing.HostsFile, root: Path, cluster_id: str, lines: list[tuple[str, str]] | None) -> None:
    if not hosts.managed:
        return
    try:
        hosts.sync(root, cluster_id, lines)
    except OSError as exc:
        _warn(f"could not update the names of {cluster_id!r} in {hosts.path}: {exc}")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# -- the recipe for an Aurora-aware client -------------------------------------------------------------------
@dataclass(frozen=True)
class WrapperRecipe:
    """How the AWS Advanced Python Wrapper reaches a local cluster as it reaches Aurora::

        AwsWrapperConnection.connect(psycopg.Connection.connect, recipe.conninfo,
                                     password=recipe.password, **recipe.properties)

    ``conninfo`` names the cluster endpoint (the writer) and carries no ``target_session_attrs`` (the wrapper copies
    the conninfo to every instance it opens, so a session attribute would refuse readers); ``properties`` holds
    ``cluster_instance_host_pattern`` (``?.<domain>``: the wrapper cannot guess it for a non-RDS domain) and
    ``cluster_id`` (connections with the same id share the wrapper's topology cache; its default, "1", would mix
    clusters in one process). ``names_resolve`` says whether the names resolve here now; when they do not (a user
    who cannot write the hosts file), ``hosts_lines`` are the lines to add. The password stays out of ``repr``.
    """

    cluster_id: str
    conninfo: str
    properties: Mapping[str, str]
    names_resolve: bool
    hosts_lines: tuple[str, ...]
    password: str | None = field(default=None, repr=False, compare=False)

    @property
    def host_pattern(self) -> str:
        return self.properties["cluster_instance_host_pattern"]


def wrapper_recipe(
    root: Path, cl: ClusterRecord, *, dbname: str, user: str, connect_timeout: int, password: str | None
) -> WrapperRecipe:
    """The recipe for ``cl`` (its members on per-instance addresses; see :mod:`.addressing`)."""
    writer = cl.writer_id
    if writer is None:
        raise InvalidStateError(
            f"DB cluster {cl.cluster_id!r} has no writer", hint="create an instance (the writer) first"
        )
    if any(i.address == addressing.LEGACY_ADDRESS for i in cl.instances.values()):
        raise InvalidStateError(
            f"DB cluster {cl.cluster_id!r} was created before instances had addresses of their own (all on "
            "127.0.0.1, one port each): no host pattern can name its instances",
            hint="restore a snapshot of it into a new cluster, or create a new cluster",
        )
    lines = addressing.entries(root, cl.cluster_id, members(cl))
    name = addressing.cluster_name(root, cl.cluster_id)
    conninfo = make_conninfo(
        host=name, port=str(cl.instances[writer].port), dbname=dbname, user=user, connect_timeout=connect_timeout
    )
    return WrapperRecipe(
        cluster_id=cl.cluster_id,
        conninfo=conninfo,
        properties={"cluster_instance_host_pattern": addressing.host_pattern(root), "cluster_id": cl.cluster_id},
        names_resolve=all(addressing.resolves(n, a) for a, n in lines),
        hosts_lines=tuple(f"{a} {n}" for a, n in lines),
        password=password,
    )
