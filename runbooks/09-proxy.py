# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Proxy: RDS Proxy in front of the cluster (local: PgBouncer)
#
# **Intent** — create an RDS Proxy for the cluster (engine family POSTGRESQL, the cluster's managed secret, an IAM
# role that may read it — `proxy.role_arn` or one created for it, TLS required, idle timeout, `MaxConnectionsPercent`),
# register the cluster as its target, wait until every target is `AVAILABLE`, add a read-only endpoint for the
# readers; then prove, through the proxy: connection multiplexing (many client connections, few server sessions),
# session pinning (a session-level `SET`), the read-only endpoint landing on readers, and failovers measured side
# by side with a write probe through the proxy and one on the cluster endpoint (RDS Proxy claims up to 66 % shorter
# failovers). The local backend's proxy is PgBouncer, configured from the same settings and following failovers.
#
# | | |
# |---|---|
# | **Risk** | **high** when `proxy.failover_modes` is set (each is a failover: a write outage of seconds); otherwise low (creates a proxy; its checks open a few dozen connections) |
# | **Blast radius** | a new proxy and its role; with failovers, every client of `cluster_id` |
# | **Failure type** | planned (aws, local) or crash (local) failover |
# | **Typical time** | local ≈ 3.5 s · aws 10–20 min (a proxy takes minutes to create) |
# | **Prerequisites** | `01-create-cluster` with a managed master secret (aws) and ≥ 1 reader; aws: the proxy's subnets (the cluster's DB subnet group) and security groups, and the data plane from inside the VPC; local: PgBouncer installed (`apt-get install pgbouncer`; `make` says how elsewhere); `-p confirm=true` for the failovers and the deletion |
# | **Rollback** | `proxy.delete_proxy: true` (with `confirm`) deletes the proxy, its endpoint and the role it created; clients go back to the cluster endpoint |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 09`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key): `iam:CreateRole`,
# `iam:DeleteRole`, `iam:DeleteRolePolicy`, `iam:GetRole`, `iam:ListRoleTags`, `iam:PassRole`, `iam:PutRolePolicy`,
# `iam:TagRole`, `rds-db:connect`, `rds:AddTagsToResource`, `rds:CreateDBProxy`, `rds:CreateDBProxyEndpoint`,
# `rds:DeleteDBProxy`, `rds:DeleteDBProxyEndpoint`, `rds:DescribeDBClusters`, `rds:DescribeDBInstances`,
# `rds:DescribeDBProxies`, `rds:DescribeDBProxyEndpoints`, `rds:DescribeDBProxyTargetGroups`,
# `rds:DescribeDBProxyTargets`, `rds:DescribeDBSubnetGroups`, `rds:DescribeEvents`, `rds:FailoverDBCluster`,
# `rds:ModifyDBProxyTargetGroup`, `rds:RegisterDBProxyTargets`, `secretsmanager:GetSecretValue`.
#
# **Steps** — 1. plan · 2. create the proxy, targets available · 3. multiplexing · 4. session pinning · 5. the
# read-only endpoint · 6. failovers through the proxy vs the cluster endpoint · 7. delete · 8. summary.

# %% tags=["parameters"]
backend = 'local'
cluster_id = 'ak-local'
region = 'us-east-1'
engine_version = '16.4'
readers = 2
availability_zones = ['us-east-1a', 'us-east-1b', 'us-east-1c']
instance_class = 'db.r6g.large'
backup_retention_period = 1
preferred_backup_window = '03:00-04:00'
preferred_maintenance_window = None
deletion_protection = False
iam_auth = False
tags = {'project': 'aurora_kit', 'env': 'local'}
dry_run = False
confirm = False
local_root = None
aws = {'profile': None,
 'ca_bundle': None,
 'db_subnet_group_name': None,
 'vpc_security_group_ids': [],
 'kms_key_id': None,
 'sns_topic_arn': None,
 'iam_db_user': None,
 'endpoint_overrides': {}}
probe = {'interval_s': 0.01, 'duration_s': 0.5, 'rows': 50, 'max_replica_lag_s': 2.0, 'connect_timeout_s': 5.0}
proxy = {'proxy_name': 'ak-local-proxy',
 'read_only_endpoint': 'ak-local-proxy-ro',
 'require_tls': True,
 'idle_client_timeout_s': 1800,
 'max_connections_percent': 10,
 'max_idle_connections_percent': 5,
 'connection_borrow_timeout_s': 120,
 'iam_auth': False,
 'role_arn': None,
 'vpc_subnet_ids': [],
 'failover_modes': ['planned'],
 'max_gap_excess_s': 0.25,
 'multiplexing_clients': 40,
 'delete_proxy': True}

# %%
from aurora_kit.steps import proxy as wf

wf.parameters_form("09-proxy", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("09-proxy", globals())

# %% [markdown]
# ## 1. Plan

# %%
wf.plan(run)

# %% [markdown]
# ## 2. Create the proxy; every target `AVAILABLE`

# %%
proxy = wf.create(run)
wf.targets_table(proxy)

# %%
wf.verify(wf.targets(run, proxy))
pdp = wf.proxy_plane(run, proxy)
pdp

# %% [markdown]
# ## 3. Connection multiplexing
# `proxy.multiplexing_clients` client connections held open at once, each running transactions: the server sessions
# that served them (`pg_backend_pid()`) must be fewer, and at most the pool (`MaxConnectionsPercent`).

# %%
multiplexed = wf.when(pdp, wf.multiplexing, run, proxy)
wf.verify(multiplexed)

# %% [markdown]
# ## 4. Session pinning
# A session-level `SET`: RDS Proxy pins the session to its server connection (multiplexing is lost for it); the
# local PgBouncer cannot pin — the value lasts for its transaction only. Neither lets another client see it.

# %%
pinned = wf.when(pdp, wf.pinning, run, proxy)
wf.verify(pinned)

# %% [markdown]
# ## 5. The read-only endpoint lands on readers

# %%
read_only = wf.when(pdp, wf.read_only_endpoint, run, proxy)
wf.verify(read_only)

# %% [markdown]
# ## 6. Failovers through the proxy vs the cluster endpoint (needs `confirm: true`)
# One write probe through the proxy, one on the cluster endpoint, through the same failover: each one's write gap,
# lost commits and reconnects. `VerificationError` if a commit is lost or the proxy's gap is longer than the cluster
# endpoint's by more than `proxy.max_gap_excess_s`.

# %%
failovers = wf.failovers(run, proxy, pdp)
wf.verify_failovers(failovers)

# %%
wf.plot(failovers[0])

# %% [markdown]
# ## 7. Delete the proxy (`proxy.delete_proxy`)

# %%
deleted = wf.delete(run, proxy)
deleted

# %% [markdown]
# ## 8. Summary

# %%
run.record_all(wf.summary(proxy=wf.figures(failovers, multiplexed), multiplexing=multiplexed, pinning=pinned))
run.record_all(wf.summary(read_only=read_only, deleted=deleted, data_plane=dp, proxy_plane=pdp))
