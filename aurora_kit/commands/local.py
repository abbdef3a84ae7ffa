"""``aurora-kit local up | status | down | failover | crash-writer | maintain | list | connect-info``: drive local
Aurora-shaped clusters.

The root dir is ``--root`` or ``$AURORA_KIT_HOME`` (default ``/var/lib/aurora_kit`` as root, else
``~/.local/share/aurora_kit``). ``maintain`` is the automated-backup housekeeping to run from cron or a systemd
timer (every 10-15 minutes): the backup that is due (one a day in the backup window), expiry of what the retention
period no longer needs; ``--now`` (or ``$AURORA_KIT_CLOCK``) sets the backup clock for rehearsals and tests.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import timezone
from typing import Any

from aurora_kit.backends.base import Cluster, FailoverResult

ROOT_HELP = "state/data root (default: $AURORA_KIT_HOME, else /var/lib/aurora_kit as root, else per-user)"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "local", help="run local Aurora-shaped PostgreSQL clusters", description=__doc__
    )
    parser.add_argument("--root", default=None, help=ROOT_HELP)
    # --root after the action too (aurora-kit local list --root DIR); SUPPRESS keeps the group's value otherwise
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--root", default=argparse.SUPPRESS, help=ROOT_HELP)
    sub = parser.add_subparsers(dest="local_command", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        parsed: argparse.ArgumentParser = sub.add_parser(
            name, parents=[after], help=help, description=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        return parsed

    up = action("up", "create a cluster: 1 writer + N readers")
    up.add_argument("--cluster-id", default="ak-local", help="the cluster's identifier")
    up.add_argument("--readers", type=int, default=2, help="readers besides the writer (0-15)")
    up.add_argument("--protect", action="store_true", help="turn deletion protection on")
    up.set_defaults(func=cmd_up)

    status = action("status", "cluster and instance status (all clusters without an id)")
    status.add_argument("cluster_id", nargs="?", help="one cluster (default: every cluster under the root)")
    status.set_defaults(func=cmd_status)

    down = action("down", "delete a cluster (explicit final-snapshot choice)")
    down.add_argument("cluster_id", help="the cluster to delete")
    choice = down.add_mutually_exclusive_group(required=True)
    choice.add_argument("--final-snapshot", metavar="SNAPSHOT_ID", default=None, help="take this final snapshot")
    choice.add_argument("--skip-final-snapshot", action="store_true", help="delete without a final snapshot")
    down.add_argument("--force", action="store_true", help="lift deletion protection first")
    down.add_argument(
        "--keep-automated-backups",
        action="store_true",
        help="retain the automated backups (they expire with the retention period); default: delete them",
    )
    down.set_defaults(func=cmd_down)

    fo = action("failover", "fail over to a reader (planned, or --crash the writer first)")
    fo.add_argument("cluster_id", help="the cluster to fail over")
    fo.add_argument("--target", default=None, help="reader to promote (default: the most advanced)")
    fo.add_argument("--crash", action="store_true", help="SIGKILL the writer instead of a clean shutdown")
    fo.set_defaults(func=cmd_failover)

    crash = action("crash-writer", "SIGKILL the writer; the cluster recovers as Aurora would (crash failover)")
    crash.add_argument("cluster_id", help="the cluster whose writer to kill")
    crash.set_defaults(func=cmd_crash_writer)

    maintain = action(
        "maintain", "take the automated backups that are due, expire old ones (run it from cron / a systemd timer)"
    )
    maintain.add_argument("cluster_id", nargs="?", help="one cluster (default: every cluster and retained backup)")
    maintain.add_argument(
        "--now",
        default=None,
        metavar="TIME",
        help="the backup clock: ISO time with zone or offset like +1d (default: $AURORA_KIT_CLOCK, else now)",
    )
    maintain.set_defaults(func=cmd_maintain)

    action("list", "one line per cluster").set_defaults(func=cmd_list)

    info = sub.add_parser(
        "connect-info",
        help="how a client connects (psycopg endpoints, or the AWS Advanced Python Wrapper's recipe); no password",
    )
    info.add_argument("cluster_id")
    info.add_argument("--for", dest="client", choices=("psycopg", "aws-wrapper"), default="psycopg")
    info.add_argument(
        "--json", action="store_true", help="one JSON object (the password file's path, never the password)"
    )
    info.set_defaults(func=cmd_connect_info)


def _backend(args: argparse.Namespace) -> Any:
    from aurora_kit.backends.local import LocalBackend

    return LocalBackend(root_dir=args.root)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pairs(rows: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _print_cluster(backend: Any, cluster: Cluster) -> None:
    cid = cluster.db_cluster_identifier
    print(
        pairs(
            [
                ("cluster", cid),
                ("status", cluster.status),
                ("engine", f"{cluster.engine} {cluster.engine_version}"),
                ("endpoint", cluster.endpoint or "-"),
                ("reader endpoint", cluster.reader_endpoint or "-"),
                ("database / user", f"{cluster.database_name} / {cluster.master_username}"),
                ("password file", (cluster.master_user_secret_arn or "").removeprefix("file://")),
                ("deletion protection", cluster.deletion_protection),
            ]
        )
    )
    instances = backend.describe_instances(cid)
    if instances:
        print()
        print(
            table(
                [
                    (
                        i.db_instance_identifier,
                        "writer" if i.is_cluster_writer else "reader",
                        i.status,
                        f"{i.endpoint_address}:{i.endpoint_port}",
                        i.db_cluster_parameter_group_status,
                    )
                    for i in instances
                ],
                ("instance", "role", "status", "endpoint", "parameters"),
            )
        )
    else:
        print("\n(no instances: create one to start the writer)")
    _print_backups(backend, cid)


def _print_backups(backend: Any, cluster_id: str) -> None:
    """The automated-backup part of ``status``: schedule, last backup, next due, window, archive."""
    b = backend.backup_status(cluster_id)
    last = b.last_backup
    last_text = "-"
    if last is not None:
        last_text = f"{last.id} (taken {_ts(last.scheduled_at)}, from {last.source or '?'}, {_size(last.size_bytes)})"
    due = "due now (taken at the next maintain or mutating call)" if b.due_now else _ts(b.next_due)
    chain = f"BROKEN: segment {b.missing_segment} is missing" if b.missing_segment else "unbroken"
    rows = [
        ("backup schedule", f"daily in {b.window} UTC, retention {b.retention_days} day(s)"),
        ("automated backups", b.backups),
        ("last backup", last_text),
        ("next backup due", due),
        ("earliest restorable", _ts(b.earliest_restorable)),
        ("latest restorable", _ts(b.latest_restorable)),
        ("WAL archive", f"{b.archive_files} files, {_size(b.archive_bytes)}, chain {chain}"),
    ]
    if b.error:
        rows.append(("last backup error", b.error))
    print()
    print(pairs(rows))


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def _ts(value: Any) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def cmd_up(args: argparse.Namespace) -> int:
    from aurora_kit.specs import ClusterSpec

    backend = _backend(args)
    spec = ClusterSpec.with_readers(args.cluster_id, args.readers, deletion_protection=args.protect)
    started = time.monotonic()
    cluster = backend.create_cluster(spec)
    print(f"cluster {cluster.db_cluster_identifier} available in {time.monotonic() - started:.1f} s\n")
    _print_cluster(backend, cluster)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    backend = _backend(args)
    clusters = [backend.describe_cluster(args.cluster_id)] if args.cluster_id else backend.list_clusters()
    if not clusters:
        print(f"no clusters under {backend.root}")
    for n, cluster in enumerate(clusters):
        if n:
            print()
        _print_cluster(backend, cluster)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    backend = _backend(args)
    clusters = backend.list_clusters()
    if not clusters:
        print(f"no clusters under {backend.root}")
        return 0
    print(
        table(
            [
                (c.db_cluster_identifier, c.status, c.writer_id or "-", len(c.reader_ids), c.endpoint or "-")
                for c in clusters
            ],
            ("cluster", "status", "writer", "readers", "endpoint"),
        )
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from aurora_kit.errors import DeletionProtectionError

    backend = _backend(args)
    try:
        snap = backend.delete_cluster(
            args.cluster_id,
            final_snapshot_id=args.final_snapshot,
            skip_final_snapshot=args.skip_final_snapshot,
            lift_deletion_protection=args.force,
            delete_automated_backups=not args.keep_automated_backups,
        )
    except DeletionProtectionError:
        raise DeletionProtectionError(
            args.cluster_id, hint="nothing was deleted; add --force to lift deletion protection first"
        ) from None
    print(
        f"cluster {args.cluster_id} deleted"
        + (f"; final snapshot {snap.db_cluster_snapshot_identifier}" if snap else "")
        + ("; automated backups retained" if args.keep_automated_backups else "")
    )
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    """One line per cluster; exit 1 when a due backup failed (cron / systemd then report it)."""
    backend = _backend(args)
    reports = backend.maintain(args.cluster_id, now=args.now)
    if not reports:
        print(f"no clusters under {backend.root}")
    for report in reports:
        print(report.line())
    return 1 if any(r.error for r in reports) else 0


def _print_failover(result: FailoverResult) -> None:
    print(
        f"{result.mode} failover of {result.db_cluster_identifier}: {result.old_writer} -> {result.new_writer} "
        f"in {result.control_plane_seconds:.2f} s (old writer back as a reader)"
    )


def cmd_failover(args: argparse.Namespace) -> int:
    backend = _backend(args)
    _print_failover(
        backend.failover(args.cluster_id, target_instance_id=args.target, mode="crash" if args.crash else "planned")
    )
    return 0


def cmd_crash_writer(args: argparse.Namespace) -> int:
    backend = _backend(args)
    _print_failover(backend.failover(args.cluster_id, mode="crash"))
    return 0


def _wrapper_snippet(conninfo: str, password_file: str, properties: dict[str, str]) -> str:
    props = "".join(f"    {k}={v!r},\n" for k, v in properties.items())
    return (
        "import psycopg\n"
        "from aws_advanced_python_wrapper import AwsWrapperConnection\n\n"
        "conn = AwsWrapperConnection.connect(\n"
        "    psycopg.Connection.connect,\n"
        f"    {conninfo!r},\n"
        f"    password=open({password_file!r}).read().strip(),\n"
        f"{props}"
        "    autocommit=True,\n"
        ")"
    )


def cmd_connect_info(args: argparse.Namespace) -> int:
    import json

    backend = _backend(args)
    cluster = backend.describe_cluster(args.cluster_id)
    password_file = (cluster.master_user_secret_arn or "").removeprefix("file://")
    if args.client == "psycopg":
        out: dict[str, Any] = {
            "client": "psycopg",
            "cluster": backend.connection_info(args.cluster_id, "cluster").conninfo,
            "reader": backend.connection_info(args.cluster_id, "reader").conninfo,
            "password_file": password_file,
        }
        if args.json:
            print(json.dumps(out, indent=1))
        else:
            print(pairs([(k, v) for k, v in out.items() if k != "client"]))
            print("\npsycopg.connect(<conninfo>, password=open(<password file>).read().strip())")
        return 0
    recipe = backend.aws_wrapper_recipe(args.cluster_id)
    out = {
        "client": "aws-advanced-python-wrapper",
        "conninfo": recipe.conninfo,
        "properties": dict(recipe.properties),
        "password_file": password_file,
        "names_resolve": recipe.names_resolve,
        "hosts_lines": list(recipe.hosts_lines),
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(
        pairs(
            [
                ("conninfo", recipe.conninfo),
                *((k, v) for k, v in recipe.properties.items()),
                ("password file", password_file),
                ("names resolve", "yes" if recipe.names_resolve else "NO (see below)"),
            ]
        )
    )
    print("\n" + _wrapper_snippet(recipe.conninfo, password_file, dict(recipe.properties)))
    if not recipe.names_resolve:
        print(
            "\nThe wrapper reaches instances by name and these names do not resolve here: the backend writes them to"
            " /etc/hosts only when it may (as root). Add these lines to /etc/hosts (sudo), or run `aurora-kit local`"
            " as root:\n\n" + "\n".join(recipe.hosts_lines)
        )
        return 1
    return 0
