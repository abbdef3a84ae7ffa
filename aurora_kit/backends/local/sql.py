"""Aurora SQL shims installed in every local cluster, so runbook SQL is identical on both backends.

``aurora_db_instance_identifier()`` → text
    The instance the session is connected to. Read from the per-node setting ``aurora_kit.instance_id``, which
    the backend writes into each node's generated ``postgresql.conf`` (re-applied after basebackup and rewind).

``aurora_replica_status()`` → one row per instance, like Aurora's function of the same name:

    ==========================  ===========  =========================================================================
    column                      type         local meaning
    ==========================  ===========  =========================================================================
    server_id                   text         instance identifier
    session_id                  text         ``MASTER_SESSION_ID`` for the writer; the walsender/walreceiver pid else
    is_writer                   boolean      true for the writer row
    durable_lsn                 pg_lsn       writer: WAL flushed locally; reader: WAL flushed by the reader
    highest_lsn_rcvd            pg_lsn       reader: WAL written (received) by the reader; NULL for the writer
    current_read_lsn            pg_lsn       reader: WAL replayed (visible to queries); writer: current insert LSN
    replica_lag_in_msec         float8       reader: replay lag in ms (0 when fully replayed); NULL for the writer
    sync_state                  text         reader: sync | quorum | async | potential (pg_stat_replication)
    last_update_timestamp       timestamptz  time of the last reply (writer view) or of the query (reader view)
    ==========================  ===========  =========================================================================

On the writer, reader rows come from ``pg_stat_replication`` (``replay_lag``). On a reader, the function returns
the writer row (id from ``aurora_kit.writer_id``) and the reader's own row from ``pg_stat_wal_receiver`` and
``pg_last_xact_replay_timestamp()``; other readers are not visible from a reader (Aurora shows all of them).
"""

from __future__ import annotations

SHIMS_SQL = r"""
CREATE OR REPLACE FUNCTION public.aurora_db_instance_identifier() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT current_setting('aurora_kit.instance_id', true) $$;

CREATE OR REPLACE FUNCTION public.aurora_replica_status()
RETURNS TABLE (
    server_id text,
    session_id text,
    is_writer boolean,
    durable_lsn pg_lsn,
    highest_lsn_rcvd pg_lsn,
    current_read_lsn pg_lsn,
    replica_lag_in_msec double precision,
    sync_state text,
    last_update_timestamp timestamptz
)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RETURN QUERY
            SELECT current_setting('aurora_kit.instance_id', true), 'MASTER_SESSION_ID'::text, true,
                   pg_current_wal_flush_lsn(), NULL::pg_lsn, pg_current_wal_insert_lsn(),
                   NULL::double precision, NULL::text, clock_timestamp();
        RETURN QUERY
            SELECT r.application_name::text, r.pid::text, false, r.flush_lsn, r.write_lsn, r.replay_lsn,
                   CASE WHEN r.replay_lsn >= pg_current_wal_flush_lsn() THEN 0::double precision
                        ELSE COALESCE(EXTRACT(epoch FROM r.replay_lag) * 1000, 0)::double precision END,
                   r.sync_state::text, r.reply_time
              FROM pg_stat_replication r
             ORDER BY 1;
    ELSE
        RETURN QUERY
            SELECT current_setting('aurora_kit.writer_id', true), 'MASTER_SESSION_ID'::text, true,
                   w.flushed_lsn, NULL::pg_lsn, NULL::pg_lsn, NULL::double precision, NULL::text,
                   w.last_msg_receipt_time
              FROM pg_stat_wal_receiver w;
        RETURN QUERY
            SELECT current_setting('aurora_kit.instance_id', true), COALESCE(w.pid::text, ''), false,
                   w.flushed_lsn, w.written_lsn, pg_last_wal_replay_lsn(),
                   CASE WHEN pg_last_wal_receive_lsn() IS NULL
                             OR pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0::double precision
                        ELSE (EXTRACT(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)
                             ::double precision END,
                   NULL::text, clock_timestamp()
              FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver w ON true;
    END IF;
END
$$;
"""
