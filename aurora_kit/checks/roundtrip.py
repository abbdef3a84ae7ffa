"""Write on the writer, read back through the reader endpoint: the rows arrive, identical, within a deadline."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from aurora_kit.backends.base import ConnectionInfo
from aurora_kit.checks._probe_tables import SCHEMA, ensure_probe_tables
from aurora_kit.checks.common import connect
from aurora_kit.checks.result import CheckResult
from aurora_kit.errors import WaitTimeoutError
from aurora_kit.polling import wait_for

_CONTENT = (
    "SELECT count(*), md5(coalesce(string_agg(id::text || ':' || payload, ',' ORDER BY id), '')) "
    f"FROM {SCHEMA}.rw_check WHERE tag = %s"
)


@dataclass(repr=False)
class RoundTripReport(CheckResult):
    """Rows written on the writer read back, identical, through the reader endpoint."""

    title = "write on the writer, read back on the reader endpoint"

    rows: int
    writer_checksum: str
    reader_checksum: str | None
    reader_rows: int
    visible_after_s: float | None  # None: not all rows arrived before the deadline
    deadline_s: float
    read_by: str

    def problems(self) -> list[str]:
        if self.visible_after_s is None:
            return [
                f"only {self.reader_rows} of {self.rows} rows visible through the reader endpoint "
                f"within {self.deadline_s:g} s"
            ]
        if self.reader_checksum != self.writer_checksum:
            return [f"content differs: writer {self.writer_checksum}, reader {self.reader_checksum}"]
        return []

    def limits(self) -> str:
        return f"{self.rows} rows identical within {self.deadline_s:g} s"

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "reader_rows": self.reader_rows,
            "checksum": self.writer_checksum,
            "reader_checksum": self.reader_checksum,
            "visible_after_s": None if self.visible_after_s is None else round(self.visible_after_s, 4),
            "read_by": self.read_by,
        }


def write_read_back(
    writer: ConnectionInfo, reader: ConnectionInfo, *, rows: int, deadline_s: float, connect_timeout: float = 5.0
) -> RoundTripReport:
    """Insert ``rows`` tagged rows on the writer; poll the reader endpoint until all are there (or ``deadline_s``)
    and compare an md5 of the content; the rows are deleted afterwards."""
    tag = uuid.uuid4().hex[:12]
    with connect(writer, connect_timeout=connect_timeout) as w:
        ensure_probe_tables(w)
        w.execute(
            f"INSERT INTO {SCHEMA}.rw_check SELECT %s, g, md5(g::text) FROM generate_series(1, %s) g", [tag, rows]
        )
        written = time.perf_counter()
        wrow = w.execute(_CONTENT, [tag]).fetchone()
    assert wrow is not None
    try:
        with connect(reader, connect_timeout=connect_timeout) as r:
            by = r.execute("SELECT aurora_db_instance_identifier()").fetchone()

            def probe() -> tuple[int, str]:
                try:
                    row = r.execute(_CONTENT, [tag]).fetchone()
                except psycopg.errors.UndefinedTable:  # the table itself has not replayed yet
                    return 0, ""
                assert row is not None
                return int(row[0]), str(row[1])

            try:
                got = wait_for(
                    "rows visible on the reader endpoint",
                    probe,
                    lambda s: s[0] >= rows,
                    timeout=deadline_s,
                    initial_delay=0.002,
                    max_delay=0.1,
                )
                visible: float | None = time.perf_counter() - written
            except WaitTimeoutError:
                got, visible = probe(), None
    finally:
        with connect(writer, connect_timeout=connect_timeout) as w:
            w.execute(f"DELETE FROM {SCHEMA}.rw_check WHERE tag = %s", [tag])
    return RoundTripReport(rows, str(wrow[1]), got[1] or None, got[0], visible, deadline_s, str(by[0]) if by else "?")
