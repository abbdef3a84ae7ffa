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
# | **Typical time** | local ≈ 2 s · aws < 1 min (new alarms stay INSUFFICIENT_DATA until CloudWatch has evaluated a period) |
# | **Prerequisites** | `01-create-cluster`; aws: the SNS topic |
# | **Rollback** | delete the alarms (`aws cloudwatch delete-alarms` with the names below) |
#
# **Least-privilege IAM (aws backend)** — `rds:DescribeDBClusters`, `cloudwatch:PutMetricAlarm`,
# `cloudwatch:DescribeAlarms`, `sns:Publish` is the alarm's (not yours).
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
 'sns_topic_arn': None}
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
put = wf.put_alarms(run)
wf.alarms_table(put)

# %% [markdown]
# ## 2. Check: every metric alarmed, none firing
# The local backend evaluates each threshold now; CloudWatch evaluates periods (a new alarm waits for one).

# %%
alarms = wf.alarms(run)
wf.verify(alarms)

# %% [markdown]
# ## 3. Summary

# %%
run.record_all(wf.summary(alarms=alarms, data_plane=dp))
