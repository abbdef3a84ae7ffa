"""The database user that logs in with IAM tokens: created (once, as the master user with its managed secret),
granted ``rds_iam`` and what the runbooks need, then proven by logging in with a token.

On Aurora a user granted ``rds_iam`` can log in only with an auth token (PAM), so the master user — whose managed
secret is the way back in — is never granted it. The grants let the runbooks run as that user:

==========================  =====================================================================================
grant                       why
==========================  =====================================================================================
``rds_iam``                 IAM database authentication
CREATE on the database      the probes' own schema ``aurora_kit`` (04, 06)
CREATE on schema public     the pgvector proof table (03) and the PITR seed table (05)
``pg_monitor``              ``pg_stat_replication`` and every setting (04 replica lag, 02 ``SHOW``)
``pg_read_all_data``        05 fingerprints every table before the snapshot and after the restores
==========================  =====================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from aurora_kit.backends.base import ConnectionInfo
from aurora_kit.checks.common import connect
from aurora_kit.checks.result import CheckResult

#: predefined roles granted to the IAM user (the reasons: module docstring)
ROLES = ("rds_iam", "pg_monitor", "pg_read_all_data")


@dataclass(repr=False)
class IamUserReport(CheckResult):
    """The IAM user exists with its grants, and a token login reaches the database as that user."""

    title = "IAM database user"

    user: str
    created: bool
    granted: list[str]
    logged_in_as: str | None
    error: str = ""
    missing: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = [f"{self.user} lacks {', '.join(self.missing)}"] if self.missing else []
        if self.logged_in_as != self.user:
            out.append(f"a token login as {self.user} failed: {self.error or f'reached {self.logged_in_as}'}")
        return out

    def limits(self) -> str:
        return f"{self.user}: token login, {', '.join(self.granted)}"

    def summary(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "created": self.created,
            "granted": list(self.granted),
            "logged_in_as": self.logged_in_as,
        }


def ensure_iam_user(
    master: ConnectionInfo, token_login: ConnectionInfo, user: str, *, timeout: float = 10
) -> IamUserReport:
    """Create ``user`` if missing (``LOGIN``, no password), grant it :data:`ROLES` and CREATE on the database and
    on schema public (idempotent), then log in with ``token_login`` (an IAM token for ``user``)."""
    ident = sql.Identifier(user)
    with connect(master, connect_timeout=timeout) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is not None
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.SQL(", ").join(map(sql.Identifier, ROLES)), ident))
        database = conn.execute("SELECT current_database()").fetchone()
        assert database is not None
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(str(database[0])), ident))
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(ident))
        rows = conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
            (user,),
        ).fetchall()
    granted = sorted(str(r[0]) for r in rows)
    report = IamUserReport(user, not exists, granted, None, missing=[r for r in ROLES if r not in granted])
    try:
        with connect(token_login, connect_timeout=timeout) as conn:
            row = conn.execute("SELECT session_user").fetchone()
        report.logged_in_as = str(row[0]) if row else None
    except Exception as exc:  # the login failing is the finding
        report.error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return report
