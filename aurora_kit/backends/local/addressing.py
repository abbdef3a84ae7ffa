"""Where each local instance answers and the names clients reach it by, shaped like Aurora's endpoints.

On Aurora every instance of a cluster listens on the cluster's port (5432 by default) at an address of its own, and
DNS names derive from identifiers: the instance endpoint ``<instance-id>.<suffix>.<region>.rds.amazonaws.com``, the
cluster endpoint ``<cluster-id>.cluster-<suffix>...`` (the writer) and the reader endpoint
``<cluster-id>.cluster-ro-<suffix>...`` (the readers). A client such as the AWS Advanced Python Wrapper turns an
instance id from ``aurora_replica_status()`` into an endpoint with one pattern, ``?.<suffix>...``, and one port.

Locally:

* **Addresses.** Every instance of a cluster listens on the cluster's port at its own loopback address
  ``127.0.x.y`` (Linux routes all of ``127.0.0.0/8`` to the loopback interface: nothing to configure, no root
  needed). The port is the spec's ``port``, else 5432 as on Aurora when that port is free on the addresses picked,
  else a free port. An address is taken when a cluster of this root records it, when any line of the hosts file
  names it (the blocks of other roots included) or when something already listens on it at that port; each root
  starts from a /24 of its own (:func:`candidate_addresses`), so roots allocating at once do not collide.
  Clusters created before this scheme keep ``127.0.0.1`` with one port per instance (:data:`LEGACY_ADDRESS`).
* **Names.** :func:`domain` gives each root dir a suffix, ``c<11 hex>.aurora-kit.internal`` (``.internal`` is
  reserved for private use, so it never shadows a real name): ``<instance-id>.<domain>`` per instance,
  ``<cluster-id>.cluster-<domain>`` for the writer and ``<cluster-id>.cluster-ro-<domain>`` for the readers (every
  reader's address; the writer's when there is none). The wrapper's host pattern is ``?.<domain>``.
* **The hosts file.** As root, the backend keeps one marked block per cluster in ``/etc/hosts`` (rewritten when
  members or roles change, removed with the cluster; blocks of deleted roots or clusters are pruned on each
  write), as Aurora's DNS follows a failover. Set ``AURORA_KIT_MANAGE_HOSTS=0`` to keep the file untouched, or
  ``AURORA_KIT_HOSTS_FILE`` to manage another file. A user who cannot write the file gets the addresses (every
  plain client works) but no names: ``aurora-kit local connect-info --for aws-wrapper`` says so and prints the lines
  to add.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aurora_kit.errors import InvalidParameterError

#: Aurora's default port, which local clusters take too when it is free
DEFAULT_PORT = 5432
#: the address of clusters created before per-instance addresses (one port per instance)
LEGACY_ADDRESS = "127.0.0.1"
#: the parent of every name the backend manages
NAME_ZONE = "aurora-kit.internal"
#: loopback addresses never handed out: the usual host, Debian's hostname entry, systemd-resolved's stubs
RESERVED = frozenset({"127.0.0.1", "127.0.1.1", "127.0.0.53", "127.0.0.54"})
#: consecutive busy addresses after which a port counts as taken on every address (a wildcard listener)
_BUSY_LIMIT = 16

_BLOCK = re.compile(r"^# >>> aurora_kit root=(?P<root>\S+) cluster=(?P<cluster>\S+)")


def candidate_addresses(root: Path | None = None) -> Iterator[str]:
    """Loopback addresses ``127.a.b.c`` (c 1-254, without :data:`RESERVED`), starting in a /24 of ``root``'s own
    (from a hash of its path) and wrapping round the whole 127/8: roots that allocate at the same moment (the
    CLI, a test session, an emulator, each with its own root) start 65,536 /24s apart instead of racing for
    127.0.0.2 — an address a root has recorded but not bound yet (a restored cluster's future writer, a stopped
    instance) looks free to every other root."""
    start = int(hashlib.sha256(str(root).encode()).hexdigest()[:8], 16) % 65536 if root is not None else 0
    for n in range(65536):
        block = (start + n) % 65536
        for fourth in range(1, 255):
            address = f"127.{block >> 8}.{block & 255}.{fourth}"
            if address not in RESERVED:
                yield address


def bindable(address: str, port: int) -> bool:
    """Whether a server could listen on ``address:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL does: TIME_WAIT is no conflict
        try:
            sk.bind((address, port))
        except OSError:
            return False
    return True


def pick_addresses(count: int, port: int, taken: Iterable[str], root: Path | None = None) -> list[str] | None:
    """``count`` addresses not in ``taken`` on which ``port`` is free, or None when the port is busy everywhere."""
    skip = set(taken)
    out: list[str] = []
    busy = 0
    for address in candidate_addresses(root):
        if len(out) == count:
            break
        if address in skip:
            continue
        if bindable(address, port):
            out.append(address)
            busy = 0
        else:
            busy += 1
            if busy >= _BUSY_LIMIT:
                return None
    return out if len(out) == count else None


def allocate(count: int, *, port: int | None, taken: Iterable[str], root: Path | None = None) -> tuple[int, list[str]]:
    """The cluster port and ``count`` fresh addresses (from ``root``'s part of 127/8 first): ``port`` when given
    (InvalidParameterError if nothing can listen on it), else 5432, else a free port."""
    taken = set(taken)
    if port is not None:
        picked = pick_addresses(count, port, taken, root)
        if picked is None:
            raise InvalidParameterError("port", port, "something listens on that port on every loopback address")
        return port, picked
    picked = pick_addresses(count, DEFAULT_PORT, taken, root)
    if picked is not None:
        return DEFAULT_PORT, picked
    first = next(a for a in candidate_addresses(root) if a not in taken)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
        sk.bind((first, 0))
        free = int(sk.getsockname()[1])
    picked = pick_addresses(count, free, taken, root)
    if picked is None:  # pragma: no cover - the port was just free on the first address
        raise InvalidParameterError("port", free, "could not find loopback addresses free on a free port")
    return free, picked


# -- names ---------------------------------------------------------------------------------------------------
def domain(root: Path) -> str:
    """The name suffix of one root dir (as Aurora's ``<suffix>.<region>.rds.amazonaws.com`` is per account)."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:11]
    return f"c{digest}.{NAME_ZONE}"


def instance_name(root: Path, instance_id: str) -> str:
    return f"{instance_id}.{domain(root)}"


def cluster_name(root: Path, cluster_id: str) -> str:
    return f"{cluster_id}.cluster-{domain(root)}"


def reader_name(root: Path, cluster_id: str) -> str:
    return f"{cluster_id}.cluster-ro-{domain(root)}"


def host_pattern(root: Path) -> str:
    """The wrapper's ``cluster_instance_host_pattern``: ``?`` stands for an instance id."""
    return f"?.{domain(root)}"


@dataclass(frozen=True)
class Member:
    """What the names of one cluster are made of: an instance, its address, whether it writes."""

    instance_id: str
    address: str
    is_writer: bool


def entries(root: Path, cluster_id: str, members: Iterable[Member]) -> list[tuple[str, str]]:
    """(address, name) lines of a cluster: every instance, the cluster endpoint (the writer), the reader endpoint
    (every reader, or the writer when there is none). Legacy clusters (all on 127.0.0.1) get none."""
    members = [m for m in members if m.address != LEGACY_ADDRESS]
    out = [(m.address, instance_name(root, m.instance_id)) for m in members]
    writers = [m for m in members if m.is_writer]
    readers = [m for m in members if not m.is_writer] or writers
    out += [(m.address, cluster_name(root, cluster_id)) for m in writers]
    out += [(m.address, reader_name(root, cluster_id)) for m in readers]
    return out


def resolves(name: str, address: str) -> bool:
    """Whether ``name`` resolves to ``address`` on this machine now."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    return any(info[4][0] == address for info in infos)


# -- the hosts file ------------------------------------------------------------------------------------------
def _begin(root: Path, cluster_id: str) -> str:
    return f"# >>> aurora_kit root={root} cluster={cluster_id} (managed by aurora_kit; removed with the cluster)"


def _end(root: Path, cluster_id: str) -> str:
    return f"# <<< aurora_kit root={root} cluster={cluster_id}"


def _cluster_recorded(root: Path, cluster_id: str) -> bool:
    """Whether ``cluster_id`` still exists in the state of ``root`` (a block of a gone cluster is stale)."""
    try:
        with (root / "state.json").open() as fh:
            return cluster_id in (json.load(fh).get("clusters") or {})
    except FileNotFoundError:  # the root is gone (or never held a cluster)
        return False
    except (OSError, ValueError):
        return True  # cannot tell: keep it


class HostsFile:
    """Marked blocks in a hosts file: one per (root, cluster), written under a machine-wide lock."""

    def __init__(self, path: Path | None = None, lock_path: Path | None = None) -> None:
        self.path = path or Path(os.environ.get("AURORA_KIT_HOSTS_FILE") or "/etc/hosts")
        default_lock = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
        self.lock_path = lock_path or default_lock / "aurora_kit-hosts.lock"

    @property
    def managed(self) -> bool:
        """Whether the backend keeps names here (the file is writable and management is not switched off)."""
        if os.environ.get("AURORA_KIT_MANAGE_HOSTS", "1").strip().lower() in ("0", "no", "false", "off"):
            return False
        return self.path.exists() and os.access(self.path, os.W_OK)

    def read(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""

    def addresses(self) -> set[str]:
        """Every IPv4 address any line names (other roots' blocks and anything else in the file)."""
        out: set[str] = set()
        for line in self.read().splitlines():
            fields = line.split("#", 1)[0].split()
            if fields and fields[0].count(".") == 3:
                out.add(fields[0])
        return out

    def blocks(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(root, cluster) → its (address, name) lines, as the file holds them now."""
        out: dict[tuple[str, str], list[tuple[str, str]]] = {}
        current: tuple[str, str] | None = None
        for line in self.read().splitlines():
            match = _BLOCK.match(line)
            if match:
                current = (match["root"], match["cluster"])
                out[current] = []
            elif line.startswith("# <<< aurora_kit"):
                current = None
            elif current is not None and line.strip() and not line.startswith("#"):
                address, name = line.split()[:2]
                out[current].append((address, name))
        return out

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def sync(self, root: Path, cluster_id: str, lines: list[tuple[str, str]] | None) -> None:
        """Replace the block of (root, cluster) by ``lines`` (None or []: remove it) and prune stale blocks."""
        with self._locked():
            kept: list[str] = []
            skipping = False
            for line in self.read().splitlines():
                match = _BLOCK.match(line)
                if match:
                    block_root, block_cluster = Path(match["root"]), match["cluster"]
                    mine = block_root == root and block_cluster == cluster_id
                    skipping = mine or not _cluster_recorded(block_root, block_cluster)
                if not skipping:
                    kept.append(line)
                if line.startswith("# <<< aurora_kit"):
                    skipping = False
            while kept and not kept[-1].strip():
                kept.pop()
            if lines:
                kept += ["", _begin(root, cluster_id), *(f"{a} {n}" for a, n in lines), _end(root, cluster_id)]
            self._write("\n".join(kept) + "\n")

    def _write(self, text: str) -> None:
        """Atomically where possible (temp file + rename); in place where the file is a mount point (containers)."""
        st = self.path.stat()
        tmp = self.path.with_name(f".{self.path.name}.aurora_kit.tmp")
        try:
            tmp.write_text(text)
            os.chmod(tmp, st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(tmp, st.st_uid, st.st_gid)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            with self.path.open("r+") as fh:
                fh.write(text)
                fh.truncate()
