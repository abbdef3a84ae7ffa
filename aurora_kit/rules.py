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
Serverless v2 capacity          ACUs in 0.5 steps; max 1-256; min 0.5-256 (0 = auto-pause: Aurora PostgreSQL
                                13.15 / 14.12 / 15.7 / 16.3 and later); min ≤ max; db.serverless needs the range set
instance memory                 Aurora's defaults from DBInstanceClassMemory: ``max_connections`` =
                                LEAST(mem/9531392, 5000), ``shared_buffers`` = SUM(mem/12038, -50003) × 8 kB
readers on demand               never remove the writer; never go below the configured minimum of readers
class change order              readers first (by name), then a planned failover to a changed reader, then the
                                old writer (a reader by then)
Aurora Auto Scaling             ``rds:cluster:ReadReplicaCount`` 0-15, min ≤ max; target tracking: desired =
                                ceil(readers × metric / target), scale-in only below 90 % of the target
RDS Proxy                       IdleClientTimeout 1-28800 s; MaxConnectionsPercent 1-100; MaxIdleConnectionsPercent
                                0-MaxConnectionsPercent; ConnectionBorrowTimeout 0-3600 s; pool = max_connections ×
                                MaxConnectionsPercent
==============================  =============================================================================
"""

from __future__ import annotations

import math
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


# == Serverless v2 capacity =====================================================================================
ACU_STEP = 0.5
ACU_MAX = 256.0  # Aurora Serverless v2's ceiling (was 128 before platform version 3)
ACU_MIN_MAX_CAPACITY = 1.0  # the maximum capacity may not be below 1 ACU
#: the first version of each Aurora PostgreSQL major whose Serverless v2 may scale to 0 ACUs (automatic pause)
AUTO_PAUSE_SINCE = {13: (13, 15), 14: (14, 12), 15: (15, 7), 16: (16, 3)}


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:2])


def supports_auto_pause(engine_version: str) -> bool:
    """Whether an Aurora PostgreSQL version may use a minimum capacity of 0 ACUs (automatic pause and resume)."""
    version = _version_tuple(engine_version)
    if not version:
        return False
    since = AUTO_PAUSE_SINCE.get(version[0])
    return version[0] > max(AUTO_PAUSE_SINCE) if since is None else version >= since


def check_acu_capacity(
    min_capacity: object, max_capacity: object, *, engine_version: str | None = None, field: str = "serverless"
) -> tuple[float, float]:
    """A Serverless v2 capacity range: half-ACU steps, max 1-256, min 0.5-256 (0 only where the engine supports
    automatic pause), min ≤ max. Returns the pair as floats."""
    values: dict[str, float] = {}
    for name, value in (("min_capacity", min_capacity), ("max_capacity", max_capacity)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
            raise InvalidParameterError(f"{field}.{name}", value, "must be a number of ACUs, e.g. 0.5 or 4")
        number = float(value)
        if number * 2 != int(number * 2):
            raise InvalidParameterError(
                f"{field}.{name}", value, f"ACUs come in steps of {ACU_STEP:g} (0.5, 1, 1.5...)"
            )
        values[name] = number
    low, high = values["min_capacity"], values["max_capacity"]
    if not ACU_MIN_MAX_CAPACITY <= high <= ACU_MAX:
        raise InvalidParameterError(f"{field}.max_capacity", max_capacity, f"must be from 1 to {ACU_MAX:g} ACUs")
    if not 0 <= low <= ACU_MAX:
        raise InvalidParameterError(f"{field}.min_capacity", min_capacity, f"must be from 0 to {ACU_MAX:g} ACUs")
    if low == 0 and engine_version is not None and not supports_auto_pause(engine_version):
        raise InvalidParameterError(
            f"{field}.min_capacity",
            min_capacity,
            f"0 ACUs (automatic pause) needs Aurora PostgreSQL 13.15, 14.12, 15.7, 16.3 or later; {engine_version} "
            "starts at 0.5",
        )
    if low > high:
        raise InvalidParameterError(f"{field}.min_capacity", min_capacity, f"must not exceed max_capacity ({high:g})")
    return low, high


def check_serverless_class(instance_class: str, scaling: object | None, *, field: str = "instance_class") -> None:
    """``db.serverless`` needs the cluster's Serverless v2 capacity range first (RDS: InvalidParameterCombination)."""
    if instance_class == SERVERLESS and scaling is None:
        raise InvalidParameterError(
            field,
            instance_class,
            "db.serverless needs the cluster's Serverless v2 capacity range (min/max ACUs) set first",
        )


# == instance memory ============================================================================================
#: memory of each Aurora PostgreSQL instance class, GiB (AWS "Hardware specifications for DB instance classes")
_MEMORY_BY_SIZE = {
    "large": 16,
    "xlarge": 32,
    "2xlarge": 64,
    "4xlarge": 128,
    "8xlarge": 256,
    "12xlarge": 384,
    "16xlarge": 512,
    "24xlarge": 768,
}
_MEMORY_OPTIMIZED = ("r5", "r6g", "r6i", "r7g", "r7i", "r8g", "r6gd", "r6id")
INSTANCE_CLASS_MEMORY_GIB: dict[str, float] = {
    **{f"db.{family}.{size}": gib for family in _MEMORY_OPTIMIZED for size, gib in _MEMORY_BY_SIZE.items()},
    **{f"db.x2g.{size}": gib * 2 for size, gib in _MEMORY_BY_SIZE.items() if size != "24xlarge"},
    "db.t3.medium": 4,
    "db.t3.large": 8,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
}
#: Aurora PostgreSQL's documented default ``max_connections`` where it is below the 5000 cap
#: (AuroraUserGuide "Maximum connections to an Aurora PostgreSQL DB instance")
DOCUMENTED_MAX_CONNECTIONS: dict[str, int] = {
    "db.x2g.large": 3479,
    "db.r6g.xlarge": 3479,
    "db.r6g.large": 1722,
    "db.r5.xlarge": 3300,
    "db.r5.large": 1600,
    "db.t4g.large": 844,
    "db.t4g.medium": 405,
    "db.t3.large": 844,
    "db.t3.medium": 420,
}
MAX_CONNECTIONS_DIVISOR = 9531392  # LEAST({DBInstanceClassMemory/9531392},5000)
MAX_CONNECTIONS_CAP = 5000
SHARED_BUFFERS_DIVISOR = 12038  # SUM({DBInstanceClassMemory/12038},-50003), in 8 kB pages
SHARED_BUFFERS_OFFSET_PAGES = 50003
#: share of the class memory taken as DBInstanceClassMemory where AWS publishes no figure (RDS keeps some memory
#: for the OS and its agents: 4-10 % in the published ones)
CLASS_MEMORY_SHARE = 0.96
ACU_MEMORY_GIB = 2.0  # one Aurora capacity unit ≈ 2 GiB of memory


@dataclass(frozen=True)
class MemorySettings:
    """Aurora's default memory settings of one instance class (what its default parameter group computes)."""

    instance_class: str
    memory_gib: float  # the class's memory (db.serverless: at its maximum capacity)
    db_instance_class_memory: int  # bytes, what {DBInstanceClassMemory} stands for
    max_connections: int
    shared_buffers_kb: int  # shared_buffers and effective_cache_size, kB
    source: str  # "documented" (AWS's max_connections table) or "estimated" (formula on the class memory)


def memory_settings(instance_class: str, *, max_acu: float | None = None) -> MemorySettings | None:
    """Aurora's default ``max_connections`` and ``shared_buffers`` for ``instance_class`` (``db.serverless``: at
    ``max_acu`` ACUs, as Aurora sizes a Serverless v2 instance's connections by its maximum capacity); None for a
    class not in :data:`INSTANCE_CLASS_MEMORY_GIB`."""
    if instance_class == SERVERLESS:
        if max_acu is None:
            return None
        gib = max_acu * ACU_MEMORY_GIB
    else:
        found = INSTANCE_CLASS_MEMORY_GIB.get(instance_class)
        if found is None:
            return None
        gib = found
    documented = DOCUMENTED_MAX_CONNECTIONS.get(instance_class)
    if documented is not None:
        class_memory = documented * MAX_CONNECTIONS_DIVISOR
        source = "documented"
    else:
        class_memory = int(gib * 2**30 * CLASS_MEMORY_SHARE)
        source = "estimated"
    connections = min(class_memory // MAX_CONNECTIONS_DIVISOR, MAX_CONNECTIONS_CAP)
    pages = max(class_memory // SHARED_BUFFERS_DIVISOR - SHARED_BUFFERS_OFFSET_PAGES, 16)
    return MemorySettings(instance_class, gib, class_memory, int(connections), int(pages * 8), source)


# == readers on demand ==========================================================================================
class MemberRole(Protocol):
    @property
    def db_instance_identifier(self) -> str: ...
    @property
    def is_cluster_writer(self) -> bool: ...


def check_reader_removal(cluster_id: str, members: Iterable[MemberRole], instance_id: str, *, min_readers: int) -> None:
    """Removing ``instance_id``: it must be a reader of the cluster (never the writer), and at least
    ``min_readers`` readers must remain."""
    members = list(members)
    wanted = instance_id.lower()
    match = next((m for m in members if m.db_instance_identifier.lower() == wanted), None)
    if match is None:
        raise InvalidParameterError("instance_id", instance_id, f"not a member of cluster {cluster_id!r}")
    if match.is_cluster_writer:
        raise InvalidParameterError(
            "instance_id",
            instance_id,
            "is the writer: removing it would fail the cluster over; fail over first, then remove it as a reader",
        )
    readers = sum(1 for m in members if not m.is_cluster_writer)
    if readers - 1 < min_readers:
        raise InvalidParameterError(
            "instance_id",
            instance_id,
            f"removing it leaves {readers - 1} reader(s), below the configured minimum of {min_readers}",
        )


def check_reader_additions(readers_now: int, adding: int, *, max_readers: int = 15) -> int:
    """Aurora allows up to 15 readers per cluster."""
    if isinstance(adding, bool) or not isinstance(adding, int) or adding < 0:
        raise InvalidParameterError("add_readers", adding, "must be a whole number ≥ 0")
    if readers_now + adding > max_readers:
        raise InvalidParameterError(
            "add_readers", adding, f"the cluster has {readers_now} reader(s); Aurora allows at most {max_readers}"
        )
    return adding


@dataclass(frozen=True)
class ClassChangeStep:
    """One step of a rolling instance-class change: ``modify`` an instance or ``failover`` to one."""

    action: str  # modify | failover
    instance_id: str


def class_change_order(members: Sequence[FailoverCandidate], to_change: Iterable[str]) -> list[ClassChangeStep]:
    """The least disruptive order to change the class of ``to_change``: the readers first (by name), then — if the
    writer changes too — a planned failover to a changed reader (the failover rule picks among them: promotion tier,
    then name), then the old writer, a reader by then. Only the failover interrupts writes."""
    wanted = {i.lower() for i in to_change}
    known = {m.instance_id.lower(): m for m in members}
    unknown = sorted(wanted - set(known))
    if unknown:
        raise InvalidParameterError("instance_id", unknown[0], "not a member of the cluster")
    writer = next((m for m in members if m.is_writer), None)
    readers = sorted(m.instance_id for m in members if not m.is_writer and m.instance_id.lower() in wanted)
    steps = [ClassChangeStep("modify", r) for r in readers]
    if writer is not None and writer.instance_id.lower() in wanted:
        changed = [m for m in members if m.instance_id in readers and m.available]
        if not changed:
            raise InvalidParameterError(
                "instance_id",
                writer.instance_id,
                "changing the writer's class without a failover needs a changed, available reader to fail over to",
            )
        target = min(changed, key=lambda m: (m.promotion_tier, m.instance_id))
        steps += [ClassChangeStep("failover", target.instance_id), ClassChangeStep("modify", writer.instance_id)]
    return steps


# == Aurora Auto Scaling ========================================================================================
REPLICA_COUNT_LIMITS = (0, 15)
SCALING_METRICS = ("RDSReaderAverageCPUUtilization", "RDSReaderAverageDatabaseConnections")
#: target tracking scales in only when the metric is below this share of the target (its low alarm)
SCALE_IN_SHARE = 0.9
DEFAULT_COOLDOWN_S = 300


def check_replica_capacity(min_capacity: object, max_capacity: object, field: str = "autoscaling") -> tuple[int, int]:
    """``rds:cluster:ReadReplicaCount`` limits: whole numbers 0-15, min ≤ max."""
    low, high = REPLICA_COUNT_LIMITS
    for name, value in (("min_capacity", min_capacity), ("max_capacity", max_capacity)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidParameterError(
                f"{field}.{name}", value, f"must be a whole number of readers from {low} to {high}"
            )
    assert isinstance(min_capacity, int)
    assert isinstance(max_capacity, int)
    if min_capacity > max_capacity:
        raise InvalidParameterError(
            f"{field}.min_capacity", min_capacity, f"must not exceed max_capacity ({max_capacity})"
        )
    return min_capacity, max_capacity


def target_tracking_capacity(
    current: int, metric: float, target: float, *, min_capacity: int, max_capacity: int, scale_in: bool = True
) -> int:
    """The reader count a target-tracking policy asks for: ``ceil(current × metric / target)`` when the metric is
    above the target, the same (at least one reader less) when it is below 90 % of the target and scale-in is
    enabled, else ``current``; always within [min, max]."""
    if target <= 0:
        raise InvalidParameterError("target_value", target, "must be positive")
    base = max(current, 1)
    if metric > target:
        desired = max(math.ceil(base * metric / target), current + 1)
    elif scale_in and metric < target * SCALE_IN_SHARE and current > 0:
        desired = min(math.ceil(base * metric / target), current - 1)
    else:
        desired = current
    return max(min_capacity, min(max_capacity, desired))


# == RDS Proxy ==================================================================================================
IDLE_CLIENT_TIMEOUT_S = (1, 28800)
BORROW_TIMEOUT_S = (0, 3600)


def check_proxy_pool(
    max_connections_percent: object, max_idle_connections_percent: object, field: str = "proxy"
) -> tuple[int, int]:
    """``MaxConnectionsPercent`` 1-100 and ``MaxIdleConnectionsPercent`` 0..MaxConnectionsPercent."""
    if isinstance(max_connections_percent, bool) or not isinstance(max_connections_percent, int):
        raise InvalidParameterError(f"{field}.max_connections_percent", max_connections_percent, "must be 1-100")
    if not 1 <= max_connections_percent <= 100:
        raise InvalidParameterError(f"{field}.max_connections_percent", max_connections_percent, "must be 1-100")
    idle = max_idle_connections_percent
    if isinstance(idle, bool) or not isinstance(idle, int) or not 0 <= idle <= max_connections_percent:
        raise InvalidParameterError(
            f"{field}.max_idle_connections_percent",
            idle,
            f"must be 0-{max_connections_percent} (max_connections_percent)",
        )
    return max_connections_percent, idle


def check_proxy_timeouts(idle_client_timeout_s: object, borrow_timeout_s: object, field: str = "proxy") -> None:
    """``IdleClientTimeout`` 1-28800 s, ``ConnectionBorrowTimeout`` 0-3600 s."""
    for name, value, (low, high) in (
        ("idle_client_timeout_s", idle_client_timeout_s, IDLE_CLIENT_TIMEOUT_S),
        ("connection_borrow_timeout_s", borrow_timeout_s, BORROW_TIMEOUT_S),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidParameterError(
                f"{field}.{name}", value, f"must be a whole number of seconds from {low} to {high}"
            )


def proxy_pool_size(max_connections: int, max_connections_percent: int) -> int:
    """Server connections a proxy may open: ``max_connections × MaxConnectionsPercent / 100`` (at least one)."""
    return max(1, max_connections * max_connections_percent // 100)
