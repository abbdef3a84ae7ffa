"""Local backend pieces that need no server: state store, generated config, archive script."""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path

import pytest

from aurora_kit.backends.local.config import (
    ARCHIVE_SCRIPT,
    ClusterPaths,
    render_postgresql_conf,
    slot_name,
    sync_standby_names,
)
from aurora_kit.backends.local.state import StateStore


def _bump(root: str, times: int) -> None:
    store = StateStore(Path(root))
    for _ in range(times):
        with store.update() as st:
            st["counter"] = st.get("counter", 0) + 1


def test_state_updates_are_serialised_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(str(tmp_path), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert StateStore(tmp_path).read()["counter"] == 160
    assert not list(tmp_path.glob(".state.*.tmp"))  # atomic writes leave no temp file behind


def test_state_read_inside_update_sees_pending_changes_and_update_is_not_reentrant(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with store.update() as st:
        st["clusters"]["a"] = {"instances": {}}
        assert "a" in store.read()["clusters"]  # no self-deadlock on the file lock
        with pytest.raises(RuntimeError), store.update():
            pass
    assert "a" in StateStore(tmp_path).read()["clusters"]


class _BoomError(Exception):
    pass


def _failing_update(store: StateStore) -> None:
    with store.update() as st:
        st["x"] = 2
        raise _BoomError


def test_failed_update_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with store.update() as st:
        st["x"] = 1
    with pytest.raises(_BoomError):
        _failing_update(store)
    assert store.read()["x"] == 1


def test_cluster_lock_is_reentrant_in_a_thread(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with store.cluster_lock("c"), store.cluster_lock("c"):
        pass


def test_generated_config_keeps_node_settings_last_and_no_password(tmp_path: Path) -> None:
    paths = ClusterPaths(tmp_path, "c1")
    writer = render_postgresql_conf(
        paths=paths, cluster_id="c1", instance_id="c1-1", port=6001, standby_names=sync_standby_names(["c1-3", "c1-2"])
    )
    assert "primary_conninfo" not in writer
    assert 'synchronous_standby_names = \'ANY 1 ("c1-2", "c1-3")\'' in writer
    assert writer.rstrip().splitlines()[-1].startswith("synchronous_standby_names")
    reader = render_postgresql_conf(
        paths=paths,
        cluster_id="c1",
        instance_id="c1-2",
        port=6002,
        upstream={"port": 6001, "user": "postgres", "writer_id": "c1-1", "slot": slot_name("c1-2")},
    )
    assert "port=6001" in reader
    assert "application_name=c1-2" in reader
    assert f"passfile={paths.pgpass}" in reader
    assert "password=" not in reader
    assert "primary_slot_name = 'aurora_c1_2'" in reader
    assert reader.index("include_if_exists") < reader.index("aurora_kit.instance_id")
    assert sync_standby_names([]) == ""


def test_archive_script_refuses_to_overwrite_a_different_file(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    script = tmp_path / "archive_wal.sh"
    script.write_text(ARCHIVE_SCRIPT.format(archive=archive))
    script.chmod(0o755)
    seg = tmp_path / "000000010000000000000001"
    seg.write_bytes(b"one")
    assert subprocess.run([str(script), str(seg), seg.name]).returncode == 0
    assert (archive / seg.name).read_bytes() == b"one"
    assert subprocess.run([str(script), str(seg), seg.name]).returncode == 0  # same content again: fine
    seg.write_bytes(b"two")
    assert subprocess.run([str(script), str(seg), seg.name]).returncode != 0  # different content: refused
    assert (archive / seg.name).read_bytes() == b"one"
