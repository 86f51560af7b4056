-- hookline: fill batches. After a claim, a worker holding deliveries of
-- endpoints that batch (and have no limit and a closed circuit: their
-- claims count single deliveries) takes more of each such endpoint's
-- pending deliveries into the same request (and into whole new ones, when
-- the worker has request slots free), up to the room it gives in envelopes
-- ($3) and bytes ($4): hookline.batch_candidates
-- (sql/065_batching.sql) says which. (See DELIVERY_CLAIM_BATCH in
-- src/db/deliveries.rs for the parameters.)
--
-- Returns each delivery's own columns (src/db/deliveries.rs `Leased`): the
-- worker sends them with the endpoint as its claim returned it, once, not
-- once per row.
WITH clock AS MATERIALIZED (
    SELECT coalesce($6::timestamptz, now()) AS at
),
wanted AS (
    SELECT t.endpoint_id, t.room, t.room_bytes, least(ep.timeout_ms / 1000.0 + 5, $5::float8) AS lease_s,
           ep.batch_max_wait_ms
      FROM unnest($2::uuid[], $3::integer[], $4::integer[]) AS t(endpoint_id, room, room_bytes)
      JOIN hookline.endpoints AS ep
        ON ep.id = t.endpoint_id AND ep.enabled AND ep.batch_max_events IS NOT NULL
       AND ep.max_in_flight IS NULL AND ep.rate_limit_per_s IS NULL
      JOIN hookline.endpoint_state AS s ON s.endpoint_id = t.endpoint_id AND s.circuit_state = 'closed'
),
locked AS MATERIALIZED (
    SELECT w.endpoint_id, w.room_bytes, w.lease_s, q.delivery_id, q.event_id, q.next_attempt_at, q.row_at
      FROM wanted AS w
     CROSS JOIN clock AS c
     CROSS JOIN LATERAL hookline.batch_candidates(w.endpoint_id, w.room, w.batch_max_wait_ms, c.at) AS q
),
sized AS MATERIALIZED (
    SELECT l.*, e.event_type, e.created_at, p.payload,
           sum(hookline.envelope_bytes(e.event_type, p.payload))
               OVER (PARTITION BY l.endpoint_id ORDER BY l.next_attempt_at, l.delivery_id) AS body_bytes
      FROM locked AS l
      JOIN hookline.events AS e ON e.id = l.event_id
     CROSS JOIN LATERAL (SELECT e.payload::text AS payload) AS p
),
claimed AS (
    UPDATE hookline.delivery_queue AS q
       SET next_attempt_at = c.at + make_interval(secs => s.lease_s),
           lease_owner = $1,
           attempts = q.attempts + 1
      FROM sized AS s, clock AS c
     WHERE q.ctid = s.row_at AND s.body_bytes <= s.room_bytes
       -- The rows where they are, locked (the planner cannot tell how few).
       AND q.ctid = ANY (ARRAY(SELECT s.row_at FROM sized AS s))
    -- What the rows need, from here: joining sized again, the planner
    -- compared every pair.
    RETURNING q.delivery_id, q.attempts, q.next_attempt_at AS lease_until, s.event_id, s.event_type, s.created_at,
              s.payload, s.endpoint_id, s.next_attempt_at
)
SELECT cl.delivery_id, cl.attempts AS attempt, cl.lease_until, cl.event_id, cl.event_type,
       cl.created_at AS event_created_at, cl.payload, cl.endpoint_id, NULL::bigint AS lane
  FROM claimed AS cl
 ORDER BY cl.endpoint_id, cl.next_attempt_at, cl.delivery_id
