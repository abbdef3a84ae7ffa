"""The write probe through the AWS Advanced Python Wrapper: what an application using Aurora's own client sees.

Same measurement as :class:`~aurora_kit.checks.write_probe.WriteProbe` (acknowledged ids read back after the event,
RTO = the longest gap between two acknowledged writes), but the writer is one ``AwsWrapperConnection`` (psycopg 3
underneath) that the wrapper fails over by itself: on ``FailoverSuccessError`` the same connection object already
points at the new writer and the statement is run again, as the wrapper's documentation tells applications to do.
Anything else (``FailoverFailedError``...) closes the connection and a new one is opened.

The wrapper is a test dependency, not a runtime one (``pip install aws-advanced-python-wrapper``): it is imported
when a probe connects. Two settings profiles are measured (:data:`PROFILES`):

``defaults``
    Only what the recipe must add for a non-RDS domain (``cluster_instance_host_pattern``, ``cluster_id``):
    the wrapper's default plugins (``initial_connection,aurora_connection_tracker,failover_v2,host_monitoring_v2``)
    and timeouts.
``recommended``
    The wrapper's documented choices for failover-sensitive applications: its "aggressive failover time profile"
    (FailoverConfigurationGuide: ``failover_timeout_sec=30``, ``failover_reader_connect_timeout_sec=10``,
    ``failover_writer_reconnect_interval_sec=2``, ``failover_cluster_topology_refresh_rate_sec=2``), the
    ``failover_v2`` + ``host_monitoring_v2`` chain, and bounded monitoring connections
    (``monitoring-connect_timeout=10``, ``monitoring-socket_timeout=10``, as in its host-monitoring docs).

::

    recipe = backend.aws_wrapper_recipe(cid)
    with WrapperWriteProbe(recipe, profile="recommended") as probe:
        backend.failover(cid, mode="crash")
    probe.report.assert_ok()
    probe.failover_successes      # FailoverSuccessError raised to the application
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from aurora_kit.backends.base import ConnectionInfo
from aurora_kit.checks._probe_tables import SCHEMA
from aurora_kit.checks.common import sqlstate_of
from aurora_kit.checks.write_probe import Ack, WriteProbe
from aurora_kit.errors import InvalidParameterError

PROFILES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "recommended": {
        "plugins": "failover_v2,host_monitoring_v2",
        "failover_timeout_sec": 30,
        "failover_reader_connect_timeout_sec": 10,
        "failover_writer_reconnect_interval_sec": 2,
        "failover_cluster_topology_refresh_rate_sec": 2,
        "monitoring-connect_timeout": 10,
        "monitoring-socket_timeout": 10,
    },
}


class Recipe(Protocol):
    """What a backend hands out for the wrapper (the local backend's ``aws_wrapper_recipe``)."""

    cluster_id: str
    conninfo: str
    properties: Mapping[str, str]
    password: str | None


def wrapper_settings(recipe: Recipe, profile: str = "defaults", **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``AwsWrapperConnection.connect``: the recipe's properties, the profile, ``extra``."""
    if profile not in PROFILES:
        raise InvalidParameterError("profile", profile, f"one of {', '.join(PROFILES)}")
    settings: dict[str, Any] = {**recipe.properties, **PROFILES[profile], **extra}
    if recipe.password:
        settings["password"] = recipe.password
    return settings


def connect_wrapper(recipe: Recipe, profile: str = "defaults", **extra: Any) -> Any:
    """An ``AwsWrapperConnection`` over psycopg 3 to the recipe's cluster endpoint."""
    import psycopg
    from aws_advanced_python_wrapper import AwsWrapperConnection

    return AwsWrapperConnection.connect(
        psycopg.Connection.connect, recipe.conninfo, **wrapper_settings(recipe, profile, **extra)
    )


class WrapperWriteProbe(WriteProbe):
    """Background writer at ``rate`` writes/s through one wrapper connection; see the module doc.

    ``failover_successes`` counts the ``FailoverSuccessError`` the application saw; ``failover_writers`` holds, for
    each, the instance the next acknowledged write landed on."""

    def __init__(
        self,
        recipe: Recipe,
        *,
        profile: str = "defaults",
        settings: Mapping[str, Any] | None = None,
        rate: float = 100.0,
        **kwargs: Any,
    ) -> None:
        info = ConnectionInfo(
            conninfo=recipe.conninfo, user="", dbname="", password=recipe.password, endpoint="aws-wrapper"
        )
        super().__init__(info, rate=rate, **kwargs)
        wrapper_settings(recipe, profile)  # InvalidParameterError for an unknown profile, before anything runs
        self.recipe = recipe
        self.profile = profile
        #: wrapper settings on top of the profile (``plugins="failover,host_monitoring"``...)
        self.settings = dict(settings or {})
        self.failover_successes = 0
        self.failover_writers: list[str] = []

    def _run(self) -> None:
        from aws_advanced_python_wrapper.errors import FailoverSuccessError

        period = 1.0 / self.rate
        conn: Any = None
        next_id = 1
        next_t = time.monotonic()
        after_failover = False
        insert = (
            f"INSERT INTO {SCHEMA}.write_probe (run_id, id, instance_id) "
            "VALUES (%s, %s, aurora_db_instance_identifier()) RETURNING written_at, instance_id"
        )
        try:
            while not self._stop.is_set():
                if conn is None:
                    try:
                        conn = connect_wrapper(self.recipe, self.profile, autocommit=True, **self.settings)
                    except Exception as exc:
                        self._fail("connect", sqlstate_of(exc), _first_line(exc))
                        next_t = self._pace(next_t, period)
                        continue
                attempt = next_id
                next_id += 1
                with self._lock:
                    self._attempted += 1
                try:
                    cur = conn.cursor()
                    cur.execute(insert, (self.run_id, attempt))
                    written_at, instance_id = cur.fetchone()
                    with self._lock:
                        self._acks.append(Ack(attempt, self.now(), written_at, str(instance_id), None))
                    if after_failover:
                        self.failover_writers.append(str(instance_id))
                        after_failover = False
                except FailoverSuccessError as exc:
                    self.failover_successes += 1
                    after_failover = True
                    self._fail("write", "FailoverSuccessError", _first_line(exc), attempt)
                except Exception as exc:
                    self._fail("write", sqlstate_of(exc), _first_line(exc), attempt)
                    _close(conn)
                    conn = None
                next_t = self._pace(next_t, period)
        except BaseException as exc:  # surfaced by start()/stop(), never swallowed
            self._crash = exc
            raise
        finally:
            _close(conn)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _close(conn: Any) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # a broken connection may refuse to close; it is dropped either way
        return
