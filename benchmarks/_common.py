"""Shared scaffolding for the benchmark scripts: a throwaway local cluster and figure printing."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aurora_kit.backends.base import Cluster
from aurora_kit.specs import ClusterSpec


@contextmanager
def local_cluster(readers: int, *, prefix: str, root: str | None = None) -> Iterator[tuple[Any, Cluster]]:
    """A fresh local backend root + cluster (writer + ``readers``), deleted afterwards."""
    from aurora_kit.backends.local import LocalBackend

    own_root = root is None
    root_dir = Path(root) if root else Path(tempfile.mkdtemp(prefix=f"aurora_kit_bench_{prefix}_", dir="/tmp"))
    root_dir.chmod(0o755)
    backend = LocalBackend(root_dir=root_dir)
    cid = f"{prefix}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    cluster = backend.create_cluster(ClusterSpec.with_readers(cid, readers, deletion_protection=False))
    print(f"# cluster {cid}: writer + {readers} readers created in {time.perf_counter() - t0:.1f}s under {root_dir}")
    try:
        yield backend, cluster
    finally:
        for c in backend.list_clusters():
            backend.delete_cluster(
                c.db_cluster_identifier, final_snapshot_id=None, skip_final_snapshot=True, lift_deletion_protection=True
            )
        backend.close()
        if own_root:
            shutil.rmtree(root_dir, ignore_errors=True)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--root", help="local backend root dir (default: a fresh temp dir, removed afterwards)")
    return p


def figure(name: str, value: Any, unit: str = "") -> None:
    """One result line, grep-able: ``FIGURE name = value unit``."""
    shown = f"{value:.3f}" if isinstance(value, float) else str(value)
    print(f"FIGURE {name} = {shown} {unit}".rstrip())
