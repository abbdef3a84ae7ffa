"""Fleets: one runbook over many clusters — a fleet file (:mod:`.model`), runs in parallel with a concurrency
limit, a per-run time limit and the canary rule for destructive runbooks (:mod:`.run`, each run in a worker
process of its own: :mod:`.worker`), and one fleet summary linking every cluster's record (:mod:`.summary`).

``aurora-kit run 04 --fleet fleet.yaml`` is the command; past one machine, the Airflow DAG factory
(:mod:`aurora_kit.integrations.airflow`) turns the same fleet file into a DAG.
"""

from aurora_kit.fleet.model import DESTRUCTIVE_RUNBOOKS, Fleet, Member, load_fleet

__all__ = ["DESTRUCTIVE_RUNBOOKS", "Fleet", "Member", "load_fleet"]
