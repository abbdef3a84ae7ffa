"""The local backend's one time source for automated backups: when one is due, when one has expired.

:func:`now` is the wall clock (UTC) unless ``$AURORA_KIT_CLOCK`` sets it, so a rehearsal or a test runs days of
backup schedule in seconds:

* an ISO-8601 time with its zone, ``2026-03-02T03:30:00Z``: the clock stands at that time;
* an offset from the wall clock, ``+3d``, ``+36h``, ``+90m``, ``-1d`` (``d``, ``h``, ``m``, ``s``).

``aurora-kit local maintain --now VALUE`` (and ``LocalBackend.maintain(now=...)``) takes the same values and wins
over the variable. Only the schedule and the expiry read this clock: what a backup records for restores (when it
started and ended) and every restore time are PostgreSQL commit times, i.e. :func:`wall` — a shifted clock makes
backups due and expire, it does not move the data's timestamps.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

from aurora_kit.errors import InvalidParameterError

ENV = "AURORA_KIT_CLOCK"

_OFFSET = re.compile(r"^([+-])(\d+(?:\.\d+)?)([dhms])$")
_UNIT = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def wall() -> datetime:
    """The real time (UTC): what PostgreSQL stamps commits with."""
    return datetime.now(timezone.utc)


def parse(value: str, *, field: str = ENV) -> datetime:
    """A clock setting (an aware ISO-8601 time, or an offset like ``+3d``) as the time it stands for now."""
    text = value.strip()
    match = _OFFSET.match(text)
    if match:
        sign, amount, unit = match.groups()
        delta = timedelta(**{_UNIT[unit]: float(amount)})
        return wall() + (delta if sign == "+" else -delta)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidParameterError(
            field, value, "must be an ISO-8601 time with a zone ('2026-03-02T03:30:00Z') or an offset ('+3d', '-2h')"
        )
    return moment.astimezone(timezone.utc)


def now(override: str | datetime | None = None) -> datetime:
    """The backup clock: ``override`` (``--now``), else ``$AURORA_KIT_CLOCK``, else the wall clock."""
    if isinstance(override, datetime):
        if override.tzinfo is None:
            raise InvalidParameterError("now", override, "must be timezone-aware")
        return override.astimezone(timezone.utc)
    if override:
        return parse(override, field="now")
    setting = os.environ.get(ENV, "").strip()
    return parse(setting) if setting else wall()
