"""Where each endpoint hostname leads, and who may log in with an IAM token: what the front door
(:mod:`.frontdoor`) asks about the emulated clusters.

- ``<instance>.<id>.<region>.rds.amazonaws.com``  → that instance (while it is ``available`` or ``rebooting``);
- ``<cluster>.cluster-<id>...``                   → the writer the bridge reports (it flips when the target of a
  failover accepts writes, as Aurora's DNS record does);
- ``<cluster>.cluster-ro-<id>...``                → a random available reader, the writer when there is none;
- ``<proxy>.proxy-<id>...`` and ``<endpoint>.endpoint.proxy-<id>...`` → that proxy endpoint's local PgBouncer
  (:mod:`.proxies`), once its targets are registered.

A user is an IAM user when it was granted ``rds_iam`` (directly or through a role; a superuser is no member by
default, as on Aurora where the master user is ``rds_superuser``, not a superuser). The front door logs an IAM user in
to the backend with a password only the emulator knows, set on the writer the first time (replicated to readers).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from psycopg import sql

from aurora_kit.emulator.frontdoor import Route
from aurora_kit.emulator.pinning import ProxyRoute
from aurora_kit.emulator.proxies import PROXY_PORT

if TYPE_CHECKING:
    from aurora_kit.emulator.bridge import Bridge
    from aurora_kit.emulator.proxies import ProxyBridge


class EndpointRouter:
    """The :class:`~aurora_kit.emulator.frontdoor.Router` of an emulator (module docstring)."""

    def __init__(self, bridge: Bridge, proxies: ProxyBridge) -> None:
        self.bridge = bridge
        self.proxies = proxies
        self.region = bridge.region
        self._key = secrets.token_bytes(32)

    def route(self, hostname: str) -> Route | None:
        name = hostname.lower()
        with self.bridge.moto_lock:
            proxied = self.proxies.route(name)
            if proxied is not None:
                return self._proxy_route(*proxied)
        suffix = f".{self.bridge.host_id}.{self.bridge.region}.rds.amazonaws.com"
        head, cluster_suffix = name.partition(".")[0], name.partition(".")[2]
        with self.bridge.moto_lock:
            if cluster_suffix == f"cluster-ro-{self.bridge.host_id}.{self.bridge.region}.rds.amazonaws.com":
                return self._endpoint_route(head, "reader")
            if cluster_suffix == f"cluster-{self.bridge.host_id}.{self.bridge.region}.rds.amazonaws.com":
                return self._endpoint_route(head, "cluster")
            if name.endswith(suffix) and name.count(".") == suffix.count("."):
                inst = self.bridge._instance(head)
                if inst is None or getattr(inst, "db_cluster_identifier", None) not in self.bridge.views:
                    return None
                return self._route_to(inst.db_cluster_identifier, head, head)
        return None

    def _endpoint_route(self, cid: str, kind: str) -> Route | None:
        view = self.bridge.views.get(cid)
        if view is None:
            return None
        if kind == "cluster" or not view.writer:
            return self._route_to(cid, kind, view.writer)
        readers = [i for i in view.addresses if i != view.writer and self._status_of(i) == "available"]
        return self._route_to(cid, kind, random.choice(readers) if readers else view.writer)

    def _status_of(self, instance_id: str) -> str:
        inst = self.bridge._instance(instance_id)
        return str(inst.status) if inst is not None else "deleted"

    def _route_to(self, cid: str, endpoint: str, instance_id: str | None) -> Route:
        cluster = self.bridge._cluster(cid)
        view = self.bridge.views[cid]
        address = view.addresses.get(instance_id) if instance_id else None
        status = self._status_of(instance_id) if instance_id else "no instance"
        down = "" if address is not None and status in ("available", "rebooting") else status
        return Route(
            cluster_id=cid,
            endpoint=endpoint,
            instance_id=instance_id,
            address=address if not down else None,
            port=int(cluster.port),
            resource_id=str(cluster.db_cluster_resource_id),
            iam_enabled=bool(cluster.iam_auth),
            down_reason=down,
        )

    def _proxy_route(self, cid: str, name: str, proxy: ProxyRoute | None, down: str) -> Route:
        return Route(
            cluster_id=cid,
            endpoint=f"proxy:{name}",
            instance_id=None,
            address=proxy.local_address if proxy is not None else None,
            port=PROXY_PORT,
            resource_id=proxy.resource_id if proxy is not None else "",
            iam_enabled=proxy is not None and proxy.iam_required,
            down_reason=down,
            proxy=proxy,
        )

    def proxy_password(self, route: Route) -> str:
        assert route.proxy is not None
        return self.proxies.password(route.proxy.proxy_name)

    def proxy_pin_target(self, route: Route) -> tuple[str, tuple[str, int]] | None:
        assert route.proxy is not None
        return self.proxies.pin_target(route.proxy.proxy_name, route.proxy.role)

    def credentials(self) -> Mapping[str, str]:
        return self.bridge.credentials()

    def is_iam_user(self, route: Route, user: str) -> bool:
        if route.proxy is not None:  # RDS Proxy: IAMAuth REQUIRED asks every client for a token
            return route.proxy.iam_required
        assert route.instance_id is not None
        with self.bridge.master(route.cluster_id, route.instance_id) as conn:
            row = conn.execute(  # granted membership (pg_has_role is true for any superuser)
                "WITH RECURSIVE m(oid) AS (SELECT oid FROM pg_roles WHERE rolname = %s "
                "UNION SELECT a.roleid FROM pg_auth_members a JOIN m ON a.member = m.oid) "
                "SELECT EXISTS (SELECT 1 FROM m JOIN pg_roles r USING (oid) WHERE r.rolname = 'rds_iam')",
                (user,),
            ).fetchone()
        return bool(row and row[0])

    def iam_backend_password(self, route: Route, user: str) -> str:
        """The password the front door logs an IAM user in with: known to the emulator only, set on the writer
        (replicated to the readers) the first time that user logs in to this cluster."""
        if route.proxy is not None:  # the proxy logs in to its targets with the secret (the master user's)
            return self.proxies.password(route.proxy.proxy_name)
        password = hmac.new(self._key, user.encode(), hashlib.sha256).hexdigest()
        view = self.bridge.views[route.cluster_id]
        if user in view.iam_passwords or view.writer is None:
            return password
        with self.bridge.master(route.cluster_id, view.writer) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))
            lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        if route.instance_id != view.writer and route.instance_id is not None and lsn is not None:
            with self.bridge.master(route.cluster_id, route.instance_id) as conn:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(lsn[0]),)).fetchone()
                    if row and row[0]:
                        break
                    time.sleep(0.01)
        view.iam_passwords.add(user)
        return password

    def record_connect(self, route: Route, user: str, *, ok: bool, reason: str = "") -> None:
        arn = f"arn:aws:rds-db:{self.bridge.region}:{self.bridge.account_id}:dbuser:{route.resource_id}/{user}"
        self.bridge.record_call("rds-db", "connect", resource=arn, ok=ok, reason=reason)
