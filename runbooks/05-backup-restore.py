# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Backup and restore
#
# **Intent** — prove the backups restore: check automated-backup retention, write a known dataset around a cut-off
# time T, take a manual snapshot, restore it into a new cluster, restore the source to T (point in time) into
# another, and verify both — per-table row counts + content checksums for the snapshot, exact content at T for
# PITR (every row committed by T, none after). Restored clusters are deleted afterwards unless
# `backup_restore.delete_restored_cluster` is false.
#
# | | |
# |---|---|
# | **Risk** | low for the source (one small seed table `aurora_kit_pitr_seed`, a snapshot), but the verification reads **every user table** on the source and the restores (row counts + checksums): on a large database that is a full scan — run it off-peak; creates 1–2 new clusters |
# | **Blast radius** | new clusters `backup_restore.restore_cluster_id` (and `…-pitr`); the snapshot |
# | **Failure type** | none injected |
# | **Typical time** | local ≈ 3–4 s · aws 30–60 min (restores, and LatestRestorableTime trails by ~5 min) |
# | **Prerequisites** | `01-create-cluster`; `backup_retention_period` ≥ 1; the data plane for verification |
# | **Rollback** | delete the restored clusters (`99-teardown` with their ids) and the snapshot |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 05`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key): `kms:DescribeKey`,
# `rds-db:connect`, `rds:AddTagsToResource`, `rds:CreateDBClusterSnapshot`, `rds:CreateDBInstance`,
# `rds:DeleteDBCluster`, `rds:DeleteDBClusterSnapshot`, `rds:DeleteDBInstance`, `rds:DescribeDBClusterSnapshots`,
# `rds:DescribeDBClusters`, `rds:DescribeDBInstances`, `rds:DescribeEvents`, `rds:ModifyDBCluster`,
# `rds:RestoreDBClusterFromSnapshot`, `rds:RestoreDBClusterToPointInTime`, `secretsmanager:CreateSecret`,
# `secretsmanager:TagResource`.
#
# **Steps** — 1. retention · 2. seed data around T · 3. snapshot · 4. restore the snapshot · 5. restore to T ·
# 6. verify both · 7. clean up · 8. summary.

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
backup_restore = {'snapshot_id': None,
 'restore_cluster_id': 'ak-local-restored',
 'restore_mode': 'both',
 'restore_time': None,
 'restore_instances': 1,
 'delete_restored_cluster': True}

# %%
from aurora_kit.steps import backup as wf

wf.parameters_form("05-backup-restore", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("05-backup-restore", globals())

# %% [markdown]
# ## 0. Checked before any change
# The restored clusters and the snapshot id must be free, and a given `restore_time` between the cluster's earliest
# restorable time and now — refused here, with nothing created, otherwise.

# %%
wf.validate(run)

# %% [markdown]
# ## 1. Automated backups: retention and restorable window

# %%
backups = wf.check_backups(run)
wf.verify(backups)

# %% [markdown]
# ## 2. A known dataset around the cut-off T
# Batches committed before T and after T (`written_at = clock_timestamp()`); then a fingerprint (row count +
# checksum) of every table, taken right before the snapshot.

# %%
seeded = wf.when(dp, wf.seed, run, writes=True)
expected = wf.when(dp, wf.fingerprints, run)
wf.when(dp, wf.fingerprint_table, expected)

# %% [markdown]
# ## 3. Manual snapshot

# %%
snapshot = wf.snapshot(run)
wf.snapshot_table(snapshot)

# %% [markdown]
# ## 4. Restore the snapshot into a new cluster

# %%
restored = wf.restore_snapshot(run, snapshot)
wf.restored_table(run, restored)

# %% [markdown]
# ## 5. Point-in-time restore to T
# T = `backup_restore.restore_time`, else the seeded cut-off, else the latest restorable time.

# %%
target = wf.restore_target(run, seeded)
window = wf.wait_restorable(run, target)
wf.window_table(window, target)

# %%
pitr = wf.restore_pitr(run, target)
wf.restored_table(run, pitr)

# %% [markdown]
# ## 6. Verify both restores

# %%
snapshot_check = wf.when(dp, wf.verify_snapshot_restore, run, expected, restored)
wf.verify(snapshot_check)

# %%
pitr_check = wf.when(dp, wf.verify_pitr, run, seeded, pitr, target)
wf.verify(pitr_check)

# %% [markdown]
# ## 7. Clean up the restored clusters (unless kept)

# %%
deleted = wf.delete_restores(run, restored, pitr, snap=snapshot)

# %% [markdown]
# ## 8. Summary

# %%
run.record_all(wf.summary(backups=backups, snapshot=snapshot, restore_time=target, data_plane=dp))
run.record_all(wf.summary(snapshot_restore=snapshot_check, pitr_restore=pitr_check, deleted=deleted))
