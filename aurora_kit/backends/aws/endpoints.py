"""Where the data plane connects: an endpoint hostname, or the address an override sends it to (a tunnel, a
bastion, the emulator) while the hostname stays libpq's ``host`` — what ``sslmode=verify-full`` checks the server
certificate against, and what IAM auth tokens are signed for. Pure functions (a name is resolved, nothing else)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping

from aurora_kit.errors import InvalidParameterError


def split_host_port(host: str, target: str) -> tuple[str, int]:
    """``"address:port"`` of the override for ``host`` (an endpoint hostname or ``*.suffix``), validated."""
    name, sep, port = target.rpartition(":")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameterError(f"endpoint_overrides[{host}]", target, "must be 'host:port'")
    if not (host.startswith("*.") or "*" not in host) or not host.strip("*."):
        raise InvalidParameterError(
            "endpoint_overrides", host, "keys are endpoint hostnames or '*.suffix' (e.g. '*.rds.amazonaws.com')"
        )
    return name.strip("[]"), int(port)


def endpoint_override(host: str, overrides: Mapping[str, str]) -> str | None:
    """Where to connect for endpoint ``host`` (``"address:port"``) when ``overrides`` redirects it: the exact
    hostname's entry, else the longest ``*.suffix`` entry the hostname ends with. None: the endpoint itself."""
    lowered = host.lower()
    exact = {k.lower(): v for k, v in overrides.items()}
    if lowered in exact:
        return exact[lowered]
    wild = [(k[1:], v) for k, v in exact.items() if k.startswith("*.") and lowered.endswith(k[1:])]
    return max(wild, key=lambda kv: len(kv[0]))[1] if wild else None


def host_address(key: str, target: str, name: str) -> str:
    """``name`` as an IP address for libpq's ``hostaddr``: a literal as is, a name resolved once, here."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0])
    except (socket.gaierror, IndexError) as exc:
        raise InvalidParameterError(f"endpoint_overrides[{key}]", target, f"cannot resolve {name!r}") from exc
