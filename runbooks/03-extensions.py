# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Extensions: pgvector
#
# **Intent** — install pgvector on the writer (`CREATE EXTENSION vector`, or `ALTER EXTENSION vector UPDATE` to
# the server's default version), check the version, then **prove** the index: a synthetic dataset
# (`pgvector.rows` × `pgvector.dim`), an HNSW index, recall@k against exact search (index scans off), QPS and the
# speed-up, for each `hnsw.ef_search` in `pgvector.ef_search`. Fails when EXPLAIN does not use the index or recall
# stays below `pgvector.min_recall`.
#
# | | |
# |---|---|
# | **Risk** | low — creates the extension and one table `aurora_kit_vector_proof` (replaced on each run); the index build uses CPU on the writer |
# | **Blast radius** | the `app` database of `cluster_id` |
# | **Failure type** | none injected |
# | **Typical time** | local ≈ 2 s (2,000 × 16) · aws minutes for 100k × 384 |
# | **Prerequisites** | `01-create-cluster`; the data plane reachable (runs nothing otherwise, and says so) |
# | **Rollback** | `DROP TABLE aurora_kit_vector_proof; DROP EXTENSION vector;` (only if nothing else uses it) |
#
# **Least-privilege IAM (aws backend)** — generated from the calls this runbook makes (`aurora-kit iam-policy 03`
# prints the policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key): `rds-db:connect`,
# `rds:DescribeDBClusters`, `secretsmanager:GetSecretValue`.
#
# **Steps** — 1. install / upgrade · 2. version check · 3. recall, speed-up and plot · 4. summary.

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
pgvector = {'rows': 2000,
 'dim': 16,
 'k': 10,
 'queries': 50,
 'ef_search': [10, 40, 100],
 'hnsw_m': 8,
 'hnsw_ef_construction': 32,
 'min_recall': 0.8}

# %%
from aurora_kit.steps import extensions as wf

wf.parameters_form("03-extensions", globals())  # in JupyterLab: a form, checked as you type

# %%
run, dp = wf.start("03-extensions", globals())

# %% [markdown]
# ## 1–2. Install or upgrade pgvector (writer); version check
# The installed version must be the server's default (latest packaged) version.

# %%
ext = wf.when(dp, wf.install_pgvector, run)
wf.verify(ext)

# %% [markdown]
# ## 3. The pgvector proof: recall@k, QPS and speed-up vs exact search

# %%
proof = wf.when(dp, wf.prove_pgvector, run, writes=True)
wf.plot(proof)
wf.verify(proof)

# %% [markdown]
# ## 4. Summary

# %%
run.record_all(wf.summary(extension=ext, pgvector_proof=proof, data_plane=dp))
