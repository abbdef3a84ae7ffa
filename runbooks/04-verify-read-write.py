# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Verify reads and writes
#
# **Intent** — prove the cluster serves applications as designed: the cluster endpoint reaches the writer, the
# reader endpoint reaches readers and spreads connections over them, every reader refuses writes with SQLSTATE
# `25006` (read-only transaction), rows written on the writer come back identical through the reader endpoint,
# replica lag stays under `probe.max_replica_lag_s` (p99), and the application pool (SQLAlchemy `QueuePool`,
# 10 + 20 overflow, pre-ping) works under 20 concurrent workers without leaking sessions.
#
# | | |
# |---|---|
# | **Risk** | low — small writes in schema `aurora_kit` (deleted afterwards); ≤ 30 extra connections for `probe.duration_s` |
# | **Blast radius** | the `app` database of `cluster_id` |
# | **Failure type** | none injected |
# | **Typical time** | local ≈ 3 s · aws ≈ 1 min |
# | **Prerequisites** | `01-create-cluster`; the data plane reachable (runs nothing otherwise, and says so) |
# | **Rollback** | nothing to roll back (`DROP SCHEMA aurora_kit CASCADE` removes the probe tables) |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 04`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key): `rds-db:connect`,
# `rds:DescribeDBClusters`, `rds:DescribeDBInstances`.
#
# **Steps** — 1. endpoint roles · 2. readers refuse writes · 3. write, read back · 4. replica lag ·
# 5. pooling under concurrency · 6. summary.

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

# %%
from aurora_kit.steps import readwrite as wf

wf.parameters_form("04-verify-read-write", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("04-verify-read-write", globals())

# %% [markdown]
# ## 1. Endpoint roles

# %%
roles = wf.when(dp, wf.endpoint_roles, run)
wf.verify(roles)

# %% [markdown]
# ## 2. Every instance's role, from the instance; every reader refuses writes (SQLSTATE 25006)

# %%
instances = wf.when(dp, wf.instance_roles, run)
wf.verify(instances)

# %% [markdown]
# ## 3. Write on the writer, read back through the reader endpoint

# %%
round_trip = wf.when(dp, wf.round_trip, run, writes=True)
wf.verify(round_trip)

# %% [markdown]
# ## 4. Replica lag
# Markers written on the writer, timed until each reader shows them: the histogram per reader (dashed line: the
# p99 limit `probe.max_replica_lag_s`), then the percentiles.

# %%
lag = wf.when(dp, wf.replica_lag, run, writes=True)
wf.plot(lag)
wf.verify(lag)

# %% [markdown]
# ## 5. The pool under concurrency

# %%
pool = wf.when(dp, wf.pool, run)
wf.verify(pool)

# %% [markdown]
# ## 6. Summary

# %%
run.record_all(wf.summary(roles=roles, instances=instances, round_trip=round_trip, lag=lag, pool=pool, data_plane=dp))
