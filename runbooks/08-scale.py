# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Scale: instance classes, readers on demand, Serverless v2, Aurora Auto Scaling
#
# **Intent** — change every instance to `scale.instance_class_to` with the least disruption (readers one at a time,
# a planned failover to a changed reader, then the old writer) under a write probe — the write gap the change
# causes; check each instance runs its class's memory settings (`max_connections`, `shared_buffers`); add readers
# (AZ spread, promotion tier) and see the reader endpoint balance over them; set the Serverless v2 capacity range and
# switch a reader to `db.serverless`; put an Aurora Auto Scaling policy on the readers (target tracking) and — on
# the local backend — watch it add a reader under a load this runbook generates and remove it afterwards; remove a
# reader (never the writer, never below `scale.min_readers`).
#
# | | |
# |---|---|
# | **Risk** | **high** — each class change restarts an instance (its connections drop); one planned failover (a write outage of seconds; Aurora: typically < 30 s); readers added and removed change what the reader endpoint reaches; added readers cost money on AWS |
# | **Blast radius** | every instance of `cluster_id`; readers' clients during their restart; writers' clients during the failover |
# | **Failure type** | planned failover (class change), instance restarts |
# | **Typical time** | local ≈ 5–6 s · aws 30–90 min (each class change 5–15 min, new readers 10 min each) |
# | **Prerequisites** | `01-create-cluster` with ≥ 1 reader, every instance `available`; `-p confirm=true` (class change, failover, `db.serverless`, removal; else `ConfirmationRequiredError` before any call); a change window on aws; the data plane for the write gap and the settings |
# | **Rollback** | rerun with `scale.instance_class_to` = the old class; remove added readers (`scale.remove_instance_id`); `scale.autoscaling.keep_policy: false` deletes the policy (the readers it added stay, as on AWS) |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 08`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key):
# `application-autoscaling:DeleteScalingPolicy`, `application-autoscaling:DeregisterScalableTarget`,
# `application-autoscaling:DescribeScalableTargets`, `application-autoscaling:DescribeScalingPolicies`,
# `application-autoscaling:PutScalingPolicy`, `application-autoscaling:RegisterScalableTarget`,
# `cloudwatch:DeleteAlarms`, `cloudwatch:DescribeAlarms`, `cloudwatch:PutMetricAlarm`, `iam:CreateServiceLinkedRole`,
# `rds-db:connect`, `rds:AddTagsToResource`, `rds:CreateDBInstance`, `rds:DeleteDBInstance`,
# `rds:DescribeDBClusterParameters`, `rds:DescribeDBClusters`, `rds:DescribeDBInstances`, `rds:DescribeEvents`,
# `rds:FailoverDBCluster`, `rds:ModifyDBCluster`, `rds:ModifyDBInstance`.
#
# **Steps** — 1. plan · 2. rolling class change under a write probe · 3. the write gap · 4. memory settings on every
# instance · 5. add readers, reader endpoint balance · 6. Serverless v2 · 7. Aurora Auto Scaling (rehearsed locally) ·
# 8. remove a reader · 9. summary.

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
scale = {'instance_class_to': 'db.r6g.xlarge',
 'max_class_change_gap_s': 15.0,
 'add_readers': 1,
 'add_instance_class': None,
 'min_readers': 2,
 'serverless': {'min_capacity': 0.5, 'max_capacity': 4.0, 'instance_id': 'added'},
 'remove_instance_id': 'added',
 'autoscaling': {'policy_name': 'ak-local-readers',
                 'metric': 'RDSReaderAverageDatabaseConnections',
                 'target_value': 5.0,
                 'min_capacity': 2,
                 'max_capacity': 4,
                 'scale_in_cooldown_s': 0,
                 'scale_out_cooldown_s': 0,
                 'disable_scale_in': False,
                 'keep_policy': False,
                 'rehearsal_load': 20}}

# %%
from aurora_kit.steps import scale as wf

wf.parameters_form("08-scale", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("08-scale", globals())

# %% [markdown]
# ## 1. Plan
# Members, their class and Aurora's memory defaults for it (`max_connections` = LEAST(DBInstanceClassMemory/9531392,
# 5000), `shared_buffers` = DBInstanceClassMemory/12038 − 50003 pages), and what this run changes.

# %%
wf.plan(run)

# %% [markdown]
# ## 2. Rolling class change under a write probe (needs `confirm: true`)
# Readers first, then a planned failover to a changed reader, then the old writer: only the failover interrupts writes.

# %%
change = wf.change_class(run, dp)
change

# %%
wf.plot(wf.class_change_probe(change))

# %% [markdown]
# ## 3. The write gap the class change caused
# `VerificationError` if the gap exceeds `scale.max_class_change_gap_s` or an acknowledged commit is lost.

# %%
wf.verify(wf.class_change_probe(change), name="class change write probe")

# %% [markdown]
# ## 4. Every instance runs its class's memory settings
# Locally `shared_buffers` is 1/256 of Aurora's and `max_connections` the cluster's largest class default (README:
# a PostgreSQL standby needs at least its writer's); a cluster parameter group that sets them wins, as on Aurora.

# %%
settings = wf.when(dp, wf.instance_settings, run, change)
wf.verify(settings)

# %% [markdown]
# ## 5. Add readers; the reader endpoint balances over the new set

# %%
added = wf.add_readers(run)
wf.members_table(run, run.backend.describe_cluster(run.params.cluster_id))

# %%
balance = wf.when(dp, wf.reader_balance, run)
wf.verify(balance)

# %% [markdown]
# ## 6. Serverless v2: the capacity range, a reader on `db.serverless` (needs `confirm: true`)

# %%
cluster = wf.serverless(run, added)
wf.serverless_table(run, cluster)

# %% [markdown]
# ## 7. Aurora Auto Scaling of the readers
# The target-tracking policy and the alarms that drive it. On the local backend the policy is evaluated under a
# load of `scale.autoscaling.rehearsal_load` connections on the reader endpoint (it must add a reader), then
# without it (it must remove the reader it added); on AWS, CloudWatch and Application Auto Scaling do that by
# themselves over minutes.

# %%
policy = wf.put_policy(run)
wf.policies_table(run)

# %%
rehearsal = wf.when(dp, wf.rehearse_autoscaling, run, writes=True)
wf.verify(rehearsal)

# %% [markdown]
# ## 8. Remove a reader (needs `confirm: true`)
# Refused before any call for the writer or below `scale.min_readers`; the reader endpoint no longer reaches it.

# %%
removed = wf.remove_reader(run, added)
after = wf.when(dp, wf.reader_balance, run, removed)
wf.verify(after, name="reader endpoint after the removal")

# %%
policy_left = wf.remove_policy(run)
wf.members_table(run, run.backend.describe_cluster(run.params.cluster_id))

# %% [markdown]
# ## 9. Summary

# %%
run.record_all(wf.summary(scale=wf.figures(change, added, removed, rehearsal), settings=settings, data_plane=dp))
run.record_all(wf.summary(balance=balance, rehearsal=rehearsal, after_removal=after, policy=policy_left))
