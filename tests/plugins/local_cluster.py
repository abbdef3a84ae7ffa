"""Fixtures for tests against real local clusters (the ``local`` backend).

* ``local_backend`` (session): a :class:`LocalBackend` on a fresh root under /tmp (traversable by the PostgreSQL
  system user). At session end every cluster left is deleted and no postmaster of that root may remain.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from aurora_kit.backends.base import Cluster
from aurora_kit.specs import ClusterSpec

_counter = itertools.count(1)


def _postmasters_under(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and cmd[0].endswith("postgres") and any(str(root) in part for part in cmd):
            found.append(proc)
    return found


def _delete_everything(backend: Any) -> None:
    for cluster in backend.list_clusters():
        backend.delete_cluster(
            cluster.db_cluster_identifier,
            final_snapshot_id=None,
            skip_final_snapshot=True,
            lift_deletion_protection=True,
        )


@pytest.fixture(scope="session")
def local_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="aurora_kit_test_", dir="/tmp"))
    root.chmod(0o755)  # the PostgreSQL system user must traverse it
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def local_backend(local_root: Path) -> Iterator[Any]:
    try:
        from aurora_kit.backends.local import LocalBackend
        from aurora_kit.backends.local.binaries import find_binaries

        find_binaries(16)
    except Exception as exc:  # pragma: no cover - environment without the binaries
        pytest.skip(f"local backend unavailable: {exc}")
    backend = LocalBackend(root_dir=local_root)
    yield backend
    _delete_everything(backend)
    leftovers = _postmasters_under(local_root)
    for proc in leftovers:  # do not leak servers even when the assertion fails
        proc.kill()
    assert not leftovers, f"postmasters left running under {local_root}: {[p.pid for p in leftovers]}"


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
    existing = {c for c in local_backend.store.read()["clusters"]}
    for cid in made:
        if cid in existing:
            local_backend.delete_cluster(
                cid, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True
            )
