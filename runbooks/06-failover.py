# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Failover
#
# **Intent** — fail the writer over to a reader and measure what applications see: a write probe commits through
# the cluster endpoint every `probe.interval_s` during the event; **RTO** = longest gap between acknowledged writes,
# **lost commits** = acknowledged writes missing afterwards. `failover.mode: planned` promotes
# `failover.target_instance_id` (or the best reader); `crash` kills the writer first (game day; local backend —
# on AWS use `aurora_inject_crash` or an FIS experiment). Then: the new writer, the old writer back as a reader,
# and optionally a planned failback (`failover.failback`).
#
# | | |
# |---|---|
# | **Risk** | **high** — a write outage of seconds (Aurora: typically < 30 s) on the whole cluster; connections to the old writer drop; DNS-caching clients may write to the old writer (now read-only) |
# | **Blast radius** | every client of `cluster_id` |
# | **Failure type** | writer failure (planned switchover or crash) |
# | **Typical time** | local ≈ 2.5 s · aws 1–2 min |
# | **Prerequisites** | ≥ 1 reader, all instances `available`; `-p confirm=true` (else `ConfirmationRequiredError` before any call); on aws a change window; the data plane for RTO / lost commits |
# | **Rollback** | run again with `failover.target_instance_id` = the old writer (or `failover.failback: true`) |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 06`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key): `rds-db:connect`,
# `rds:DescribeDBClusters`, `rds:DescribeDBInstances`, `rds:DescribeEvents`, `rds:FailoverDBCluster`.
#
# **Steps** — 1. plan · 2. failover with the write probe · 3. RTO and lost commits · 4. new writer, old writer
# back as reader · 5. roles on every instance · 6. optional failback · 7. summary.

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
failover = {'mode': 'planned', 'target_instance_id': None, 'max_rto_s': 15.0, 'max_lost_commits': 0, 'failback': False}

# %%
from aurora_kit.steps import failover as wf

wf.parameters_form("06-failover", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("06-failover", globals())

# %% [markdown]
# ## 1. Plan: who is promoted
# The target given, else the reader Aurora's rule picks (promotion tier, then the largest class, then the name).

# %%
wf.plan(run)

# %% [markdown]
# ## 2. Failover with the write probe running (needs `confirm: true`)

# %%
result, write_probe = wf.failover(run, dp)
wf.failover_table(result)

# %%
wf.plot(write_probe)

# %% [markdown]
# ## 3. RTO and lost commits
# `VerificationError` if RTO > `failover.max_rto_s`, lost commits > `failover.max_lost_commits`, or writes did not
# resume on the new writer.

# %%
wf.verify(write_probe)

# %% [markdown]
# ## 4. New writer; old writer back as a reader

# %%
after = wf.wait_old_writer_reader(run, result)
wf.members_table(run, after)

# %% [markdown]
# ## 5. Every instance's role, from the instance itself

# %%
roles = wf.when(dp, wf.instance_roles, run)
wf.verify(roles)

# %% [markdown]
# ## 6. Optional failback

# %%
back = wf.failback(run, result, dp)
wf.failover_table(back)

# %% [markdown]
# ## 7. Summary

# %%
run.record_all(wf.summary(failover=wf.figures(result, write_probe), write_probe=write_probe, data_plane=dp))
run.record_all(wf.summary(roles=roles, writer=after.writer_id, failback=back))
