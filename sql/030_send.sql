-- hookline.send(event_type, payload, tenant => 'default', idempotency_key => NULL,
-- ordering_key => NULL) returns the event id (SPEC §3). With an idempotency
-- key that was already used in the tenant it returns the first event's id
-- and creates nothing. The ordering key puts the event in its lane at
-- endpoints ordered by key (sql/058_ordering.sql).
--
-- Cost: one events row plus the fan-out of 020_events.sql.
DROP FUNCTION IF EXISTS hookline.send(text, jsonb, text, text);
DROP FUNCTION IF EXISTS hookline.send(text, jsonb, text, text, text);
CREATE FUNCTION hookline.send(
    event_type      text,
    payload         jsonb,
    tenant          text DEFAULT 'default',
    idempotency_key text DEFAULT NULL,
    ordering_key    text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    event_id uuid;
BEGIN
    INSERT INTO hookline.events (event_type, payload, tenant, idempotency_key, ordering_key, source)
    VALUES (send.event_type, send.payload, send.tenant, send.idempotency_key, send.ordering_key, 'sql')
    RETURNING id INTO event_id;
    IF event_id IS NULL THEN -- skipped as a duplicate by events_idempotency
        SELECT i.event_id INTO event_id
        FROM hookline.event_idempotency AS i
        WHERE i.tenant = send.tenant AND i.idempotency_key = send.idempotency_key;
    END IF;
    RETURN event_id;
END
$$;
