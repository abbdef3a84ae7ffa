# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Monitoring
#
# **Intent** — put the alarms every Aurora cluster needs: `AuroraReplicaLag` (per reader), `CPUUtilization`,
# `FreeableMemory`, `DatabaseConnections` (per instance), thresholds from `monitoring`. On aws they are CloudWatch
# alarms (namespace `AWS/RDS`, actions to `aws.sns_topic_arn`); on local the same thresholds are evaluated now from
# the instances themselves. Then read their state back: every metric must have an alarm and none may be in ALARM.
#
# | | |
# |---|---|
# | **Risk** | low — creates/updates alarms only (upsert by name) |
# | **Blast radius** | alarms named after `cluster_id`; notifications to the SNS topic |
# | **Failure type** | none injected |
# | **Typical time** | local ≈ 1.5 s · aws 1–4 min (07 waits for CloudWatch's first evaluation of every alarm) |
# | **Prerequisites** | `01-create-cluster`; aws: the SNS topic |
# | **Rollback** | delete the alarms (`aws cloudwatch delete-alarms` with the names below) |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 07`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key): `cloudwatch:DeleteAlarms`,
# `cloudwatch:DescribeAlarms`, `cloudwatch:PutMetricAlarm`, `cloudwatch:TagResource`,
# `rds:DescribeDBClusterParameters`, `rds:DescribeDBClusters`.
#
# **Steps** — 1. alarms · 2. state · 3. check · 4. summary.

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
monitoring = {'replica_lag_ms': 1000.0,
 'cpu_percent': 90.0,
 'freeable_memory_mb': 64.0,
 'max_connections': 180,
 'period_s': 60,
 'evaluation_periods': 1}

# %%
from aurora_kit.steps import monitoring as wf

wf.parameters_form("07-monitoring", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("07-monitoring", globals())

# %% [markdown]
# ## 1. Put the alarms

# %%
put = wf.put_alarms(run, dp)
wf.alarms_table(put)

# %% [markdown]
# ## 2. Check: every metric alarmed, every alarm with data, none firing
# The local backend evaluates each threshold now; on CloudWatch this waits (at most one evaluation window + 3 min)
# until no alarm is INSUFFICIENT_DATA — one still without data then has a metric nobody publishes, and fails.

# %%
alarms = wf.alarms(run)
wf.verify(alarms)

# %% [markdown]
# ## 3. Summary

# %%
run.record_all(wf.summary(alarms=alarms, data_plane=dp))
