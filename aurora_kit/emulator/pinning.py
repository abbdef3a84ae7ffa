"""RDS Proxy's session pinning, for the emulator's proxy endpoints (the front door relays them).

Behind a proxy endpoint is PgBouncer in transaction mode: it multiplexes as RDS Proxy does, but where RDS Proxy *pins*
a client session that changes session state to one database connection for the rest of the session (Aurora User
Guide, "Avoiding pinning an RDS Proxy"), PgBouncer hands the next transaction to any server connection. So the front
door reads the client's messages on a proxy connection, and when a statement changes session state (:func:`pin_reason`)
while the session is idle, it moves the session — before that statement — onto a connection of its own to the
instance the endpoint routes to (logged in with the secret's password, as RDS Proxy logs in to its targets), and
relays it there until the client disconnects. Later transactions then run in one database session that no other
client shares: what RDS Proxy's pinning guarantees.

Recognised as session state changes (RDS Proxy's documented conditions for PostgreSQL): ``SET`` and ``RESET`` (not
``SET LOCAL`` / ``SET TRANSACTION``; none of them with the target group's ``EXCLUDE_VARIABLE_SETS`` filter),
``set_config(..., false)``, ``PREPARE`` / ``EXECUTE`` / ``DEALLOCATE``, ``DISCARD``, temporary tables, sequences and
views, ``DECLARE`` (cursors), ``LISTEN``, ``LOAD``, and session-level advisory locks. Differences, documented in the
README: a statement sent inside an explicit transaction or while earlier ones still await their answer (pipelining)
does not pin (the session cannot move then); PgBouncer resets such a session's state after the transaction, so it
is lost rather than leaked; cancel requests of a pinned session reach its own connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aurora_kit.emulator.pgwire import BackendLoginError, ProtocolError, message, read_message, scram_login

log = logging.getLogger("aurora_kit.emulator.pinning")


@dataclass(frozen=True)
class ProxyRoute:
    """Where a connection to a proxy endpoint goes (:class:`aurora_kit.emulator.frontdoor.Route` carries it)."""

    proxy_name: str
    role: str  # READ_WRITE | READ_ONLY
    iam_required: bool
    #: the instance a pinned session moves to (the writer; a reader for READ_ONLY) and its PostgreSQL address
    pin_instance: str | None
    pin_address: tuple[str, int] | None
    #: the target group's SessionPinningFilters (EXCLUDE_VARIABLE_SETS: a SET does not pin)
    pinning_filters: tuple[str, ...] = ()


_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_SET = re.compile(r"^(SET|RESET)\b(?!\s+(LOCAL|TRANSACTION|CONSTRAINTS)\b)", re.I)
_STATEMENTS = (
    (re.compile(r"^(PREPARE|EXECUTE|DEALLOCATE)\b", re.I), "a prepared statement"),
    (re.compile(r"^DISCARD\b", re.I), "DISCARD"),
    (re.compile(r"^CREATE\s+(GLOBAL\s+|LOCAL\s+)?(TEMP|TEMPORARY)\b", re.I), "a temporary object"),
    (re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?(TEMP|TEMPORARY)\s+VIEW\b", re.I), "a temporary object"),
    (re.compile(r"^DECLARE\b", re.I), "a cursor"),
    (re.compile(r"^LISTEN\b", re.I), "LISTEN"),
    (re.compile(r"^LOAD\b", re.I), "LOAD"),
)
_ANYWHERE = (
    (re.compile(r"\bset_config\s*\([^)]*,\s*false\s*\)", re.I), "set_config(..., false)"),
    (re.compile(r"\bpg_(try_)?advisory_lock(_shared)?\s*\(", re.I), "a session-level advisory lock"),
)
EXCLUDE_VARIABLE_SETS = "EXCLUDE_VARIABLE_SETS"


def pin_reason(sql: str, filters: tuple[str, ...] = ()) -> str | None:
    """Why RDS Proxy would pin a session that runs ``sql`` (None: it would not)."""
    text = _COMMENTS.sub(" ", sql)
    sets_pin = EXCLUDE_VARIABLE_SETS not in filters
    for statement in (s.strip() for s in text.split(";")):
        if sets_pin and _SET.match(statement):
            return "a SET statement"
        for pattern, reason in _STATEMENTS:
            if pattern.match(statement):
                return reason
    for pattern, reason in _ANYWHERE:
        if pattern.search(text) and (sets_pin or reason != "set_config(..., false)"):
            return reason
    return None


def query_text(kind: bytes, payload: bytes) -> str | None:
    """The SQL of a Query (``Q``) or Parse (``P``) message; None for any other message."""
    if kind == b"Q":
        return payload.rstrip(b"\0").decode(errors="replace")
    if kind == b"P":
        _name, _, rest = payload.partition(b"\0")
        return rest.partition(b"\0")[0].decode(errors="replace")
    return None


class _Session:
    """One client's proxy session: the backend it is relayed to now, and where the protocol stands."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = b"I"  # the last ReadyForQuery's transaction status
        self.awaiting = 0  # Query/Sync messages sent whose ReadyForQuery has not come back
        self.pinned = False


async def relay(
    c_reader: asyncio.StreamReader,
    c_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
    *,
    route: ProxyRoute,
    startup: Mapping[str, str],
    password: str,
    on_pinned: Callable[[tuple[str, int], bytes], None],
) -> asyncio.StreamWriter:
    """Relay a logged-in proxy session until either side ends; returns the backend writer in use at the end.
    ``on_pinned(address, backend_key)``: the session moved (its cancel requests go there now)."""
    session = _Session(b_reader, b_writer)

    async def to_client() -> None:
        try:
            while True:
                reader = session.reader
                try:
                    kind, payload = await read_message(reader)
                except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
                    if session.reader is not reader:
                        continue  # the session moved to its pinned connection
                    return
                if kind == b"Z":
                    session.status = payload[:1]
                    session.awaiting = max(0, session.awaiting - 1)
                c_writer.write(message(kind, payload))
                await c_writer.drain()
        finally:
            c_writer.close()

    async def to_backend() -> None:
        try:
            while True:
                kind, payload = await read_message(c_reader)
                sql = None if session.pinned else query_text(kind, payload)
                if sql is not None and session.status == b"I" and session.awaiting == 0:
                    reason = pin_reason(sql, route.pinning_filters)
                    if reason is not None:
                        await _pin(session, route, startup, password, reason, on_pinned)
                if kind in (b"Q", b"S"):
                    session.awaiting += 1
                session.writer.write(message(kind, payload))
                await session.writer.drain()
                if kind == b"X":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError, ProtocolError):
            return
        finally:
            session.writer.close()

    await asyncio.gather(to_client(), to_backend())
    return session.writer


async def _pin(
    session: _Session,
    route: ProxyRoute,
    startup: Mapping[str, str],
    password: str,
    reason: str,
    on_pinned: Callable[[tuple[str, int], bytes], None],
) -> None:
    """Move the idle session onto a connection of its own to the route's instance; on failure it stays where it is
    (and is reported as not pinned by whoever checks)."""
    if route.pin_address is None:
        log.warning("proxy %s: no instance to pin a session to (%s)", route.proxy_name, reason)
        return
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*route.pin_address), timeout=10)
    except (OSError, asyncio.TimeoutError) as exc:
        log.warning("proxy %s: pinning to %s failed: %s", route.proxy_name, route.pin_instance, exc)
        return
    try:
        after = await scram_login(reader, writer, dict(startup), password)
    except (BackendLoginError, ProtocolError, asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
        log.warning("proxy %s: pinned login to %s failed: %s", route.proxy_name, route.pin_instance, exc)
        writer.close()
        return
    if after[-1][0] != b"Z":
        log.warning("proxy %s: pinned session to %s refused: %s", route.proxy_name, route.pin_instance, after[-1])
        writer.close()
        return
    key = next((payload for kind, payload in after if kind == b"K"), b"")
    old = session.writer
    session.reader, session.writer, session.pinned = reader, writer, True
    old.write(message(b"X"))  # PgBouncer returns its server connection to the pool
    old.close()
    on_pinned(route.pin_address, key)
    log.info("proxy %s: session pinned to %s (%s)", route.proxy_name, route.pin_instance, reason)
