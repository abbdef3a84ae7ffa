"""PgBouncer processes: the local twin of RDS Proxy (files, configuration, start/stop/reload by pid).

A local proxy is two PgBouncer processes, each at its own loopback address on the cluster's port, as RDS Proxy has
one hostname per endpoint: the default endpoint (``READ_WRITE``, the writer) and, when asked, a read-only endpoint
(``READ_ONLY``, every reader round-robin; the writer when there is none). Both route every database name to the
same database on their hosts (``* = host=...``), authenticate clients with SCRAM against the cluster's master
password (the local stand-in for the secret RDS Proxy reads) and log in to the instances with it.

Settings from the proxy's parameters (:class:`aurora_kit.specs.ProxySpec`), RDS Proxy → PgBouncer:

==============================  ==============================================================================
``MaxConnectionsPercent``       ``default_pool_size`` = ``max_db_connections`` = max_connections × percent
``ConnectionBorrowTimeout``     ``query_wait_timeout`` (at least 1 s: PgBouncer's 0 means "wait forever")
``IdleClientTimeout``           ``client_idle_timeout``
``MaxIdleConnectionsPercent``   not enforced (PgBouncer closes idle server connections after
                                ``server_idle_timeout``)
``RequireTLS``                  recorded only: the local instances speak no TLS either
transaction multiplexing        ``pool_mode = transaction``
session pinning                 none: PgBouncer cannot pin; ``server_reset_query = DISCARD ALL`` after every
                                transaction (``server_reset_query_always``) keeps a session's SET from reaching
                                another client (it lasts for its transaction only; RDS Proxy would pin instead)
==============================  ==============================================================================

Following the writer: every time the backend publishes the cluster's topology (create, add/remove an instance, a
failover's promotion) it rewrites the configuration with the new hosts and sends SIGHUP (:func:`follow`); PgBouncer
closes the server connections to the old host as they are released and opens new ones on the new host, while the
client connections stay open. Measured against pointing PgBouncer at the cluster endpoint's name in the hosts file:
a reload moves at the promotion itself (no resolver cache, ``dns_max_ttl``) and works without a hosts file
(non-root), so that is what this does. As root, the processes run as the PostgreSQL system user; their files live
under ``clusters/<cluster>/proxies/<proxy>/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from aurora_kit.backends.local.binaries import chown, run_tool
from aurora_kit.backends.local.config import ClusterPaths, write_file
from aurora_kit.backends.local.state import ClusterRecord, ProxyRecord
from aurora_kit.errors import BackendOperationError
from aurora_kit.polling import wait_for

ROLES = ("rw", "ro")
INSTALL_HINT = (
    "install PgBouncer (the local RDS Proxy): apt-get install pgbouncer (Debian/Ubuntu), brew install pgbouncer "
    "(macOS), conda install -c conda-forge pgbouncer; or set AURORA_KIT_PGBOUNCER to its path"
)
#: how long a failed server login keeps PgBouncer from trying again (its default, 15 s, would outlast a failover)
SERVER_LOGIN_RETRY_S = 0.05
#: client connections one endpoint accepts (each needs a file descriptor; the usual soft limit is 1024)
MAX_CLIENT_CONN = 400


def find_pgbouncer() -> str:
    """The ``pgbouncer`` program: ``$AURORA_KIT_PGBOUNCER``, else on PATH, else /usr/sbin (Debian's place)."""
    configured = os.environ.get("AURORA_KIT_PGBOUNCER")
    candidates = [configured] if configured else [shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BackendOperationError("PgBouncer is not installed: the local backend needs it for a proxy", hint=INSTALL_HINT)


@dataclass(frozen=True)
class ProxyFiles:
    """Where one proxy's files live (under the cluster's directory)."""

    cluster: ClusterPaths
    name: str

    @property
    def dir(self) -> Path:
        return self.cluster.dir / "proxies" / self.name

    @property
    def userlist(self) -> Path:
        return self.dir / "userlist.txt"

    def ini(self, role: str) -> Path:
        return self.dir / f"{role}.ini"

    def pidfile(self, role: str) -> Path:
        return self.dir / f"{role}.pid"

    def log(self, role: str) -> Path:
        return self.dir / f"{role}.log"


def hosts_for(cl: ClusterRecord, role: str) -> list[str]:
    """Where an endpoint routes: ``rw`` the writer; ``ro`` every reader not being deleted (the writer when none)."""
    writer = cl.writer_id
    if role == "rw":
        return [cl.instances[writer].address] if writer else []
    readers = [cl.instances[r].address for r in cl.reader_ids if cl.instances[r].status not in ("deleting", "failed")]
    return readers or ([cl.instances[writer].address] if writer else [])


def render_ini(files: ProxyFiles, role: str, record: ProxyRecord, hosts: list[str], port: int) -> str:
    """One endpoint's ``pgbouncer.ini`` from the proxy's record (see the module docstring for the mapping)."""
    spec = record.spec
    lines = [
        "; generated by aurora_kit (local RDS Proxy); rewritten when the cluster's writer or readers change",
        "[databases]",
        f"* = host={','.join(hosts) or '127.0.0.1'} port={port}",
        "",
        "[pgbouncer]",
        f"listen_addr = {record.addresses[role]}",
        f"listen_port = {record.port}",
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {files.userlist}",
        "pool_mode = transaction",
        f"default_pool_size = {record.pool_size}",
        f"max_db_connections = {record.pool_size}",
        "min_pool_size = 0",
        "reserve_pool_size = 0",
        f"max_client_conn = {MAX_CLIENT_CONN}",
        f"query_wait_timeout = {max(1, spec.connection_borrow_timeout_s)}",
        f"client_idle_timeout = {spec.idle_client_timeout_s}",
        "server_idle_timeout = 60",
        "server_reset_query = DISCARD ALL",
        "server_reset_query_always = 1",
        f"server_login_retry = {SERVER_LOGIN_RETRY_S}",
        "server_connect_timeout = 2",
        f"server_round_robin = {1 if role == 'ro' else 0}",
        "ignore_startup_parameters = extra_float_digits",
        "log_connections = 0",
        "log_disconnections = 0",
        f"logfile = {files.log(role)}",
        f"pidfile = {files.pidfile(role)}",
    ]
    return "\n".join(lines) + "\n"


def write_userlist(files: ProxyFiles, user: str, password: str) -> None:
    """The credentials PgBouncer checks clients against and logs in with (0600, the PostgreSQL account's)."""

    def q(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    write_file(files.userlist, f"{q(user)} {q(password)}\n", mode=0o600)


def prepare(files: ProxyFiles) -> None:
    files.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(files.dir, 0o700)
    chown(files.dir)


def pid(files: ProxyFiles, role: str) -> int | None:
    """The running PgBouncer of ``role``, from its pid file (None when it is not running)."""
    try:
        value = int(files.pidfile(role).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        proc = psutil.Process(value)
        if proc.status() == psutil.STATUS_ZOMBIE or "pgbouncer" not in os.path.basename(proc.cmdline()[0]):
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
        return None
    return value


def start(files: ProxyFiles, role: str, *, timeout: float = 10.0) -> int:
    """Start PgBouncer for ``role`` (daemonised, as the PostgreSQL account) and wait until it listens."""
    running = pid(files, role)
    if running is not None:
        return running
    files.pidfile(role).unlink(missing_ok=True)
    run_tool([find_pgbouncer(), "-d", "-q", str(files.ini(role))], cwd=files.dir, what=f"pgbouncer ({files.name})")
    started = wait_for(
        f"pgbouncer {files.name} ({role}) running",
        lambda: pid(files, role),
        lambda p: p is not None,
        timeout=timeout,
        initial_delay=0.01,
        max_delay=0.1,
    )
    assert started is not None
    return started


def reload(files: ProxyFiles, role: str, *, again_after: float | None = None) -> bool:
    """SIGHUP: PgBouncer rereads its configuration (a changed host closes the old servers as they are released).

    ``again_after``: a second SIGHUP that many seconds later (from a timer thread). After a failed server login
    PgBouncer retries only once ``server_login_retry`` has passed *and* its event loop wakes up — on a signal, a
    client's packet, or its maintenance timer (every 1/3 s). A queued client sends nothing, so a retry the first
    SIGHUP came too early for would wait for that timer; the second one wakes the loop right after the retry
    delay (measured: the proxy's failover write gap up to 0.3 s longer without it)."""
    running = pid(files, role)
    if running is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(running, signal.SIGHUP)
    if again_after is not None:
        timer = threading.Timer(again_after, lambda: reload(files, role))
        timer.daemon = True
        timer.start()
    return True


def stop(files: ProxyFiles, role: str, *, timeout: float = 10.0) -> None:
    """Stop by pid: SIGTERM (immediate shutdown), then SIGKILL."""
    running = pid(files, role)
    if running is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(running, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid(files, role) is None:
                files.pidfile(role).unlink(missing_ok=True)
                return
            time.sleep(0.02)
    raise BackendOperationError(f"could not stop pgbouncer {files.name} ({role}, pid {running})")


def configure(files: ProxyFiles, cl: ClusterRecord, record: ProxyRecord) -> dict[str, bool]:
    """(Re)write each endpoint's configuration from the cluster's current members; role → whether it changed."""
    port = next(iter(cl.instances.values())).port if cl.instances else record.port
    changed: dict[str, bool] = {}
    for role in record.addresses:
        text = render_ini(files, role, record, hosts_for(cl, role), port)
        path = files.ini(role)
        old = path.read_text() if path.exists() else None
        if old != text:
            write_file(path, text, mode=0o600)
        changed[role] = old != text
    return changed


def follow(paths: ClusterPaths, cl: ClusterRecord) -> None:
    """Point every proxy of the cluster at its current writer and readers (rewrite + SIGHUP where changed). Never
    raises: it runs inside a failover's promotion, like the topology publication; a failure is reported on stderr
    and the next publication repairs it."""
    import sys

    for name, record in cl.proxies.items():
        files = ProxyFiles(paths, name)
        try:
            for role, changed in configure(files, cl, record).items():
                if changed:
                    reload(files, role, again_after=SERVER_LOGIN_RETRY_S + 0.01)
        except OSError as exc:
            print(f"warning: could not repoint proxy {name!r} of {cl.cluster_id!r}: {exc}", file=sys.stderr)


def stop_all(paths: ClusterPaths, cl: ClusterRecord) -> None:
    """Stop every proxy process of the cluster (before its files go)."""
    for name, record in cl.proxies.items():
        files = ProxyFiles(paths, name)
        for role in record.addresses:
            stop(files, role)
