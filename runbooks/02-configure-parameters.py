# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Configure cluster parameters
#
# **Intent** — bring the cluster parameter group to `parameter_group.parameters`: show current vs wanted, apply
# (dynamic parameters take effect now, static ones become `pending-reboot`), reboot the pending instances one at a
# time — readers first, the writer last — when `parameter_group.allow_reboot` is true, then verify with `SHOW` on
# every instance.
#
# | | |
# |---|---|
# | **Risk** | medium — a bad value affects every instance; the rolling reboot drops each instance's connections for a few seconds (the writer's reboot is a short write outage) |
# | **Blast radius** | the cluster parameter group of `cluster_id` and all its instances |
# | **Failure type** | none injected |
# | **Typical time** | local ≈ 2 s · aws 5–15 min with reboots |
# | **Prerequisites** | `01-create-cluster`; `-p confirm=true` for the reboot; a maintenance window if the writer must reboot |
# | **Rollback** | rerun with the previous values (the diff table below is the record of them), reboot again for static ones |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 02`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key): `rds-db:connect`,
# `rds:DescribeDBClusterParameters`, `rds:DescribeDBClusters`, `rds:DescribeDBInstances`,
# `rds:DescribeEngineDefaultClusterParameters`, `rds:DescribeEvents`, `rds:ModifyDBClusterParameterGroup`,
# `rds:RebootDBInstance`.
#
# **Steps** — 1. diff · 2. apply · 3. pending reboot · 4. rolling reboot · 5. `SHOW` on every instance · 6. summary.

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
parameter_group = {'parameters': {'log_min_duration_statement': '250',
                'idle_in_transaction_session_timeout': '60000',
                'max_connections': '200'},
 'allow_reboot': True}

# %%
from aurora_kit.steps import parameters as wf

wf.parameters_form("02-configure-parameters", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("02-configure-parameters", globals())

# %% [markdown]
# ## 1. Current vs wanted

# %%
wf.diff(run)

# %% [markdown]
# ## 2. Apply
# Unknown names or invalid values raise `InvalidParameterError` before anything changes.

# %%
applied = wf.apply(run)
wf.changes_table(applied)

# %% [markdown]
# ## 3. Pending reboot (control plane view)

# %%
wf.members_table(run, run.backend.describe_cluster(run.params.cluster_id))

# %% [markdown]
# ## 4. Rolling reboot (readers first, then the writer)
# Only with `allow_reboot: true` and `confirm: true`.

# %%
reboot = wf.rolling_reboot(run, applied)
reboot

# %% [markdown]
# ## 5. `SHOW` on every instance
# Every wanted value must be in effect on every instance, except instances left pending-reboot on purpose.

# %%
settings = wf.when(dp, wf.settings, run, reboot)
wf.verify(settings)

# %% [markdown]
# ## 6. Summary

# %%
run.record_all(wf.summary(changes=wf.changes_table(applied), reboot=reboot, settings=settings, data_plane=dp))
