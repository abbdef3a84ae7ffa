"""RDS Proxy's session pinning, for the emulator's proxy endpoints (the front door relays them).

Behind a proxy endpoint is PgBouncer in transaction mode: it multiplexes as RDS Proxy does, but where RDS Proxy *pins*
a client session that changes session state to one database connection for the rest of the session (Aurora User
Guide, "Avoiding pinning an RDS Proxy"), PgBouncer hands the next transaction to any server connection. So the front
door reads the client's messages on a proxy connection, and when a statement changes session state (:func:`pin_reason`)
while the session is idle, it moves the session — before that statement — onto a connection of its own to the
instance the endpoint routes to *now* (the writer; a reader for a READ_ONLY endpoint), logged in with the secret's
password as RDS Proxy logs in to its targets, and relays it there until the client disconnects. Later transactions
then run in one database session that no other client shares: what RDS Proxy's pinning guarantees.

Recognised as session state changes — the documented conditions for PostgreSQL: ``SET`` and ``RESET`` (every form:
the PostgreSQL list names no exception; RDS Proxy supports no session pinning filters for PostgreSQL), ``set_config``
with ``is_local`` false, ``PREPARE`` / ``EXECUTE`` / ``DEALLOCATE``, ``DISCARD``, temporary tables, sequences and
views (``SELECT … INTO TEMP`` too), ``DECLARE`` (cursors), ``LISTEN``, ``LOAD``, ``nextval`` / ``setval``,
session-level advisory locks, and any statement over 16 KB. String literals and comments are ignored. Differences,
documented in the README: a protocol-level *named* prepared statement pins here (PgBouncer 1.18 cannot carry it
across transactions; RDS Proxy multiplexes them since 2023); a statement sent inside an explicit transaction or
while earlier ones still await their answer (pipelining) does not pin (the session cannot move then: PgBouncer
resets its state after the transaction, so it is lost rather than leaked).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aurora_kit.emulator.pgwire import BackendLoginError, ProtocolError, message, read_message, scram_login

log = logging.getLogger("aurora_kit.emulator.pinning")


@dataclass(frozen=True)
class ProxyRoute:
    """Where a connection to a proxy endpoint goes (:class:`aurora_kit.emulator.frontdoor.Route` carries it)."""

    proxy_name: str
    role: str  # READ_WRITE | READ_ONLY
    iam_required: bool
    resource_id: str  # the proxy's prx-... id (the rds-db:connect ARN names it)
    local_address: tuple[str, int]  # the endpoint's PgBouncer


#: where a pinned session goes, asked when it pins: (instance id, its PostgreSQL address), or None
PinTarget = Callable[[], Awaitable[tuple[str, tuple[str, int]] | None]]


#: comments and literals ('…' with '' inside, E'…' with escapes, $tag$…$tag$): what they contain is no statement
_IGNORED = re.compile(r"--[^\n]*|/\*.*?\*/|[eE]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|(\$[A-Za-z_]*\$).*?\1", re.S)
#: RDS Proxy pins any statement longer than this (Aurora User Guide, "Avoiding pinning an RDS Proxy")
MAX_UNPINNED_STATEMENT = 16 * 1024
_SET = re.compile(r"^(SET|RESET)\b", re.I)
_STATEMENTS = (
    (re.compile(r"^PREPARE\s+TRANSACTION\b", re.I), None),  # two-phase commit: no session state
    (re.compile(r"^(PREPARE|EXECUTE|DEALLOCATE)\b", re.I), "a prepared statement"),
    (re.compile(r"^DISCARD\b", re.I), "DISCARD"),
    (re.compile(r"^CREATE\s+(GLOBAL\s+|LOCAL\s+)?(TEMP|TEMPORARY)\b", re.I), "a temporary object"),
    (re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?(TEMP|TEMPORARY)\s+VIEW\b", re.I), "a temporary object"),
    (re.compile(r"^DECLARE\b", re.I), "a cursor"),
    (re.compile(r"^LISTEN\b", re.I), "LISTEN"),
    (re.compile(r"^LOAD\b", re.I), "LOAD"),
)
_ANYWHERE = (
    (re.compile(r"\bset_config\s*\((?:[^()]|\([^()]*\))*,\s*false\s*\)", re.I), "set_config(..., false)"),
    (re.compile(r"\bpg_(try_)?advisory_lock(_shared)?\s*\(", re.I), "a session-level advisory lock"),
    (re.compile(r"\b(nextval|setval)\s*\(", re.I), "a sequence function"),
    (re.compile(r"\bINTO\s+(TEMP|TEMPORARY)\b", re.I), "a temporary object"),
)


def pin_reason(sql: str) -> str | None:
    """Why RDS Proxy would pin a session that runs ``sql`` (None: it would not)."""
    if len(sql.encode()) > MAX_UNPINNED_STATEMENT:
        return "a statement over 16 KB"
    text = _IGNORED.sub(" ", sql)
    for statement in (s.strip() for s in text.split(";")):
        if _SET.match(statement):
            return "a SET statement"
        for pattern, reason in _STATEMENTS:
            if pattern.match(statement):
                if reason is not None:
                    return reason
                break
    for pattern, found in _ANYWHERE:
        if pattern.search(text):
            return found
    return None


def query_text(kind: bytes, payload: bytes) -> str | None:
    """The SQL of a Query (``Q``) or Parse (``P``) message; None for any other message."""
    if kind == b"Q":
        return payload.rstrip(b"\0").decode(errors="replace")
    if kind == b"P":
        _name, _, rest = payload.partition(b"\0")
        return rest.partition(b"\0")[0].decode(errors="replace")
    return None


def message_pin_reason(kind: bytes, payload: bytes) -> str | None:
    """Why this client message would pin its session here (see the module docstring), None if it would not."""
    sql = query_text(kind, payload)
    if sql is None:
        return None
    if kind == b"P" and not payload.startswith(b"\0"):
        return "a named prepared statement (extended protocol)"
    return pin_reason(sql)


class _Session:
    """One client's proxy session: the backend it is relayed to now, and where the protocol stands."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = b"I"  # the last ReadyForQuery's transaction status
        #: Query/Sync/FunctionCall messages sent whose ReadyForQuery has not come back
        self.awaiting = 0
        self.extended = False  # the last statement came by the extended protocol (Execute, not Query)
        self.pinned = False


async def relay(
    c_reader: asyncio.StreamReader,
    c_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
    *,
    proxy_name: str,
    startup: Mapping[str, str],
    password: str,
    pin_target: PinTarget,
) -> asyncio.StreamWriter:
    """Relay a logged-in proxy session until either side ends; returns the backend writer in use at the end."""
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
                elif kind == b"G" and session.extended:
                    # COPY FROM STDIN by Execute: the server ignores the Sync sent after it (the client sends
                    # another after CopyDone), so one ReadyForQuery answers two Syncs
                    session.awaiting = max(0, session.awaiting - 1)
                c_writer.write(message(kind, payload))
                await c_writer.drain()
        finally:
            c_writer.close()

    async def to_backend() -> None:
        try:
            while True:
                kind, payload = await read_message(c_reader)
                if not session.pinned and session.status == b"I" and session.awaiting == 0:
                    reason = message_pin_reason(kind, payload)
                    if reason is not None:
                        await _pin(session, proxy_name, startup, password, reason, pin_target)
                if kind in (b"Q", b"S", b"F"):
                    session.awaiting += 1
                if kind in (b"Q", b"E"):
                    session.extended = kind == b"E"
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


#: how long moving a session may take (connect and log in) before it stays where it is
PIN_TIMEOUT_S = 10.0


async def _pin(
    session: _Session, proxy_name: str, startup: Mapping[str, str], password: str, reason: str, target: PinTarget
) -> None:
    """Move the idle session onto a connection of its own to the instance the endpoint routes to now; on failure
    it stays where it is (and is reported as not pinned by whoever checks)."""
    found = await target()
    if found is None:
        log.warning("proxy %s: no instance to pin a session to (%s)", proxy_name, reason)
        return
    instance, address = found
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout=PIN_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError) as exc:
        log.warning("proxy %s: pinning to %s failed: %s", proxy_name, instance, exc)
        return
    try:
        after = await asyncio.wait_for(scram_login(reader, writer, dict(startup), password), timeout=PIN_TIMEOUT_S)
        if after[-1][0] != b"Z":
            raise ProtocolError(f"the pinned session was refused: {after[-1][0]!r}")
    except (BackendLoginError, ProtocolError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError,
            ValueError) as exc:  # fmt: skip
        log.warning("proxy %s: pinning to %s failed: %s", proxy_name, instance, exc)
        writer.close()
        return
    except BaseException:
        writer.close()
        raise
    old = session.writer
    session.reader, session.writer, session.pinned = reader, writer, True
    old.write(message(b"X"))  # PgBouncer returns its server connection to the pool
    old.close()
    log.info("proxy %s: session pinned to %s (%s)", proxy_name, instance, reason)
