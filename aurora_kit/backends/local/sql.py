"""Aurora's SQL surface in ``pg_catalog``, installed in every database of a local cluster by the bootstrap
superuser, so that SQL and Aurora-aware clients (the AWS Advanced Python Wrapper) meet what they meet on Aurora.

``pg_catalog.aurora_db_instance_identifier()`` → text
    The instance the session is connected to: the per-node setting ``aurora_kit.instance_id`` the backend writes
    into each node's generated ``postgresql.conf``.

``pg_catalog.aurora_version()`` → text
    ``major.minor.patch`` as Aurora formats it; locally the server version + ``.0`` (16.14 → ``16.14.0``).

``pg_catalog.aurora_replica_status()`` → one row per instance, on every instance, with Aurora's column names:
    ``server_id``, ``session_id`` (``MASTER_SESSION_ID`` for the writer, a UUID per reader), ``durable_lsn``,
    ``highest_lsn_rcvd``, ``current_read_lsn``, ``cur_replay_latency_in_usec``, ``active_txns``, ``is_current``,
    ``last_transport_error``, ``last_error_timestamp``, ``last_update_timestamp``, ``feedback_xmin``,
    ``feedback_epoch``, ``replica_lag_in_msec``, ``log_stream_speed_in_kib_per_second``,
    ``log_buffer_sequence_number``, ``oldest_read_view_trx_id``, ``oldest_read_view_lsn``, ``pending_read_ios``,
    ``read_ios``, ``iops``, ``cpu``. Aurora documents the names, not the types; LSNs are ``bigint`` here (byte
    positions: ``pg_lsn - '0/0'``), the lag and CPU ``real``.

    *Who is listed*: every instance of the topology file the backend publishes (``topology.json`` in the cluster
    dir, rewritten when members or roles change; :mod:`.topology`), read through ``data_directory`` so no session
    can point the function elsewhere. The writer row is always there: a writer reports itself; a reader reports the
    writer the file names (mid-failover: the old writer until the new one is writable and published).
    *Live figures* where the node has them: on the writer, each reader's row comes from ``pg_stat_replication``
    (flush/write/replay LSN, ``replay_lag``, ``reply_time``, ``backend_xmin``); on a reader, its own row from
    ``pg_stat_wal_receiver`` and its replay position, the writer's from the last message received; its
    ``replica_lag_in_msec`` is the time it takes to replay what it has received (polled up to 0.5 s). Rows the node
    has no live figure for (other readers seen from a reader, a reader not streaming) carry NULL figures and the
    publication time as ``last_update_timestamp``. As on Aurora since 13.9, the connected instance's own
    ``last_update_timestamp`` is NULL. ``cpu`` is NULL: no sampler runs locally. ``SECURITY DEFINER``: every
    role sees what ``pg_read_all_stats`` would, as every Aurora user sees the whole cluster.

``pg_catalog.pg_settings`` gains a row ``rds.extensions`` (context ``internal``: not modifiable, as on Aurora)
    whose value is the per-node placeholder ``rds.extensions`` from the generated ``postgresql.conf`` (``SHOW
    rds.extensions`` works too). A placeholder alone never appears in ``pg_settings`` (PostgreSQL hides custom
    placeholders from it) and a real setting needs a loadable C module, so the view is extended instead, once per
    database, with ``allow_system_table_mods`` for that one statement. The list names the extensions the local
    engine ships plus ``aurora_stat_utils``, by which Aurora-aware clients recognise Aurora; that extension itself
    cannot be installed locally.

The ``public.aurora_*`` shims of earlier versions are dropped (``pg_catalog`` comes first on every search path, so
unqualified calls already resolved to the functions here).
"""

from __future__ import annotations

#: extensions named in ``rds.extensions`` beyond those the local engine ships (see the module docstring)
AURORA_ONLY_EXTENSIONS = ("aurora_stat_utils",)

SURFACE_SQL = r"""
DROP FUNCTION IF EXISTS public.aurora_db_instance_identifier();
DROP FUNCTION IF EXISTS public.aurora_replica_status();

CREATE OR REPLACE FUNCTION pg_catalog.aurora_db_instance_identifier() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.current_setting('aurora_kit.instance_id', true) $$;

CREATE OR REPLACE FUNCTION pg_catalog.aurora_version() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.split_part(pg_catalog.current_setting('server_version'), ' ', 1) || '.0' $$;

CREATE OR REPLACE FUNCTION pg_catalog.aurora_replica_status(
    OUT server_id text, OUT session_id text, OUT durable_lsn bigint, OUT highest_lsn_rcvd bigint,
    OUT current_read_lsn bigint, OUT cur_replay_latency_in_usec bigint, OUT active_txns bigint,
    OUT is_current boolean, OUT last_transport_error integer, OUT last_error_timestamp timestamptz,
    OUT last_update_timestamp timestamptz, OUT feedback_xmin bigint, OUT feedback_epoch integer,
    OUT replica_lag_in_msec real, OUT log_stream_speed_in_kib_per_second real,
    OUT log_buffer_sequence_number bigint, OUT oldest_read_view_trx_id bigint, OUT oldest_read_view_lsn bigint,
    OUT pending_read_ios bigint, OUT read_ios bigint, OUT iops integer, OUT cpu real)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    me text := current_setting('aurora_kit.instance_id', true);
    writing boolean := NOT pg_is_in_recovery();
    topo jsonb := pg_read_file(current_setting('data_directory') || '/@TOPOLOGY@', true)::jsonb;
    published timestamptz := (topo ->> 'published_at')::timestamptz;
    writer text;
    readers text[];
    busy bigint := (SELECT count(*) FROM pg_stat_activity
                     WHERE backend_type = 'client backend' AND xact_start IS NOT NULL);
    received pg_lsn;
    started timestamptz;
    my_lag real;
BEGIN
    IF NOT writing THEN
        -- this reader's lag: how long it takes to replay what it has received (polled, at most 0.5 s; a reader still
        -- behind then reads the larger of that and the age of its last replayed commit). Not that age alone: a quiet
        -- reader that has received a record which is no transaction (a checkpoint) would read seconds behind.
        received := pg_last_wal_receive_lsn();
        started := clock_timestamp();
        my_lag := 0;
        WHILE received IS NOT NULL AND pg_last_wal_replay_lsn() < received LOOP
            IF clock_timestamp() - started >= interval '0.5 s' THEN
                my_lag := GREATEST(EXTRACT(epoch FROM clock_timestamp() - started) * 1000,
                                   EXTRACT(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000);
                EXIT;
            END IF;
            PERFORM pg_sleep(0.005);
            my_lag := EXTRACT(epoch FROM clock_timestamp() - started) * 1000;
        END LOOP;
    END IF;
    IF writing THEN
        writer := me;
    ELSE
        writer := COALESCE(NULLIF(topo ->> 'writer', me), current_setting('aurora_kit.writer_id', true));
    END IF;
    SELECT array_agg(DISTINCT id ORDER BY id) INTO readers
      FROM (SELECT e ->> 'id' AS id
              FROM jsonb_array_elements(COALESCE(topo -> 'instances', '[]'::jsonb)) AS e
             WHERE e ->> 'status' IS DISTINCT FROM 'deleting'
            UNION ALL  -- live members the file does not list (yet): streaming readers, this reader
            SELECT r.application_name::text FROM pg_stat_replication r WHERE writing AND topo IS NULL
            UNION ALL
            SELECT me WHERE NOT writing) ids
     WHERE id IS NOT NULL AND id IS DISTINCT FROM writer;

    IF writing THEN
        RETURN QUERY SELECT
            writer, 'MASTER_SESSION_ID'::text,
            (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint, NULL::bigint,
            (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint, NULL::bigint, busy,
            true, NULL::integer, NULL::timestamptz, NULL::timestamptz, NULL::bigint, NULL::integer,
            NULL::real, NULL::real, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
            NULL::integer, NULL::real;
        RETURN QUERY SELECT
            m.id, md5(m.id)::uuid::text,
            (r.flush_lsn - '0/0'::pg_lsn)::bigint, (r.write_lsn - '0/0'::pg_lsn)::bigint,
            (r.replay_lsn - '0/0'::pg_lsn)::bigint,
            (EXTRACT(epoch FROM r.replay_lag) * 1000000)::bigint, NULL::bigint,
            r.pid IS NOT NULL, NULL::integer, NULL::timestamptz,
            COALESCE(r.reply_time, published), r.backend_xmin::text::bigint, NULL::integer,
            (CASE WHEN r.pid IS NULL THEN NULL
                  WHEN r.replay_lsn >= pg_current_wal_flush_lsn() THEN 0
                  ELSE COALESCE(EXTRACT(epoch FROM r.replay_lag) * 1000, 0) END)::real,
            NULL::real, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
            NULL::integer, NULL::real
          FROM unnest(readers) AS m(id)
          LEFT JOIN LATERAL (
                SELECT * FROM pg_stat_replication s WHERE s.application_name = m.id
                 ORDER BY s.state = 'streaming' DESC, s.reply_time DESC NULLS LAST LIMIT 1) r ON true
         ORDER BY m.id;
        RETURN;
    END IF;

    RETURN QUERY SELECT
        writer, 'MASTER_SESSION_ID'::text,
        (w.latest_end_lsn - '0/0'::pg_lsn)::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
        w.pid IS NOT NULL, NULL::integer, NULL::timestamptz,
        COALESCE(w.last_msg_receipt_time, published), NULL::bigint, NULL::integer,
        NULL::real, NULL::real, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
        NULL::integer, NULL::real
      FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver w ON true
     WHERE writer IS NOT NULL;
    RETURN QUERY SELECT
        m.id, md5(m.id)::uuid::text,
        CASE WHEN m.id = me THEN (pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint END,
        CASE WHEN m.id = me THEN (w.written_lsn - '0/0'::pg_lsn)::bigint END,
        CASE WHEN m.id = me THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint END,
        NULL::bigint,
        CASE WHEN m.id = me THEN busy END,
        CASE WHEN m.id = me THEN w.pid IS NOT NULL END, NULL::integer, NULL::timestamptz,
        CASE WHEN m.id = me THEN NULL ELSE published END,
        NULL::bigint, NULL::integer,
        CASE WHEN m.id = me THEN my_lag END,
        NULL::real, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
        NULL::integer, NULL::real
      FROM unnest(readers) AS m(id)
      LEFT JOIN pg_stat_wal_receiver w ON m.id = me
     ORDER BY m.id;
END
$fn$;

DO $do$
DECLARE
    definition text := pg_catalog.pg_get_viewdef('pg_catalog.pg_settings'::regclass);
    extra text;
BEGIN
    IF definition LIKE '%rds.extensions%' THEN
        RETURN;
    END IF;
    SELECT string_agg(
             CASE a.attname
                 WHEN 'name' THEN '''rds.extensions''::text'
                 WHEN 'setting' THEN 'pg_catalog.current_setting(''rds.extensions'', true)'
                 WHEN 'reset_val' THEN 'pg_catalog.current_setting(''rds.extensions'', true)'
                 WHEN 'category' THEN '''Customized Options''::text'
                 WHEN 'short_desc' THEN '''Extensions available in this engine version.''::text'
                 WHEN 'context' THEN '''internal''::text'
                 WHEN 'vartype' THEN '''string''::text'
                 WHEN 'source' THEN '''configuration file''::text'
                 WHEN 'pending_restart' THEN 'false'
                 ELSE 'NULL::' || pg_catalog.format_type(a.atttypid, a.atttypmod)
             END || ' AS ' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
      INTO extra
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = 'pg_catalog.pg_settings'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    SET LOCAL allow_system_table_mods = on;
    EXECUTE 'CREATE OR REPLACE VIEW pg_catalog.pg_settings AS '
            || rtrim(definition, E'; \n') || ' UNION ALL SELECT ' || extra;
END
$do$;
"""


def surface_sql(topology_from_data_dir: str) -> str:
    """The statements, with the topology file's path relative to a data dir filled in."""
    return SURFACE_SQL.replace("@TOPOLOGY@", topology_from_data_dir)


def rds_extensions(shipped: list[str]) -> str:
    """The ``rds.extensions`` value: the extensions the engine ships plus :data:`AURORA_ONLY_EXTENSIONS`."""
    return ", ".join(sorted(set(shipped) | set(AURORA_ONLY_EXTENSIONS)))
