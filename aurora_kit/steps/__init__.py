"""The steps runbook cells call: one module per runbook, plus :mod:`.common` (opening a run, the data plane, the
confirmation gate, verdicts, the summary), whose names every module re-exports. A runbook imports its module once::

    from aurora_kit.steps import failover as wf
    run, dp = wf.start("06-failover", globals())

========================  ==========================  ===========================================================
runbook                   module                      what it does
========================  ==========================  ===========================================================
01-create-cluster         :mod:`.create`              plan, create (or find unchanged), check, who answers where
02-configure-parameters   :mod:`.parameters`          diff, apply, rolling reboot, SHOW on every instance
03-extensions             :mod:`.extensions`          install/upgrade pgvector, recall/QPS proof
04-verify-read-write      :mod:`.readwrite`           endpoint roles, instance roles, round trip, lag, pool
05-backup-restore         :mod:`.backup`              backups, snapshot, restores, exactness, clean-up
06-failover               :mod:`.failover`            plan, failover under a write probe, RTO, roles, failback
07-monitoring             :mod:`.monitoring`          alarms put and judged
08-scale                  :mod:`.scale`               class change, readers, Serverless v2, Aurora Auto Scaling
09-proxy                  :mod:`.proxy`               RDS Proxy / PgBouncer: pool, pinning, read-only, failovers
99-teardown               :mod:`.teardown`            plan, delete with the final-snapshot choice, gone
========================  ==========================  ===========================================================

Where does new code go? A measurement or judgement of a cluster (a result with a verdict) goes in
:mod:`aurora_kit.checks`; wiring a run's parameters to checks and backend calls goes here; a rule both backends
obey goes in :mod:`aurora_kit.rules`.
"""
