"""Stop-by-pid only ever signals this data directory's postmaster, never a process that reused a stale pid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


def test_a_stale_pid_file_pointing_at_another_postgres_named_process_is_not_ours(tmp_path: Path) -> None:
    try:
        from aurora_kit.backends.local.binaries import find_binaries
        from aurora_kit.backends.local.controller import PgController

        bins = find_binaries(16)
    except Exception as exc:  # pragma: no cover - environment without the binaries
        pytest.skip(f"local backend unavailable: {exc}")
    # a process named "postgres" (a real server of another data dir looks the same to a name check)
    fake = tmp_path / "bin" / "postgres"
    fake.parent.mkdir()
    fake.symlink_to("/bin/sleep")
    other_dir = tmp_path / "other" / "data"
    other_dir.mkdir(parents=True)
    bystander = subprocess.Popen([str(fake), "300"], cwd=other_dir)
    try:
        data_dir = tmp_path / "instance" / "data"
        data_dir.mkdir(parents=True)
        # a stale postmaster.pid of a crashed server whose pid now belongs to the bystander
        (data_dir / "postmaster.pid").write_text(f"{bystander.pid}\n{data_dir}\n0\n5432\n\n127.0.0.1\n0 0\nready\n")
        ctl = PgController("stale", data_dir, tmp_path / "instance" / "postgresql.log", bins)
        assert "postgres" in psutil.Process(bystander.pid).name()
        assert ctl.pid() is None
        assert not ctl.is_running()
        assert ctl.pm_status() == ""
        assert ctl.stop(mode="fast", timeout=1) is None
        ctl.reload()
        ctl.kill()
        assert bystander.poll() is None, "the bystander was signalled"
        # the same process *is* recognised when it runs in (or with -D) that data dir
        assert PgController("other", other_dir, tmp_path / "x.log", bins).owns(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()
