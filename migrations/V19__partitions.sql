-- Retention by partitions: the history tables (events, deliveries, attempts,
-- batch_attempts) become range-partitioned on their UUIDv7 key, one
-- partition per UTC day, so history older than HOOKLINE_RETENTION_DAYS
-- leaves by DROP TABLE, never by DELETE (sql/160_partitions.sql keeps them).
--
-- In place: each table becomes the first partition of its new parent,
-- `<table>_legacy`, covering every key below a bound at least a day ahead;
-- daily partitions start there, and a default partition catches rows for a
-- day nobody created a partition for yet. Attaching needs proof that every
-- row lies below the bound: a validated CHECK. `hookline migrate` adds and
-- validates it beforehand in transactions of their own, which do not block
-- writers (src/db/migrate.rs); here, on a table where that did not happen,
-- it is validated under this migration's lock instead (instant when empty).
-- The rest is catalogue work: renames, a new parent, no row is moved.

CREATE FUNCTION hookline.partition_in_place(table_name text, key_column text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    bound_name constant text := table_name || '_below_partitions';
    old regclass := format('hookline.%I', table_name)::regclass;
    bound uuid;
    options text[];
    acl aclitem[];
    triggers text[];
    primary_key text;
    indexes text[];
    statement text;
    grant_row record;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = old) = 'p' THEN
        RETURN;
    END IF;
    SELECT substring(pg_get_constraintdef(c.oid) FROM '''([0-9a-f-]{36})''')::uuid INTO bound
      FROM pg_constraint AS c WHERE c.conrelid = old AND c.conname = bound_name;
    IF bound IS NULL THEN
        bound := hookline.uuid_v7_floor(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                        + interval '2 days');
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I < %L::uuid) NOT VALID',
                       old, bound_name, key_column, bound);
    END IF;
    EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', old, bound_name);

    SELECT reloptions, relacl INTO options, acl FROM pg_class WHERE oid = old;
    SELECT array_agg(pg_get_triggerdef(t.oid)) INTO triggers
      FROM pg_trigger AS t WHERE t.tgrelid = old AND NOT t.tgisinternal;
    SELECT pg_get_constraintdef(c.oid) INTO primary_key
      FROM pg_constraint AS c WHERE c.conrelid = old AND c.contype = 'p';
    SELECT array_agg(pg_get_indexdef(i.indexrelid)) INTO indexes
      FROM pg_index AS i WHERE i.indrelid = old AND NOT i.indisprimary;

    -- Triggers belong to the parent (one with a transition table may not
    -- sit on a partition); the definitions are read before any rename.
    FOR statement IN SELECT t.tgname FROM pg_trigger AS t WHERE t.tgrelid = old AND NOT t.tgisinternal LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', statement, old);
    END LOOP;
    EXECUTE format('ALTER TABLE %s RENAME TO %I', old, table_name || '_legacy');
    FOR statement IN SELECT i.indexrelid::regclass::text FROM pg_index AS i WHERE i.indrelid = old LOOP
        EXECUTE format('ALTER INDEX %s RENAME TO %I', statement,
                       substring(statement FROM '[^.]+$') || '_legacy');
    END LOOP;

    EXECUTE format('CREATE TABLE hookline.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED'
                   ' INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS) PARTITION BY RANGE (%I)',
                   table_name, old, key_column);
    EXECUTE format('ALTER TABLE hookline.%I DROP CONSTRAINT %I', table_name, bound_name);
    EXECUTE format('ALTER TABLE hookline.%I ADD CONSTRAINT %I %s', table_name, table_name || '_pkey', primary_key);
    FOREACH statement IN ARRAY coalesce(indexes, '{}') LOOP
        EXECUTE statement;
    END LOOP;
    -- Matching indexes of the old table are adopted, not built again.
    EXECUTE format('ALTER TABLE hookline.%I ATTACH PARTITION %s FOR VALUES FROM (MINVALUE) TO (%L)',
                   table_name, old, bound);
    EXECUTE format('CREATE TABLE hookline.%I PARTITION OF hookline.%I DEFAULT %s',
                   table_name || '_default', table_name,
                   CASE WHEN options IS NULL THEN '' ELSE 'WITH (' || array_to_string(options, ', ') || ')' END);
    FOREACH statement IN ARRAY coalesce(triggers, '{}') LOOP
        EXECUTE statement;
    END LOOP;
    -- Producers granted INSERT on the table keep it on the parent.
    FOR grant_row IN SELECT a.privilege_type, a.grantee, a.is_grantable FROM aclexplode(acl) AS a
                      WHERE a.grantee <> (SELECT relowner FROM pg_class WHERE oid = old) LOOP
        -- regrole's text is quoted already where the name needs it.
        EXECUTE format('GRANT %s ON hookline.%I TO %s%s', grant_row.privilege_type, table_name,
                       CASE WHEN grant_row.grantee = 0 THEN 'PUBLIC' ELSE grant_row.grantee::regrole::text END,
                       CASE WHEN grant_row.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

SELECT hookline.partition_in_place('events', 'id');
SELECT hookline.partition_in_place('deliveries', 'id');
SELECT hookline.partition_in_place('attempts', 'delivery_id');
SELECT hookline.partition_in_place('batch_attempts', 'id');

-- Idempotency keys leave with their events' partitions: a DELETE by event
-- id range over a table that is small beside them. Keys arrive in time
-- order, so a BRIN index finds a range for a few bytes per block range.
CREATE INDEX event_idempotency_event_brin ON hookline.event_idempotency USING brin (event_id);
