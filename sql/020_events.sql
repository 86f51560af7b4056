-- Producing events from SQL (SPEC §3): triggers on hookline.events make a plain
-- INSERT behave exactly like hookline.send().
--
-- * events_idempotency (BEFORE, per row, only when idempotency_key is set):
--   the first event with a (tenant, key) pair wins; a later insert with the same
--   pair is silently skipped. Concurrent inserts of one key serialise on the
--   event_idempotency primary key, and the loser is skipped once the winner
--   commits.
-- * events_fan_out (AFTER, per statement): one INSERT … SELECT creates a
--   pending delivery (history row + queue row) for every matching enabled
--   endpoint of the event's tenant; deliveries to ordered endpoints (an
--   `ordering` other than `none`), which the same statement collects, are
--   made by a second pass that first locks their lanes' places and then
--   places them (sql/058_ordering.sql),
--   then one NOTIFY wakes the workers, but only if a worker is waiting for one
--   (hookline.idle_workers; see the migration for why). NOTIFYs with the same
--   payload collapse within a transaction, so a 10,000-row insert wakes
--   workers once.
-- * events_check_payload (BEFORE, per row, only for payloads over 512
--   bytes stored): refuses a payload whose JSON text is above
--   hookline.settings' max_payload_bytes (HOOKLINE_MAX_PAYLOAD_BYTES) with
--   SQLSTATE 54000 (program_limit_exceeded), inside the producer's
--   transaction: the statement fails, and a producer that wants to go on
--   catches it (a SAVEPOINT, or EXCEPTION WHEN program_limit_exceeded).
--
-- Cost for the producer's transaction: one index probe of endpoints_fanout and
-- a look at the (tiny) idle_workers table per statement, plus, per matching
-- endpoint, one deliveries row and one delivery_queue row (five index entries). Nothing is delivered
-- unless the transaction commits.

CREATE OR REPLACE FUNCTION hookline.events_claim_idempotency_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hookline.event_idempotency (tenant, idempotency_key, event_id)
    VALUES (NEW.tenant, NEW.idempotency_key, NEW.id)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL; -- a duplicate: create nothing
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS events_idempotency ON hookline.events;
CREATE TRIGGER events_idempotency
    BEFORE INSERT ON hookline.events
    FOR EACH ROW WHEN (NEW.idempotency_key IS NOT NULL)
    EXECUTE FUNCTION hookline.events_claim_idempotency_key();

-- The payload limit: before each row, but only for a payload whose stored
-- form is over 512 bytes or compressed (the trigger's WHEN, evaluated without
-- calling any function): a smaller one cannot print as more than the
-- smallest limit allowed, 1 KiB, so most producers never pay for the check.
CREATE OR REPLACE FUNCTION hookline.events_check_payload() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    max_bytes integer := (SELECT s.max_payload_bytes FROM hookline.settings AS s);
    bytes     integer := octet_length(NEW.payload::text);
BEGIN
    IF bytes > max_bytes THEN
        RAISE EXCEPTION 'hookline: an event payload of % bytes is more than the % allowed', bytes, max_bytes
              USING ERRCODE = 'program_limit_exceeded',
                    HINT = 'HOOKLINE_MAX_PAYLOAD_BYTES (hookline.settings.max_payload_bytes) sets the limit.';
    END IF;
    RETURN NEW;
END
$$;

-- Named to fire before events_idempotency (BEFORE triggers go by name).
DROP TRIGGER IF EXISTS events_check_payload ON hookline.events;
CREATE TRIGGER events_check_payload
    BEFORE INSERT ON hookline.events
    FOR EACH ROW WHEN (pg_column_size(NEW.payload) > 512 OR pg_column_compression(NEW.payload) IS NOT NULL)
    EXECUTE FUNCTION hookline.events_check_payload();

CREATE OR REPLACE FUNCTION hookline.events_fan_out() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    created       bigint;
    ordered_event uuid[];
    ordered_to    uuid[];
    ordered_lane  bigint[];
BEGIN
    -- Unordered deliveries (the usual case) in one statement, which also
    -- collects the ordered ones in event order (the order of this
    -- statement's rows), so every pass sees the endpoints as this one did.
    WITH event AS MATERIALIZED (
        SELECT e.id, e.tenant, e.event_type, e.ordering_key, e.source, row_number() OVER () AS nth
          FROM new_events AS e
    ),
    matched AS MATERIALIZED (
        SELECT hookline.uuid_v7() AS id, e.id AS event_id, ep.id AS endpoint_id, e.tenant, e.event_type, e.nth,
               hookline.lane_of(ep.id, ep.ordering, e.ordering_key) AS lane,
               ep.batch_max_wait_ms AS batch_wait_ms
          FROM event AS e
          JOIN hookline.endpoints AS ep
            ON ep.tenant = e.tenant
           AND ep.enabled
           AND e.event_type LIKE ANY (ep.event_types_like)
        -- An endpoint's test event (POST /v1/endpoints/{id}/test) goes to that
        -- endpoint alone; the API queues it.
         WHERE e.source <> 'test'
    ),
    created AS (
        INSERT INTO hookline.deliveries (id, event_id, endpoint_id, tenant, event_type)
        SELECT m.id, m.event_id, m.endpoint_id, m.tenant, m.event_type FROM matched AS m WHERE m.lane IS NULL
    ),
    -- A batching endpoint's delivery falls due after its max_wait_ms; a
    -- batch formed then takes its endpoint's younger ones along.
    queued AS (
        INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id, next_attempt_at, batched)
        SELECT m.id, m.event_id, m.endpoint_id,
               CASE WHEN m.batch_wait_ms > 0 THEN now() + make_interval(secs => m.batch_wait_ms / 1000.0)
                    ELSE now() END,
               m.batch_wait_ms IS NOT NULL
          FROM matched AS m WHERE m.lane IS NULL
    )
    SELECT count(*),
           array_agg(m.event_id ORDER BY m.nth, m.endpoint_id) FILTER (WHERE m.lane IS NOT NULL),
           array_agg(m.endpoint_id ORDER BY m.nth, m.endpoint_id) FILTER (WHERE m.lane IS NOT NULL),
           array_agg(m.lane ORDER BY m.nth, m.endpoint_id) FILTER (WHERE m.lane IS NOT NULL)
      INTO created, ordered_event, ordered_to, ordered_lane
      FROM matched AS m;

    -- Ordered ones (sql/058_ordering.sql): lock their lanes, in a fixed
    -- order, then place them in event order after everything committed in
    -- those lanes before.
    IF ordered_lane IS NOT NULL THEN
        PERFORM hookline.lock_lane_places(ordered_lane);
        WITH placed AS MATERIALIZED (
            SELECT hookline.uuid_v7() AS id, o.event_id, o.endpoint_id, o.lane,
                   nextval('hookline.lane_seq') AS lane_seq
              FROM (SELECT o.* FROM unnest(ordered_event, ordered_to, ordered_lane) WITH ORDINALITY
                                     AS o(event_id, endpoint_id, lane, nth)
                     ORDER BY o.nth) AS o
        ),
        created AS (
            INSERT INTO hookline.deliveries (id, event_id, endpoint_id, tenant, event_type)
            SELECT p.id, p.event_id, p.endpoint_id, e.tenant, e.event_type
              FROM placed AS p JOIN new_events AS e ON e.id = p.event_id
        )
        INSERT INTO hookline.delivery_queue (delivery_id, event_id, endpoint_id, lane, lane_seq)
        SELECT p.id, p.event_id, p.endpoint_id, p.lane, p.lane_seq FROM placed AS p;
    END IF;

    IF created > 0 AND EXISTS (SELECT FROM hookline.idle_workers) THEN
        PERFORM pg_notify('hookline_wake', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS events_fan_out ON hookline.events;
CREATE TRIGGER events_fan_out
    AFTER INSERT ON hookline.events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT
    EXECUTE FUNCTION hookline.events_fan_out();
