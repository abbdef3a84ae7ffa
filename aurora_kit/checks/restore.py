"""Restore verification: per-table row counts and order-independent content checksums, and PITR exactness.

The checksum of a table is computed in SQL: ``md5(row::text)`` for every row, summed as two 64-bit halves in
``numeric`` (no overflow), so it does not depend on row order or physical layout and changes when any row is
added, removed, duplicated or altered. The session is pinned to canonical settings (UTC, ISO dates, full float
precision) so the same data gives the same text on any server.

PITR exactness needs data whose commit times are known: :func:`seed_pitr_dataset` writes batches, takes the
cut-off ``T`` from the server clock in a quiet gap between them (every batch before commits before ``T``, every
batch after starts after it), and returns ``T`` with the expected fingerprints. A restore to ``T`` must contain
exactly the "before" rows (:func:`verify_pitr`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from aurora_kit.backends.base import ConnectionInfo
from aurora_kit.checks.common import CANONICAL_SESSION, connect
from aurora_kit.checks.result import CheckResult
from aurora_kit.errors import InvalidParameterError

_FINGERPRINT = """
SELECT count(*),
       coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text,
       coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text
FROM (SELECT md5(t::text) AS h FROM {table} AS t {where}) AS s
"""


@dataclass(frozen=True)
class TableFingerprint:
    """Row count and order-independent content checksum of one table (optionally filtered)."""

    table: str
    rows: int
    checksum: str

    def matches(self, other: TableFingerprint) -> bool:
        return self.rows == other.rows and self.checksum == other.checksum


def _canonical(conn: psycopg.Connection[Any]) -> None:
    for name, value in CANONICAL_SESSION.items():
        conn.execute("SELECT set_config(%s, %s, false)", [name, value])


def _qualified(name: str) -> sql.Composable:
    parts = name.split(".")
    return sql.Identifier(*parts)


def _fingerprint(
    conn: psycopg.Connection[Any], table: str, *, where: sql.Composable | None = None, params: Sequence[Any] = ()
) -> TableFingerprint:
    stmt = sql.SQL(_FINGERPRINT).format(
        table=_qualified(table), where=sql.SQL("WHERE ") + where if where is not None else sql.SQL("")
    )
    row = conn.execute(stmt, list(params)).fetchone()
    assert row is not None
    digest = hashlib.sha256(f"{row[1]}:{row[2]}".encode()).hexdigest()[:32]
    return TableFingerprint(table, int(row[0]), digest)


def list_tables(conn: psycopg.Connection[Any], schemas: Sequence[str] | None = None) -> list[str]:
    """User tables (``schema.table``), partitions counted through their parent, system schemas excluded."""
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
          AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]))
        ORDER BY 1
        """,
        {"schemas": list(schemas) if schemas is not None else None},
    ).fetchall()
    return [r[0] for r in rows]


def resolve_table(conn: psycopg.Connection[Any], name: str) -> str | None:
    """``schema.table`` for ``name`` as the search path resolves it, or None when there is no such table."""
    row = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(%s)",
        [name],
    ).fetchone()
    return str(row[0]) if row else None


def table_fingerprints(
    info: ConnectionInfo,
    tables: Sequence[str] | None = None,
    *,
    schemas: Sequence[str] | None = None,
    time_column: str | None = None,
    as_of: datetime | None = None,
    missing_ok: bool = False,
) -> dict[str, TableFingerprint]:
    """Fingerprint ``tables`` (default: every user table) at ``info``, keyed by ``schema.table``.

    With ``time_column`` and ``as_of``, only rows whose ``time_column <= as_of`` count — the source's content
    "at a point in time" for tables whose rows carry their write time. A named table that does not exist raises
    InvalidParameterError unless ``missing_ok`` (then it is left out).
    """
    if (time_column is None) != (as_of is None):
        raise InvalidParameterError("as_of", as_of, "give both time_column and as_of, or neither")
    with connect(info) as conn:
        _canonical(conn)
        if tables is None:
            names = list_tables(conn, schemas)
        else:
            names = []
            for name in tables:
                resolved = resolve_table(conn, name)
                if resolved is None and not missing_ok:
                    raise InvalidParameterError("tables", name, f"no such table at {info.endpoint or 'endpoint'}")
                if resolved is not None:
                    names.append(resolved)
        where = None
        if time_column is not None:
            where = sql.SQL("t.{} <= %s").format(sql.Identifier(time_column))
        return {
            name: _fingerprint(conn, name, where=where, params=[as_of] if where is not None else []) for name in names
        }


@dataclass(frozen=True)
class TableComparison:
    table: str
    source_rows: int | None
    restored_rows: int | None
    source_checksum: str | None
    restored_checksum: str | None

    @property
    def status(self) -> str:
        if self.restored_rows is None:
            return "missing in restore"
        if self.source_rows is None:
            return "only in restore"
        if self.source_rows != self.restored_rows:
            return "row count differs"
        if self.source_checksum != self.restored_checksum:
            return "content differs"
        return "match"


@dataclass(repr=False)
class RestoreReport(CheckResult):
    """Per-table row counts and checksums of a source vs a restored cluster."""

    title = "restore verification"

    tables: list[TableComparison]
    source: str = ""
    restored: str = ""
    as_of: datetime | None = None

    @property
    def mismatched(self) -> list[TableComparison]:
        return [t for t in self.tables if t.status != "match"]

    def problems(self) -> list[str]:
        if not self.tables:
            return ["no tables compared"]
        return [
            f"{t.table}: {t.status} (source {t.source_rows} rows, restored {t.restored_rows} rows)"
            for t in self.mismatched
        ]

    def limits(self) -> str:
        rows = sum(t.source_rows or 0 for t in self.tables)
        return f"{len(self.tables)} tables, {rows:,} rows: row counts and checksums identical"

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "restored": self.restored,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "tables_compared": len(self.tables),
            "tables_matching": len(self.tables) - len(self.mismatched),
            "source_rows_total": sum(t.source_rows or 0 for t in self.tables),
            "restored_rows_total": sum(t.restored_rows or 0 for t in self.tables),
            "mismatches": [{"table": t.table, "status": t.status} for t in self.mismatched],
        }

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        return (
            ["table", "source rows", "restored rows", "source checksum", "restored checksum", "status"],
            [
                [t.table, t.source_rows, t.restored_rows, t.source_checksum, t.restored_checksum, t.status]
                for t in self.tables
            ],
        )


def verify_restore(
    source: ConnectionInfo | Mapping[str, TableFingerprint],
    restored: ConnectionInfo,
    tables: Sequence[str] | None = None,
    *,
    schemas: Sequence[str] | None = None,
    time_column: str | None = None,
    as_of: datetime | None = None,
) -> RestoreReport:
    """Compare row counts and checksums table by table. ``source`` is a live endpoint or fingerprints taken
    earlier (e.g. right before the snapshot). Tables present on one side only are reported."""
    if isinstance(source, ConnectionInfo):
        expected = table_fingerprints(source, tables, schemas=schemas, time_column=time_column, as_of=as_of)
        source_label = source.endpoint or "source"
    else:
        expected = dict(source)
        source_label = "recorded fingerprints"
    with connect(restored) as conn:
        extra_tables = set(list_tables(conn, schemas)) - set(expected) if tables is None else set()
    got = table_fingerprints(
        restored, [*expected, *extra_tables], time_column=time_column, as_of=as_of, missing_ok=True
    )
    rows = []
    for name in sorted(set(expected) | extra_tables):
        e, g = expected.get(name), got.get(name)
        rows.append(
            TableComparison(
                name,
                e.rows if e else None,
                g.rows if g else None,
                e.checksum if e else None,
                g.checksum if g else None,
            )
        )
    return RestoreReport(rows, source=source_label, restored=restored.endpoint or "restored", as_of=as_of)


# -- PITR ---------------------------------------------------------------------------------------------------------
@dataclass
class SeededDataset:
    """What :func:`seed_pitr_dataset` wrote: the cut-off ``T`` and the expected content on either side of it."""

    table: str
    cutoff: datetime
    before: TableFingerprint  # rows committed before T: must be in a restore to T
    after: TableFingerprint  # rows written after T: must not be
    before_ids: tuple[int, int]  # inclusive id range
    after_ids: tuple[int, int]
    last_commit_before: datetime
    first_write_after: datetime
    time_column: str = "written_at"
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "cutoff": self.cutoff.isoformat(),
            "rows_before": self.before.rows,
            "checksum_before": self.before.checksum,
            "rows_after": self.after.rows,
            "last_commit_before": self.last_commit_before.isoformat(),
            "first_write_after": self.first_write_after.isoformat(),
        }


def _write_batches(
    conn: psycopg.Connection[Any], table: sql.Composable, first_id: int, batches: int, rows: int, phase: str
) -> int:
    next_id = first_id
    for batch in range(batches):
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (id, phase, batch, payload, written_at) "
                    "SELECT g, %s, %s, md5(g::text) || repeat('x', 64), clock_timestamp() "
                    "FROM generate_series(%s::bigint, %s::bigint) AS g"
                ).format(table),
                [phase, batch, next_id, next_id + rows - 1],
            )
        next_id += rows
    return next_id


def seed_pitr_dataset(
    info: ConnectionInfo,
    *,
    table: str = "aurora_kit_pitr_seed",
    batches_before: int = 5,
    batches_after: int = 5,
    rows_per_batch: int = 200,
    gap_s: float = 1.0,
    align_to_second: bool = True,
) -> SeededDataset:
    """Write a known, time-stamped dataset on the writer around a cut-off ``T`` and return ``T`` + expectations.

    Each batch is its own transaction; rows carry ``written_at = clock_timestamp()``. ``T`` lies at least
    ``gap_s/2`` after the last "before" batch committed and ``gap_s/2`` before the first "after" batch starts (by
    the writer's clock), so commit times never straddle it. ``align_to_second`` rounds ``T`` up to a whole second,
    for restore APIs that take whole seconds. Restore to ``T`` and check with :func:`verify_pitr`.

    ``table`` is dropped and recreated: the dataset is exactly what this call wrote (ids ``1…``), so the "before"
    fingerprint and the id range :func:`verify_pitr` checks describe the same rows.
    """
    if batches_before < 1 or rows_per_batch < 1:
        raise InvalidParameterError("batches_before/rows_per_batch", (batches_before, rows_per_batch), "must be ≥ 1")
    ident = _qualified(table)
    with connect(info) as conn:
        _canonical(conn)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint PRIMARY KEY, phase text NOT NULL, batch int NOT NULL, "
                "payload text NOT NULL, written_at timestamptz NOT NULL)"
            ).format(ident)
        )
        first = 1
        mid = _write_batches(conn, ident, first, batches_before, rows_per_batch, "before")
        last_before = conn.execute(sql.SQL("SELECT max(written_at) FROM {}").format(ident)).fetchone()
        # T: gap/2 after the last "before" commit (rounded up to a whole second when asked); the "after" batches
        # start only once the server clock is gap/2 past T
        cut = conn.execute(
            "SELECT CASE WHEN %(align)s THEN date_trunc('second', t) + interval '1 second' ELSE t END "
            "FROM (SELECT clock_timestamp() + make_interval(secs => %(half)s) AS t) AS s",
            {"align": align_to_second, "half": gap_s / 2},
        ).fetchone()
        assert cut is not None
        assert last_before is not None
        cutoff: datetime = cut[0]
        while True:
            row = conn.execute("SELECT extract(epoch FROM %s - clock_timestamp())::float8", [cutoff]).fetchone()
            wait = (float(row[0]) if row else 0.0) + gap_s / 2
            if wait <= 0:
                break
            time.sleep(wait)
        end = _write_batches(conn, ident, mid, batches_after, rows_per_batch, "after")
        before = _fingerprint(conn, table, where=sql.SQL("t.written_at <= %s"), params=[cutoff])
        after = _fingerprint(conn, table, where=sql.SQL("t.written_at > %s"), params=[cutoff])
        first_after = conn.execute(
            sql.SQL("SELECT min(written_at) FROM {} WHERE written_at > %s").format(ident), [cutoff]
        ).fetchone()
    return SeededDataset(
        table=table,
        cutoff=cutoff,
        before=before,
        after=after,
        before_ids=(first, mid - 1),
        after_ids=(mid, end - 1),
        last_commit_before=last_before[0],
        first_write_after=first_after[0] if first_after and first_after[0] else cutoff,
    )


@dataclass(repr=False)
class PitrReport(CheckResult):
    """Is a restore to ``T`` exact: every row committed by ``T`` present and unchanged, nothing after ``T``."""

    title = "point-in-time restore exactness"

    table: str
    cutoff: datetime
    expected: TableFingerprint
    restored: TableFingerprint | None
    rows_after_cutoff: int
    missing_count: int
    missing_ids: list[int]
    extra_count: int
    extra_ids: list[int]
    restored_endpoint: str = ""

    def problems(self) -> list[str]:
        if self.restored is None:
            return [f"table {self.table} is missing from the restored cluster"]
        out = []
        if self.missing_count:
            out.append(f"{self.missing_count} rows committed before T are missing (e.g. ids {self.missing_ids[:10]})")
        if self.rows_after_cutoff:
            out.append(f"{self.rows_after_cutoff} rows written after T are present")
        if self.extra_count:
            out.append(f"{self.extra_count} rows not written before T are present (e.g. ids {self.extra_ids[:10]})")
        if not self.expected.matches(self.restored) and not out:
            out.append(
                f"content differs: expected {self.expected.rows} rows / {self.expected.checksum}, "
                f"restored {self.restored.rows} rows / {self.restored.checksum}"
            )
        elif not self.expected.matches(self.restored):
            out.append("checksum differs")
        return out

    def limits(self) -> str:
        return (
            f"{self.expected.rows} rows committed by T = {self.cutoff.isoformat(timespec='milliseconds')} present and "
            "unchanged, none written after T"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "cutoff": self.cutoff.isoformat(),
            "restored_endpoint": self.restored_endpoint,
            "expected_rows": self.expected.rows,
            "restored_rows": self.restored.rows if self.restored else None,
            "expected_checksum": self.expected.checksum,
            "restored_checksum": self.restored.checksum if self.restored else None,
            "rows_after_cutoff": self.rows_after_cutoff,
            "missing_count": self.missing_count,
            "extra_count": self.extra_count,
            "missing_ids": self.missing_ids,
            "extra_ids": self.extra_ids,
        }


def verify_pitr(dataset: SeededDataset, restored: ConnectionInfo, *, sample: int = 20) -> PitrReport:
    """Check a cluster restored to ``dataset.cutoff``: the whole table must equal the "before" rows exactly."""
    ident = _qualified(dataset.table)
    lo, hi = dataset.before_ids
    with connect(restored) as conn:
        _canonical(conn)
        if resolve_table(conn, dataset.table) is None:
            return PitrReport(dataset.table, dataset.cutoff, dataset.before, None, 0, 0, [], 0, [], restored.endpoint)
        got = _fingerprint(conn, dataset.table)
        after = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE written_at > %s").format(ident), [dataset.cutoff]
        ).fetchone()
        missing = conn.execute(
            sql.SQL(
                "SELECT g FROM generate_series(%s::bigint, %s::bigint) AS g "
                "WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE t.id = g) ORDER BY g"
            ).format(ident),
            [lo, hi],
        ).fetchall()
        extra = conn.execute(
            sql.SQL("SELECT id FROM {} WHERE id NOT BETWEEN %s AND %s ORDER BY id").format(ident), [lo, hi]
        ).fetchall()
    return PitrReport(
        table=dataset.table,
        cutoff=dataset.cutoff,
        expected=dataset.before,
        restored=got,
        rows_after_cutoff=int(after[0]) if after else 0,
        missing_count=len(missing),
        missing_ids=[int(r[0]) for r in missing[:sample]],
        extra_count=len(extra),
        extra_ids=[int(r[0]) for r in extra[:sample]],
        restored_endpoint=restored.endpoint,
    )
