"""The emulator's data-plane front door: what an RDS endpoint hostname leads to.

One TLS listener serves every endpoint of every emulated cluster. Clients connect to it with the RDS hostname kept
as ``host`` (``aws.endpoint_overrides`` puts the listener's address in ``hostaddr``), so libpq sends that name as
TLS SNI and checks the certificate against it (``sslmode=verify-full`` with the emulator's CA); the front door
routes by that name:

- ``<instance>.<id>.<region>.rds.amazonaws.com``      → that instance's PostgreSQL process;
- ``<cluster>.cluster-<id>...``                       → the current writer (it follows failovers, as the DNS does);
- ``<cluster>.cluster-ro-<id>...``                    → a random reader (the writer when there is none);
- ``<proxy>.proxy-<id>...``, ``<endpoint>.endpoint.proxy-<id>...`` → an RDS Proxy endpoint (:mod:`.proxies`): its
  local PgBouncer, with RDS Proxy's session pinning added here (:mod:`.pinning`).

TLS ends here, because Aurora's IAM authentication needs the password message: a user who is a member of
``rds_iam`` is asked for a cleartext password (as Aurora's PAM does), which must be an auth token valid for that
user, hostname, port and Region (:func:`aurora_kit.emulator.iam.verify_token`); otherwise the login fails with
Aurora's ``PAM authentication failed for user "..."``. The front door then logs that user in to the backend with
SCRAM and a password only the emulator knows. Every other user is relayed as is: the backend runs its own SCRAM
exchange with the client (wrong password → PostgreSQL's own ``password authentication failed``). A connection
without TLS is refused as Aurora refuses it with ``rds.force_ssl=1`` (the default from PostgreSQL 15 on).

A proxy endpoint authenticates as RDS Proxy does: with ``IAMAuth`` ``REQUIRED`` every login needs a token for the
proxy's hostname (checked here, then the session logs in to PgBouncer with the secret's password); otherwise the
client's password is checked against the secret's (PgBouncer runs the SCRAM exchange with the client).

After the login the bytes are relayed both ways unchanged (a proxy session's messages are read, for pinning); when
the backend goes away (reboot, failover), the client connection ends too. Cancel requests reach the instance that
issued the key (not on a proxy endpoint: RDS Proxy for PostgreSQL does not support them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from aurora_kit.emulator import pinning
from aurora_kit.emulator.iam import TokenRejectedError, verify_token
from aurora_kit.emulator.pgwire import (
    AUTH_CLEARTEXT,
    AUTH_MD5,
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    CANCEL_REQUEST,
    GSSENC_REQUEST,
    PROTOCOL_3,
    SSL_REQUEST,
    BackendLoginError,
    FirstPacket,
    ProtocolError,
    auth_code,
    auth_request,
    error_response,
    message,
    password_of,
    read_first,
    read_message,
    scram_login,
)
from aurora_kit.emulator.tls import TlsFiles

log = logging.getLogger("aurora_kit.emulator.frontdoor")


@dataclass(frozen=True)
class Route:
    """Where a connection to an endpoint hostname goes, decided when it arrives."""

    cluster_id: str
    endpoint: str  # cluster | reader | <instance id>
    instance_id: str | None  # the instance the connection reaches
    address: tuple[str, int] | None  # its PostgreSQL process; None: not accepting connections
    port: int  # the endpoint's RDS port (what IAM tokens are signed for)
    resource_id: str = ""  # DbClusterResourceId (for the rds-db:connect ARN)
    iam_enabled: bool = False  # EnableIAMDatabaseAuthentication on the cluster; IAMAuth REQUIRED on a proxy
    down_reason: str = ""
    proxy: pinning.ProxyRoute | None = None  # a proxy endpoint: how its sessions are pinned


class Router(Protocol):
    """What the front door asks the emulator (implemented by :class:`aurora_kit.emulator.bridge.Bridge`)."""

    region: str

    def route(self, hostname: str) -> Route | None: ...

    def is_iam_user(self, route: Route, user: str) -> bool: ...

    def iam_backend_password(self, route: Route, user: str) -> str: ...

    def credentials(self) -> Mapping[str, str]: ...

    def record_connect(self, route: Route, user: str, *, ok: bool, reason: str = "") -> None: ...

    def proxy_password(self, route: Route) -> str: ...

    def proxy_pin_target(self, route: Route) -> tuple[str, tuple[str, int]] | None: ...


class FrontDoor:
    """The TLS listener (see the module docstring); runs its own event loop in a daemon thread."""

    def __init__(self, router: Router, tls: TlsFiles, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.router = router
        self.host = host
        self.port = port
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl.load_cert_chain(str(tls.server_cert), str(tls.server_key))
        self._ssl.sni_callback = _remember_sni
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        #: a client's cancel key → where its session runs and that backend's own key
        self._cancel_keys: dict[bytes, tuple[str, int]] = {}
        self.connections = 0

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> int:
        """Start listening; returns the port (the OS picks one when ``port`` is 0)."""
        ready: Future[int] = Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(int(self._server.sockets[0].getsockname()[1]))
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="aurora-kit-frontdoor", daemon=True)
        self._thread.start()
        self.port = ready.result(timeout=30)
        return self.port

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- one connection ------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        backend: asyncio.StreamWriter | None = None
        try:
            backend = await self._session(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError, ssl.SSLError, OSError) as exc:
            log.debug("connection ended: %s: %s", type(exc).__name__, exc)
        except asyncio.CancelledError:
            pass
        finally:
            for w in (writer, backend):
                if w is not None:
                    w.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> asyncio.StreamWriter | None:
        first = await read_first(reader)
        if first.code == GSSENC_REQUEST:  # no GSSAPI encryption here: the client goes on to ask for TLS
            writer.write(b"N")
            await writer.drain()
            first = await read_first(reader)
        if first.code == CANCEL_REQUEST:
            await self._cancel(first)
            return None
        if first.code != SSL_REQUEST:
            p = first.params
            peer = (writer.get_extra_info("peername") or ("?",))[0]
            writer.write(
                error_response(
                    "28000",
                    f'no pg_hba.conf entry for host "{peer}", user "{p.get("user", "")}", database '
                    f'"{p.get("database", p.get("user", ""))}", no encryption',
                )
            )
            await writer.drain()
            return None
        writer.write(b"S")
        await writer.drain()
        start_tls = getattr(writer, "start_tls", None)  # asyncio.StreamWriter.start_tls: Python 3.11+
        if start_tls is None:  # pragma: no cover
            raise RuntimeError("the emulator's front door needs Python 3.11 or later")
        await start_tls(self._ssl)
        sni = getattr(writer.get_extra_info("ssl_object"), "aurora_kit_sni", None)
        first = await read_first(reader)
        if first.code == CANCEL_REQUEST:
            await self._cancel(first)
            return None
        if first.code >> 16 != 3:
            raise ProtocolError(f"unsupported protocol {first.code >> 16}.{first.code & 0xFFFF}")
        params = first.params
        user = params.get("user", "")
        if not sni:
            return await self._refused(
                writer,
                "08004",
                "connect with the RDS endpoint hostname as host (hostaddr for the address): the emulator routes "
                "by the TLS server name, and this client sent none",
            )
        route = await asyncio.to_thread(self.router.route, sni)
        if route is None:
            return await self._refused(writer, "08001", f"no DB endpoint {sni} in this emulated account and Region")
        if route.address is None:
            return await self._refused(
                writer, "57P03", f"{_what(route)} is not accepting connections ({route.down_reason})"
            )
        try:
            iam = await asyncio.to_thread(self.router.is_iam_user, route, user)
        except Exception as exc:  # the instance went away between routing and the check
            return await self._refused(writer, "57P03", f"DB instance {route.instance_id} is not available ({exc})")
        if iam:
            return await self._iam_login(reader, writer, first, route, sni, user)
        return await self._relay_login(reader, writer, first, route)

    async def _refused(self, writer: asyncio.StreamWriter, code: str, text: str) -> asyncio.StreamWriter | None:
        """Send a FATAL error (the connection ends); nothing to close on the backend side."""
        writer.write(error_response(code, text))
        await writer.drain()
        return None

    async def _backend(self, route: Route) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert route.address is not None
        return await asyncio.wait_for(asyncio.open_connection(*route.address), timeout=10)

    async def _relay_login(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: FirstPacket, route: Route
    ) -> asyncio.StreamWriter | None:
        """Not an IAM user: the backend authenticates the client itself; the front door forwards each message."""
        try:
            b_reader, b_writer = await self._backend(route)
        except (OSError, asyncio.TimeoutError) as exc:
            return await self._refused(writer, "57P03", f"{_what(route)} refused: {exc}")
        b_writer.write(first.raw)
        await b_writer.drain()
        while True:
            kind, payload = await read_message(b_reader)
            writer.write(message(kind, payload))
            await writer.drain()
            if kind == b"R" and auth_code(payload) in (AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE):
                c_kind, c_payload = await read_message(reader)
                b_writer.write(message(c_kind, c_payload))
                await b_writer.drain()
            elif kind == b"K":
                self._remember_key(payload, route)
            elif kind == b"E":
                return b_writer
            elif kind == b"Z":
                break
        return await self._relay(reader, writer, b_reader, b_writer, route, first)

    async def _iam_login(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        first: FirstPacket,
        route: Route,
        hostname: str,
        user: str,
    ) -> asyncio.StreamWriter | None:
        """An ``rds_iam`` user: the password must be a valid auth token (Aurora's PAM check)."""
        if first.code != PROTOCOL_3:  # a newer minor version: say 3.0 (PostgreSQL 16 would)
            writer.write(message(b"v", struct.pack("!ii", 0, 0)))
        writer.write(auth_request(AUTH_CLEARTEXT))
        await writer.drain()
        kind, payload = await read_message(reader)
        if kind != b"p":
            raise ProtocolError(f"expected a password message, got {kind!r}")
        try:
            if not route.iam_enabled:
                raise TokenRejectedError(f"IAM database authentication is not enabled on DB cluster {route.cluster_id}")
            verify_token(
                password_of(payload),
                user=user,
                host=hostname,
                port=route.port,
                region=self.router.region,
                secrets=self.router.credentials(),
            )
        except TokenRejectedError as exc:
            log.info("IAM login of %s to %s refused: %s", user, hostname, exc)
            self.router.record_connect(route, user, ok=False, reason=str(exc))
            return await self._refused(writer, "28P01", f'PAM authentication failed for user "{user}"')
        self.router.record_connect(route, user, ok=True)
        password = await asyncio.to_thread(self.router.iam_backend_password, route, user)
        try:
            b_reader, b_writer = await self._backend(route)
        except (OSError, asyncio.TimeoutError) as exc:
            return await self._refused(writer, "57P03", f"{_what(route)} refused: {exc}")
        try:
            after = await scram_login(b_reader, b_writer, dict(first.params), password)
        except BackendLoginError as exc:
            log.warning("backend login of IAM user %s failed: %s", user, exc)
            await self._refused(writer, "28P01", f'PAM authentication failed for user "{user}"')
            return b_writer
        writer.write(auth_request(AUTH_OK))
        for kind, payload in after:
            writer.write(message(kind, payload))
            if kind == b"K":
                self._remember_key(payload, route)
        await writer.drain()
        if after[-1][0] == b"E":
            return b_writer
        return await self._relay(reader, writer, b_reader, b_writer, route, first)

    # -- relaying ------------------------------------------------------------------------------------------
    async def _relay(
        self,
        c_reader: asyncio.StreamReader,
        c_writer: asyncio.StreamWriter,
        b_reader: asyncio.StreamReader,
        b_writer: asyncio.StreamWriter,
        route: Route,
        first: FirstPacket,
    ) -> asyncio.StreamWriter:
        """Relay a logged-in session; a proxy session through :func:`.pinning.relay`. Returns the backend writer
        to close at the end."""
        if route.proxy is None:
            await self._pipe_both(c_reader, c_writer, b_reader, b_writer)
            return b_writer
        password = await asyncio.to_thread(self.router.proxy_password, route)

        async def pin_target() -> tuple[str, tuple[str, int]] | None:
            return await asyncio.to_thread(self.router.proxy_pin_target, route)

        return await pinning.relay(
            c_reader, c_writer, b_reader, b_writer,
            proxy_name=route.proxy.proxy_name, startup=first.params, password=password, pin_target=pin_target,
        )  # fmt: skip

    async def _pipe_both(
        self,
        c_reader: asyncio.StreamReader,
        c_writer: asyncio.StreamWriter,
        b_reader: asyncio.StreamReader,
        b_writer: asyncio.StreamWriter,
    ) -> None:
        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(c_reader, b_writer), pipe(b_reader, c_writer))

    def _remember_key(self, payload: bytes, route: Route) -> None:
        """Where the session of this BackendKeyData runs (for cancel requests). Not for a proxy
        session: RDS Proxy for PostgreSQL does not support CancelRequest (Aurora User Guide, RDS Proxy limitations
        for PostgreSQL), so the emulator drops such requests as it ignores any unknown key."""
        if route.address is not None and route.proxy is None:
            self._cancel_keys[bytes(payload)] = route.address
            if len(self._cancel_keys) > 10_000:  # keys of long-gone sessions
                self._cancel_keys.pop(next(iter(self._cancel_keys)))

    async def _cancel(self, first: FirstPacket) -> None:
        address = self._cancel_keys.get(first.raw[8:16])
        if address is None:
            return
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(*address), timeout=5)
        except (OSError, asyncio.TimeoutError):
            return
        w.write(first.raw)
        await w.drain()
        with contextlib.suppress(OSError, asyncio.TimeoutError):  # as libpq does: the server closes first
            await asyncio.wait_for(r.read(), timeout=5)
        w.close()


def _remember_sni(ssl_object: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
    """TLS SNI callback: keep the server name the client asked for on its SSL object."""
    ssl_object.aurora_kit_sni = name  # type: ignore[attr-defined]


def _what(route: Route) -> str:
    """How a refusal names what refused: the proxy (``proxy:<name>``), or the DB instance."""
    proxy = route.endpoint.removeprefix("proxy:")
    return f"DB proxy {proxy}" if proxy != route.endpoint else f"DB instance {route.instance_id}"
