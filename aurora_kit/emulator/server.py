"""The emulator as one object: a moto server whose RDS drives local clusters, the data-plane front door, the agent
that keeps the emulator's view in step with the clusters (and publishes their metrics), and a small control API.

Control API (JSON, on the AWS endpoint, under ``/_aurora_kit/``): ``GET info`` (endpoints, CA bundle, the
``aws.endpoint_overrides`` to use, clusters), ``GET calls`` / ``POST calls/reset`` (every AWS call made, for the
least-privilege policies), ``POST fault`` (``{"operation": "FailoverDBCluster", "cluster_id": ...}``: the next such
call fails as a failed Aurora failover does — a game-day injection, like AWS FIS).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aurora_kit.emulator import hooks, proxies
from aurora_kit.emulator.bridge import Bridge
from aurora_kit.emulator.frontdoor import FrontDoor
from aurora_kit.emulator.gaps import Patcher, check_moto_version
from aurora_kit.emulator.metrics import Metrics
from aurora_kit.emulator.routing import EndpointRouter
from aurora_kit.emulator.tls import TlsFiles, generate

log = logging.getLogger("aurora_kit.emulator")
ACCOUNT_ID = "123456789012"  # moto's default account
#: credentials the emulator knows without being told (the fake ones moto's own docs use)
DEFAULT_CREDENTIALS = {"testing": "testing"}


@dataclass
class EmulatorConfig:
    """How to run the emulator (``aurora-kit emulate`` options)."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 4566  # AWS API
    db_port: int = 15432  # data-plane front door
    region: str = "us-east-1"
    credentials: dict[str, str] = field(default_factory=dict)
    restorable_lag_s: float = 2.0
    agent_interval_s: float = 2.0


def host_id(account_id: str, region: str) -> str:
    """The 12-character id in every endpoint hostname of an account and Region (Aurora's is fixed per account and
    Region too: ``<cluster>.cluster-<id>.<region>.rds.amazonaws.com``)."""
    return "c" + hashlib.sha256(f"{account_id}/{region}".encode()).hexdigest()[:11]


class Emulator:
    """Start with :meth:`start`, stop with :meth:`stop` (which deletes every local cluster it made)."""

    def __init__(self, config: EmulatorConfig) -> None:
        check_moto_version()
        from aurora_kit.backends.local import LocalBackend

        self.config = config
        home = config.home.resolve()
        home.mkdir(parents=True, exist_ok=True, mode=0o755)
        os.chmod(home, 0o755)  # the PostgreSQL account must traverse it
        self.home = home
        self.local = LocalBackend(root_dir=home / "local")
        self.host_id = host_id(ACCOUNT_ID, config.region)
        credentials = dict(DEFAULT_CREDENTIALS)
        if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            credentials[os.environ["AWS_ACCESS_KEY_ID"]] = os.environ["AWS_SECRET_ACCESS_KEY"]
        credentials.update(config.credentials)
        self.bridge = Bridge(
            self.local,
            region=config.region,
            account_id=ACCOUNT_ID,
            host_id=self.host_id,
            credentials=credentials,
            restorable_lag_s=config.restorable_lag_s,
        )
        self.tls: TlsFiles | None = None
        self.frontdoor: FrontDoor | None = None
        self.metrics = Metrics(self.bridge)
        self._patch = Patcher()
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> Emulator:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        leftovers = self.local.list_clusters()
        if leftovers:  # a previous emulator in this home died without cleaning up
            log.warning("deleting %d local clusters a previous emulator left", len(leftovers))
            self.bridge.delete_all()
        self.tls = generate(self.home / "tls", region=self.config.region, host_id=self.host_id)
        hooks.install(self.bridge, self._patch)
        self.proxies = proxies.ProxyBridge(self.bridge)
        proxies.install(self.proxies, self._patch)
        router = EndpointRouter(self.bridge, self.proxies)
        self.frontdoor = FrontDoor(router, self.tls, host=self.config.host, port=self.config.db_port)
        self.config.db_port = self.frontdoor.start()
        app = _Control(DomainDispatcherApplication(create_backend_app), self)
        self._server = make_server(
            self.config.host, self.config.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self.config.port = int(self._server.server_address[1])
        self.url = f"http://{self.config.host}:{self.config.port}"
        self._spawn("aurora-kit-emulator-api", self._server.serve_forever)
        self._spawn("aurora-kit-emulator-agent", self._agent)
        (self.home / "emulator.json").write_text(json.dumps(self.info(), indent=2) + "\n")
        return self

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self.frontdoor is not None:
            self.frontdoor.stop()
        for thread in self._threads:
            thread.join(timeout=15)
        self.bridge.delete_all()
        self._patch.undo()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the agent ---------------------------------------------------------------------------------------------
    def _agent(self) -> None:
        """Every ``agent_interval_s``: re-read each idle cluster (writer, parameter status, addresses) and publish
        its metrics to CloudWatch, then evaluate the alarms."""
        while not self._stop.wait(self.config.agent_interval_s):
            for cid, view in list(self.bridge.views.items()):
                if view.status != "available" or not view.prepared or not self.bridge.idle(cid):
                    continue
                try:
                    self.bridge.refresh(cid)
                    self.metrics.publish(cid)
                except Exception as exc:  # a cluster mid-change; the next round reads it again
                    log.debug("agent: %s: %s", cid, exc)
            try:
                self.metrics.evaluate_alarms()
            except Exception as exc:
                log.warning("alarm evaluation failed: %s", exc)

    # -- what clients need -------------------------------------------------------------------------------------
    def endpoint_overrides(self) -> dict[str, str]:
        """``aws.endpoint_overrides`` for every endpoint of this account and Region: the front door."""
        return {f"*.{self.config.region}.rds.amazonaws.com": f"{self.config.host}:{self.config.db_port}"}

    def info(self) -> dict[str, Any]:
        return {
            "aws_endpoint_url": self.url,
            "region": self.config.region,
            "account_id": ACCOUNT_ID,
            "data_plane": f"{self.config.host}:{self.config.db_port}",
            "ca_bundle": str(self.tls.ca_bundle) if self.tls else None,
            "endpoint_overrides": self.endpoint_overrides(),
            "home": str(self.home),
            "clusters": {
                cid: {
                    "status": v.status,
                    "writer": v.writer,
                    "instances": sorted(v.addresses),
                    "parameters_not_applied": v.skipped_parameters,
                }
                for cid, v in self.bridge.views.items()
            },
            "errors": list(self.bridge.errors),
        }


class _Control:
    """WSGI middleware: ``/_aurora_kit/*`` is the control API, everything else goes to moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]], emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith("/_aurora_kit/"):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, payload = self._route(method, path.removeprefix("/_aurora_kit/"), body)
        data = json.dumps(payload, default=str).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _route(self, method: str, path: str, body: bytes) -> tuple[str, Mapping[str, Any]]:
        bridge = self.emulator.bridge
        if method == "GET" and path == "info":
            return "200 OK", self.emulator.info()
        if method == "GET" and path == "calls":
            return "200 OK", {"calls": list(bridge.calls)}
        if method == "POST" and path == "calls/reset":
            bridge.calls.clear()
            return "200 OK", {"calls": []}
        if method == "POST" and path == "fault":
            request = json.loads(body or b"{}")
            key = (str(request.get("operation")), str(request.get("cluster_id", "")).lower())
            bridge.faults[key] = str(request.get("reason", "injected by the control API"))
            return "200 OK", {"armed": list(key)}
        return "404 Not Found", {"error": f"no control route {method} /_aurora_kit/{path}"}
