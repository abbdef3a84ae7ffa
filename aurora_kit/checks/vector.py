"""pgvector proof: the extension is installed at the wanted version, an ANN index is used, and it is accurate.

Recall@k of the index (HNSW or IVFFlat) is measured against exact search run by PostgreSQL itself with index
scans disabled (``SET LOCAL enable_indexscan = off`` inside a transaction), over a query set drawn from the same
distribution as the data; latency and QPS are measured for both so the speed-up is a measured figure. EXPLAIN of
the ANN query must show the index (otherwise the "index" figures would be exact search in disguise), and EXPLAIN
of the exact query must not (otherwise the ground truth would be approximate).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql

from aurora_kit.backends.base import ConnectionInfo
from aurora_kit.checks.common import connect, latency_stats
from aurora_kit.checks.result import CheckResult
from aurora_kit.errors import InvalidParameterError, VerificationError

IndexKind = Literal["hnsw", "ivfflat"]
Metric = Literal["l2", "cosine", "ip"]

_OPERATORS = {"l2": ("<->", "vector_l2_ops"), "cosine": ("<=>", "vector_cosine_ops"), "ip": ("<#>", "vector_ip_ops")}
_VERSION = re.compile(r"^\d+(\.\d+)*$")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


# -- extension ------------------------------------------------------------------------------------------------
@dataclass(repr=False)
class ExtensionReport(CheckResult):
    """Installed vs available versions of an extension, and what :func:`ensure_vector_extension` did."""

    title = "pgvector extension"

    extension: str
    installed_before: str | None
    installed: str | None
    default_version: str | None
    available_versions: list[str]
    action: str  # created | updated | unchanged | none (status only)
    wanted: str | None = None

    @property
    def latest_available(self) -> str | None:
        return max(self.available_versions, key=_version_key) if self.available_versions else None

    def problems(self) -> list[str]:
        out = []
        if self.installed is None:
            out.append(f"extension {self.extension} is not installed")
        elif self.wanted is not None and self.installed != self.wanted:
            out.append(f"{self.extension} is at {self.installed}, wanted {self.wanted}")
        return out

    def limits(self) -> str:
        return f"{self.extension} {self.installed} installed ({self.action}), wanted {self.wanted or 'any version'}"

    def summary(self) -> dict[str, Any]:
        return {
            "extension": self.extension,
            "installed_before": self.installed_before,
            "installed": self.installed,
            "default_version": self.default_version,
            "latest_available": self.latest_available,
            "wanted": self.wanted,
            "action": self.action,
            "available_versions": list(self.available_versions),
        }


def _extension_state(conn: psycopg.Connection[Any], name: str) -> tuple[str | None, str | None, list[str]]:
    installed = conn.execute("SELECT extversion FROM pg_extension WHERE extname = %s", [name]).fetchone()
    default = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = %s", [name]).fetchone()
    versions = [
        r[0] for r in conn.execute("SELECT version FROM pg_available_extension_versions WHERE name = %s", [name])
    ]
    return (
        installed[0] if installed else None,
        default[0] if default else None,
        sorted(versions, key=_version_key),
    )


def vector_extension_status(info: ConnectionInfo, *, extension: str = "vector") -> ExtensionReport:
    """Read-only: installed, default and available versions of pgvector in ``info``'s database."""
    with connect(info) as conn:
        installed, default, versions = _extension_state(conn, extension)
    return ExtensionReport(extension, installed, installed, default, versions, action="none")


def ensure_vector_extension(
    info: ConnectionInfo, *, version: str | None = None, extension: str = "vector"
) -> ExtensionReport:
    """``CREATE EXTENSION`` if missing, else ``ALTER EXTENSION ... UPDATE [TO version]``; report before/after.

    ``version=None`` means the server's default version. A version the server cannot install or update to from
    the installed one raises InvalidParameterError before anything changes. Connect to the writer (cluster
    endpoint); the extension is per database.
    """
    if version is not None and not _VERSION.match(version):
        raise InvalidParameterError("version", version, "expected a dotted version number like 0.8.0")
    with connect(info) as conn:
        before, default, versions = _extension_state(conn, extension)
        if not versions:
            raise InvalidParameterError("extension", extension, "not available on this server")
        targets = set(versions)
        if before is not None:  # an installed extension can also go wherever an update path leads
            paths = conn.execute(
                "SELECT target FROM pg_extension_update_paths(%s) WHERE source = %s AND path IS NOT NULL",
                [extension, before],
            )
            targets |= {r[0] for r in paths} | {before}
        if version is not None and version not in targets:
            offered = ", ".join(sorted(targets, key=_version_key))
            raise InvalidParameterError("version", version, f"{extension} offers {offered} from here")
        target = version or default
        ident = sql.Identifier(extension)
        if before is None:
            stmt = sql.SQL("CREATE EXTENSION {}").format(ident)
            if version is not None:
                stmt = sql.SQL("CREATE EXTENSION {} VERSION {}").format(ident, sql.Literal(version))
            conn.execute(stmt)
            action = "created"
        elif before != target:
            stmt = sql.SQL("ALTER EXTENSION {} UPDATE").format(ident)
            if version is not None:
                stmt = sql.SQL("ALTER EXTENSION {} UPDATE TO {}").format(ident, sql.Literal(version))
            conn.execute(stmt)
            action = "updated"
        else:
            action = "unchanged"
        after, default, versions = _extension_state(conn, extension)
    return ExtensionReport(extension, before, after, default, versions, action=action, wanted=target)


# -- dataset ----------------------------------------------------------------------------------------------------
def make_vectors(n: int, dim: int, *, clusters: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` float32 vectors from a mixture of Gaussians (embedding-like: clustered, not uniform noise)."""
    if n < 1 or dim < 1:
        raise InvalidParameterError("n/dim", (n, dim), "must be positive")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, size=n)
    points = centres[labels] + rng.normal(0.0, 0.35, size=(n, dim)).astype(np.float32)
    return points.astype(np.float32)


def load_vectors(info: ConnectionInfo, table: str, vectors: np.ndarray, *, replace: bool = True) -> float:
    """Create ``table (id bigint primary key, embedding vector(dim))`` and COPY ``vectors`` in (binary COPY).

    Returns the load time in seconds (COPY + primary key, committed). Needs the extension installed.
    """
    from pgvector.psycopg import register_vector

    dim = int(vectors.shape[1])
    ident = sql.Identifier(table)
    with connect(info, autocommit=False) as conn:
        register_vector(conn)
        started = time.perf_counter()
        if replace:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigint NOT NULL, embedding vector({}) NOT NULL)").format(
                ident, sql.Literal(dim)
            )
        )
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} (id, embedding) FROM STDIN WITH (FORMAT BINARY)").format(ident)) as copy,
        ):
            copy.set_types(["int8", "vector"])
            for i, vec in enumerate(vectors):
                copy.write_row((i, vec))
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(ident))
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute(sql.SQL("ANALYZE {}").format(ident))
        conn.commit()
    return elapsed


def create_vector_index(
    info: ConnectionInfo,
    table: str,
    *,
    kind: IndexKind = "hnsw",
    metric: Metric = "l2",
    m: int = 16,
    ef_construction: int = 64,
    lists: int | None = None,
    maintenance_work_mem: str = "512MB",
    name: str | None = None,
) -> tuple[str, float]:
    """Build an HNSW (``m``, ``ef_construction``) or IVFFlat (``lists``) index; returns (index name, seconds)."""
    if kind not in ("hnsw", "ivfflat"):
        raise InvalidParameterError("kind", kind, "expected hnsw or ivfflat")
    opclass = _OPERATORS[metric][1]
    name = name or f"{table}_{kind}_{metric}_idx"
    with connect(info) as conn:
        if lists is None:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            lists = max(1, int(row[0] if row else 0) // 1000)
        options = (
            sql.SQL("m = {}, ef_construction = {}").format(sql.Literal(m), sql.Literal(ef_construction))
            if kind == "hnsw"
            else sql.SQL("lists = {}").format(sql.Literal(lists))
        )
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", [maintenance_work_mem])
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
        started = time.perf_counter()
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} USING {} (embedding {}) WITH ({})").format(
                sql.Identifier(name), sql.Identifier(table), sql.SQL(kind), sql.SQL(opclass), options
            )
        )
        elapsed = time.perf_counter() - started
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return name, elapsed


# -- measurement ------------------------------------------------------------------------------------------------
@dataclass
class RecallPoint:
    """One operating point of the index: the search parameter, its recall@k, latency and QPS."""

    setting: str  # hnsw.ef_search | ivfflat.probes
    value: int
    recall: float
    p50_ms: float
    p99_ms: float
    qps: float
    speedup: float  # exact mean latency / index mean latency


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


def _query_sql(table: str, metric: Metric) -> sql.Composed:
    op = _OPERATORS[metric][0]
    return sql.SQL("SELECT id FROM {} ORDER BY embedding {} %s::vector LIMIT %s").format(
        sql.Identifier(table), sql.SQL(op)
    )


def _vector_literal(vec: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in vec) + "]"


def explain_index_usage(
    conn: psycopg.Connection[Any], table: str, query: np.ndarray, k: int, *, metric: Metric = "l2"
) -> tuple[list[str], str]:
    """EXPLAIN the k-NN query as the planner would run it: (indexes scanned, plan as indented text)."""
    op = _OPERATORS[metric][0]
    stmt = sql.SQL("EXPLAIN (FORMAT JSON) SELECT id FROM {} ORDER BY embedding {} {}::vector LIMIT {}").format(
        sql.Identifier(table), sql.SQL(op), sql.Literal(_vector_literal(query)), sql.Literal(k)
    )
    row = conn.execute(stmt).fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    plan = doc[0]["Plan"]
    nodes = _plan_nodes(plan)
    used = [str(n["Index Name"]) for n in nodes if "Index Name" in n]
    text_rows = conn.execute(
        sql.SQL("EXPLAIN SELECT id FROM {} ORDER BY embedding {} {}::vector LIMIT {}").format(
            sql.Identifier(table), sql.SQL(op), sql.Literal(_vector_literal(query)), sql.Literal(k)
        )
    ).fetchall()
    return used, "\n".join(r[0] for r in text_rows)


def _run_queries(
    conn: psycopg.Connection[Any], table: str, queries: np.ndarray, k: int, metric: Metric
) -> tuple[list[list[int]], list[float], float]:
    stmt = _query_sql(table, metric)
    results: list[list[int]] = []
    timings: list[float] = []
    started = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        rows = conn.execute(stmt, [_vector_literal(q), k], prepare=True).fetchall()
        timings.append(time.perf_counter() - t0)
        results.append([int(r[0]) for r in rows])
    return results, timings, time.perf_counter() - started


@dataclass(repr=False)
class VectorProofReport(CheckResult):
    """Recall@k, latency and QPS of an ANN index vs exact search, with the EXPLAIN evidence."""

    title = "pgvector index proof"

    table: str
    rows: int
    dim: int
    k: int
    n_queries: int
    metric: str
    index_kind: str
    index_name: str
    index_params: dict[str, Any]
    build_s: float | None
    load_s: float | None
    exact_p50_ms: float
    exact_p99_ms: float
    exact_qps: float
    points: list[RecallPoint]
    indexes_used: list[str]
    plan: str
    exact_indexes_used: list[str]
    extension_version: str | None = None
    min_recall: float = 0.95
    min_speedup: float | None = None
    exact_plan: str = ""

    @property
    def index_used(self) -> bool:
        return self.index_name in self.indexes_used

    def best_point(self, min_recall: float | None = None) -> RecallPoint | None:
        """The fastest operating point whose recall reaches ``min_recall`` (None if none does)."""
        target = self.min_recall if min_recall is None else min_recall
        good = [p for p in self.points if p.recall >= target]
        return max(good, key=lambda p: p.qps) if good else None

    def problems(self, min_recall: float | None = None, min_speedup: float | None = None) -> list[str]:
        target = self.min_recall if min_recall is None else min_recall
        speed = self.min_speedup if min_speedup is None else min_speedup
        out = []
        if not self.index_used:
            out.append(
                f"EXPLAIN does not use index {self.index_name!r} (indexes in plan: {self.indexes_used or 'none'})"
            )
        if self.exact_indexes_used:
            out.append(f"the exact-search plan used an index ({self.exact_indexes_used}); ground truth invalid")
        best = max((p.recall for p in self.points), default=0.0)
        if best < target:
            out.append(f"recall@{self.k} at best {best:.3f} < target {target}")
        if speed is not None:
            both = [p for p in self.points if p.recall >= target and p.speedup >= speed]
            if not both:
                fastest = max((p.speedup for p in self.points if p.recall >= target), default=0.0)
                out.append(
                    f"no operating point with recall ≥ {target} reaches speed-up ≥ {speed}× (best {fastest:.1f}×)"
                )
        return out

    def assert_ok(self, min_recall: float | None = None, min_speedup: float | None = None) -> VectorProofReport:
        self._raise_if(self.problems(min_recall, min_speedup))
        return self

    def limits(self) -> str:
        best = self.best_point()
        got = f"recall@{self.k} {best.recall:.3f}, {best.speedup:.1f}× exact" if best else "no point reaches the target"
        speed = f", speed-up ≥ {self.min_speedup:g}×" if self.min_speedup is not None else ""
        return f"{got}; target recall ≥ {self.min_recall:g}{speed}, index used"

    def raise_for_index_unused(self) -> None:
        if not self.index_used:
            raise VerificationError(
                f"EXPLAIN does not use index {self.index_name!r}", plan=self.plan, indexes_used=self.indexes_used
            )

    def summary(self) -> dict[str, Any]:
        best = self.best_point()
        return {
            "table": self.table,
            "rows": self.rows,
            "dim": self.dim,
            "k": self.k,
            "queries": self.n_queries,
            "metric": self.metric,
            "index": f"{self.index_kind} {self.index_name}",
            "index_params": dict(self.index_params),
            "index_used_in_explain": self.index_used,
            "extension_version": self.extension_version,
            "load_s": self.load_s,
            "build_s": self.build_s,
            "exact_p50_ms": self.exact_p50_ms,
            "exact_qps": self.exact_qps,
            "target_recall": self.min_recall,
            "best_setting": f"{best.setting}={best.value}" if best else None,
            "best_recall": best.recall if best else max((p.recall for p in self.points), default=None),
            "best_qps": best.qps if best else None,
            "best_speedup": best.speedup if best else None,
            "curve": [p.__dict__ for p in self.points],
        }

    def detail_table(self) -> tuple[list[str], list[list[Any]]]:
        headers = ["setting", f"recall@{self.k}", "p50 ms", "p99 ms", "QPS", "speed-up ×"]
        rows: list[list[Any]] = [
            [f"{p.setting}={p.value}", p.recall, p.p50_ms, p.p99_ms, p.qps, p.speedup] for p in self.points
        ]
        rows.append(["exact (index scans off)", 1.0, self.exact_p50_ms, self.exact_p99_ms, self.exact_qps, 1.0])
        return headers, rows

    def plot(self, ax: Any = None) -> Any:
        """Recall@k (left axis) and QPS (right axis) against the search parameter."""
        import matplotlib.pyplot as plt

        if ax is None:
            _fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
        xs = [p.value for p in self.points]
        ax.plot(xs, [p.recall for p in self.points], marker="o", label=f"recall@{self.k}")
        ax.axhline(self.min_recall, color="grey", linestyle="--", linewidth=1, label=f"target {self.min_recall}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(self.points[0].setting if self.points else "setting")
        ax.set_ylabel(f"recall@{self.k}")
        ax.set_ylim(min([0.5, *[p.recall for p in self.points]]) - 0.02, 1.01)
        ax2 = ax.twinx()
        ax2.plot(xs, [p.qps for p in self.points], marker="s", color="tab:orange", label="QPS (index)")
        ax2.axhline(self.exact_qps, color="tab:orange", linestyle=":", linewidth=1, label="QPS (exact)")
        ax2.set_ylabel("queries / s")
        ax.set_title(f"{self.index_kind} on {self.rows:,} × {self.dim}")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize="small")
        return ax


def measure_recall(
    info: ConnectionInfo,
    table: str,
    queries: np.ndarray,
    *,
    index_name: str,
    kind: IndexKind = "hnsw",
    k: int = 10,
    metric: Metric = "l2",
    sweep: tuple[int, ...] | None = None,
    min_recall: float = 0.95,
    min_speedup: float | None = None,
) -> VectorProofReport:
    """Recall@k of the index over ``queries`` against exact search, for each value of the search parameter.

    Runs on any endpoint that can read ``table`` (a reader endpoint measures the readers' index).
    """
    setting = "hnsw.ef_search" if kind == "hnsw" else "ivfflat.probes"
    if sweep is None:
        sweep = (10, 20, 40, 80, 160, 320) if kind == "hnsw" else (1, 2, 4, 8, 16, 32)
    with connect(info) as conn:
        rows_row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        dim_row = conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'", [table]
        ).fetchone()
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        params_row = conn.execute(
            "SELECT coalesce(array_to_string(c.reloptions, ','), '') FROM pg_class c WHERE c.relname = %s",
            [index_name],
        ).fetchone()
        index_params: dict[str, Any] = dict(
            opt.split("=", 1) for opt in (params_row[0].split(",") if params_row and params_row[0] else [])
        )
        indexes_used, plan = explain_index_usage(conn, table, queries[0], k, metric=metric)

        # exact ground truth: index scans off, inside one transaction (SET LOCAL)
        conn.autocommit = False
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        exact_used, exact_plan = explain_index_usage(conn, table, queries[0], k, metric=metric)
        exact, exact_t, exact_total = _run_queries(conn, table, queries, k, metric)
        conn.rollback()
        conn.autocommit = True
        exact_stats = latency_stats(exact_t)
        exact_mean = exact_total / len(queries)

        points: list[RecallPoint] = []
        for value in sweep:
            conn.execute(sql.SQL("SET {} = {}").format(sql.SQL(setting), sql.Literal(value)))
            got, timings, total = _run_queries(conn, table, queries, k, metric)
            hits = sum(len(set(g) & set(e)) for g, e in zip(got, exact, strict=True))
            expected = sum(len(e) for e in exact)
            stats = latency_stats(timings)
            points.append(
                RecallPoint(
                    setting=setting,
                    value=value,
                    recall=hits / expected if expected else 0.0,
                    p50_ms=float(stats["p50_ms"] or 0.0),
                    p99_ms=float(stats["p99_ms"] or 0.0),
                    qps=len(queries) / total,
                    speedup=exact_mean / (total / len(queries)),
                )
            )
        conn.execute(sql.SQL("RESET {}").format(sql.SQL(setting)))
    return VectorProofReport(
        table=table,
        rows=int(rows_row[0]) if rows_row else 0,
        dim=int(dim_row[0]) if dim_row else 0,
        k=k,
        n_queries=len(queries),
        metric=metric,
        index_kind=kind,
        index_name=index_name,
        index_params=index_params,
        build_s=None,
        load_s=None,
        exact_p50_ms=float(exact_stats["p50_ms"] or 0.0),
        exact_p99_ms=float(exact_stats["p99_ms"] or 0.0),
        exact_qps=len(queries) / exact_total,
        points=points,
        indexes_used=indexes_used,
        plan=plan,
        exact_indexes_used=exact_used,
        extension_version=ext[0] if ext else None,
        min_recall=min_recall,
        min_speedup=min_speedup,
        exact_plan=exact_plan,
    )


def prove_pgvector(
    info: ConnectionInfo,
    *,
    rows: int = 5000,
    dim: int = 16,
    k: int = 10,
    queries: int = 50,
    kind: IndexKind = "hnsw",
    metric: Metric = "l2",
    m: int = 16,
    ef_construction: int = 64,
    lists: int | None = None,
    sweep: tuple[int, ...] | None = None,
    table: str = "aurora_kit_vector_proof",
    seed: int = 0,
    min_recall: float = 0.95,
    min_speedup: float | None = None,
    ensure_extension: bool = True,
    drop_after: bool = False,
) -> VectorProofReport:
    """End to end on the writer: extension → synthetic dataset (COPY binary) → index → recall/QPS sweep.

    Defaults are small (5,000 × 16) so a runbook cell finishes in seconds; the benchmark uses 100k × 128. On
    tables of a few thousand rows or less the planner may rightly prefer a sequential scan — the proof then fails
    on EXPLAIN, which is the point: it only passes when the index is what queries actually use.
    """
    if ensure_extension:
        ensure_vector_extension(info)
    data = make_vectors(rows + queries, dim, seed=seed)
    base, probe = data[:rows], data[rows:]
    load_s = load_vectors(info, table, base)
    index_name, build_s = create_vector_index(
        info, table, kind=kind, metric=metric, m=m, ef_construction=ef_construction, lists=lists
    )
    report = measure_recall(
        info,
        table,
        probe,
        index_name=index_name,
        kind=kind,
        k=k,
        metric=metric,
        sweep=sweep,
        min_recall=min_recall,
        min_speedup=min_speedup,
    )
    report.load_s = load_s
    report.build_s = build_s
    if drop_after:
        with connect(info) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    return report
