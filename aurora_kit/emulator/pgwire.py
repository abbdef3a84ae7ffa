"""The few pieces of the PostgreSQL wire protocol (v3) the emulator's front door needs: the first packet (SSL /
GSS encryption / cancel request or startup message), typed messages, an ``ErrorResponse``, and the client side of
SCRAM-SHA-256 (RFC 5802/7677) for logging a user in to the backend on the front door's behalf."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 3 << 16

AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


class ProtocolError(Exception):
    """The peer sent something the front door cannot read as PostgreSQL protocol."""


@dataclass(frozen=True)
class FirstPacket:
    """The first packet of a connection: its code and the raw bytes (length included)."""

    code: int
    raw: bytes

    @property
    def params(self) -> dict[str, str]:
        """Startup parameters (user, database, application_name...) of a startup message."""
        fields = self.raw[8:].split(b"\0")
        out: dict[str, str] = {}
        for key, value in zip(fields[0::2], fields[1::2], strict=False):
            if key:
                out[key.decode()] = value.decode()
        return out


async def read_first(reader: asyncio.StreamReader) -> FirstPacket:
    head = await reader.readexactly(8)
    length, code = struct.unpack("!ii", head)
    if length < 8 or length > 10_000:
        raise ProtocolError(f"first packet of {length} bytes")
    body = await reader.readexactly(length - 8)
    return FirstPacket(code, head + body)


def startup_message(params: dict[str, str], protocol: int = PROTOCOL_3) -> bytes:
    body = struct.pack("!i", protocol)
    for key, value in params.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(type byte, payload) of one message."""
    head = await reader.readexactly(5)
    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
    if length < 4 or length > 1 << 30:
        raise ProtocolError(f"message {kind!r} of {length} bytes")
    return kind, await reader.readexactly(length - 4)


def message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def auth_request(code: int, extra: bytes = b"") -> bytes:
    return message(b"R", struct.pack("!i", code) + extra)


def auth_code(payload: bytes) -> int:
    return int(struct.unpack("!i", payload[:4])[0])


def error_response(code: str, text: str, severity: str = "FATAL") -> bytes:
    fields = b""
    for tag, value in (("S", severity), ("V", severity), ("C", code), ("M", text)):
        fields += tag.encode() + value.encode() + b"\0"
    return message(b"E", fields + b"\0")


def error_fields(payload: bytes) -> dict[str, str]:
    out = {}
    for part in payload.split(b"\0"):
        if part:
            out[part[:1].decode()] = part[1:].decode(errors="replace")
    return out


def password_of(payload: bytes) -> str:
    """The password a PasswordMessage carries (NUL-terminated text)."""
    return payload.rstrip(b"\0").decode(errors="replace")


# -- SCRAM-SHA-256, client side --------------------------------------------------------------------------------
class ScramClient:
    """One SCRAM-SHA-256 exchange without channel binding (the backend leg is loopback TCP without TLS)."""

    mechanism = "SCRAM-SHA-256"

    def __init__(self, password: str) -> None:
        self.password = password
        self.nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self._server_signature = b""

    def initial_response(self) -> bytes:
        data = ("n,," + self.first_bare).encode()
        return message(b"p", self.mechanism.encode() + b"\0" + struct.pack("!i", len(data)) + data)

    def final_response(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(item.split("=", 1) for item in text.split(","))
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce):
            raise ProtocolError("SCRAM: the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self._server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        final = f"{without_proof},p={base64.b64encode(proof).decode()}"
        return message(b"p", final.encode())

    def check_server_final(self, server_final: bytes) -> None:
        attrs = dict(item.split("=", 1) for item in server_final.decode().split(","))
        if base64.b64decode(attrs.get("v", "")) != self._server_signature:
            raise ProtocolError("SCRAM: the server's signature does not verify")


class BackendLoginError(Exception):
    """The backend refused the login (its ErrorResponse's fields)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields.get("M", "login refused"))
        self.fields = fields


async def scram_login(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, params: dict[str, str], password: str
) -> list[tuple[bytes, bytes]]:
    """Log in to a backend as ``params["user"]`` with SCRAM-SHA-256 and ``password``; returns the messages after
    AuthenticationOk up to ReadyForQuery or an ErrorResponse (ParameterStatus, BackendKeyData, ...).
    BackendLoginError when the authentication itself is refused."""
    writer.write(startup_message(params))
    await writer.drain()
    scram = ScramClient(password)
    while True:
        kind, payload = await read_message(reader)
        if kind == b"E":
            raise BackendLoginError(error_fields(payload))
        if kind == b"v":
            continue
        if kind != b"R":
            raise ProtocolError(f"unexpected {kind!r} during the backend login")
        code = auth_code(payload)
        if code == AUTH_SASL:
            writer.write(scram.initial_response())
        elif code == AUTH_SASL_CONTINUE:
            writer.write(scram.final_response(payload[4:]))
        elif code == AUTH_SASL_FINAL:
            scram.check_server_final(payload[4:])
            continue
        elif code == AUTH_OK:
            break
        else:
            raise ProtocolError(f"backend asked for authentication method {code}")
        await writer.drain()
    after: list[tuple[bytes, bytes]] = []
    while True:  # an ErrorResponse now (no such database...) is the session's first answer, for the client to see
        kind, payload = await read_message(reader)
        after.append((kind, payload))
        if kind in (b"Z", b"E"):
            return after
