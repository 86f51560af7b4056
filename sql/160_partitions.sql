-- Retention by partitions (the tables were partitioned by migration V19).
-- events, deliveries, attempts and batch_attempts are range-partitioned on
-- their UUIDv7 key (attempts on delivery_id) by whole UTC days:
-- `<table>_pYYYYMMDD` from that day, plus `<table>_legacy` (everything
-- before the switch) and `<table>_default` (rows of a day nobody created a
-- partition for yet). A partition spans a quarter of the retention, at most
-- a week (src/db/retention.rs): every statement that joins one of these
-- tables plans and opens each of its partitions, so there are few of them.
--
-- Workers (every few minutes, one at a time) and `hookline maintain` create
-- the days ahead and drop the partitions past retention: detached under a
-- short lock, then dropped. Open work is never dropped: the drop of a
-- partition waits while the queue holds a delivery of it (pending, held,
-- waiting or dead), a delivery of an event in it, or a delivery whose
-- batched requests it holds. Nothing is moved; a dead letter kept for
-- months keeps its partition.

-- The time a UUIDv7 was made (its first 48 bits, Unix milliseconds).
CREATE OR REPLACE FUNCTION hookline.uuid_v7_time(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp(('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint / 1000.0)
$$;

-- Every partition of the history tables and the keys it holds (lower NULL:
-- from the start; both NULL: the default partition), from the catalogue
-- alone: what the functions below read.
DROP VIEW IF EXISTS hookline.partitions;
DROP VIEW IF EXISTS hookline.partition_bounds;
CREATE VIEW hookline.partition_bounds AS
SELECT parent.relname::text AS table_name,
       child.relname::text AS partition_name,
       child.oid AS partition_oid,
       key.attname::text AS key_column,
       b.lower_key,
       b.upper_key,
       hookline.uuid_v7_time(b.lower_key) AS starts_at,
       hookline.uuid_v7_time(b.upper_key) AS ends_at
  FROM pg_inherits AS i
  JOIN pg_class AS parent ON parent.oid = i.inhparent
  JOIN pg_class AS child ON child.oid = i.inhrelid
  JOIN pg_partitioned_table AS pt ON pt.partrelid = parent.oid
  JOIN pg_attribute AS key ON key.attrelid = parent.oid AND key.attnum = pt.partattrs[0]
 CROSS JOIN LATERAL (
       SELECT substring(pg_get_expr(child.relpartbound, child.oid) FROM 'FROM \(''([0-9a-f-]{36})''\)')::uuid
                  AS lower_key,
              substring(pg_get_expr(child.relpartbound, child.oid) FROM 'TO \(''([0-9a-f-]{36})''\)')::uuid
                  AS upper_key) AS b
 WHERE parent.relnamespace = 'hookline'::regnamespace
   AND parent.relname IN ('events', 'deliveries', 'attempts', 'batch_attempts');

-- The same for operators, with each partition's estimated rows and size
-- (measuring opens every partition: the functions below do without).
CREATE VIEW hookline.partitions AS
SELECT b.table_name, b.partition_name, b.key_column, b.lower_key, b.upper_key, b.starts_at, b.ends_at,
       greatest(c.reltuples, 0)::bigint AS estimated_rows,
       pg_total_relation_size(b.partition_oid) AS bytes
  FROM hookline.partition_bounds AS b
  JOIN pg_class AS c ON c.oid = b.partition_oid;

-- Creates each table's partitions of `width_days` days from the end of its
-- newest one until `days_ahead` days after the day of `at` (UTC; NULL: now)
-- are covered. A new partition is built beside the table and attached,
-- which locks only the default partition, to see that it holds no rows of
-- the new days (those it took move into the new partition first). Returns
-- how many partitions it created.
DROP FUNCTION IF EXISTS hookline.create_partitions(integer, integer, timestamptz);
CREATE FUNCTION hookline.create_partitions(days_ahead integer, width_days integer, at timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today constant date := (coalesce(at, now()) AT TIME ZONE 'UTC')::date;
    tbl record;
    first_day date;
    lower_key uuid;
    upper_key uuid;
    name text;
    options text[];
    created integer := 0;
BEGIN
    FOR tbl IN SELECT p.table_name, p.key_column, max(p.ends_at) AS covered_until
                 FROM hookline.partition_bounds AS p
                GROUP BY p.table_name, p.key_column
                ORDER BY p.table_name LOOP
        SELECT c.reloptions INTO options
          FROM pg_class AS c WHERE c.oid = format('hookline.%I', tbl.table_name || '_default')::regclass;
        first_day := coalesce((tbl.covered_until AT TIME ZONE 'UTC')::date, today);
        WHILE first_day <= today + days_ahead LOOP
            lower_key := hookline.uuid_v7_floor(first_day::timestamp AT TIME ZONE 'UTC');
            upper_key := hookline.uuid_v7_floor((first_day + width_days)::timestamp AT TIME ZONE 'UTC');
            name := tbl.table_name || '_p' || to_char(first_day, 'YYYYMMDD');
            EXECUTE format('CREATE TABLE hookline.%I (LIKE hookline.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                           ' INCLUDING GENERATED INCLUDING STORAGE) %s',
                           name, tbl.table_name,
                           CASE WHEN options IS NULL THEN ''
                                ELSE 'WITH (' || array_to_string(options, ', ') || ')' END);
            EXECUTE format('WITH moved AS (DELETE FROM hookline.%I WHERE %I >= %L AND %I < %L RETURNING *)'
                           ' INSERT INTO hookline.%I SELECT * FROM moved',
                           tbl.table_name || '_default', tbl.key_column, lower_key, tbl.key_column, upper_key,
                           name);
            EXECUTE format('ALTER TABLE hookline.%I ATTACH PARTITION hookline.%I FOR VALUES FROM (%L) TO (%L)',
                           tbl.table_name, name, lower_key, upper_key);
            created := created + 1;
            first_day := first_day + width_days;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

-- Whether open work keeps a partition of `table_name` holding the keys
-- [lower_key, upper_key) (see the top of this file): a queued delivery of
-- it, one of an event in it, or one whose batched requests it holds.
CREATE OR REPLACE FUNCTION hookline.partition_holds_open_work(table_name text, lower_key uuid, upper_key uuid)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE table_name
               WHEN 'events' THEN
                   EXISTS (SELECT FROM hookline.delivery_queue AS q
                            WHERE q.event_id >= lower_key AND q.event_id < upper_key)
               -- Requests that carried a delivery tried so far.
               WHEN 'batch_attempts' THEN
                   EXISTS (SELECT FROM hookline.delivery_queue AS q
                             JOIN hookline.deliveries AS d ON d.id = q.delivery_id
                            WHERE q.attempts > 0 AND d.batch_attempts IS NOT NULL
                              AND EXISTS (SELECT FROM unnest(d.batch_attempts) AS b(id)
                                           WHERE b.id >= lower_key AND b.id < upper_key))
               ELSE
                   EXISTS (SELECT FROM hookline.delivery_queue AS q
                            WHERE q.delivery_id >= lower_key AND q.delivery_id < upper_key)
           END
$$;

-- The partitions whose keys all lie more than `retention` before `at`
-- (NULL: now), and whether open work keeps them. Usually there is none,
-- and this reads nothing but the catalogue. A day's deliveries come before
-- its attempts: once the history rows are gone nothing can reopen them.
DROP FUNCTION IF EXISTS hookline.expired_partitions(interval, timestamptz);
CREATE FUNCTION hookline.expired_partitions(retention interval, at timestamptz)
RETURNS TABLE (partition_name text, kept boolean)
LANGUAGE sql STABLE AS $$
    SELECT p.partition_name,
           hookline.partition_holds_open_work(p.table_name,
                                              coalesce(p.lower_key, '00000000-0000-0000-0000-000000000000'),
                                              p.upper_key)
      FROM hookline.partition_bounds AS p
     WHERE p.upper_key <= hookline.uuid_v7_floor(coalesce(at, now()) - retention)
     ORDER BY p.upper_key, array_position('{deliveries,attempts,events,batch_attempts}'::text[], p.table_name)
$$;

-- Detaches one partition that expired_partitions() found free, unless
-- open work reached it meanwhile (a replay, a recovery), and renames it
-- `<name>_expired` for drop_expired_tables(). The table's lock comes first,
-- as every statement takes it, and is held for a catalogue change only:
-- removing the files happens after, under no lock of the table. Returns
-- whether it detached.
DROP FUNCTION IF EXISTS hookline.drop_partition(text);
DROP FUNCTION IF EXISTS hookline.detach_partition(text);
CREATE FUNCTION hookline.detach_partition(name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    p hookline.partition_bounds;
BEGIN
    SELECT v.* INTO p FROM hookline.partition_bounds AS v WHERE v.partition_name = name AND v.upper_key IS NOT NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    EXECUTE format('LOCK TABLE hookline.%I IN ACCESS EXCLUSIVE MODE', p.table_name);
    IF hookline.partition_holds_open_work(p.table_name,
                                          coalesce(p.lower_key, '00000000-0000-0000-0000-000000000000'),
                                          p.upper_key) THEN
        RETURN false;
    END IF;
    EXECUTE format('ALTER TABLE hookline.%I DETACH PARTITION hookline.%I', p.table_name, p.partition_name);
    EXECUTE format('ALTER TABLE hookline.%I RENAME TO %I', p.partition_name, p.partition_name || '_expired');
    RETURN true;
END
$$;

-- Drops the partitions detach_partition() took out (also those a process
-- that died after detaching left), and the idempotency keys and schema
-- warnings of the events that were in them. Returns the tables dropped.
CREATE OR REPLACE FUNCTION hookline.drop_expired_tables() RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    expired text;
    first_id uuid;
    last_id uuid;
BEGIN
    FOR expired IN SELECT c.relname FROM pg_class AS c
                    WHERE c.relnamespace = 'hookline'::regnamespace AND c.relkind = 'r'
                      AND c.relname LIKE '%\_expired' AND NOT c.relispartition LOOP
        BEGIN
            IF expired LIKE 'events\_%' THEN
                EXECUTE format('SELECT (SELECT id FROM hookline.%1$I ORDER BY id LIMIT 1),
                                       (SELECT id FROM hookline.%1$I ORDER BY id DESC LIMIT 1)', expired)
                   INTO first_id, last_id;
                DELETE FROM hookline.event_idempotency AS k WHERE k.event_id BETWEEN first_id AND last_id;
                DELETE FROM hookline.event_schema_warnings AS w WHERE w.event_id BETWEEN first_id AND last_id;
            END IF;
            EXECUTE format('DROP TABLE hookline.%I', expired);
            RETURN NEXT expired;
        EXCEPTION WHEN OTHERS THEN
            -- Something of the operator's depends on it (a view, a
            -- publication): the others still go, and it is retried.
            RAISE WARNING 'hookline: could not drop %: %', expired, SQLERRM;
        END;
    END LOOP;
END
$$;

-- The hourly rollups keep their own, longer retention.
CREATE OR REPLACE FUNCTION hookline.drop_expired_rollups(retention interval, at timestamptz) RETURNS bigint
LANGUAGE sql AS $$
    WITH endpoints AS (
        DELETE FROM hookline.endpoint_hourly WHERE hour < coalesce(at, now()) - retention RETURNING 1
    ), event_types AS (
        DELETE FROM hookline.event_type_hourly WHERE hour < coalesce(at, now()) - retention RETURNING 1
    )
    SELECT (SELECT count(*) FROM endpoints) + (SELECT count(*) FROM event_types)
$$;
