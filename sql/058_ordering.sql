-- FIFO ordering (issue 13; the tables in migrations/V12__ordering.sql).
--
-- A lane is an ordered endpoint's whole queue (`ordering = 'endpoint'`) or
-- its deliveries of one `ordering_key` (`ordering = 'key'`). Its rows carry
-- the lane and a place (`lane_seq`); the lane's *head* is its first row, in
-- place order, that still blocks it: pending, held or waiting, or dead when
-- the endpoint's `ordering_on_dead` is `wait`. Only the head may be sent.
--
-- * Places: whatever places deliveries in a lane (the fan-out of
--   sql/020_events.sql, a replay, a recover) first locks the lane's row in
--   ordering_lanes (hookline.lock_lane_places), then numbers them from
--   hookline.lane_seq. A second one waits for the first to commit before
--   numbering, so places follow commit order, and a claim that sees a
--   delivery also sees every delivery placed before it.
-- * Claims: an ordered delivery always goes to the flow-control claim. It
--   takes its candidates' lane locks (below), then the candidates, and then,
--   in a statement with a newer snapshot, moves every candidate that is not
--   its lane's head to `waiting` (out of the due index). The head goes on
--   like any other delivery (limits, circuit, retries). Two claims never
--   both take a lane's rows: the head is committed before anything placed
--   after it, so every claim sees it.
-- * When a lane's head may have ended (any completion of an ordered
--   delivery; a cancel; an orphan ended or a head parked by the claim; the
--   endpoint enabled again or its ordering_on_dead changed),
--   hookline.advance_lanes runs in the same transaction, after the statement
--   that ended it: it takes the lane locks and then makes the lane's head
--   pending and due if it was waiting.
--   A claim deciding that a row waits and an advance letting it go take
--   turns on the lane lock, and each decides with a snapshot taken after it
--   got the lock, so the advance always sees what the claim moved aside,
--   and the claim always sees the head the advance followed gone.
--
-- Lane locks are transaction-level advisory locks on the lane's bucket (of
-- 128, in their own key space), taken in bucket order: a claim or an advance
-- holds at most 128 whatever its size, and two that share a bucket only take
-- turns for the few milliseconds they run. Producers never take them.
--
-- So a lane has at most one delivery in flight, sends in place order, and a
-- failing head (retrying, or dead and waiting) holds back its lane alone.

-- The lane of an endpoint's delivery of an event; NULL: not ordered.
CREATE OR REPLACE FUNCTION hookline.lane_of(endpoint_id uuid, ordering text, ordering_key text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE ordering
                WHEN 'endpoint' THEN hashtextextended(endpoint_id::text, 0)
                WHEN 'key' THEN hashtextextended(endpoint_id::text || '/' || ordering_key, 0)
           END
$$;

-- A lane's head: its first row that blocks it (`dead_blocks`: its
-- endpoint's ordering_on_dead is `wait`).
-- (Each half reads one of the lane indexes.)
CREATE OR REPLACE FUNCTION hookline.lane_head(lane bigint, dead_blocks boolean)
RETURNS TABLE (delivery_id uuid, state hookline.queue_state)
LANGUAGE sql STABLE AS $$
    SELECT h.delivery_id, h.state
      FROM ((SELECT q.delivery_id, q.state, q.lane_seq
               FROM hookline.delivery_queue AS q
              WHERE q.lane = lane_head.lane AND q.state <> 'dead'
              ORDER BY q.lane_seq
              LIMIT 1)
            UNION ALL
            (SELECT q.delivery_id, q.state, q.lane_seq
               FROM hookline.delivery_queue AS q
              WHERE q.lane = lane_head.lane AND q.state = 'dead' AND dead_blocks
              ORDER BY q.lane_seq
              LIMIT 1)) AS h
     ORDER BY h.lane_seq
     LIMIT 1
$$;

-- Locks the places of `lanes` for this transaction (their ordering_lanes
-- rows, in lane order), before taking places in them.
CREATE OR REPLACE FUNCTION hookline.lock_lane_places(lanes bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO hookline.ordering_lanes AS l (lane)
    SELECT DISTINCT x FROM unnest(lanes) AS x WHERE x IS NOT NULL ORDER BY 1
        ON CONFLICT (lane) DO UPDATE SET used_at = excluded.used_at
$$;

-- A new place at the back of `lane` (NULL: not ordered).
CREATE OR REPLACE FUNCTION hookline.take_lane_place(lane bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF lane IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM hookline.lock_lane_places(ARRAY[lane]);
    RETURN nextval('hookline.lane_seq');
END
$$;

-- Takes the lane locks of `lanes` (see above).
CREATE OR REPLACE FUNCTION hookline.lock_lanes(lanes bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1751936620, b.bucket)  -- 1751936620: 'hlnl', hookline's lane locks
       FROM (SELECT DISTINCT (abs(l % 128))::integer AS bucket FROM unnest(lanes) AS l ORDER BY 1) AS b;
END
$$;

-- Lets each lane's head go if it waits, after the row before it ended in an
-- earlier statement of this transaction; returns how many went.
CREATE OR REPLACE FUNCTION hookline.advance_lanes(endpoint_ids uuid[], lanes bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    promoted integer;
BEGIN
    PERFORM hookline.lock_lanes(lanes);
    WITH lane AS (
        SELECT DISTINCT l.endpoint_id, l.lane
          FROM unnest(endpoint_ids, lanes) AS l(endpoint_id, lane)
         WHERE l.lane IS NOT NULL
    ),
    head AS (
        SELECT h.delivery_id
          FROM lane AS l
          JOIN hookline.endpoints AS ep ON ep.id = l.endpoint_id
         CROSS JOIN LATERAL hookline.lane_head(l.lane, ep.ordering_on_dead = 'wait') AS h
         WHERE h.state = 'waiting'
    ),
    released AS (
        UPDATE hookline.delivery_queue AS q
           SET state = 'pending'
          FROM head AS h
         WHERE q.delivery_id = h.delivery_id AND q.state = 'waiting'
        RETURNING 1
    )
    SELECT count(*) INTO promoted FROM released;
    IF promoted > 0 AND EXISTS (SELECT FROM hookline.idle_workers) THEN
        PERFORM pg_notify('hookline_wake', '');
    END IF;
    RETURN promoted;
END
$$;

-- The place of a replayed delivery: a dead one keeps its place only while
-- it holds its lane back (its lane's head, its endpoint's dead ones
-- blocking, nothing of the lane in flight); otherwise the lane moved on
-- past it, so it goes to the back.
CREATE OR REPLACE FUNCTION hookline.replayed_lane_seq(delivery_id uuid, endpoint_id uuid, lane bigint,
                                                      lane_seq bigint, state hookline.queue_state) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN lane IS NULL OR state <> 'dead' THEN lane_seq
                WHEN (SELECT h.delivery_id
                        FROM hookline.endpoints AS ep
                       CROSS JOIN LATERAL hookline.lane_head(lane, ep.ordering_on_dead = 'wait') AS h
                       WHERE ep.id = replayed_lane_seq.endpoint_id) = replayed_lane_seq.delivery_id
                 AND NOT EXISTS (SELECT FROM hookline.delivery_queue AS q
                                  WHERE q.lane = replayed_lane_seq.lane AND q.state <> 'dead'
                                    AND q.lease_owner IS NOT NULL AND q.next_attempt_at > now())
                    THEN lane_seq
                ELSE hookline.take_lane_place(lane) END
$$;

-- Every lane of one endpoint (its ordering_on_dead changed, or it was
-- enabled again). The lanes of all its queue rows, not only waiting ones:
-- a claim may be moving a row to `waiting` right now, unseen until the
-- lane lock is ours.
CREATE OR REPLACE FUNCTION hookline.advance_endpoint_lanes(endpoint_id uuid) RETURNS integer
LANGUAGE sql AS $$
    SELECT coalesce(hookline.advance_lanes(array_agg(q.endpoint_id), array_agg(q.lane)), 0)
      FROM (SELECT DISTINCT q.endpoint_id, q.lane
              FROM hookline.delivery_queue AS q
             WHERE q.endpoint_id = advance_endpoint_lanes.endpoint_id AND q.lane IS NOT NULL) AS q
$$;
