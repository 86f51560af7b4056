-- Batching (issue 13; the design is in src/worker/batch.rs).

-- The bytes an event's envelope takes in a batch, exactly as the worker
-- writes it (src/worker/dispatch.rs `envelope`), plus its separator.
-- STABLE as to_json is, so that it is inlined.
CREATE OR REPLACE FUNCTION hookline.envelope_bytes(event_type text, payload text) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT 104 + octet_length(to_json(event_type)::text) + octet_length(payload)
$$;
--
-- hookline.batch_candidates: up to `room` of an endpoint's pending batched
-- deliveries, in due order, locked, skipping rows other workers are
-- claiming: those due by `at`, and fresh ones (never attempted) not due
-- yet, which wait only for their endpoint's max_wait_ms (`wait_ms`: so
-- none is due later than `at` + `wait_ms`, which bounds the scan short of
-- the endpoint's later retries and leases). A retry keeps its backoff; a
-- lost lease is left to the claims, which record the loss.
--
-- It walks delivery_queue_batch (unleased rows outside lanes: V28) in
-- order and stops after `room` rows. The planner, when its statistics say
-- an endpoint has few batched rows (say, after a quiet hour, just as a
-- backlog arrives), prefers a bitmap scan that reads and sorts all of
-- them, every call: bitmap scans are off here.
--
-- Each row comes with where it is (`row_at`, its ctid: a locked row stays
-- where it is until the transaction ends), so the fill updates it without
-- looking up its id again.
DROP FUNCTION IF EXISTS hookline.batch_candidates(uuid, integer, timestamptz);
-- (Its rows gained row_at: a new return type.)
DROP FUNCTION IF EXISTS hookline.batch_candidates(uuid, integer, integer, timestamptz);
CREATE FUNCTION hookline.batch_candidates(endpoint_id uuid, room integer, wait_ms integer, at timestamptz)
RETURNS TABLE (delivery_id uuid, event_id uuid, next_attempt_at timestamptz, row_at tid)
LANGUAGE sql VOLATILE
SET enable_bitmapscan = off
AS $$
    SELECT q.delivery_id, q.event_id, q.next_attempt_at, q.ctid
      FROM hookline.delivery_queue AS q
     WHERE q.endpoint_id = batch_candidates.endpoint_id AND q.state = 'pending' AND q.batched
       AND q.lane IS NULL  -- ordered ones go behind their heads only
       AND q.next_attempt_at <= batch_candidates.at + make_interval(secs => wait_ms / 1000.0)
       AND q.lease_owner IS NULL
       AND (q.attempts = 0 OR q.next_attempt_at <= batch_candidates.at)
     ORDER BY q.next_attempt_at
     LIMIT room
       FOR UPDATE SKIP LOCKED
$$;

-- hookline.claim_lane_followers: for the lane heads a worker holds in one
-- batch each (`head_ids`, with their endpoint's room in envelopes and
-- bytes), leases the deliveries waiting right behind each head, in place
-- order, so the batch carries consecutive events of each lane: heads in
-- the order given, each lane's followers until its room is used up or the
-- run breaks — at a row that does not wait (held back), a row another
-- transaction holds (a cancel, a replay: never waited for), or, when the
-- endpoint's dead deliveries block (`ordering_on_dead` `wait`), a dead one.
-- As for unordered batches, only endpoints without a limit and with a
-- closed circuit get followers (their claims count single deliveries).
-- It takes the lane locks first, as claims and advances do
-- (sql/058_ordering.sql), so no advance moves a lane under it. Followers
-- only ever follow a head that is in flight: they end with it (one
-- request, one outcome), or go back to waiting at their next claim if it
-- is retried.
CREATE OR REPLACE FUNCTION hookline.claim_lane_followers(
    worker_id   uuid,
    head_ids    uuid[],
    room        integer[],  -- envelopes the head's batch may still take (its endpoint's)
    room_bytes  integer[],  -- and bytes
    lease_max_s float8,
    at          timestamptz
) RETURNS TABLE (
    delivery_id      uuid,
    attempt          integer,
    lease_until      timestamptz,
    event_id         uuid,
    event_type       text,
    event_created_at timestamptz,
    payload          text,
    endpoint_id      uuid,
    lane             bigint
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    lanes bigint[];
BEGIN
    at := coalesce(at, now());
    SELECT array_agg(q.lane) INTO lanes
      FROM hookline.delivery_queue AS q
     WHERE q.delivery_id = ANY (head_ids) AND q.lease_owner = worker_id AND q.lane IS NOT NULL;
    IF lanes IS NULL THEN
        RETURN;
    END IF;
    PERFORM hookline.lock_lanes(lanes);
    RETURN QUERY
    WITH head AS (
        SELECT q.endpoint_id, q.lane, q.lane_seq, h.room, h.room_bytes, h.nth,
               least(ep.timeout_ms / 1000.0 + 5, lease_max_s) AS lease_s,
               CASE WHEN ep.ordering_on_dead = 'wait'
                    THEN (SELECT min(d.lane_seq) FROM hookline.delivery_queue AS d
                           WHERE d.lane = q.lane AND d.state = 'dead' AND d.lane_seq > q.lane_seq)
               END AS dead_seq
          FROM unnest(head_ids, room, room_bytes) WITH ORDINALITY AS h(delivery_id, room, room_bytes, nth)
          JOIN hookline.delivery_queue AS q
            ON q.delivery_id = h.delivery_id AND q.lease_owner = worker_id AND q.lane IS NOT NULL
          JOIN hookline.endpoints AS ep
            ON ep.id = q.endpoint_id AND ep.enabled AND ep.batch_max_events IS NOT NULL
           AND ep.max_in_flight IS NULL AND ep.rate_limit_per_s IS NULL
          JOIN hookline.endpoint_state AS s ON s.endpoint_id = q.endpoint_id AND s.circuit_state = 'closed'
    ),
    behind AS MATERIALIZED (
        SELECT h.*, f.delivery_id, f.event_id, f.lane_seq AS seq
          FROM head AS h
         CROSS JOIN LATERAL (
                SELECT f.delivery_id, f.event_id, f.lane_seq
                  FROM hookline.delivery_queue AS f
                 WHERE f.lane = h.lane AND f.state <> 'dead' AND f.lane_seq > h.lane_seq
                   AND f.lane_seq < coalesce(h.dead_seq, 9223372036854775807)
                 ORDER BY f.lane_seq
                 LIMIT h.room) AS f
    ),
    -- Locked as they are now (a row changed since is read again).
    locked AS MATERIALIZED (
        SELECT f.delivery_id, f.state
          FROM hookline.delivery_queue AS f
         WHERE f.delivery_id = ANY (ARRAY(SELECT b.delivery_id FROM behind AS b))
           FOR UPDATE SKIP LOCKED
    ),
    unbroken AS MATERIALIZED (
        SELECT b.*, e.event_type, e.created_at, p.payload,
               bool_and(coalesce(l.state = 'waiting', false)) OVER (PARTITION BY b.lane ORDER BY b.seq) AS waits
          FROM behind AS b
          LEFT JOIN locked AS l ON l.delivery_id = b.delivery_id
          JOIN hookline.events AS e ON e.id = b.event_id
         CROSS JOIN LATERAL (SELECT e.payload::text AS payload) AS p
    ),
    -- The endpoint's room is shared, in the order of the heads.
    taken AS MATERIALIZED (
        SELECT u.*,
               count(*) OVER w AS n,
               sum(hookline.envelope_bytes(u.event_type, u.payload)) OVER w AS bytes
          FROM unbroken AS u
         WHERE u.waits
        WINDOW w AS (PARTITION BY u.endpoint_id ORDER BY u.nth, u.seq)
    ),
    claimed AS (
        UPDATE hookline.delivery_queue AS q
           SET state = 'pending',
               next_attempt_at = at + make_interval(secs => t.lease_s),
               lease_owner = worker_id,
               attempts = q.attempts + 1
          FROM taken AS t
         WHERE q.delivery_id = t.delivery_id AND t.n <= t.room AND t.bytes <= t.room_bytes
        -- All the rows need, from here: joined to taken again, the
        -- planner compared every pair.
        RETURNING q.delivery_id, q.attempts, q.next_attempt_at, t.event_id, t.event_type, t.created_at, t.payload,
                  t.endpoint_id, t.lane, t.nth, t.seq
    )
    SELECT c.delivery_id, c.attempts, c.next_attempt_at, c.event_id, c.event_type, c.created_at, c.payload,
           c.endpoint_id, c.lane
      FROM claimed AS c
     ORDER BY c.endpoint_id, c.nth, c.seq;
END
$$;
