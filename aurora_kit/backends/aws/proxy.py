"""RDS Proxy for an Aurora cluster (09-proxy): CreateDBProxy (engine family POSTGRESQL, the cluster's managed secret,
an IAM role that may read it — given, or created with the least it needs — TLS required, idle timeout), the pool
limits (ModifyDBProxyTargetGroup), the cluster as target (RegisterDBProxyTargets), a wait until every instance target
is ``AVAILABLE``, a ``READ_ONLY`` endpoint (CreateDBProxyEndpoint), and DeleteDBProxy (with the endpoint and the role
it created). Clients reach the proxy with TLS verified against the system's trust store (RDS Proxy presents an ACM
certificate, not one of the RDS CA bundle) and the secret's password or an IAM token."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from psycopg.conninfo import make_conninfo

from aurora_kit.backends.aws import scale_decisions as sd
from aurora_kit.backends.aws.api import RDS, AwsApi, _lower
from aurora_kit.backends.aws.endpoints import endpoint_override, host_address, split_host_port
from aurora_kit.backends.base import ConnectionInfo
from aurora_kit.backends.capacity import Proxy
from aurora_kit.errors import (
    AuroraKitError,
    InvalidParameterError,
    InvalidStateError,
    ProxyNotFoundError,
)
from aurora_kit.specs import ProxySpec


def _not_found(exc: AuroraKitError) -> bool:
    return exc.context.get("code") in ("DBProxyNotFoundFault", "DBProxyEndpointNotFoundFault", "NoSuchEntity")


class ProxyOps(AwsApi):
    """The proxy operations of :class:`~aurora_kit.backends.aws.AwsBackend`."""

    sslmode: str
    ca_bundle: str | None
    endpoint_overrides: dict[str, str]

    def _proxy_row(self, proxy_name: str) -> dict[str, Any] | None:
        try:
            rows = self._call(RDS, "DescribeDBProxies", DBProxyName=proxy_name).get("DBProxies") or []
        except AuroraKitError as exc:
            if _not_found(exc):
                return None
            raise
        return dict(rows[0]) if rows else None

    def _proxy_endpoints(self, proxy_name: str) -> list[dict[str, Any]]:
        return self._pages(RDS, "DescribeDBProxyEndpoints", "DBProxyEndpoints", DBProxyName=proxy_name)

    def _proxy_targets(self, proxy_name: str) -> list[dict[str, Any]]:
        return self._pages(RDS, "DescribeDBProxyTargets", "Targets", DBProxyName=proxy_name)

    def _subnets(self, cluster: dict[str, Any], spec: ProxySpec) -> list[str]:
        """The proxy's subnets: the spec's, else those of the cluster's DB subnet group (at least two zones)."""
        if spec.vpc_subnet_ids:
            return list(spec.vpc_subnet_ids)
        group = cluster.get("DBSubnetGroup")
        if not group:
            raise InvalidStateError(
                f"cluster {cluster.get('DBClusterIdentifier')!r} reports no DB subnet group",
                hint="give the proxy's subnets: proxy.vpc_subnet_ids",
            )
        rows = self._call(RDS, "DescribeDBSubnetGroups", DBSubnetGroupName=str(group)).get("DBSubnetGroups") or []
        subnets = [str(s["SubnetIdentifier"]) for r in rows for s in r.get("Subnets") or []]
        if not subnets:
            raise InvalidStateError(f"DB subnet group {group!r} lists no subnet", hint="set proxy.vpc_subnet_ids")
        return subnets

    def _role_for(self, spec: ProxySpec, cluster: dict[str, Any]) -> str:
        """The proxy's role: ``spec.role_arn``, else one created for it (trust: rds.amazonaws.com; may read this
        cluster's secret, decrypt it through Secrets Manager when a customer managed key encrypts it)."""
        if spec.role_arn:
            return spec.role_arn
        secret = cluster.get("MasterUserSecret") or {}
        name = sd.proxy_role_name(spec.proxy_name)
        try:
            found = self._call("iam", "GetRole", RoleName=name).get("Role") or {}
        except AuroraKitError as exc:
            if not _not_found(exc):
                raise
            found = {}
        if not found:
            created = self._call(
                "iam",
                "CreateRole",
                RoleName=name,
                AssumeRolePolicyDocument=sd.proxy_trust_policy(),
                Description=f"RDS Proxy {spec.proxy_name}: reads the master secret of {cluster['DBClusterIdentifier']}",
                Tags=[{"Key": sd.PROXY_ROLE_TAG, "Value": spec.proxy_name}],
            )
            found = created.get("Role") or {"Arn": f"arn:aws:iam::000000000000:role/{name}"}
        region = str(self.client(RDS).meta.region_name)
        self._call(
            "iam",
            "PutRolePolicy",
            RoleName=name,
            PolicyName=sd.PROXY_POLICY_NAME,
            PolicyDocument=sd.proxy_secret_policy(str(secret["SecretArn"]), secret.get("KmsKeyId"), region),
        )
        return str(found["Arn"])

    def create_proxy(self, cluster_id: str, spec: ProxySpec, *, wait: bool = True) -> Proxy:
        cluster_id = _lower(cluster_id)
        if not isinstance(spec, ProxySpec):
            raise InvalidParameterError("spec", type(spec).__name__, "must be a ProxySpec")
        cluster = self._cluster(cluster_id)
        secret = cluster.get("MasterUserSecret") or {}
        if not secret.get("SecretArn"):
            raise InvalidStateError(
                f"cluster {cluster_id!r} has no managed master secret for the proxy to read",
                hint="enable ManageMasterUserPassword (01 creates clusters with it)",
                cluster_id=cluster_id,
            )
        existing = self._proxy_row(spec.proxy_name)
        if existing is not None:
            drift = sd.proxy_drift(spec, existing)
            if drift:
                raise InvalidParameterError(
                    "proxy.proxy_name", spec.proxy_name, "exists and differs: " + "; ".join(drift)
                )
        subnets = self._subnets(cluster, spec)
        groups = list(spec.vpc_security_group_ids) or [
            str(g["VpcSecurityGroupId"]) for g in cluster.get("VpcSecurityGroups") or []
        ]
        if existing is None:
            role = self._role_for(spec, cluster)
            tags = {sd.PROXY_ROLE_TAG: spec.proxy_name, "aurora-kit:cluster": cluster_id}
            params = sd.create_proxy_params(
                spec, secret_arn=str(secret["SecretArn"]), role_arn=role, subnets=subnets, security_groups=groups,
                tags=tags,
            )  # fmt: skip
            self._call(RDS, "CreateDBProxy", **params)
        if not self.dry_run:
            self._wait_proxy(spec.proxy_name)
        self._call(RDS, "ModifyDBProxyTargetGroup", **sd.target_group_params(spec))
        targets = [] if self.dry_run else self._proxy_targets(spec.proxy_name)
        if not any(t.get("Type") == "TRACKED_CLUSTER" for t in targets):
            self._call(
                RDS,
                "RegisterDBProxyTargets",
                DBProxyName=spec.proxy_name,
                TargetGroupName=sd.DEFAULT_TARGET_GROUP,
                DBClusterIdentifiers=[cluster_id],
            )
        if spec.read_only_endpoint:
            have = [] if self.dry_run else self._proxy_endpoints(spec.proxy_name)
            if not any(e.get("DBProxyEndpointName") == spec.read_only_endpoint for e in have):
                params = {"DBProxyName": spec.proxy_name, "DBProxyEndpointName": spec.read_only_endpoint,
                          "VpcSubnetIds": subnets, "TargetRole": "READ_ONLY"}  # fmt: skip
                if groups:
                    params["VpcSecurityGroupIds"] = groups
                self._call(RDS, "CreateDBProxyEndpoint", **params)
        if self.dry_run:
            return Proxy(
                spec.proxy_name, cluster_id, "dry-run", sd.ENGINE_FAMILY, "", 5432, spec.require_tls,
                spec.idle_client_timeout_s, spec.role_arn or "", spec.max_connections_percent,
                spec.max_idle_connections_percent, spec.connection_borrow_timeout_s,
            )  # fmt: skip
        if wait:
            self._wait_targets(spec.proxy_name, spec.read_only_endpoint)
        return self.describe_proxy(spec.proxy_name)

    def _wait_proxy(self, name: str) -> None:
        self._wait(
            f"proxy {name} available",
            lambda: self._proxy_row(name),
            lambda row: row is not None and row.get("Status") == "available",
            operation="create",
            describe=lambda row: "not found" if row is None else str(row.get("Status")),
            fail_if=lambda row: (
                f"proxy {name} is {row.get('Status')}"
                if row is not None and row.get("Status") in ("incompatible-network", "insufficient-resource-limits")
                else None
            ),
        )

    def _wait_targets(self, name: str, read_only: str | None) -> None:
        """Until every instance target is AVAILABLE (and the read-only endpoint available)."""

        def probe() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return self._proxy_targets(name), self._proxy_endpoints(name) if read_only else []

        def done(state: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> bool:
            targets, endpoints = state
            ro_ok = not read_only or any(
                e.get("DBProxyEndpointName") == read_only and e.get("Status") == "available" for e in endpoints
            )
            return sd.instance_targets_ready(targets) and ro_ok

        def describe(state: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> str:
            targets, endpoints = state
            shown = ", ".join(
                f"{t.get('RdsResourceId')}:{(t.get('TargetHealth') or {}).get('State')}"
                for t in targets
                if t.get("Type") != "TRACKED_CLUSTER"
            )
            ends = ", ".join(f"{e.get('DBProxyEndpointName')}:{e.get('Status')}" for e in endpoints)
            return f"targets [{shown or 'none yet'}] endpoints [{ends}]"

        self._wait(f"proxy {name} targets AVAILABLE", probe, done, operation="create", describe=describe)

    def describe_proxy(self, proxy_name: str) -> Proxy:
        row = self._proxy_row(proxy_name)
        if row is None:
            raise ProxyNotFoundError(proxy_name)
        groups = self._pages(RDS, "DescribeDBProxyTargetGroups", "TargetGroups", DBProxyName=proxy_name)
        group = next((g for g in groups if g.get("IsDefault") or g.get("TargetGroupName") == "default"), None)
        return sd.to_proxy(row, self._proxy_targets(proxy_name), self._proxy_endpoints(proxy_name), group)

    def delete_proxy(self, proxy_name: str, *, wait: bool = True) -> None:
        """DeleteDBProxyEndpoint for its own endpoints, DeleteDBProxy, then the role created for it (tagged
        ``aurora-kit:proxy``); a role given in ``role_arn`` stays."""
        row = self._proxy_row(proxy_name)
        if row is None:
            raise ProxyNotFoundError(proxy_name)
        for endpoint in self._proxy_endpoints(proxy_name):
            if not endpoint.get("IsDefault"):
                self._call(RDS, "DeleteDBProxyEndpoint", DBProxyEndpointName=str(endpoint["DBProxyEndpointName"]))
        self._call(RDS, "DeleteDBProxy", DBProxyName=proxy_name)
        if self.dry_run:
            return
        if wait:
            self._wait(
                f"proxy {proxy_name} deleted",
                lambda: self._proxy_row(proxy_name),
                lambda r: r is None,
                operation="delete",
                describe=lambda r: "deleted" if r is None else str(r.get("Status")),
            )
        role = sd.proxy_role_name(proxy_name)
        if str(row.get("RoleArn", "")).endswith(f":role/{role}"):
            try:
                tags = self._call("iam", "ListRoleTags", RoleName=role).get("Tags") or []
            except AuroraKitError as exc:
                if _not_found(exc):
                    return
                raise
            if any(t.get("Key") == sd.PROXY_ROLE_TAG and t.get("Value") == proxy_name for t in tags):
                self._call("iam", "DeleteRolePolicy", RoleName=role, PolicyName=sd.PROXY_POLICY_NAME)
                self._call("iam", "DeleteRole", RoleName=role)

    def _proxy_endpoint_info(self, proxy_name: str, endpoint: str | None) -> ConnectionInfo:
        """TLS (``sslmode=verify-full``, the system's trust store: RDS Proxy's certificate comes from ACM), the
        cluster's database and master user, the secret's password (or an IAM token for the proxy's host)."""
        row = self._proxy_row(proxy_name)
        if row is None:
            raise ProxyNotFoundError(proxy_name)
        host = str(row.get("Endpoint", ""))
        if endpoint not in (None, proxy_name):
            found = next(
                (e for e in self._proxy_endpoints(proxy_name) if e.get("DBProxyEndpointName") == endpoint), None
            )
            if found is None:
                raise InvalidParameterError("endpoint", endpoint, f"proxy {proxy_name!r} has no endpoint of that name")
            host = str(found.get("Endpoint", ""))
        targets = self._proxy_targets(proxy_name)
        cluster_id = next((str(t["RdsResourceId"]) for t in targets if t.get("Type") == "TRACKED_CLUSTER"), None)
        if cluster_id is None or not host:
            raise InvalidStateError(f"proxy {proxy_name!r} has no cluster target or no endpoint yet")
        cluster = self._cluster(cluster_id)
        user = str(cluster.get("MasterUsername"))
        dbname = str(cluster.get("DatabaseName") or "postgres")
        if (row.get("Auth") or [{}])[0].get("IAMAuth") == "REQUIRED":
            rds = self.client(RDS)
            password = rds.generate_db_auth_token(DBHostname=host, Port=5432, DBUsername=user,
                                                  Region=rds.meta.region_name)  # fmt: skip
        else:
            password = self._master_password(cluster)
        params: dict[str, Any] = {"host": host, "port": 5432, "dbname": dbname, "user": user, "sslmode": self.sslmode}
        params["sslrootcert"] = "system"
        target = endpoint_override(host, self.endpoint_overrides)
        if target is not None:
            name, params["port"] = split_host_port(host, target)
            params["hostaddr"] = host_address(host, target, name)
            if self.ca_bundle:  # an emulator or a tunnel presents the certificate of the bundle it was given
                params["sslrootcert"] = self.ca_bundle
        return ConnectionInfo(
            make_conninfo("", **params), user=user, dbname=dbname, password=password, endpoint=f"proxy:{proxy_name}"
        )

    @abstractmethod
    def _master_password(self, cluster: Mapping[str, Any]) -> str:
        """The cluster's managed master password (:class:`~aurora_kit.backends.aws.AwsBackend` has it)."""
