"""Parameters in effect: ``SHOW`` (and ``pg_settings``) of each wanted parameter on every instance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from aurora_kit.backends.base import ConnectionInfo
from aurora_kit.checks.common import connect
from aurora_kit.checks.result import CheckResult

MISSING = "<missing>"


@dataclass(repr=False)
class SettingsReport(CheckResult):
    """Each wanted value on every instance; instances left ``pending-reboot`` (reboot not allowed) are excused for
    the static parameters that wait for that reboot."""

    title = "parameters on every instance"

    wanted: dict[str, str]
    values: dict[str, dict[str, tuple[str, str, bool]]]  # instance → name → (SHOW, setting, pending_restart)
    still_pending: list[str] = field(default_factory=list)
    static: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        for inst, values in self.values.items():
            for name, want in self.wanted.items():
                shown, setting, pending = values.get(name, (MISSING, MISSING, False))
                excused = inst in self.still_pending and (pending or name in self.static)
                if want not in (shown, setting) and not excused:
                    out.append(f"{inst}: {name} = {shown} (setting {setting}), wanted {want}")
                if pending and not excused:
                    out.append(f"{inst}: {name} still pending restart")
        if not self.values:
            out.append("no instance answered")
        return out

    def limits(self) -> str:
        waiting = f"; {', '.join(self.still_pending)} wait for a reboot" if self.still_pending else ""
        return f"{len(self.wanted)} parameters on {len(self.values)} instances{waiting}"

    def summary(self) -> dict[str, Any]:
        return {
            "wanted": dict(self.wanted),
            "show": {i: {n: v[0] for n, v in vals.items()} for i, vals in self.values.items()},
            "still_pending": list(self.still_pending),
            "static": list(self.static),
            "problems": self.problems(),
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [("instances", len(self.values)), ("still pending-reboot", self.still_pending or None)]

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        names = list(self.wanted)
        rows = [
            [
                inst,
                *(vals[n][0] + (" (pending restart)" if vals[n][2] else "") if n in vals else MISSING for n in names),
            ]
            for inst, vals in self.values.items()
        ]
        return ["instance", *names], [["wanted", *self.wanted.values()], *rows]


def read_settings(
    instances: Mapping[str, ConnectionInfo],
    wanted: Mapping[str, str],
    *,
    still_pending: Sequence[str] = (),
    static: Sequence[str] = (),
    connect_timeout: float = 5.0,
) -> SettingsReport:
    """Connect to every instance and read each wanted parameter with ``SHOW`` and from ``pg_settings``."""
    values: dict[str, dict[str, tuple[str, str, bool]]] = {}
    for iid, info in instances.items():
        with connect(info, connect_timeout=connect_timeout) as conn:
            got = {}
            for name in wanted:
                shown = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                row = conn.execute(
                    "SELECT setting, pending_restart FROM pg_settings WHERE name = %s", [name]
                ).fetchone()
                got[name] = (
                    str(shown[0]) if shown else MISSING,
                    str(row[0]) if row else MISSING,
                    bool(row[1]) if row else False,
                )
        values[iid] = got
    return SettingsReport(dict(wanted), values, list(still_pending), list(static))
