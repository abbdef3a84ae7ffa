# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 99 · Teardown
#
# **Intent** — delete the cluster: instances first, then the cluster, with an **explicit** final-snapshot choice
# (`teardown.final_snapshot_id` *or* `teardown.skip_final_snapshot: true`, never both, never neither). Deletion
# protection stops the run before anything is deleted unless `teardown.lift_deletion_protection` is true. The
# automated backups go with the cluster unless `teardown.delete_automated_backups: false` retains them (restorable
# until the retention period expires, as Aurora's retained automated backups).
#
# | | |
# |---|---|
# | **Risk** | **high — irreversible** without a final snapshot: the data is gone |
# | **Blast radius** | `cluster_id`, all its instances and (unless retained) its automated backups; manual snapshots are kept |
# | **Failure type** | none injected |
# | **Typical time** | local ≈ 1 s · aws 10–20 min |
# | **Prerequisites** | `-p confirm=true` and `-p teardown.confirm_cluster_id=<cluster_id>` (the cluster typed again); the final-snapshot decision; no application still using the cluster |
# | **Rollback** | restore the final snapshot (`05-backup-restore` / `RestoreDBClusterFromSnapshot`); without one, none |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 99`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key):
# `rds:CreateDBClusterSnapshot`, `rds:DeleteDBCluster`, `rds:DeleteDBInstance`, `rds:DescribeDBClusterSnapshots`,
# `rds:DescribeDBClusters`, `rds:DescribeDBInstances`, `rds:DescribeEvents`, `rds:ModifyDBCluster`.
#
# **Steps** — 1. what will be deleted · 2. delete · 3. check it is gone · 4. snapshots kept · 5. summary.

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
teardown = {'final_snapshot_id': None,
 'skip_final_snapshot': True,
 'lift_deletion_protection': False,
 'delete_automated_backups': True,
 'confirm_cluster_id': None}

# %%
from aurora_kit.steps import teardown as wf

wf.parameters_form("99-teardown", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("99-teardown", globals())

# %% [markdown]
# ## 1. What will be deleted
# `DeletionProtectionError` here, before anything is deleted, if protection is on and may not be lifted.

# %%
cluster = wf.find_cluster(run)
wf.plan(run, cluster)

# %% [markdown]
# ## 2. Delete (needs `confirm: true` and `teardown.confirm_cluster_id` = `cluster_id`)
# `ConfirmationRequiredError` here, before any call, naming both identifiers otherwise.

# %%
final_snapshot = wf.teardown(run, cluster)
wf.plan_table(run.backend)

# %% [markdown]
# ## 3. Check it is gone

# %%
gone = wf.gone(run)
wf.verify(gone)

# %% [markdown]
# ## 4. Snapshots kept

# %%
wf.remaining_snapshots(run)

# %% [markdown]
# ## 5. Summary

# %%
run.record_all(wf.summary(existed=cluster is not None, gone=gone, final_snapshot=final_snapshot))
