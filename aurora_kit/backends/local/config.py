"""Where a local cluster keeps its files, and the configuration files the backend generates.

Every node's ``postgresql.conf`` is generated from state and re-applied after ``pg_basebackup``, ``pg_rewind`` and
restores (``pg_rewind`` copies the source's config files: DESIGN pitfall); ``postgresql.auto.conf`` is emptied so
``ALTER SYSTEM`` leftovers from another node cannot override per-node settings. The cluster parameter group is
one file, ``parameters.conf``, included by every node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aurora_kit.backends.local.binaries import chown

# settings the backend manages itself: a parameter group may not override them
MANAGED_SETTINGS = frozenset(
    {
        "archive_command",
        "archive_library",
        "archive_mode",
        "config_file",
        "data_directory",
        "hba_file",
        "hot_standby",
        "ident_file",
        "listen_addresses",
        "port",
        "primary_conninfo",
        "primary_slot_name",
        "promote_trigger_file",
        "recovery_target",
        "recovery_target_action",
        "recovery_target_inclusive",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_timeline",
        "recovery_target_xid",
        "restore_command",
        "synchronous_standby_names",
        "unix_socket_directories",
        "wal_level",
        "wal_log_hints",
    }
)


@dataclass(frozen=True)
class ClusterPaths:
    root: Path
    cluster_id: str

    @property
    def dir(self) -> Path:
        return self.root / "clusters" / self.cluster_id

    @property
    def archive(self) -> Path:
        return self.dir / "archive"

    @property
    def backups(self) -> Path:
        return self.dir / "backups"

    @property
    def seed(self) -> Path:
        """Cluster storage without an instance (restored clusters; last instance deleted)."""
        return self.dir / "seed"

    @property
    def parameters(self) -> Path:
        return self.dir / "parameters.conf"

    @property
    def hba(self) -> Path:
        return self.dir / "pg_hba.conf"

    @property
    def pgpass(self) -> Path:
        return self.dir / "pgpass"

    @property
    def secret(self) -> Path:
        """The master password (0600): the local stand-in for the Secrets Manager secret."""
        return self.dir / "master-password"

    @property
    def archive_script(self) -> Path:
        return self.dir / "archive_wal.sh"

    def instance_dir(self, instance_id: str) -> Path:
        return self.dir / "instances" / instance_id

    def data_dir(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "data"

    def log_file(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "postgresql.log"


def quote(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sync_standby_names(readers: list[str]) -> str:
    """``ANY 1 (r1, r2...)`` so a commit is acknowledged once one reader flushed it; '' without readers."""
    if not readers:
        return ""
    return "ANY 1 (" + ", ".join(quote_ident(r) for r in sorted(readers)) + ")"


def primary_conninfo(*, port: int, user: str, application_name: str, passfile: Path) -> str:
    return (
        f"host=127.0.0.1 port={port} user={user} application_name={application_name} "
        f"passfile={passfile} connect_timeout=2 keepalives_idle=5 keepalives_interval=1 keepalives_count=3"
    )


def render_postgresql_conf(
    *,
    paths: ClusterPaths,
    cluster_id: str,
    instance_id: str,
    port: int,
    standby_names: str = "",
    upstream: dict[str, object] | None = None,
    recovery: dict[str, str] | None = None,
    archive: bool = True,
) -> str:
    """The generated ``postgresql.conf`` of one node.

    ``upstream`` (readers): ``{"port", "user", "writer_id", "slot"}``. ``recovery``: extra recovery settings
    (PITR ``restore_command`` from the source archive, ``recovery_target_time`` ...) replacing the defaults.
    """
    restore_command = f"cp {paths.archive}/%f %p"
    settings: dict[str, str] = {
        "listen_addresses": quote("127.0.0.1"),
        "port": str(port),
        "unix_socket_directories": quote(""),
        "hba_file": quote(str(paths.hba)),
        "wal_level": "replica",
        "wal_log_hints": "on",
        "hot_standby": "on",
        "hot_standby_feedback": "on",
        "max_wal_senders": "16",
        "max_replication_slots": "16",
        "wal_sender_timeout": quote("10s"),
        "wal_receiver_timeout": quote("10s"),
        "wal_receiver_status_interval": quote("1s"),
        "wal_retrieve_retry_interval": quote("200ms"),
        "archive_mode": "on" if archive else "off",
        "archive_command": quote(f"{paths.archive_script} %p %f"),
        "archive_timeout": quote("60s"),
        "restore_command": quote(restore_command),
        "recovery_target_timeline": quote("latest"),
        "synchronous_commit": "on",
        "log_line_prefix": quote("%m [%p] %q%u@%d "),
        "log_checkpoints": "off",
    }
    node: dict[str, str] = {
        "aurora_kit.cluster_id": quote(cluster_id),
        "aurora_kit.instance_id": quote(instance_id),
        "synchronous_standby_names": quote(standby_names),
    }
    if upstream is not None:
        node["aurora_kit.writer_id"] = quote(str(upstream["writer_id"]))
        node["primary_conninfo"] = quote(
            primary_conninfo(
                port=int(str(upstream["port"])),
                user=str(upstream["user"]),
                application_name=instance_id,
                passfile=paths.pgpass,
            )
        )
        node["primary_slot_name"] = quote(str(upstream["slot"]))
    for key, value in (recovery or {}).items():
        node[key] = quote(value)
    lines = ["# generated by aurora_kit (local backend); regenerated after basebackup, rewind and restore", ""]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    lines += ["", "# cluster parameter group", f"include_if_exists {quote(str(paths.parameters))}", ""]
    lines += ["# this node (managed; must come last)"]
    lines += [f"{k} = {v}" for k, v in node.items()]
    return "\n".join(lines) + "\n"


def slot_name(instance_id: str) -> str:
    """Replication slot names allow [a-z0-9_] only."""
    return "aurora_" + instance_id.lower().replace("-", "_")


HBA = """# generated by aurora_kit: password (SCRAM) auth on loopback only
host    all             all     127.0.0.1/32    scram-sha-256
host    replication     all     127.0.0.1/32    scram-sha-256
"""

ARCHIVE_SCRIPT = """#!/bin/sh
# archive_command of an aurora_kit cluster: copy WAL into the archive, never overwrite a different file
# usage: archive_wal.sh <path> <file name>
set -e
dest="{archive}/$2"
if [ -f "$dest" ]; then
    cmp -s "$1" "$dest"   # already archived (identical): success; different: refuse (exit 1)
    exit $?
fi
cp "$1" "$dest.tmp.$$"
mv "$dest.tmp.$$" "$dest"
"""


def write_file(path: Path, text: str, *, mode: int = 0o600, owner_pg: bool = True) -> None:
    """Write atomically (temp file + rename) with ``mode``; owned by the PostgreSQL account when ``owner_pg``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    if owner_pg:
        chown(tmp)
    os.replace(tmp, path)
