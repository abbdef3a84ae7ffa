"""Fixtures for tests against real local clusters (the ``local`` backend).

* ``local_backend`` (session): a :class:`LocalBackend` on a fresh root under /tmp (traversable by the PostgreSQL
  system user). At session end every cluster left is deleted and no postmaster of that root may remain.
* ``fresh_local_root`` (function): a root of its own for one test (runbooks, the CLI), cleaned up the same way.
* ``local_cluster`` (session): a :class:`Cluster` with a writer + 2 readers, deletion protection off, shared by
  the tests that do not change its topology. Reach it with
  ``info = local_backend.connection_info(local_cluster.db_cluster_identifier, "cluster" | "reader" | <id>)`` and
  ``psycopg.connect(info.conninfo, **info.kwargs())``. Tests that fail over, reboot or delete must use
  ``local_cluster_factory`` instead.
* ``local_cluster_factory`` (function): ``make(readers=2, **spec_overrides) -> Cluster``; each cluster it made is
  deleted when the test ends.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.specs import ClusterSpec

_counter = itertools.count(1)


def postmasters_under(root: Path) -> list[psutil.Process]:
    """PostgreSQL server processes whose command line names ``root`` (a leak check, never a way to stop them)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and cmd[0].endswith("postgres") and any(str(root) in part for part in cmd):
            found.append(proc)
    return found


def _require_binaries() -> None:
    try:
        from aurora_kit.backends.local.binaries import find_binaries

        find_binaries(16)
    except Exception as exc:  # pragma: no cover - environment without the binaries
        pytest.skip(f"local backend unavailable: {exc}")


def _new_root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)  # the PostgreSQL system user must traverse it
    return root


def clean_up_root(root: Path) -> None:
    """Delete every cluster left under ``root`` through the backend, then assert that no postmaster of that root
    survived (any that did are killed first, so a failing test leaks no server) and remove the root."""
    from aurora_kit.backends.local import LocalBackend

    backend = LocalBackend(root_dir=root)
    try:
        for cluster in backend.list_clusters():
            backend.delete_cluster(
                cluster.db_cluster_identifier,
                final_snapshot_id=None,
                skip_final_snapshot=True,
                lift_deletion_protection=True,
            )
    finally:
        leftovers = postmasters_under(root)
        for proc in leftovers:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    assert not leftovers, f"postmasters left running under {root}: {[p.pid for p in leftovers]}"


@pytest.fixture(scope="session")
def local_root() -> Iterator[Path]:
    _require_binaries()
    root = _new_root("aurora_kit_test_")
    yield root
    clean_up_root(root)


@pytest.fixture(scope="session")
def local_backend(local_root: Path) -> Any:
    from aurora_kit.backends.local import LocalBackend

    return LocalBackend(root_dir=local_root)


@pytest.fixture
def fresh_local_root() -> Iterator[Path]:
    """A root of its own for one test (runbooks, the CLI); afterwards cleaned up like the session's."""
    _require_binaries()
    root = _new_root("aurora_kit_fresh_")
    yield root
    clean_up_root(root)


def unique_id(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid() % 1000}-{next(_counter)}"


@pytest.fixture(scope="session")
def local_cluster(local_backend: Any) -> Iterator[Cluster]:
    spec = ClusterSpec.with_readers(unique_id("shared"), 2, deletion_protection=False)
    cluster: Cluster = local_backend.create_cluster(spec)
    yield cluster
    with contextlib.suppress(LookupError):
        local_backend.delete_cluster(cluster.db_cluster_identifier, final_snapshot_id=None, skip_final_snapshot=True)


@pytest.fixture
def local_cluster_factory(local_backend: Any) -> Iterator[Callable[..., Cluster]]:
    made: list[str] = []

    def make(readers: int = 2, *, prefix: str = "f", **overrides: Any) -> Cluster:
        overrides.setdefault("deletion_protection", False)
        spec = ClusterSpec.with_readers(unique_id(prefix), readers, **overrides)
        made.append(spec.cluster_id)
        cluster: Cluster = local_backend.create_cluster(spec)
        return cluster

    yield make
    existing = {c.db_cluster_identifier for c in local_backend.list_clusters()}
    for cid in made:
        if cid in existing:
            local_backend.delete_cluster(
                cid, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True
            )


class ContinuousWriter:
    """A client inserting 1, 2, 3... through an endpoint as fast as it can, reconnecting after errors.

    ``acked`` holds (id, monotonic time) of every insert whose commit was acknowledged; ``gap_s`` is the largest
    pause between two acknowledgements (the outage a client saw: RTO).
    """

    def __init__(self, backend: Any, cluster_id: str, table: str = "failover_probe") -> None:
        self.info = backend.connection_info(cluster_id, "cluster")
        self.table = table
        self.acked: list[tuple[int, float]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        with psycopg.connect(self.info.conninfo, autocommit=True, **self.info.kwargs()) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
            row = conn.execute(f"SELECT COALESCE(max(id), 0) FROM {table}").fetchone()
            self._next = int(row[0]) + 1 if row else 1

    def __enter__(self) -> ContinuousWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_acks(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.acked)
        while len(self.acked) < start + count:
            assert time.monotonic() < deadline, f"writer made no progress ({self.errors} errors)"
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the writer thread did not end (a commit hung?)"

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.info.conninfo, autocommit=True, **self.info.kwargs())
                conn.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (self._next,))
                self.acked.append((self._next, time.monotonic()))
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            self._next += 1
        if conn is not None:
            conn.close()

    @property
    def gap_s(self) -> float:
        times = [t for _, t in self.acked]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def missing(self, backend: Any, cluster_id: str) -> list[int]:
        """Acknowledged ids absent on the cluster endpoint now (lost commits)."""
        with psycopg.connect(self.info.conninfo, autocommit=True, **self.info.kwargs()) as conn:
            present = {r[0] for r in conn.execute(f"SELECT id FROM {self.table}").fetchall()}
        return [i for i, _ in self.acked if i not in present]
