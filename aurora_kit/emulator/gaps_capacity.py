"""moto 5.2's gaps in what 08-scale and 09-proxy call, filled as AWS answers (applied by
:func:`aurora_kit.emulator.gaps.fill_moto_rds_gaps`, so the plain moto server of the tests and the emulator share
them; the aws backend carries no workaround):

- ``DescribeDBSubnetGroups`` of ``default``: a cluster created without ``DBSubnetGroupName`` is in the account's
  ``default`` DB subnet group (the default VPC's subnets); moto names it on the cluster but cannot describe it.
- ``DescribeDBProxyTargets`` after registering a cluster: AWS lists the tracked cluster *and* one ``RDS_INSTANCE``
  target per instance (role ``READ_WRITE`` for the writer, ``READ_ONLY`` for readers); moto lists the cluster only.
- ``CreateDBProxyEndpoint`` / ``DescribeDBProxyEndpoints`` / ``DeleteDBProxyEndpoint``: not implemented by moto;
  answered with the shapes of the RDS API (an endpoint ``available`` at once: plain moto has no provisioning delay
  for anything).
- ``PutScalingPolicy`` (target tracking) on ``rds:cluster:ReadReplicaCount``: AWS creates two CloudWatch alarms,
  ``TargetTracking-cluster:<id>-AlarmHigh-<uuid>`` (3 periods of 60 s above the target) and ``…-AlarmLow-…`` (15
  periods below 90 % of it) on the AWS/RDS metric of the readers; moto creates alarms for DynamoDB and ECS only.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

_ENDPOINTS = "_aurora_kit_proxy_endpoints"


def _endpoints(backend: Any) -> dict[str, dict[str, Any]]:
    if not hasattr(backend, _ENDPOINTS):
        setattr(backend, _ENDPOINTS, {})
    found: dict[str, dict[str, Any]] = getattr(backend, _ENDPOINTS)
    return found


def proxy_endpoint_rows(backend: Any) -> list[dict[str, Any]]:
    """The proxy endpoints (not the default ones) of an RDS backend: the rows DescribeDBProxyEndpoints answers with."""
    return list(_endpoints(backend).values())


_ORIGINAL = "__aurora_kit_original__"


def _original(method: Any) -> Any:
    """moto's own ``method``, also when a patch of this module is installed already (a session's moto server and a
    test's ``mock_aws`` both fill the gaps: a wrapper must not wrap itself, or alarms and targets come twice)."""
    return getattr(method, _ORIGINAL, method)


def _wraps(original: Any) -> Any:
    def mark(wrapper: Any) -> Any:
        setattr(wrapper, _ORIGINAL, original)
        return wrapper

    return mark


def fill_moto_capacity_gaps(patch: Any) -> None:
    """Apply the patches of the module docstring with ``patch`` (a Patcher or pytest's MonkeyPatch)."""
    from moto.applicationautoscaling import models as aas
    from moto.core.responses import ActionResult
    from moto.ec2.models import ec2_backends
    from moto.rds import exceptions as exc
    from moto.rds import models, responses

    describe_groups = _original(models.RDSBackend.describe_db_subnet_groups)

    @_wraps(describe_groups)
    def describe_db_subnet_groups(self: Any, subnet_group_name: str) -> Any:
        if subnet_group_name == "default" and "default" not in self.subnet_groups:
            ec2 = ec2_backends[self.account_id][self.region_name]
            vpc = ec2.get_default_vpc()
            subnets = [s for s in ec2.describe_subnets() if vpc is not None and s.vpc_id == vpc.id]
            self.create_subnet_group("default", "default", subnets, [])
        return describe_groups(self, subnet_group_name)

    describe_targets = _original(models.RDSBackend.describe_db_proxy_targets)

    @_wraps(describe_targets)
    def describe_db_proxy_targets(self: Any, proxy_name: str) -> list[Any]:
        targets = list(describe_targets(self, proxy_name))
        out = []
        for target in targets:
            out.append(target)
            cluster = self.clusters.get(target.rds_resource_id) if target.type == "TRACKED_CLUSTER" else None
            for member in cluster.members if cluster is not None else []:
                instance = models.DBProxyTarget(self, member.db_instance_identifier, member.address, "RDS_INSTANCE")
                instance.role = "READ_WRITE" if member.is_cluster_writer else "READ_ONLY"  # type: ignore[assignment]
                instance._registering = False
                out.append(instance)
        return out

    def create_db_proxy_endpoint(self: Any) -> ActionResult:
        name = self._get_param("DBProxyName")
        endpoint_name = self._get_param("DBProxyEndpointName")
        proxy = self.backend.db_proxies.get(name)
        if proxy is None:
            raise exc.DBProxyNotFoundFault(name)
        found = _endpoints(self.backend)
        if endpoint_name in found:
            raise exc.RDSClientError("DBProxyEndpointAlreadyExistsFault", f"{endpoint_name} already exists")
        row = {
            "DBProxyEndpointName": endpoint_name,
            "DBProxyEndpointArn": f"arn:aws:rds:{self.region}:{self.current_account}:db-proxy-endpoint:"
            f"prx-endpoint-{uuid.uuid4().hex[:17]}",
            "DBProxyName": name,
            "Status": "available",
            "VpcId": proxy.vpc_id,
            "VpcSecurityGroupIds": list(self._get_param("VpcSecurityGroupIds") or proxy.vpc_security_group_ids),
            "VpcSubnetIds": list(self._get_param("VpcSubnetIds") or []),
            "Endpoint": f"{endpoint_name}.endpoint.proxy-{proxy.url_identifier}.{self.region}.rds.amazonaws.com",
            "CreatedDate": datetime.now(timezone.utc),
            "TargetRole": self._get_param("TargetRole") or "READ_WRITE",
            "IsDefault": False,
        }
        found[endpoint_name] = row
        return ActionResult({"DBProxyEndpoint": row})

    def describe_db_proxy_endpoints(self: Any) -> ActionResult:
        name = self._get_param("DBProxyName")
        endpoint_name = self._get_param("DBProxyEndpointName")
        if name and name not in self.backend.db_proxies:
            raise exc.DBProxyNotFoundFault(name)
        rows = [
            r
            for r in _endpoints(self.backend).values()
            if (not name or r["DBProxyName"] == name)
            and (not endpoint_name or r["DBProxyEndpointName"] == endpoint_name)
        ]
        if endpoint_name and not rows:
            raise exc.RDSClientError("DBProxyEndpointNotFoundFault", f"{endpoint_name} not found")
        default = [
            {"DBProxyEndpointName": "default", "DBProxyName": p.db_proxy_name, "Status": p.status,
             "Endpoint": p.endpoint, "TargetRole": "READ_WRITE", "IsDefault": True, "VpcId": p.vpc_id}
            for p in self.backend.db_proxies.values()
            if (not name or p.db_proxy_name == name) and not endpoint_name
        ]  # fmt: skip
        return ActionResult({"DBProxyEndpoints": default + rows})

    def delete_db_proxy_endpoint(self: Any) -> ActionResult:
        endpoint_name = self._get_param("DBProxyEndpointName")
        row = _endpoints(self.backend).pop(endpoint_name, None)
        if row is None:
            raise exc.RDSClientError("DBProxyEndpointNotFoundFault", f"{endpoint_name} not found")
        return ActionResult({"DBProxyEndpoint": {**row, "Status": "deleting"}})

    delete_proxy = _original(models.RDSBackend.delete_db_proxy)

    @_wraps(delete_proxy)
    def delete_db_proxy(self: Any, proxy_name: str) -> Any:
        endpoints = _endpoints(self)
        for key in [k for k, r in endpoints.items() if r["DBProxyName"] == proxy_name]:
            del endpoints[key]
        return delete_proxy(self, proxy_name)

    create_alarms = _original(aas.FakeApplicationAutoscalingPolicy.create_alarms)

    @_wraps(create_alarms)
    def create_rds_alarms(self: Any) -> None:
        create_alarms(self)
        if self.policy_type != "TargetTrackingScaling" or self.service_namespace != "rds":
            return
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch = cloudwatch_backends[self.account_id][self.region_name]
        config = self.target_tracking_scaling_policy_configuration or {}
        predefined = (config.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType", "")
        metric = "DatabaseConnections" if "Connections" in predefined else "CPUUtilization"
        target = float(config.get("TargetValue", 0))
        cluster_id = self.resource_id.split(":", 1)[1]
        action = f"{self.policy_arn}:createdBy/{uuid.uuid4()}"
        for kind, operator, periods, threshold in (
            ("AlarmHigh", "GreaterThanThreshold", 3, target),
            ("AlarmLow", "LessThanThreshold", 15, round(target * 0.9, 6)),
        ):
            if kind == "AlarmLow" and config.get("DisableScaleIn"):
                continue
            self.alarms.append(
                cloudwatch.put_metric_alarm(
                    name=f"TargetTracking-{self.resource_id}-{kind}-{uuid.uuid4()}",
                    namespace="AWS/RDS",
                    metric_name=metric,
                    metric_data_queries=[],
                    comparison_operator=operator,
                    evaluation_periods=periods,
                    period=60,
                    threshold=threshold,
                    statistic="Average",
                    description=f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {action}",
                    dimensions=[
                        {"Name": "DBClusterIdentifier", "Value": cluster_id},
                        {"Name": "Role", "Value": "READER"},
                    ],
                    alarm_actions=[action],
                )
            )

    patch.setattr(models.RDSBackend, "describe_db_subnet_groups", describe_db_subnet_groups)
    patch.setattr(models.RDSBackend, "describe_db_proxy_targets", describe_db_proxy_targets)
    patch.setattr(models.RDSBackend, "delete_db_proxy", delete_db_proxy)
    patch.setattr(responses.RDSResponse, "create_db_proxy_endpoint", create_db_proxy_endpoint, raising=False)
    patch.setattr(responses.RDSResponse, "describe_db_proxy_endpoints", describe_db_proxy_endpoints, raising=False)
    patch.setattr(responses.RDSResponse, "delete_db_proxy_endpoint", delete_db_proxy_endpoint, raising=False)
    patch.setattr(aas.FakeApplicationAutoscalingPolicy, "create_alarms", create_rds_alarms)
