"""IAM database authentication as Aurora checks it: the password a ``rds_iam`` user sends is an auth token, a SigV4
presigned ``connect`` request for ``rds-db`` (what ``generate_db_auth_token`` makes), valid 15 minutes for one user,
one endpoint hostname and port, in one Region.

:func:`verify_token` recomputes the signature with the secret key of the token's access key id, so a token made for
another user, host, port or Region, an expired one, or one signed with an unknown key is refused — each with its
reason for the emulator's log; the client only ever sees Aurora's ``PAM authentication failed for user "..."``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

#: how long a token is valid (generate_db_auth_token signs for 900 s; Aurora refuses longer)
MAX_EXPIRES_S = 900
#: clock skew tolerated for a token dated in the future (SigV4's usual 5 minutes)
CLOCK_SKEW = timedelta(minutes=5)


class TokenRejectedError(Exception):
    """The token does not authenticate this login; ``str()`` says why (for the emulator's log only)."""


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token authenticates."""

    access_key_id: str
    user: str
    host: str
    port: int
    region: str


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = "rds-db") -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _pairs(query: str) -> list[tuple[str, str]]:
    out = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            out.append((key, value))
    return out


def verify_token(
    token: str,
    *,
    user: str,
    host: str,
    port: int,
    region: str,
    secrets: Mapping[str, str],
    now: datetime | None = None,
) -> TokenIdentity:
    """The identity ``token`` proves for a login as ``user`` to ``host:port`` in ``region`` (else
    TokenRejectedError).
    ``secrets`` maps access key ids to their secret keys (the credentials the emulator knows)."""
    now = now or datetime.now(timezone.utc)
    netloc, sep, rest = token.partition("/?")
    if not sep:
        raise TokenRejectedError("not an IAM auth token (no '/?' after host:port)")
    t_host, _, t_port = netloc.rpartition(":")
    if t_host.lower() != host.lower() or t_port != str(port):
        raise TokenRejectedError(f"token made for {netloc}, the login is to {host}:{port}")
    pairs = _pairs(rest)
    params = {k: unquote(v) for k, v in pairs}
    if params.get("Action") != "connect":
        raise TokenRejectedError(f"token action is {params.get('Action')!r}, not 'connect'")
    if params.get("DBUser") != user:
        raise TokenRejectedError(f"token made for user {params.get('DBUser')!r}, the login is as {user!r}")
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or params.get("X-Amz-SignedHeaders") != "host":
        raise TokenRejectedError("token is not a SigV4 presigned request signing the host header")
    credential = params.get("X-Amz-Credential", "").split("/")
    if len(credential) != 5 or credential[3] != "rds-db" or credential[4] != "aws4_request":
        raise TokenRejectedError(f"token credential scope {params.get('X-Amz-Credential')!r} is not for rds-db")
    access_key, date, t_region = credential[0], credential[1], credential[2]
    if t_region != region:
        raise TokenRejectedError(f"token signed for Region {t_region}, the cluster is in {region}")
    try:
        signed_at = datetime.strptime(params.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        expires = int(params.get("X-Amz-Expires", ""))
    except ValueError as exc:
        raise TokenRejectedError("token has no valid X-Amz-Date / X-Amz-Expires") from exc
    if not params["X-Amz-Date"].startswith(date):
        raise TokenRejectedError("token date and credential scope date differ")
    if expires > MAX_EXPIRES_S or expires <= 0:
        raise TokenRejectedError(f"token valid for {expires} s; IAM auth tokens are valid at most {MAX_EXPIRES_S} s")
    if now > signed_at + timedelta(seconds=expires):
        raise TokenRejectedError(f"token expired at {(signed_at + timedelta(seconds=expires)).isoformat()}")
    if signed_at - now > CLOCK_SKEW:
        raise TokenRejectedError(f"token dated {signed_at.isoformat()}, in the future")
    secret = secrets.get(access_key)
    if secret is None:
        raise TokenRejectedError(f"token signed with an unknown access key id {access_key!r}")
    signature = params.get("X-Amz-Signature", "")
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(p for p in pairs if p[0] != "X-Amz-Signature"))
    canonical = "\n".join(
        ["GET", "/", canonical_query, f"host:{netloc.lower()}\n", "host", hashlib.sha256(b"").hexdigest()]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            f"{date}/{t_region}/rds-db/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    wanted = hmac.new(signing_key(secret, date, t_region), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(wanted, signature):
        raise TokenRejectedError("token signature does not match (altered, or signed with another secret key)")
    return TokenIdentity(access_key, user, host, port, region)
