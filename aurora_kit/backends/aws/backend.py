"""The ``aws`` backend: a thin boto3 translation of :class:`~aurora_kit.backends.base.ClusterBackend`.

Decisions (apply methods, drift, failover target, reboot order, restore window...) live in
:mod:`aurora_kit.backends.aws.decisions`; this module reads RDS state, asks those functions, and makes the calls.
Every call goes through :meth:`AwsApi._call` (:mod:`.api`), which records instead of calling when ``dry_run`` is set and
wraps botocore's ``ClientError`` into :mod:`aurora_kit.errors` (AWS code kept in ``error.context["code"]``).
Every wait goes through :func:`aurora_kit.polling.wait_for` (boto3's waiters poll every 30 s, and the cluster
waiter returns before the instances are up), with its operation's poll profile (:class:`~.api.PollSettings`).

The operations live in mixins over :class:`~.api.AwsApi`: parameter groups (:mod:`.parameters`), snapshots and
restores (:mod:`.snapshots`), failover (:mod:`.failover`), alarms (:mod:`.monitoring`); this class has the clusters,
instances and the data plane.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from psycopg.conninfo import make_conninfo

from aurora_kit.backends.aws import decisions as d
from aurora_kit.backends.aws.api import (
    RDS,
    AwsApi,
    PollSettings,
    _lower,
)
from aurora_kit.backends.aws.endpoints import endpoint_override, host_address, split_host_port
from aurora_kit.backends.aws.failover import FailoverOps
from aurora_kit.backends.aws.monitoring import MonitoringOps
from aurora_kit.backends.aws.parameters import ParameterGroupOps
from aurora_kit.backends.aws.proxy import ProxyOps
from aurora_kit.backends.aws.scaling import ScalingOps
from aurora_kit.backends.aws.snapshots import SnapshotOps
from aurora_kit.backends.aws.translate import (
    to_cluster,
    to_instance,
    to_snapshot,
)
from aurora_kit.backends.base import (
    BackendSettings,
    BackendTraits,
    Cluster,
    ConnectionInfo,
    Instance,
    Snapshot,
    projected_cluster,
)
from aurora_kit.errors import (
    BackendOperationError,
    DeletionProtectionError,
    InvalidParameterError,
    InvalidStateError,
    SnapshotAlreadyExistsError,
)
from aurora_kit.rules import check_final_snapshot_choice
from aurora_kit.specs import ClusterSpec, InstanceSpec


class AwsBackend(ParameterGroupOps, SnapshotOps, FailoverOps, MonitoringOps, ScalingOps, ProxyOps):
    """Aurora PostgreSQL through boto3.

    :param region: AWS region (else the profile's / ``AWS_DEFAULT_REGION``).
    :param profile: named profile for a new ``boto3.Session``; or pass ``session``.
    :param clients: injected boto3 clients by service (``rds``, ``secretsmanager``, ``cloudwatch``) — tests.
    :param ca_bundle: path of the RDS CA bundle, used as ``sslrootcert`` with ``sslmode=verify-full``.
    :param iam_auth: connect with an IAM auth token (``generate_db_auth_token``, 15 min) instead of the
        managed master secret; ``iam_user`` is the database user granted ``rds_iam`` (default: master user).
    :param endpoint_overrides: ``{"<rds hostname>" or "*.<suffix>": "address:port"}``: connect there instead (a
        tunnel, a bastion, the emulator) while the RDS hostname stays the libpq ``host``, so ``verify-full`` checks
        the certificate against it and IAM tokens are signed for it (``hostaddr`` = the address, a name is resolved).
    :param poll: :class:`PollSettings` (or a mapping of its fields).

    ``AWS_ENDPOINT_URL`` (e.g. a moto server) is honoured by botocore itself.
    """

    name = "aws"
    traits = BackendTraits(
        restorable_on_demand=False,
        alarms_sampled_on_demand=False,
        crash_failover=False,
        rejoin_timeout_s=900.0,
        poll_max_delay_s=15.0,
        restorable_wait_s=900.0,
        regional=True,
        iam_database_auth=True,
        retains_automated_backups=True,
    )

    @classmethod
    def check_parameters(cls, params: BackendSettings) -> None:
        if not params.aws.ca_bundle:
            raise InvalidParameterError(
                "aws.ca_bundle", params.aws.ca_bundle, "required with backend: aws (TLS uses sslmode=verify-full)"
            )
        if len(set(params.availability_zones)) < 2 and params.readers > 0:
            raise InvalidParameterError(
                "availability_zones", params.availability_zones, "spread the instances over at least 2 zones"
            )
        bad_az = [z for z in params.availability_zones if not z.startswith(params.region)]
        if bad_az:
            raise InvalidParameterError("availability_zones", bad_az[0], f"not a zone of region {params.region!r}")
        if params.iam_auth and not params.aws.iam_db_user:
            raise InvalidParameterError(
                "aws.iam_db_user",
                None,
                "required with iam_auth: true — the database user that logs in with IAM tokens (01 creates it and "
                "grants rds_iam); the master user keeps its password (managed secret)",
            )
        master = params.to_cluster_spec().master_username
        if params.aws.iam_db_user and params.aws.iam_db_user == master:
            raise InvalidParameterError(
                "aws.iam_db_user", master, "is the master user: granted rds_iam it could only log in with tokens"
            )
        for host, target in params.aws.endpoint_overrides.items():
            try:
                split_host_port(host, target)
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"aws.{exc.field}", exc.value, exc.reason) from exc

    @classmethod
    def options_from(cls, params: BackendSettings) -> dict[str, Any]:
        options: dict[str, Any] = {"dry_run": params.dry_run, "region": params.region, "iam_auth": params.iam_auth}
        if params.iam_auth and params.aws.iam_db_user:
            options["iam_user"] = params.aws.iam_db_user
        if params.aws.profile:
            options["profile"] = params.aws.profile
        if params.aws.ca_bundle:
            options["ca_bundle"] = params.aws.ca_bundle
        if params.aws.endpoint_overrides:
            options["endpoint_overrides"] = dict(params.aws.endpoint_overrides)
        return options

    def unreachable_hint(self) -> str:
        if os.environ.get("AWS_ENDPOINT_URL"):
            if not self.endpoint_overrides:
                return (
                    "AWS_ENDPOINT_URL is set and no aws.endpoint_overrides: a plain moto server's endpoints answer "
                    "nobody (`aurora-kit emulate` answers through the overrides of parameters/aws-emulated.yaml)"
                )
            return "AWS_ENDPOINT_URL is set: is `aurora-kit emulate` running on the port aws.endpoint_overrides names?"
        return "run from inside the cluster's VPC, or through a tunnel/bastion with aws.endpoint_overrides (README)"

    def __init__(
        self,
        *,
        region: str | None = None,
        profile: str | None = None,
        session: boto3.Session | None = None,
        clients: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        progress: bool = False,
        ca_bundle: str | None = None,
        iam_auth: bool = False,
        iam_user: str | None = None,
        sslmode: str = "verify-full",
        endpoint_overrides: Mapping[str, str] | None = None,
        poll: PollSettings | Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(dry_run=dry_run, progress=progress)
        self._clients: dict[str, Any] = dict(clients or {})
        self._session = session
        self._profile = profile
        self.region = region
        self.ca_bundle = ca_bundle
        self.iam_auth = iam_auth
        self.iam_user = iam_user
        self.sslmode = sslmode
        self.endpoint_overrides = dict(endpoint_overrides or {})
        for host, target in self.endpoint_overrides.items():
            split_host_port(host, target)
        self.poll = poll if isinstance(poll, PollSettings) else PollSettings(**dict(poll or {}))
        self._engine_defaults: dict[str, dict[str, dict[str, Any]]] = {}

    # -- clusters ---------------------------------------------------------------------------------------------
    def create_cluster(self, spec: ClusterSpec, *, wait: bool = True) -> Cluster:
        """Create cluster + instances with secure defaults (see decisions.create_cluster_params).

        Idempotent: an existing identical cluster is returned with no mutating call (waited for if ``wait``);
        an existing cluster that differs raises :class:`~aurora_kit.backends.aws.decisions.ClusterDriftError`
        (a ClusterAlreadyExistsError) listing every ``field: wanted vs actual``, and nothing is changed.
        Resumable: when an interrupted create left only some of the spec's instances and nothing else differs,
        the missing instances are created (see decisions.resume_create)."""
        group = spec.db_cluster_parameter_group_name or d.default_parameter_group_name(spec.cluster_id)
        existing = self._find_cluster(spec.cluster_id)
        if existing is not None:
            drift, missing = d.resume_create(spec, existing, self._instances(spec.cluster_id), group)
            if drift:
                raise d.ClusterDriftError(spec.cluster_id, drift)
            if missing:
                if not self.dry_run:
                    self._wait_cluster_status(spec.cluster_id, "available")
                writer = any(m.get("IsClusterWriter") for m in existing.get("DBClusterMembers") or [])
                self._create_instances(spec.cluster_id, missing, spec.tags, has_writer=writer)
                if self.dry_run:
                    return projected_cluster(
                        spec, engine_version=spec.engine_version, port=spec.port or 5432, group=group
                    )
                if not wait:
                    return to_cluster(self._cluster(spec.cluster_id))
                self._wait_cluster_ready(spec.cluster_id, [i.instance_id for i in spec.instances])
                return to_cluster(self._wait_secret_active(spec.cluster_id))
            if wait and not self.dry_run:
                existing = self._wait_cluster_ready(spec.cluster_id, [i.instance_id for i in spec.instances])
            return to_cluster(existing)

        self._check_orderable(spec.instances, spec.engine_version)
        self._ensure_parameter_group(group, d.parameter_group_family(spec.engine_version), spec.cluster_id)
        created = self._call(RDS, "CreateDBCluster", **d.create_cluster_params(spec, group)).get("DBCluster")
        if not self.dry_run:
            # CreateDBInstance needs the cluster to exist; AWS accepts it while "creating", but waiting for
            # "available" first is what RDS documents for restores and avoids ordering surprises.
            self._wait_cluster_status(spec.cluster_id, "available")
        self._create_instances(spec.cluster_id, spec.instances, spec.tags, has_writer=False)
        if self.dry_run:
            return projected_cluster(spec, engine_version=spec.engine_version, port=spec.port or 5432, group=group)
        if not wait:
            return to_cluster(created or self._cluster(spec.cluster_id))
        self._wait_cluster_ready(spec.cluster_id, [i.instance_id for i in spec.instances])
        return to_cluster(self._wait_secret_active(spec.cluster_id))

    def _check_orderable(self, instances: Sequence[InstanceSpec], engine_version: str) -> None:
        """InvalidParameterError before anything is created when a class cannot be ordered for this engine version
        in this Region (or in the requested zone)."""
        options = {
            cls: self._pages(
                RDS,
                "DescribeOrderableDBInstanceOptions",
                "OrderableDBInstanceOptions",
                Engine=d.ENGINE,
                EngineVersion=engine_version,
                DBInstanceClass=cls,
            )
            for cls in sorted({i.instance_class for i in instances})
        }
        region = self.region or self.client(RDS).meta.region_name
        problem = d.orderable_problems(instances, engine_version, str(region), options)
        if problem is not None:
            raise problem

    def _ensure_parameter_group(self, name: str, family: str, cluster_id: str) -> None:
        if name.startswith("default."):
            return
        try:
            groups = self._call(RDS, "DescribeDBClusterParameterGroups", DBClusterParameterGroupName=name)[
                "DBClusterParameterGroups"
            ]
        except InvalidParameterError as exc:
            if exc.context.get("code") not in ("DBParameterGroupNotFound", "DBClusterParameterGroupNotFound"):
                raise
            groups = []
        if groups:
            actual = groups[0].get("DBParameterGroupFamily")
            if actual and actual != family:
                raise InvalidParameterError(
                    "db_cluster_parameter_group_name", name, f"exists with family {actual}, the engine needs {family}"
                )
            return
        self._call(
            RDS,
            "CreateDBClusterParameterGroup",
            DBClusterParameterGroupName=name,
            DBParameterGroupFamily=family,
            Description=f"aurora_kit cluster parameters for {cluster_id}",
            Tags=[{"Key": "aurora-kit:cluster", "Value": cluster_id}],
        )

    def describe_cluster(self, cluster_id: str) -> Cluster:
        cluster_id = _lower(cluster_id)
        return to_cluster(self._cluster(cluster_id))

    def list_clusters(self) -> list[Cluster]:
        rows = self._pages(RDS, "DescribeDBClusters", "DBClusters")
        return [to_cluster(r) for r in rows if r.get("Engine") == d.ENGINE]

    def describe_instances(self, cluster_id: str) -> list[Instance]:
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        instances = self._instances(cluster_id)
        order = [m["DBInstanceIdentifier"].lower() for m in cluster.get("DBClusterMembers") or []]
        ids = [i for i in order if i in instances] + sorted(set(instances) - set(order))
        return [to_instance(instances[i], cluster) for i in ids]

    def modify_cluster(
        self,
        cluster_id: str,
        *,
        deletion_protection: bool | None = None,
        backup_retention_period: int | None = None,
        preferred_backup_window: str | None = None,
    ) -> Cluster:
        """ModifyDBCluster with ApplyImmediately for the fields that change; waits until applied."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        params = d.modify_cluster_params(
            cluster,
            deletion_protection=deletion_protection,
            backup_retention_period=backup_retention_period,
            preferred_backup_window=preferred_backup_window,
        )
        if not params:
            return to_cluster(cluster)
        self._call(RDS, "ModifyDBCluster", **params)
        changed = {k: v for k, v in params.items() if k not in ("DBClusterIdentifier", "ApplyImmediately")}
        if self.dry_run:
            return dataclasses.replace(to_cluster({**cluster, **changed}), status="dry-run")
        return to_cluster(self._wait_modified(cluster_id, changed))

    def delete_cluster(
        self,
        cluster_id: str,
        *,
        final_snapshot_id: str | None,
        skip_final_snapshot: bool = False,
        lift_deletion_protection: bool = False,
        wait: bool = True,
        delete_automated_backups: bool = True,
    ) -> Snapshot | None:
        """Delete instances, then the cluster (see the interface). ``delete_automated_backups=False`` keeps the
        automated backups for their retention period (``DeleteAutomatedBackups``; AWS's default deletes them)."""
        cluster_id = _lower(cluster_id)
        final_snapshot_id = _lower(final_snapshot_id)
        check_final_snapshot_choice(final_snapshot_id, skip_final_snapshot)
        cluster = self._cluster(cluster_id)
        if final_snapshot_id is not None and self._find_snapshot(final_snapshot_id) is not None:
            raise SnapshotAlreadyExistsError(final_snapshot_id)
        if cluster.get("DeletionProtection"):
            if not lift_deletion_protection:
                raise DeletionProtectionError(cluster_id)
            self._call(
                RDS, "ModifyDBCluster", DBClusterIdentifier=cluster_id, DeletionProtection=False, ApplyImmediately=True
            )
            if not self.dry_run:
                self._wait_modified(cluster_id, {"DeletionProtection": False})
        members = [m["DBInstanceIdentifier"].lower() for m in cluster.get("DBClusterMembers") or []]
        writer = [
            m["DBInstanceIdentifier"].lower() for m in cluster.get("DBClusterMembers") or [] if m.get("IsClusterWriter")
        ]
        statuses = {i: r.get("DBInstanceStatus") for i, r in self._instances(cluster_id).items()}
        # every DeleteDBInstance is sent at once (Aurora orders the teardown itself); readers are listed before
        # the writer only so the plan reads naturally. Then wait until all are gone: DeleteDBCluster is refused
        # while the cluster still has instances.
        for instance_id in [m for m in members if m not in writer] + writer:
            if statuses.get(instance_id) == "deleting":  # a previous, interrupted run already asked
                continue
            self._call(RDS, "DeleteDBInstance", DBInstanceIdentifier=instance_id)
        if not self.dry_run:
            for instance_id in members:  # the cluster cannot be deleted while it has instances
                self._wait_instance_gone(instance_id)
        params: dict[str, Any] = {"DBClusterIdentifier": cluster_id, "DeleteAutomatedBackups": delete_automated_backups}
        if skip_final_snapshot:
            params["SkipFinalSnapshot"] = True
        else:
            params["SkipFinalSnapshot"] = False
            params["FinalDBSnapshotIdentifier"] = final_snapshot_id
        self._call(RDS, "DeleteDBCluster", **params)
        if self.dry_run:
            if final_snapshot_id is None:
                return None
            return Snapshot(final_snapshot_id, cluster_id, "dry-run", "manual", cluster.get("EngineVersion", ""))
        if not wait:
            return None
        self._wait(
            f"cluster {cluster_id} deleted",
            lambda: self._find_cluster(cluster_id),
            lambda c: c is None,
            operation="delete",
            describe=lambda c: "deleted" if c is None else str(c.get("Status")),
        )
        if final_snapshot_id is None:
            return None
        return to_snapshot(self._wait_snapshot_available(final_snapshot_id))

    def stop_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster:
        """StopDBCluster (Aurora restarts a stopped cluster by itself after 7 days); idempotent."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        if cluster.get("Status") == "stopped":
            return to_cluster(cluster)
        if cluster.get("Status") != "stopping":
            self._call(RDS, "StopDBCluster", DBClusterIdentifier=cluster_id)
        if self.dry_run:
            return dataclasses.replace(to_cluster(cluster), status="dry-run")
        return to_cluster(self._wait_cluster_status(cluster_id, "stopped") if wait else self._cluster(cluster_id))

    def start_cluster(self, cluster_id: str, *, wait: bool = True) -> Cluster:
        """StartDBCluster; waits for the cluster and every instance; idempotent."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        if cluster.get("Status") == "available":
            return to_cluster(cluster)
        if cluster.get("Status") != "starting":
            self._call(RDS, "StartDBCluster", DBClusterIdentifier=cluster_id)
        if self.dry_run:
            return dataclasses.replace(to_cluster(cluster), status="dry-run")
        return to_cluster(self._wait_cluster_ready(cluster_id) if wait else self._cluster(cluster_id))

    # -- instances --------------------------------------------------------------------------------------------
    def create_instance(self, cluster_id: str, spec: InstanceSpec, *, wait: bool = True) -> Instance:
        """Add an instance (the writer if the cluster has none). Idempotent for an existing member."""
        cluster_id = _lower(cluster_id)
        cluster = self._cluster(cluster_id)
        existing = self._find_instance(spec.instance_id)
        if existing is not None:
            if str(existing.get("DBClusterIdentifier", "")).lower() != cluster_id:
                raise InvalidStateError(
                    f"DB instance {spec.instance_id!r} already exists in cluster "
                    f"{existing.get('DBClusterIdentifier')!r}",
                    instance_id=spec.instance_id,
                    cluster_id=cluster_id,
                )
            if wait and not self.dry_run:
                cluster = self._wait_cluster_ready(cluster_id, [spec.instance_id])
                existing = self._find_instance(spec.instance_id) or existing
            return to_instance(existing, cluster)
        self._call(
            RDS, "CreateDBInstance", **d.create_instance_params(cluster_id, spec, d.tag_dict(cluster.get("TagList")))
        )
        if self.dry_run:
            return Instance(
                spec.instance_id,
                cluster_id,
                "dry-run",
                spec.instance_class,
                is_cluster_writer=not cluster.get("DBClusterMembers"),
                endpoint_address="",
                endpoint_port=0,
                availability_zone=spec.availability_zone,
                promotion_tier=spec.promotion_tier,
            )
        if wait:
            cluster = self._wait_cluster_ready(cluster_id, [spec.instance_id])
        instance = self._find_instance(spec.instance_id)
        if instance is None:
            raise BackendOperationError(f"instance {spec.instance_id!r} vanished after CreateDBInstance")
        return to_instance(instance, cluster)

    def delete_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> None:
        cluster_id = _lower(cluster_id)
        instance_id = _lower(instance_id)
        cluster = self._cluster(cluster_id)
        self._member(cluster, instance_id)
        self._call(RDS, "DeleteDBInstance", DBInstanceIdentifier=instance_id)
        if wait and not self.dry_run:
            self._wait_instance_gone(instance_id)

    def reboot_instance(self, cluster_id: str, instance_id: str, *, wait: bool = True) -> Instance:
        cluster_id = _lower(cluster_id)
        instance_id = _lower(instance_id)
        cluster = self._cluster(cluster_id)
        self._member(cluster, instance_id)
        response = self._call(RDS, "RebootDBInstance", DBInstanceIdentifier=instance_id)
        if self.dry_run:
            inst = self._find_instance(instance_id) or {"DBInstanceIdentifier": instance_id}
            return dataclasses.replace(to_instance(inst, cluster), status="dry-run")
        if not wait:
            return to_instance(response.get("DBInstance") or self._find_instance(instance_id) or {}, cluster)
        return self._wait_instance_rebooted(cluster_id, instance_id, response, require_in_sync=False)

    # -- data plane -------------------------------------------------------------------------------------------
    def master_connection_info(self, cluster_id: str, endpoint: str = "cluster") -> ConnectionInfo:
        """The master user with the managed secret, even with ``iam_auth`` (administration: the IAM user itself)."""
        return self._declare(self._endpoint_info(cluster_id, endpoint, master=True))

    def _endpoint_info(self, cluster_id: str, endpoint: str = "cluster", *, master: bool = False) -> ConnectionInfo:
        """conninfo for the cluster (writer) endpoint, the reader endpoint or one instance, with
        ``sslmode=verify-full`` + ``sslrootcert=<ca_bundle>``. The password (managed secret, or an IAM token for
        ``iam_user`` when ``iam_auth`` and not ``master``) is in ``ConnectionInfo.password`` only, never in
        conninfo."""
        cluster_id = _lower(cluster_id)
        endpoint = _lower(endpoint)
        cluster = self._cluster(cluster_id)
        port = int(cluster.get("Port") or 5432)
        if endpoint == "cluster":
            host = str(cluster.get("Endpoint") or "")
        elif endpoint == "reader":
            host = str(cluster.get("ReaderEndpoint") or "")
        else:
            self._member(cluster, endpoint)
            inst = self._find_instance(endpoint) or {}
            host = str((inst.get("Endpoint") or {}).get("Address", ""))
            port = int((inst.get("Endpoint") or {}).get("Port") or port)
        if not host:
            raise InvalidStateError(
                f"endpoint {endpoint!r} of {cluster_id!r} has no address yet (status {cluster.get('Status')!r})",
                cluster_id=cluster_id,
                endpoint=endpoint,
            )
        iam = self.iam_auth and not master
        user = (self.iam_user if iam and self.iam_user else None) or str(cluster.get("MasterUsername"))
        dbname = str(cluster.get("DatabaseName") or "postgres")
        if iam:
            if not cluster.get("IAMDatabaseAuthenticationEnabled"):
                raise InvalidStateError(
                    f"IAM database authentication is disabled on {cluster_id!r}",
                    hint="enable EnableIAMDatabaseAuthentication or construct the backend with iam_auth=False",
                    cluster_id=cluster_id,
                )
            rds = self.client(RDS)
            password = rds.generate_db_auth_token(
                DBHostname=host, Port=port, DBUsername=user, Region=rds.meta.region_name
            )
        else:
            password = self._master_password(cluster)
        params: dict[str, Any] = {"host": host, "port": port, "dbname": dbname, "user": user, "sslmode": self.sslmode}
        target = endpoint_override(host, self.endpoint_overrides)
        if target is not None:  # the RDS name stays the host (TLS verifies it); the connection goes to hostaddr
            name, params["port"] = split_host_port(host, target)
            params["hostaddr"] = host_address(host, target, name)
        if self.ca_bundle:
            params["sslrootcert"] = self.ca_bundle
        return ConnectionInfo(
            make_conninfo("", **params), user=user, dbname=dbname, password=password, endpoint=endpoint
        )

    def _master_password(self, cluster: Mapping[str, Any]) -> str:
        cluster_id = str(cluster.get("DBClusterIdentifier"))
        secret = cluster.get("MasterUserSecret") or {}
        if not secret.get("SecretArn"):
            raise InvalidStateError(
                f"cluster {cluster_id!r} has no managed master user secret",
                hint="enable ManageMasterUserPassword (ModifyDBCluster) or use iam_auth=True",
                cluster_id=cluster_id,
            )
        if secret.get("SecretStatus") != "active":
            secret = self._wait_secret_active(cluster_id).get("MasterUserSecret") or secret
        value = self._call("secretsmanager", "GetSecretValue", SecretId=secret["SecretArn"])
        try:
            return str(json.loads(value["SecretString"])["password"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendOperationError(
                f"the master user secret of {cluster_id!r} has no JSON 'password' field", cluster_id=cluster_id
            ) from exc

    def close(self) -> None:
        for client in self._clients.values():
            closer = getattr(client, "close", None)
            if callable(closer):
                closer()
        self._clients.clear()


__all__ = ["AwsApi", "AwsBackend", "PollSettings"]
