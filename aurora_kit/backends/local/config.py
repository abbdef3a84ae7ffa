"""Where a local cluster keeps its files, and the configuration files the backend generates.

Every node's ``postgresql.conf`` is generated from state and re-applied after ``pg_basebackup``, ``pg_rewind`` and
restores (``pg_rewind`` copies the source's config files: DESIGN pitfall); ``postgresql.auto.conf`` is emptied so
``ALTER SYSTEM`` leftovers from another node cannot override per-node settings. The cluster parameter group is
one file, ``parameters.conf``, included by every node.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from aurora_kit.backends.local.binaries import chown
from aurora_kit.rules import MemorySettings, memory_settings

# settings the backend manages itself: a parameter group may not override them (the group's include comes after
# the generated settings, so anything listed in render_postgresql_conf's ``settings`` must be here). name → why.
MANAGED_REASONS: dict[str, str] = {
    "archive_cleanup_command": "the backend prunes the WAL archive itself",
    "archive_command": "WAL archiving feeds backups and point-in-time restores",
    "archive_library": "WAL archiving feeds backups and point-in-time restores",
    "archive_mode": "WAL archiving feeds backups and point-in-time restores",
    "archive_timeout": "bounds how far LatestRestorableTime lags",
    "config_file": "generated per node",
    "data_directory": "generated per node",
    "fsync": "turning it off loses acknowledged commits on a crash",
    "full_page_writes": "pg_rewind and standby base backups need full-page writes",
    "hba_file": "generated per cluster",
    "hot_standby": "readers must accept read-only queries",
    "hot_standby_feedback": "readers rely on it to avoid query cancellations",
    "ident_file": "generated per cluster",
    "listen_addresses": "instances listen on loopback only",
    "max_replication_slots": "one slot per reader; too few cuts readers off or fails the start",
    "max_slot_wal_keep_size": "bounds the WAL a dead reader's slot keeps (1GB), so it cannot fill the disk",
    "max_wal_senders": "one WAL sender per reader and base backup; too few cuts readers off",
    "port": "ports are allocated per instance",
    "primary_conninfo": "readers follow the current writer",
    "primary_slot_name": "readers follow the current writer",
    "promote_trigger_file": "failover promotes readers itself",
    "recovery_end_command": "recovery is driven by the backend",
    "recovery_target": "recovery is driven by the backend",
    "recovery_target_action": "recovery is driven by the backend",
    "recovery_target_inclusive": "recovery is driven by the backend",
    "recovery_target_lsn": "recovery is driven by the backend",
    "recovery_target_name": "recovery is driven by the backend",
    "recovery_target_time": "recovery is driven by the backend",
    "recovery_target_timeline": "recovery is driven by the backend",
    "recovery_target_xid": "recovery is driven by the backend",
    "restore_command": "recovery reads the cluster's WAL archive",
    "synchronous_commit": "zero acknowledged-commit loss needs a reader's flush (on or remote_apply only)",
    "synchronous_standby_names": "set to ANY 1 (readers) for zero acknowledged-commit loss",
    "unix_socket_directories": "instances listen on loopback TCP only",
    "wal_level": "replication and archiving need wal_level=replica",
    "wal_log_hints": "pg_rewind needs it",
    "wal_receiver_status_interval": "failover and lag reporting rely on it",
    "wal_receiver_timeout": "failover detection relies on it",
    "wal_retrieve_retry_interval": "failover and recovery timing rely on it",
    "wal_sender_timeout": "failover detection relies on it",
}
MANAGED_SETTINGS = frozenset(MANAGED_REASONS)
#: WAL segment size of every local cluster (``initdb --wal-segsize``): small copies, quick switches and archiving
WAL_SEGMENT_MB = 1
#: managed settings a parameter group may still set to one of these (normalised, lower-case) values
MANAGED_ALLOWED_VALUES: dict[str, frozenset[str]] = {
    "synchronous_commit": frozenset({"on", "true", "yes", "1", "remote_apply"}),
}


#: the topology file relative to any instance's data dir (``clusters/<c>/instances/<i>/data``): the SQL surface
#: derives it from ``data_directory``, which no session can change
TOPOLOGY_FROM_DATA_DIR = "../../../topology.json"


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

    @property
    def topology(self) -> Path:
        """Members and roles as the backend last published them (read by ``aurora_replica_status()``: the SQL
        finds it as ``<data dir>/../../../topology.json``, see :data:`TOPOLOGY_FROM_DATA_DIR`)."""
        return self.dir / TOPOLOGY_FROM_DATA_DIR.rsplit("/", 1)[-1]

    def instance_dir(self, instance_id: str) -> Path:
        return self.dir / "instances" / instance_id

    def data_dir(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "data"

    def log_file(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "postgresql.log"


#: local instances run 1/128 of the shared_buffers their class gets on Aurora (a laptop holds several clusters), at
#: least 16 MB and at most 256 MB — db.r6g.large 80 MB; at 1/256 (41 MB) a 100k x 128 HNSW index no longer stayed in
#: the buffers and its search ran 3x slower than with PostgreSQL's default 128 MB; max_connections is Aurora's
#: value itself (a count clients size their pools by)
LOCAL_BUFFER_SCALE = 128
LOCAL_BUFFERS_KB = (16 * 1024, 256 * 1024)


@dataclass(frozen=True)
class ClassSettings:
    """The memory settings one local instance starts with: Aurora's defaults for its class (:attr:`aurora`), and
    what runs here (:attr:`settings`: shared_buffers scaled, max_connections raised to the cluster's largest)."""

    aurora: MemorySettings | None
    settings: dict[str, str]
    notes: tuple[str, ...] = ()


def class_settings(instance_class: str, cluster_classes: list[str], max_acu: float | None) -> ClassSettings:
    """``instance_class``'s settings in a cluster whose members have ``cluster_classes``.

    Locally every instance takes the largest ``max_connections`` of the cluster's classes: a PostgreSQL standby
    refuses to replay a primary that allows more connections than itself (``hot standby is not possible because of
    insufficient parameter settings``), which Aurora's storage-level replication does not know. In a cluster of one
    class this is Aurora's value exactly. A cluster parameter group that sets either setting overrides both here,
    as on Aurora (the group is included after these)."""
    aurora = memory_settings(instance_class, max_acu=max_acu)
    if aurora is None:
        return ClassSettings(None, {}, (f"no memory figures for {instance_class}: PostgreSQL's defaults",))
    others = [m for m in (memory_settings(c, max_acu=max_acu) for c in cluster_classes) if m is not None]
    connections = max([aurora.max_connections, *(m.max_connections for m in others)])
    low, high = LOCAL_BUFFERS_KB
    buffers = max(low, min(high, aurora.shared_buffers_kb // LOCAL_BUFFER_SCALE)) // 8 * 8  # whole 8 kB pages
    notes = [f"shared_buffers 1/{LOCAL_BUFFER_SCALE} of Aurora's {aurora.shared_buffers_kb // 1024} MB"]
    if connections != aurora.max_connections:
        notes.append(
            f"max_connections {connections}: the largest class of the cluster (a standby needs ≥ its writer's)"
        )
    return ClassSettings(
        aurora,
        {
            "max_connections": str(connections),
            "shared_buffers": f"{buffers}kB",
            "effective_cache_size": f"{buffers}kB",
        },
        tuple(notes),
    )


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


def primary_conninfo(*, port: int, user: str, application_name: str, passfile: Path, host: str = "127.0.0.1") -> str:
    return (
        f"host={host} port={port} user={user} application_name={application_name} "
        f"passfile={passfile} connect_timeout=2 keepalives_idle=5 keepalives_interval=1 keepalives_count=3"
    )


@dataclass(frozen=True)
class Upstream:
    """Where a reader streams from: the upstream's port, the replication user, the writer's id, the slot, the
    upstream's address."""

    port: int
    user: str
    writer_id: str
    slot: str
    address: str = "127.0.0.1"


def render_postgresql_conf(
    *,
    paths: ClusterPaths,
    cluster_id: str,
    instance_id: str,
    port: int,
    standby_names: str = "",
    upstream: Upstream | None = None,
    recovery: dict[str, str] | None = None,
    archive: bool = True,
    address: str = "127.0.0.1",
    rds_extensions: str = "",
    class_defaults: dict[str, str] | None = None,
    connections_floor: int | None = None,
) -> str:
    """The generated ``postgresql.conf`` of one node.

    ``upstream``: where a reader streams from. ``recovery``: extra recovery settings
    (PITR ``restore_command`` from the source archive, ``recovery_target_time`` ...) replacing the defaults.
    ``address``: the loopback address the node listens on. ``rds_extensions``: Aurora's ``rds.extensions`` list
    (what ``SHOW rds.extensions`` and the ``pg_settings`` row of :mod:`.sql` report).
    """
    restore_command = f"cp {shlex.quote(str(paths.archive))}/%f %p"
    settings: dict[str, str] = {
        "listen_addresses": quote(address),
        "port": str(port),
        "unix_socket_directories": quote(""),
        "hba_file": quote(str(paths.hba)),
        "wal_level": "replica",
        "wal_log_hints": "on",
        "hot_standby": "on",
        "hot_standby_feedback": "on",
        "max_wal_senders": "16",
        "max_replication_slots": "16",
        "max_slot_wal_keep_size": quote("1GB"),  # a dead reader's slot cannot fill the disk
        "wal_sender_timeout": quote("10s"),
        "wal_receiver_timeout": quote("10s"),
        "wal_receiver_status_interval": quote("1s"),
        "wal_retrieve_retry_interval": quote("200ms"),
        "archive_mode": "always" if archive else "off",
        "archive_command": quote(f"{shlex.quote(str(paths.archive_script))} %p %f"),
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
    if rds_extensions:
        node["rds.extensions"] = quote(rds_extensions)
    if upstream is not None:
        node["aurora_kit.writer_id"] = quote(upstream.writer_id)
        node["primary_conninfo"] = quote(
            primary_conninfo(
                port=upstream.port,
                user=upstream.user,
                application_name=instance_id,
                passfile=paths.pgpass,
                host=upstream.address,
            )
        )
        node["primary_slot_name"] = quote(upstream.slot)
    for key, value in (recovery or {}).items():
        node[key] = quote(value)
    if connections_floor is not None:  # after the group: a standby allowing fewer than its writer stops replaying
        node["max_connections"] = str(connections_floor)
    lines = ["# generated by aurora_kit (local backend); regenerated after basebackup, rewind and restore", ""]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    if class_defaults:
        lines += ["", "# the instance class's memory defaults (aurora_kit.rules.memory_settings, scaled)"]
        lines += [f"{k} = {v}" for k, v in class_defaults.items()]
    lines += ["", "# cluster parameter group", f"include_if_exists {quote(str(paths.parameters))}", ""]
    lines += ["# this node (managed; must come last)"]
    lines += [f"{k} = {v}" for k, v in node.items()]
    return "\n".join(lines) + "\n"


def slot_name(instance_id: str) -> str:
    """Replication slot names allow [a-z0-9_] only."""
    return "aurora_" + instance_id.lower().replace("-", "_")


HBA = """# generated by aurora_kit: password (SCRAM) auth on loopback only (each instance has a 127/8 address)
host    all             all     127.0.0.0/8     scram-sha-256
host    replication     all     127.0.0.0/8     scram-sha-256
"""

ARCHIVE_SCRIPT = r"""#!/bin/sh
# archive_command of every node of an aurora_kit cluster (archive_mode=always: the writer and every reader archive
# into the one cluster archive, so a segment the writer had not archived when it crashed is archived by a reader).
# Copies durably and never overwrites: an identical copy is success (another node archived it first), a different
# one is refused -- except an old timeline's segment at or after the point where that timeline ended (a later
# timeline's history file says so): nodes hold different tails of it past the switch point, no recovery that
# follows the later timeline reads it, so it is accepted when it matches up to the switch point (and a segment
# wholly past the switch point, a dead branch, is not stored at all).
# usage: archive_wal.sh <path> <file name>
set -eu
archive=@ARCHIVE@
src="$1"
name="$2"
dest="$archive/$name"

# "dead" when $name is a segment of a timeline that ended in an earlier segment, "switch <bytes>" when that
# timeline ended inside it (<bytes>: offset of the switch point), nothing otherwise. Only a segment of a timeline
# older than some history file's needs the histories read (no process is started for any other).
fate() {
    case "$name" in
        *[!0-9A-F]*) return 0 ;;
    esac
    [ "${#name}" -eq 24 ] || return 0
    seg_tli=$((0x${name%????????????????}))
    newer=""
    for h in "$archive"/*.history "${src%/*}"/*.history; do
        base=${h##*/}
        if [ -f "$h" ] && [ $((0x${base%.history})) -gt "$seg_tli" ]; then
            newer=yes
        fi
    done
    [ -n "$newer" ] || return 0
    for h in "$archive"/*.history "${src%/*}"/*.history; do
        if [ -f "$h" ]; then cat "$h"; fi
    done | awk -v name="$name" -v segsize="$(wc -c < "$src")" '
        function hex(s,   n, i) {
            n = 0; s = toupper(s)
            for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789ABCDEF", substr(s, i, 1)) - 1
            return n
        }
        BEGIN {
            tli = hex(substr(name, 1, 8))
            segno = hex(substr(name, 9, 8)) * (4294967296 / segsize) + hex(substr(name, 17, 8))
        }
        $1 ~ /^[0-9]+$/ && $1 + 0 == tli && split($2, lsn, "/") == 2 {
            pos = hex(lsn[1]) * 4294967296 + hex(lsn[2])
            switch_seg = int(pos / segsize)
            if (segno > switch_seg) { print "dead"; exit }
            if (segno == switch_seg) { print "switch " (pos - switch_seg * segsize); exit }
        }'
}

# $dest exists: success when it holds the same WAL (identical, or identical up to the end of its timeline)
same_wal() {
    if cmp -s "$src" "$dest"; then return 0; fi
    verdict=$(fate)
    case "$verdict" in
        dead) return 0 ;;
        "switch "*) cmp -s -n "${verdict#switch }" "$src" "$dest" ;;
        *) return 1 ;;
    esac
}

if [ -f "$dest" ]; then
    same_wal
    exit $?
fi
if [ "$(fate)" = dead ]; then
    exit 0   # WAL of a timeline after it ended: no surviving history contains it
fi
# one node copies a segment, the others (each node archives every segment it has) wait for that copy and compare:
# the claim is a directory (mkdir is atomic) holding the copier's pid; a copier that died (a crashed node) or
# never wrote its pid within a minute loses its claim to the next node. A claim not released within a minute, or
# an archive where no claim can be made (not writable), fails this attempt: PostgreSQL retries it later.
claim="$archive/.$name.claim"
waited=0
while ! mkdir "$claim" 2>/dev/null; do
    if [ -f "$dest" ]; then
        same_wal
        exit $?
    fi
    if [ ! -d "$claim" ]; then   # released meanwhile, or mkdir itself fails
        mkdir "$claim" && break
        exit 1
    fi
    owner=$(cat "$claim/pid" 2>/dev/null || true)
    stale=$(find "$claim" -maxdepth 0 -mmin +1 2>/dev/null || true)
    if [ -n "$stale" ] || { [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; }; then
        rm -rf "$claim"
        continue
    fi
    waited=$((waited + 1))
    if [ "$waited" -gt 1200 ]; then
        exit 1
    fi
    sleep 0.05
done
tmp="$archive/.$name.tmp.$$"
trap 'rm -f "$tmp"; rm -rf "$claim"' EXIT
echo $$ > "$claim/pid"
if [ -f "$dest" ]; then   # archived while this node waited for the claim
    same_wal
    exit $?
fi
cp "$src" "$tmp"
sync "$tmp"               # the content is on disk before the name appears
if ln "$tmp" "$dest" 2>/dev/null; then   # link(2) fails when dest exists: never overwrites
    sync "$archive"       # and the directory entry
    exit 0
fi
same_wal                  # another archiver got there first after all
"""


def archive_script(archive: Path) -> str:
    """The archive script for ``archive`` (path shell-quoted)."""
    return ARCHIVE_SCRIPT.replace("@ARCHIVE@", shlex.quote(str(archive)))


#: characters a root dir may not contain: they would need quoting in shell commands and libpq conninfo strings
UNSAFE_PATH_CHARS = frozenset(" \t\n\r'\"$`\\;&|<>(){}*?[]#%")


def write_file(path: Path, text: str, *, mode: int = 0o600, owner_pg: bool = True) -> None:
    """Write atomically (temp file + rename) with ``mode``; owned by the PostgreSQL account when ``owner_pg``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    if owner_pg:
        chown(tmp)
    os.replace(tmp, path)
