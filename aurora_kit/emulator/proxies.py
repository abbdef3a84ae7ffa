"""RDS Proxy on the emulated AWS: moto keeps what the API describes (the proxy, its target group, its endpoints), and a
proxy whose target is an emulated cluster is a real local proxy of that cluster — PgBouncer in transaction mode, as
:meth:`LocalBackend.create_proxy` makes it — behind the front door, which adds what PgBouncer lacks: RDS Proxy's
client authentication (the secret's password, or IAM tokens when ``IAMAuth`` is ``REQUIRED``) and its session
pinning (:mod:`.pinning`).

- ``CreateDBProxy``: the endpoint ``<proxy>.proxy-<id>.<region>.rds.amazonaws.com`` (moto names it
  ``db-proxy-<random>``; Aurora's proxy endpoints carry ``proxy-``, with the id of the account and Region).
- ``RegisterDBProxyTargets`` of a tracked cluster: the local proxy is made on the cluster's worker (in call order)
  from the proxy's settings and its target group's pool (``MaxConnectionsPercent``...); until it answers, every
  target is ``REGISTERING`` and a new proxy endpoint ``creating``; then each instance target's health is the local
  proxy's (``AVAILABLE``, or ``UNAVAILABLE`` with its reason).
- ``DeregisterDBProxyTargets`` / ``DeleteDBProxy``: the local proxy is removed; a deleted proxy is ``deleting``
  until it is gone.

The local proxy always has its read-only PgBouncer: a ``READ_ONLY`` proxy endpoint created later routes to it.
"""

from __future__ import annotations

import inspect
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aurora_kit.emulator.gaps_capacity import proxy_endpoint_rows
from aurora_kit.emulator.pinning import ProxyRoute
from aurora_kit.errors import AuroraKitError
from aurora_kit.specs import ProxySpec

if TYPE_CHECKING:
    from aurora_kit.emulator.bridge import Bridge

log = logging.getLogger("aurora_kit.emulator")
#: the local proxy's read-only endpoint (the AWS names of READ_ONLY endpoints map onto it)
LOCAL_READ_ONLY = "ro"
#: the port of every proxy endpoint (RDS Proxy listens on the engine's default port)
PROXY_PORT = 5432


@dataclass
class ProxyView:
    """What the emulator knows of one proxy beyond moto's record."""

    name: str
    cluster_id: str
    local_read_only: str  # the local proxy's read-only endpoint (READ_ONLY endpoints route to it)
    ready: bool = False  # the local proxy answers
    deleting: bool = False
    endpoints: dict[str, str] = field(default_factory=dict)  # AWS endpoint name → TargetRole


class ProxyBridge:
    """The emulated proxies of one :class:`~.bridge.Bridge` (module docstring)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.views: dict[str, ProxyView] = {}

    def _proxy(self, name: str) -> Any:
        return self.bridge.rds().db_proxies.get(name)

    # -- the calls -------------------------------------------------------------------------------------------
    def created(self, proxy: Any) -> None:
        """CreateDBProxy: Aurora's endpoint shape (account-and-Region id)."""
        proxy.url_identifier = self.bridge.host_id
        proxy.endpoint = f"{proxy.db_proxy_name}.proxy-{self.bridge.host_id}.{self.bridge.region}.rds.amazonaws.com"

    def registered(self, proxy_name: str, cluster_id: str) -> None:
        """RegisterDBProxyTargets of a tracked cluster: make the local proxy on the cluster's worker."""
        proxy = self._proxy(proxy_name)
        group = proxy.proxy_target_groups["default"]
        iam = any(str(a.get("IAMAuth", "DISABLED")).upper() == "REQUIRED" for a in proxy.auth or [])
        spec = ProxySpec(
            proxy_name=proxy_name,
            require_tls=bool(proxy.require_tls),
            idle_client_timeout_s=int(proxy.idle_client_timeout),
            max_connections_percent=int(group.max_connections),
            max_idle_connections_percent=int(group.max_idle_connections),
            connection_borrow_timeout_s=int(group.borrow_timeout),
            iam_auth=iam,
            read_only_endpoint=LOCAL_READ_ONLY if proxy_name != LOCAL_READ_ONLY else "ro-endpoint",
        )
        view = self.views[proxy_name] = ProxyView(proxy_name, cluster_id, str(spec.read_only_endpoint))

        def job() -> None:
            self.bridge.local.create_proxy(cluster_id, spec)
            view.ready = True
            with self.bridge.moto_lock:
                for row in self.endpoint_rows(proxy_name):
                    row["Status"] = "available"

        self.bridge._submit(cluster_id, f"RegisterDBProxyTargets {proxy_name}", job)

    def endpoint_created(self, row: dict[str, Any]) -> None:
        """CreateDBProxyEndpoint: ``creating`` until the local proxy answers."""
        view = self.views.get(str(row.get("DBProxyName")))
        if view is None:
            return
        view.endpoints[str(row["DBProxyEndpointName"])] = str(row.get("TargetRole") or "READ_WRITE")
        if not view.ready:
            row["Status"] = "creating"

    def removed(self, proxy_name: str, finish: Any = None) -> bool:
        """DeregisterDBProxyTargets / DeleteDBProxy of a tracked proxy: the local proxy goes on the cluster's worker
        (then ``finish``, moto's own deletion). False: not an emulated proxy (moto answers alone)."""
        view = self.views.get(proxy_name)
        if view is None:
            return False
        view.deleting = True

        def job() -> None:
            try:
                self.bridge.local.delete_proxy(proxy_name)
            except AuroraKitError as exc:  # never made (its creation failed): nothing to stop
                log.info("local proxy %s: %s", proxy_name, exc)
            if finish is not None:
                with self.bridge.moto_lock:
                    finish()
            self.views.pop(proxy_name, None)

        self.bridge._submit(view.cluster_id, f"DeleteDBProxy {proxy_name}", job)
        return True

    def target_health(self, proxy_name: str, target: Any) -> dict[str, str] | None:
        """A target's health as the local proxy reports it (None: not an emulated proxy)."""
        view = self.views.get(proxy_name)
        if view is None:
            return None
        if not view.ready:
            return {"State": "REGISTERING"}
        try:
            described = self.bridge.local.describe_proxy(proxy_name)
        except AuroraKitError:
            return {"State": "UNAVAILABLE", "Reason": "CONNECTION_FAILED"}
        for t in described.targets:
            if t.rds_resource_id == target.rds_resource_id and t.type == target.type:
                health = {"State": t.target_health}
                if t.target_health_reason:
                    health["Reason"] = t.target_health_reason
                return health
        return {"State": "UNAVAILABLE", "Reason": "CONNECTION_FAILED"}

    # -- routing ---------------------------------------------------------------------------------------------
    def endpoint_rows(self, proxy_name: str | None = None) -> list[dict[str, Any]]:
        """The rows DescribeDBProxyEndpoints answers with (the same dicts: a change here is what it describes)."""
        rows = proxy_endpoint_rows(self.bridge.rds())
        return [r for r in rows if proxy_name is None or r.get("DBProxyName") == proxy_name]

    def route(self, hostname: str) -> tuple[str, str, ProxyRoute | None, str] | None:
        """``(cluster_id, proxy name, route or None, why not)`` for a proxy endpoint hostname of this account and
        Region; None when the name is no proxy's. Call it holding the bridge's ``moto_lock``."""
        suffix = f"proxy-{self.bridge.host_id}.{self.bridge.region}.rds.amazonaws.com"
        head, _, rest = hostname.lower().partition(".")
        if rest == suffix:
            name, role = head, "READ_WRITE"
        elif rest == f"endpoint.{suffix}":
            row = next((r for r in self.endpoint_rows() if r.get("DBProxyEndpointName") == head), None)
            if row is None:
                return None
            name, role = str(row["DBProxyName"]), str(row.get("TargetRole") or "READ_WRITE")
        else:
            return None
        view = self.views.get(name)
        proxy = self._proxy(name)
        if view is None or proxy is None:
            return None
        if view.deleting:
            return view.cluster_id, name, None, "the proxy is being deleted"
        if not view.ready:
            return view.cluster_id, name, None, "the proxy's targets are still registering"
        try:
            address = self._local_address(name, None if role == "READ_WRITE" else view.local_read_only)
        except AuroraKitError as exc:
            return view.cluster_id, name, None, f"the proxy is not running ({exc})"
        return (
            view.cluster_id,
            name,
            ProxyRoute(
                proxy_name=name,
                role=role,
                iam_required=any(str(a.get("IAMAuth", "")).upper() == "REQUIRED" for a in proxy.auth or []),
                resource_id=str(proxy.unique_id),
                local_address=address,
            ),
            "",
        )

    def pin_target(self, proxy_name: str, role: str) -> tuple[str, tuple[str, int]] | None:
        """Where a session of this proxy endpoint pins now: the current writer; for READ_ONLY a random available
        reader (the writer when none). None when the proxy or its cluster has gone."""
        with self.bridge.moto_lock:
            view = self.views.get(proxy_name)
            cview = self.bridge.views.get(view.cluster_id) if view is not None else None
            if cview is None or cview.writer is None:
                return None
            pin = cview.writer
            if role == "READ_ONLY":
                readers = [i for i in cview.addresses if i != cview.writer and self._available(i)]
                pin = random.choice(readers) if readers else cview.writer
            address = cview.addresses.get(pin)
            return (pin, address) if address is not None else None

    def _available(self, instance_id: str) -> bool:
        inst = self.bridge._instance(instance_id)
        return inst is not None and str(inst.status) == "available"

    def _local_address(self, proxy_name: str, endpoint: str | None) -> tuple[str, int]:
        """The local PgBouncer of an endpoint (None: the default one)."""
        from psycopg.conninfo import conninfo_to_dict

        info = self.bridge.local.proxy_connection_info(proxy_name, endpoint)
        params = conninfo_to_dict(info.conninfo)
        return str(params.get("hostaddr") or params.get("host")), int(str(params.get("port")))

    def password(self, proxy_name: str) -> str:
        """The password the proxy logs in to its targets with: the master user's, from the cluster's managed secret
        (the local proxy's only user; the proxy's ``Auth`` list is not consulted — README)."""
        password = self.bridge.local.proxy_connection_info(proxy_name).password
        assert password is not None
        return password


def install(proxies: ProxyBridge, patch: Any) -> None:
    """Patch moto (after :func:`aurora_kit.emulator.gaps.fill_moto_rds_gaps`) so its proxies drive ``proxies``."""
    from moto.rds import models, responses

    bridge = proxies.bridge
    backend_cls = models.RDSBackend

    create = backend_cls.create_db_proxy

    def create_db_proxy(self: Any, *args: Any, **kwargs: Any) -> Any:
        proxy = create(self, *args, **kwargs)
        if bridge.tracks(self):
            proxies.created(proxy)
        return proxy

    patch.setattr(backend_cls, "create_db_proxy", create_db_proxy)

    register = backend_cls.register_db_proxy_targets

    def register_db_proxy_targets(self: Any, *args: Any, **kwargs: Any) -> Any:
        targets = register(self, *args, **kwargs)
        given = inspect.signature(register).bind(self, *args, **kwargs).arguments
        if bridge.tracks(self):
            for cid in given.get("db_cluster_identifiers") or []:
                if bridge.view(cid) is not None:
                    proxies.registered(str(given["db_proxy_name"]), str(cid).lower())
        return targets

    patch.setattr(backend_cls, "register_db_proxy_targets", register_db_proxy_targets)

    deregister = backend_cls.deregister_db_proxy_targets

    def deregister_db_proxy_targets(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = deregister(self, *args, **kwargs)
        given = inspect.signature(deregister).bind(self, *args, **kwargs).arguments
        if bridge.tracks(self) and given.get("db_cluster_identifiers"):
            proxies.removed(str(given["db_proxy_name"]))
        return answer

    patch.setattr(backend_cls, "deregister_db_proxy_targets", deregister_db_proxy_targets)

    delete = backend_cls.delete_db_proxy

    def delete_db_proxy(self: Any, proxy_name: str) -> Any:
        proxy = self.db_proxies.get(proxy_name)
        if proxy is None or not bridge.tracks(self):
            return delete(self, proxy_name)
        if not proxies.removed(proxy_name, lambda: delete(self, proxy_name)):
            return delete(self, proxy_name)
        proxy.status = "deleting"
        return proxy

    patch.setattr(backend_cls, "delete_db_proxy", delete_db_proxy)

    health: Any = models.DBProxyTarget.target_health  # a property

    def target_health(self: Any) -> dict[str, str]:
        emulated = getattr(self, "_aurora_kit_health", None)
        return dict(emulated) if emulated is not None else dict(health.fget(self))

    patch.setattr(models.DBProxyTarget, "target_health", property(target_health))

    describe_targets = backend_cls.describe_db_proxy_targets  # the gaps' version (one target per instance)

    def describe_db_proxy_targets(self: Any, proxy_name: str) -> list[Any]:
        targets = describe_targets(self, proxy_name)
        if bridge.tracks(self):
            for target in targets:
                setattr(target, "_aurora_kit_health", proxies.target_health(proxy_name, target))  # noqa: B010
        return targets

    patch.setattr(backend_cls, "describe_db_proxy_targets", describe_db_proxy_targets)

    create_endpoint = getattr(responses.RDSResponse, "create_db_proxy_endpoint")  # noqa: B009 (the gaps' version)

    def create_db_proxy_endpoint(self: Any) -> Any:
        answer = create_endpoint(self)
        if bridge.tracks(self.backend):
            name = self._get_param("DBProxyEndpointName")
            row = next((r for r in proxies.endpoint_rows() if r.get("DBProxyEndpointName") == name), None)
            if row is not None:
                proxies.endpoint_created(row)
        return answer

    patch.setattr(responses.RDSResponse, "create_db_proxy_endpoint", create_db_proxy_endpoint)
