"""The local RDS Proxy: create, describe and delete a proxy of a cluster, made of PgBouncer processes
(:mod:`.pgbouncer`), recorded in the cluster's state (``proxies``), reached at addresses of its own.

RDS-shaped: the proxy's default endpoint (``READ_WRITE``) and an optional read-only one, its targets (the tracked
cluster and each instance, with their role and health), the pool settings as RDS Proxy names them. A target is
``AVAILABLE`` when its instance runs and the proxy process that routes to it answers; creating a proxy returns once
a query through each endpoint answered from the right role (the writer; a reader).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import psycopg
from psycopg.conninfo import make_conninfo

from aurora_kit.backends.base import ConnectionInfo
from aurora_kit.backends.capacity import Proxy, ProxyEndpoint, ProxyTarget
from aurora_kit.backends.local import addressing, pgbouncer
from aurora_kit.backends.local.nodes import CONNECT_TIMEOUT, Nodes
from aurora_kit.backends.local.pgbouncer import ProxyFiles
from aurora_kit.backends.local.state import ClusterRecord, ProxyRecord
from aurora_kit.errors import InvalidParameterError, InvalidStateError, ProxyNotFoundError
from aurora_kit.polling import wait_for
from aurora_kit.rules import proxy_pool_size
from aurora_kit.specs import ProxySpec

ENGINE_FAMILY = "POSTGRESQL"


def find(nodes: Nodes, proxy_name: str) -> tuple[ClusterRecord, ProxyRecord]:
    """The cluster holding ``proxy_name`` and the proxy's record; ProxyNotFoundError when none does."""
    for cl in nodes.store.load().clusters.values():
        if proxy_name in cl.proxies:
            return cl, cl.proxies[proxy_name]
    raise ProxyNotFoundError(proxy_name)


def check_new(nodes: Nodes, cl: ClusterRecord, spec: ProxySpec) -> ProxyRecord | None:
    """Validate a create request: the cluster available with a writer and addresses of its own; the name free (an
    identical proxy of this cluster is returned as it is). Changes nothing."""
    for other in nodes.store.load().clusters.values():
        if spec.proxy_name in other.proxies:
            if other.cluster_id == cl.cluster_id and other.proxies[spec.proxy_name].spec == spec:
                return other.proxies[spec.proxy_name]
            raise InvalidParameterError("proxy.proxy_name", spec.proxy_name, "a proxy of that name already exists")
    if cl.status != "available" or cl.writer_id is None:
        raise InvalidStateError(f"DB cluster {cl.cluster_id!r} is {cl.status}; a proxy needs it available")
    if any(i.address == addressing.LEGACY_ADDRESS for i in cl.instances.values()):
        raise InvalidStateError(
            f"DB cluster {cl.cluster_id!r} was created before instances had addresses of their own: no proxy",
            hint="restore a snapshot of it into a new cluster",
        )
    pgbouncer.find_pgbouncer()  # BackendOperationError with the install hint, before anything changes
    return None


def _max_connections(nodes: Nodes, cl: ClusterRecord) -> int:
    """The writer's ``max_connections``, which ``MaxConnectionsPercent`` is a share of."""
    writer = cl.writer_id
    assert writer is not None
    row = nodes.query(cl.cluster_id, writer, "SELECT current_setting('max_connections')::int")[0]
    return int(row[0])


def create(nodes: Nodes, cluster_id: str, spec: ProxySpec) -> None:
    """Record the proxy (addresses allocated under the state lock), write its files, start its processes, wait
    until each endpoint answers from the right role. On failure nothing stays (processes stopped, record gone)."""
    cl = nodes.store.cluster(cluster_id)
    roles = ["rw", "ro"] if spec.read_only_endpoint else ["rw"]
    pool = proxy_pool_size(_max_connections(nodes, cl), spec.max_connections_percent)
    with nodes.store.edit() as doc:
        current = doc.cluster(cluster_id)
        endpoints = nodes.allocate_endpoints(len(roles), cl=current, doc=doc)
        record = ProxyRecord(
            spec=spec,
            addresses={role: address for role, (address, _port) in zip(roles, endpoints, strict=True)},
            port=endpoints[0][1],
            pool_size=pool,
            status="creating",
            created=datetime.now(timezone.utc),
        )
        doc.clusters[cluster_id] = current.replace(proxies={**current.proxies, spec.proxy_name: record})
    files = ProxyFiles(nodes.paths(cluster_id), spec.proxy_name)
    try:
        pgbouncer.prepare(files)
        pgbouncer.write_userlist(files, cl.master_username, nodes.password(cluster_id))
        pgbouncer.configure(files, nodes.store.cluster(cluster_id), record)
        for role in roles:
            pgbouncer.start(files, role)
        for role in roles:
            _wait_answers(nodes, spec.proxy_name, role)
    except BaseException:
        remove(nodes, cluster_id, spec.proxy_name)
        raise
    _set_status(nodes, cluster_id, spec.proxy_name, "available")


def _set_status(nodes: Nodes, cluster_id: str, name: str, status: str) -> None:
    def change(cl: ClusterRecord) -> ClusterRecord:
        return cl.replace(proxies={**cl.proxies, name: dataclasses.replace(cl.proxies[name], status=status)})

    nodes.store.update_cluster(cluster_id, change)


def _wait_answers(nodes: Nodes, name: str, role: str, timeout: float = 20.0) -> None:
    """A query through the endpoint answers from the role it routes to (rw: the writer; ro: a reader, or the writer
    of a cluster without readers)."""
    endpoint = None if role == "rw" else "ro"

    def ask() -> tuple[str, bool]:
        info = endpoint_info(nodes, name, endpoint)
        with psycopg.connect(info.conninfo, autocommit=True, **info.kwargs()) as conn:
            row = conn.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()").fetchone()
        assert row is not None
        return str(row[0]), bool(row[1])

    def right(answer: tuple[str, bool]) -> bool:
        cl, _ = find(nodes, name)
        return answer[0] == cl.writer_id if role == "rw" else (answer[1] or not cl.reader_ids)

    wait_for(
        f"proxy {name} ({role}) answering",
        ask,
        right,
        timeout=timeout,
        initial_delay=0.02,
        max_delay=0.2,
        retry_on=(psycopg.OperationalError,),
    )


def remove(nodes: Nodes, cluster_id: str, name: str) -> None:
    """Stop the proxy's processes, forget it, delete its files."""
    cl = nodes.store.find_cluster(cluster_id)
    if cl is None or name not in cl.proxies:
        return
    files = ProxyFiles(nodes.paths(cluster_id), name)
    for role in cl.proxies[name].addresses:
        pgbouncer.stop(files, role)

    def forget(rec: ClusterRecord) -> ClusterRecord:
        return rec.replace(proxies={k: v for k, v in rec.proxies.items() if k != name})

    nodes.store.update_cluster(cluster_id, forget)
    nodes.discard(files.dir)


def endpoint_info(nodes: Nodes, name: str, endpoint: str | None) -> ConnectionInfo:
    """How to reach the proxy's default endpoint (None or its name) or its read-only one (its name, or ``ro``)."""
    cl, record = find(nodes, name)
    spec = record.spec
    role = "rw" if endpoint in (None, name) else "ro"
    if role == "ro" and endpoint not in ("ro", spec.read_only_endpoint):
        raise InvalidParameterError("endpoint", endpoint, f"proxy {name!r} has no endpoint of that name")
    if role not in record.addresses:
        raise InvalidParameterError("endpoint", endpoint, f"proxy {name!r} has no read-only endpoint")
    conninfo = make_conninfo(
        host=record.addresses[role],
        port=str(record.port),
        dbname=cl.database_name,
        user=cl.master_username,
        connect_timeout=CONNECT_TIMEOUT,
    )
    return ConnectionInfo(
        conninfo=conninfo,
        user=cl.master_username,
        dbname=cl.database_name,
        password=nodes.password(cl.cluster_id),
        endpoint=f"proxy:{name}" if role == "rw" else f"proxy:{spec.read_only_endpoint}",
    )


def describe(nodes: Nodes, name: str) -> Proxy:
    cl, record = find(nodes, name)
    spec = record.spec
    files = ProxyFiles(nodes.paths(cl.cluster_id), name)
    up = {role: pgbouncer.pid(files, role) is not None for role in record.addresses}
    running = set(nodes.running(cl.cluster_id, cl))
    state = record.status
    if state == "available" and not all(up.values()):
        state = "unavailable"  # a process died: RDS Proxy would restart it; here, delete and create the proxy again

    def health(instance_id: str, role: str) -> tuple[str, str]:
        if not up.get(role, False):
            return "UNAVAILABLE", "UNREACHABLE"
        if instance_id not in running or cl.instances[instance_id].status != "available":
            return "UNAVAILABLE", "CONNECTION_FAILED"
        return "AVAILABLE", ""

    targets = [
        ProxyTarget(
            cl.cluster_id,
            "TRACKED_CLUSTER",
            "UNKNOWN",
            addressing.cluster_name(nodes.root, cl.cluster_id),
            record.port,
            "AVAILABLE" if up.get("rw") else "UNAVAILABLE",
        )
    ]
    for iid in cl.ordered:
        writes = cl.instances[iid].is_writer
        state_, reason = health(iid, "rw" if writes or "ro" not in up else "ro")
        targets.append(
            ProxyTarget(
                iid,
                "RDS_INSTANCE",
                "READ_WRITE" if writes else "READ_ONLY",
                cl.instances[iid].address,
                cl.instances[iid].port,
                state_,
                reason,
            )
        )
    endpoints = [ProxyEndpoint(name, f"{record.addresses['rw']}:{record.port}", "READ_WRITE", state, True)]
    if "ro" in record.addresses and spec.read_only_endpoint:
        ro_state = state if up.get("ro") else "unavailable"
        endpoints.append(
            ProxyEndpoint(spec.read_only_endpoint, f"{record.addresses['ro']}:{record.port}", "READ_ONLY", ro_state)
        )
    return Proxy(
        db_proxy_name=name,
        db_cluster_identifier=cl.cluster_id,
        status=state,
        engine_family=ENGINE_FAMILY,
        endpoint=f"{record.addresses['rw']}:{record.port}",
        port=record.port,
        require_tls=spec.require_tls,
        idle_client_timeout=spec.idle_client_timeout_s,
        role_arn=spec.role_arn or "local: the cluster's master password file",
        max_connections_percent=spec.max_connections_percent,
        max_idle_connections_percent=spec.max_idle_connections_percent,
        connection_borrow_timeout=spec.connection_borrow_timeout_s,
        targets=targets,
        endpoints=endpoints,
        auth_secret_arn=f"file://{nodes.paths(cl.cluster_id).secret}",
        iam_auth="REQUIRED" if spec.iam_auth else "DISABLED",
        pool_size=record.pool_size,
    )


def projected(cl: ClusterRecord, spec: ProxySpec) -> Proxy:
    """What a dry run returns for a proxy it would create."""
    return Proxy(
        spec.proxy_name, cl.cluster_id, "dry-run", ENGINE_FAMILY, "", 0, spec.require_tls, spec.idle_client_timeout_s,
        spec.role_arn or "", spec.max_connections_percent, spec.max_idle_connections_percent,
        spec.connection_borrow_timeout_s,
    )  # fmt: skip
