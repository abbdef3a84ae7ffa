"""Aurora's rules, one definition each: what both backends, the parameter model and the steps obey (STYLE 17).

moto keeps each RDS rule once, in its models; this module does the same for ours. Every other module imports the
rule from here — a test checks that none defines it again. Each check raises the typed error an operator acts on
(:class:`~aurora_kit.errors.InvalidParameterError` naming the field and value, :class:`RestoreWindowError`,
:class:`FailoverNotPossibleError`), which is also a ``ValueError``, so pydantic validators can call them as they are.

==============================  =============================================================================
rule                            source
==============================  =============================================================================
identifiers                     RDS: 1-63 letters, digits, hyphens; a letter first; no ``--``; no trailing ``-``
backup retention                Aurora: ``BackupRetentionPeriod`` 1-35 days (0 is RDS-only, refused)
backup window                   ``hh:mm-hh:mm`` UTC, at least 30 minutes
backup schedule                 one automated backup a day, in the backup window; a missed window is caught up
backup retention (expiry)       the retention period stays restorable: automated backups taken within it are kept,
                                plus the newest one taken before it (restores to its start replay from it); a
                                deleted cluster's retained backups expire completely once the period has passed
                                the deletion
maintenance window              ``ddd:hh:mm-ddd:hh:mm`` UTC, at least 30 minutes, not overlapping the backup window
instance class                  ``db.<family>.<size>`` or ``db.serverless``
failover target                 promotion tier (0 first), then the largest instance, then the name (Aurora picks
                                an arbitrary one among equals; we pick by name so both backends agree)
restore window                  ``EarliestRestorableTime`` ≤ T ≤ ``LatestRestorableTime``, T timezone-aware
reboot order                    pending-reboot readers first (by name), the writer last
final snapshot                  deleting a cluster: exactly one of a final snapshot id or skip-final-snapshot
alarm period                    CloudWatch on RDS metrics: a multiple of 60 s
metric units                    CloudWatch ``AWS/RDS``: AuroraReplicaLag ms, CPUUtilization %, FreeableMemory bytes,
                                DatabaseConnections a count
alarm metrics                   replica lag: per reader, or the writer role's maximum (follows failovers);
                                a connections threshold must be below max_connections to be able to fire
secret keys                     a key whose value is a secret: password, passwd, pwd, secret, token, credential —
                                not an identifier of one (``…Arn``) nor a switch (``Manage…``)
==============================  =============================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from aurora_kit.errors import FailoverNotPossibleError, InvalidParameterError, RestoreWindowError

# == identifiers =================================================================================================
_IDENTIFIER = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{0,62}(?<!-)$")


def check_identifier(field: str, value: str) -> str:
    """RDS identifier rules; returns the identifier lowercased (RDS stores "Orders" as "orders", so every later
    lookup must use the lowercase form)."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise InvalidParameterError(
            field,
            value,
            "must be 1-63 letters, digits or hyphens, start with a letter, and contain no '--' nor end with '-'",
        )
    return value.lower()


# == backups ====================================================================================================
RETENTION_DAYS = (1, 35)


def check_retention(days: object, field: str = "backup_retention_period") -> int:
    """``BackupRetentionPeriod``: a whole number of days, 1-35. ``true`` is not 1, ``7.0`` is not 7."""
    low, high = RETENTION_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
        raise InvalidParameterError(field, days, f"must be a whole number of days from {low} to {high}")
    return days


_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKLY = re.compile(r"^([a-z]{3}):([01]\d|2[0-3]):([0-5]\d)-([a-z]{3}):([01]\d|2[0-3]):([0-5]\d)$")
MIN_WINDOW_MINUTES = 30
_DAY, _WEEK = 24 * 60, 7 * 24 * 60


def window_minutes(window: str, field: str = "preferred_backup_window") -> tuple[int, int]:
    """'hh:mm-hh:mm' (UTC) → (start, end) minutes of the day; the end may wrap past midnight."""
    match = _WINDOW.match(window) if isinstance(window, str) else None
    if not match:
        raise InvalidParameterError(field, window, "must be 'hh:mm-hh:mm' in UTC, e.g. '03:00-04:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return h1 * 60 + m1, h2 * 60 + m2


def check_backup_window(window: str, field: str = "preferred_backup_window") -> str:
    """``PreferredBackupWindow``: 'hh:mm-hh:mm' UTC, at least 30 minutes."""
    start, end = window_minutes(window, field)
    if (end - start) % _DAY < MIN_WINDOW_MINUTES:
        raise InvalidParameterError(field, window, f"the window must be at least {MIN_WINDOW_MINUTES} minutes")
    return window


def backup_window_start(window: str, now: datetime) -> datetime:
    """Start (UTC) of the most recent daily backup window that opened at or before ``now``."""
    start, _ = window_minutes(window)
    utc = now.astimezone(timezone.utc)
    today = utc.replace(hour=start // 60, minute=start % 60, second=0, microsecond=0)
    return today if today <= utc else today - timedelta(days=1)


def backup_due(window: str, last_backup: datetime | None, now: datetime) -> bool:
    """Aurora takes one automated backup a day in the backup window: one is due once the window has opened and
    none was taken since it opened. A window that passed without one (host off, cluster stopped) is caught up at
    the next chance, late, rather than skipped."""
    return last_backup is None or last_backup < backup_window_start(window, now)


def next_backup_due(window: str, last_backup: datetime | None, now: datetime) -> datetime:
    """When the next automated backup is due: now when one is due already, else the next window's start."""
    if backup_due(window, last_backup, now):
        return now
    return backup_window_start(window, now) + timedelta(days=1)


def retention_keeps(
    taken: Sequence[datetime], retention_days: int, now: datetime, *, logs_end: datetime | None = None
) -> list[bool]:
    """Which automated backups (by the time each was taken) the retention period keeps, in the given order.

    Every point of the last ``retention_days`` days must stay restorable: backups taken within the period are
    kept, and so is the newest one taken before the period began (a restore to the period's first moment replays
    from it); older ones expire. ``logs_end``: the WAL ends there (a deleted cluster whose automated backups were
    retained) — once the period starts after it, nothing is restorable any more and every backup expires."""
    horizon = now - timedelta(days=check_retention(retention_days))
    if logs_end is not None and logs_end < horizon:
        return [False] * len(taken)
    before = [t for t in taken if t < horizon]
    anchor = max(before) if before else None
    return [t >= horizon or t == anchor for t in taken]


def weekly_window_minutes(window: str, field: str = "preferred_maintenance_window") -> tuple[int, int]:
    """'ddd:hh:mm-ddd:hh:mm' (UTC) → (start, end) minutes of the week (Monday 00:00 = 0); the end may wrap."""
    match = _WEEKLY.match(window.lower()) if isinstance(window, str) else None
    if not match or match.group(1) not in _DAYS or match.group(4) not in _DAYS:
        raise InvalidParameterError(field, window, "must be 'ddd:hh:mm-ddd:hh:mm' in UTC, e.g. 'sun:05:00-sun:06:00'")
    d1, h1, m1, d2, h2, m2 = match.groups()
    start = _DAYS.index(d1) * _DAY + int(h1) * 60 + int(m1)
    end = _DAYS.index(d2) * _DAY + int(h2) * 60 + int(m2)
    return start, end


def check_maintenance_window(
    window: str, backup_window: str | None = None, field: str = "preferred_maintenance_window"
) -> str:
    """``PreferredMaintenanceWindow``: at least 30 minutes, and (RDS refuses it otherwise) not overlapping the
    daily backup window on any day."""
    start, end = weekly_window_minutes(window, field)
    length = (end - start) % _WEEK
    if length < MIN_WINDOW_MINUTES:
        raise InvalidParameterError(field, window, f"the window must be at least {MIN_WINDOW_MINUTES} minutes")
    if backup_window is not None:
        b_start, b_end = window_minutes(backup_window)
        b_len = (b_end - b_start) % _DAY
        for day in range(7):
            bs = day * _DAY + b_start
            if _overlaps(start, length, bs, b_len):
                raise InvalidParameterError(
                    field, window, f"overlaps the backup window {backup_window} (RDS refuses overlapping windows)"
                )
    return window.lower()


def _overlaps(a_start: int, a_len: int, b_start: int, b_len: int) -> bool:
    """Do two intervals on the week's circle overlap?"""
    for shift in (-_WEEK, 0, _WEEK):
        s = b_start + shift
        if a_start < s + b_len and s < a_start + a_len:
            return True
    return False


def check_final_snapshot_choice(final_snapshot_id: str | None, skip_final_snapshot: bool) -> None:
    """Deleting a cluster needs an explicit choice: exactly one of a final snapshot id or skip-final-snapshot."""
    if (final_snapshot_id is None) == (not skip_final_snapshot):
        raise InvalidParameterError(
            "final_snapshot_id",
            final_snapshot_id,
            "give exactly one of final_snapshot_id or skip_final_snapshot",
            hint="deleting a cluster is irreversible; say explicitly whether a final snapshot is taken",
        )


def check_restore_window(
    target: datetime, earliest: datetime | None, latest: datetime | None, *, cluster_id: str = ""
) -> datetime:
    """A point-in-time restore target must be timezone-aware and inside [earliest, latest] restorable time."""
    if not isinstance(target, datetime) or target.tzinfo is None or target.utcoffset() is None:
        raise InvalidParameterError("restore_time", target, "must be timezone-aware, e.g. '2026-11-26T21:00:00Z'")
    of = f" of {cluster_id!r}" if cluster_id else ""
    if earliest is None or latest is None:
        raise RestoreWindowError(
            f"the source cluster{of} reports no restorable window yet (no automated backup, or nothing archived)",
            restore_time=target,
            earliest=earliest,
            latest=latest,
        )
    if not earliest <= target <= latest:
        raise RestoreWindowError(
            f"restore time {target.isoformat()} is outside the restorable window{of}: "
            f"[{earliest.isoformat()}, {latest.isoformat()}]",
            restore_time=target,
            earliest=earliest,
            latest=latest,
        )
    return target


# == instances ==================================================================================================
SERVERLESS = "db.serverless"
_SIZES = ("nano", "micro", "small", "medium", "large", "xlarge")
_CLASS = re.compile(r"^db\.([a-z][a-z0-9-]*)\.(nano|micro|small|medium|large|xlarge|(\d+)xlarge|metal(?:-\d+xl)?)$")


def check_instance_class(value: str, field: str = "instance_class") -> str:
    """``db.<family>.<size>`` (db.r6g.large, db.r7g.2xlarge, db.t4g.medium) or ``db.serverless``."""
    if value == SERVERLESS:
        return value
    if not isinstance(value, str) or not _CLASS.match(value):
        raise InvalidParameterError(
            field,
            value,
            "not a DB instance class: expected db.<family>.<size> such as 'db.r6g.large' or 'db.serverless' "
            f"(sizes: {', '.join(_SIZES[1:])}, 2xlarge... metal)",
        )
    return value


def instance_class_rank(value: str) -> int:
    """How large an instance class is, for the failover tie-break (larger = higher). ``db.serverless`` ranks as
    ``large``: its capacity moves with load, so no class is known to be larger or smaller."""
    match = _CLASS.match(value)
    if value == SERVERLESS or not match:
        return _SIZES.index("large") * 1000
    size, multiple = match.group(2), match.group(3)
    if size in _SIZES:
        return _SIZES.index(size) * 1000
    if multiple:
        return _SIZES.index("xlarge") * 1000 + int(multiple)
    return 10**6  # metal: the whole host


# == failover ===================================================================================================
@dataclass(frozen=True)
class FailoverCandidate:
    """One member as the failover rule sees it."""

    instance_id: str
    is_writer: bool
    available: bool
    promotion_tier: int = 1
    instance_class: str = ""


def failover_target(
    cluster_id: str, members: Sequence[FailoverCandidate], requested: str | None = None
) -> tuple[str, str]:
    """(writer, target) for a failover, or FailoverNotPossibleError before anything changes.

    A requested target must be an available reader. Without one: the available reader with the lowest promotion
    tier, then the largest instance class, then the first by name — Aurora's documented order, made
    deterministic (Aurora promotes an arbitrary replica among equals)."""
    writer = next((m.instance_id for m in members if m.is_writer), None)

    def refuse(reason: str) -> FailoverNotPossibleError:
        return FailoverNotPossibleError(
            f"cannot fail over cluster {cluster_id!r}: {reason}",
            cluster_id=cluster_id,
            target_instance_id=requested,
            writer=writer,
        )

    if writer is None:
        raise refuse("it has no writer")
    readers = [m for m in members if not m.is_writer]
    if not readers:
        raise refuse(f"it has {len(members)} instance(s); a failover needs a writer and at least one reader")
    if requested is not None:
        wanted = requested.lower()
        if wanted == writer.lower():
            raise refuse(f"{requested!r} is already the writer; pick a reader")
        match = next((m for m in readers if m.instance_id.lower() == wanted), None)
        if match is None:
            raise refuse(f"{requested!r} is not a reader of the cluster")
        if not match.available:
            raise refuse(f"target {requested!r} is not available")
        return writer, match.instance_id
    ready = [m for m in readers if m.available]
    if not ready:
        raise refuse("no reader is available")
    best = min(ready, key=lambda m: (m.promotion_tier, -instance_class_rank(m.instance_class), m.instance_id))
    return writer, best.instance_id


# == parameters =================================================================================================
class MemberLike(Protocol):
    @property
    def db_instance_identifier(self) -> str: ...
    @property
    def is_cluster_writer(self) -> bool: ...
    @property
    def db_cluster_parameter_group_status(self) -> str: ...


def reboot_order(members: Iterable[MemberLike]) -> list[str]:
    """Members whose parameter status is ``pending-reboot``: readers first (by name), the writer last, so the
    writer restarts once, after its readers already run the new settings."""
    pending = [m for m in members if m.db_cluster_parameter_group_status == "pending-reboot"]
    readers = sorted(m.db_instance_identifier for m in pending if not m.is_cluster_writer)
    return readers + [m.db_instance_identifier for m in pending if m.is_cluster_writer]


# == monitoring =================================================================================================
def check_alarm_period(seconds: object, field: str = "period_s") -> int:
    """CloudWatch alarm period on RDS metrics: a multiple of 60 s (RDS publishes at 60 s resolution)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 60 or seconds % 60:
        raise InvalidParameterError(
            field, seconds, "must be a multiple of 60 seconds (RDS metrics have 60 s resolution), e.g. 60 or 300"
        )
    return seconds


#: the unit CloudWatch publishes each alarmed RDS metric in (display rounds them: FreeableMemory shows in GiB)
METRIC_UNITS = {
    "AuroraReplicaLag": "ms",
    "CPUUtilization": "%",
    "FreeableMemory": "bytes",
    "DatabaseConnections": "count",
}
#: the CloudWatch metrics an alarm on a concept may watch: replica lag per reader (``AuroraReplicaLag``), or the
#: cluster's writer-role maximum (``AuroraReplicaLagMaximum``, which follows failovers)
ALARM_METRICS: dict[str, tuple[str, ...]] = {"AuroraReplicaLag": ("AuroraReplicaLag", "AuroraReplicaLagMaximum")}


def alarm_covers(concept: str, metric: str) -> bool:
    """Whether an alarm on CloudWatch ``metric`` is the alarm on ``concept`` (an AlarmSpec's metric)."""
    return metric in ALARM_METRICS.get(concept, (concept,))


def check_alarm_can_fire(threshold: float, max_connections: int, field: str = "monitoring.max_connections") -> None:
    """A DatabaseConnections alarm at or above ``max_connections`` can never fire: the server refuses connection
    ``max_connections + 1`` (superuser-reserved slots aside), so the count never exceeds it."""
    if threshold >= max_connections:
        raise InvalidParameterError(
            field,
            threshold,
            f"can never fire: max_connections is {max_connections}; alarm below it, e.g. {int(max_connections * 0.9)}",
        )


# == secrets ====================================================================================================
#: words that make a key's value secret; the text patterns of :mod:`aurora_kit.redaction` are built from them too
SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "credential")
SECRET_WORD_PATTERN = "|".join(SECRET_WORDS)
_SECRET_KEY = re.compile(SECRET_WORD_PATTERN, re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether the value under ``key`` is a secret: the key names one of :data:`SECRET_WORDS`, and is not an
    identifier of a secret (``MasterUserSecretArn``, ``secret_arn``: an ARN names a secret, it is not one) nor a
    switch (``ManageMasterUserPassword``)."""
    lowered = str(key).lower()
    return bool(_SECRET_KEY.search(lowered)) and not lowered.startswith("manage") and not lowered.endswith("arn")
