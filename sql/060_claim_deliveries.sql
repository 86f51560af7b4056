-- hookline.claim_limited: the flow-control claim, for the due deliveries
-- that the plain claim (DELIVERY_CLAIM in src/db/deliveries.rs, one
-- statement) left to it: those of endpoints that have a limit or an
-- unclosed circuit (or were disabled meanwhile), orphans, and the backlog
-- of an endpoint whose requests stalled. Internal to hookline: the worker
-- calls it only when its plain claim handed it such candidates, so
-- endpoints without limits never pay for it.
--
-- 1. Lock the endpoint_state rows of the candidates' endpoints that have a
--    limit or an unclosed circuit, in endpoint id order: claims of the same
--    endpoint by several workers take turns there, which is what makes
--    max_in_flight and rate_limit_per_s hold across all of them.
--    Completions lock in the same order; only rows locked here are written
--    below (a limit added meanwhile applies from the next claim). Then the
--    lane locks of the candidates in ordered lanes (sql/058_ordering.sql).
--    Both are taken before any candidate, so a claim holding candidates
--    waits for no lock, only, when it advances a lane whose head it ended
--    or parked, for that lane's next row, which no other lane locker holds.
-- 2. Lock the candidates that are still due, skipping rows that other
--    workers are claiming (FOR UPDATE SKIP LOCKED). End those whose
--    endpoint or event no longer exists (dead, with the reason): they can
--    never be sent, and left due they would fill every claim. Then, with a
--    newer snapshot, move every candidate of an ordered lane that is not
--    its lane's head to `waiting` (sql/058_ordering.sql); the end of the
--    head lets it go.
-- 3. Per endpoint, claim up to its allowance (hookline.claim_allowance: the
--    worker's room for it, max_in_flight less the live leases of every
--    worker, the rate limit's room, the circuit's room), at most `wanted`
--    in all, and move the rest aside by what stopped them
--    (hookline.limited_claim_action):
--      * open circuit: due again at the end of the cool-down, or at the
--        delivery's last scheduled attempt if that comes first
--        (hookline.last_attempt_due); once that is past, `expire`: leased
--        to the worker, which records it dead (`circuit_open`) unsent,
--      * rate limit: each given its own later start, 1/rate apart,
--      * max_in_flight full, a probe in flight, or a stalled endpoint filling
--        the worker's share: `held` until a completion releases them,
--      * a probe that is due but stopped by a limit: due again in a second,
--      * an endpoint disabled while we held its rows: dead, as its disabling
--        made the rest,
--      * otherwise (the worker's slots are full): left due for the next claim.
--    A lost lease (its worker died) that is claimed is taken over without
--    counting a new attempt, as the plain claim does, for the worker to
--    record the loss.
--
-- Cost: one row lock and update of endpoint_state per limited endpoint, and
-- one queue update per delivery moved aside.

-- How many of a delivery's attempts were lost with their worker: both
-- claims report it for a lost lease they take over, against
-- HOOKLINE_MAX_WORKER_LOSSES.
CREATE OR REPLACE FUNCTION hookline.worker_losses(delivery_id uuid) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer
      FROM hookline.attempts AS a
     WHERE a.delivery_id = worker_losses.delivery_id AND a.error_kind = 'worker_lost'
$$;

DROP FUNCTION IF EXISTS hookline.claim_limited(uuid, integer, uuid[], float8, integer, uuid[], integer[], uuid[], timestamptz);
DROP FUNCTION IF EXISTS hookline.claim_limited(
    uuid, integer, uuid[], float8, integer, uuid[], integer[], uuid[], timestamptz, float8[]);
CREATE FUNCTION hookline.claim_limited(
    worker_id     uuid,
    wanted        integer,    -- free request slots in the worker
    candidate_ids uuid[],     -- due deliveries the plain claim found limited
    lease_max_s   float8,     -- a lease is the endpoint's timeout + 5 s, at most this
    share         integer,    -- requests the worker may send one endpoint at once
    busy_ids      uuid[],     -- endpoints the worker already sends to, with
    busy_room     integer[],  --   the room left in its share for each
    stalled_ids   uuid[],     -- busy endpoints whose requests have stopped finishing
    at            timestamptz, -- the clock: NULL for the real one, or a test's
    default_schedule float8[]  -- the worker's retry schedule, for endpoints without their own
) RETURNS TABLE (
    delivery_id      uuid,
    attempt          integer,
    lease_until      timestamptz,
    event_id         uuid,
    event_type       text,
    event_created_at timestamptz,
    payload          text,
    endpoint_id      uuid,
    url              text,
    http_method      text,
    headers          jsonb,
    timeout_ms       integer,
    retry_schedule   float8[],
    secret           text,
    previous_secret  text,
    lost_since       timestamptz,
    lost_at          timestamptz,
    worker_losses    integer,
    circuit_expired  boolean,
    lane             bigint,
    batch_max_events integer,
    batch_max_bytes  integer,
    batch_format     text,
    signature        text,
    signature_header text,
    signature_hash   text,
    tenant           text,
    transformation   text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    locked_ids       uuid[];
    locked_endpoints uuid[];
    locked_lost_at   timestamptz[];
    locked_attempts  integer[];
    expired          uuid[];
    ended_ids        uuid[];
    ended_endpoints  uuid[];
    ended_lanes      bigint[];
    waited           uuid[];
    limited_ids      uuid[];
    candidate_endpoints uuid[];
    candidate_lanes  bigint[];
    parked_endpoints uuid[];
    parked_lanes     bigint[];
    claimed          uuid[];
BEGIN
    -- The rate limit measures from here rather than from the transaction's
    -- start, so the starts it spaces are as close as can be to the sends.
    at := coalesce(at, clock_timestamp());
    SELECT array_agg(DISTINCT q.endpoint_id), array_agg(q.lane) FILTER (WHERE q.lane IS NOT NULL)
      INTO candidate_endpoints, candidate_lanes
      FROM hookline.delivery_queue AS q
     WHERE q.delivery_id = ANY (candidate_ids);
    SELECT array_agg(l.endpoint_id) INTO limited_ids
      FROM (SELECT s.endpoint_id
              FROM hookline.endpoint_state AS s
              JOIN hookline.endpoints AS ep ON ep.id = s.endpoint_id
             WHERE s.endpoint_id = ANY (candidate_endpoints)
               AND (NOT ep.enabled OR ep.max_in_flight IS NOT NULL OR ep.rate_limit_per_s IS NOT NULL
                    OR s.circuit_state <> 'closed')
             ORDER BY s.endpoint_id
               FOR UPDATE OF s) AS l;
    IF candidate_lanes IS NOT NULL THEN
        PERFORM hookline.lock_lanes(candidate_lanes);
    END IF;

    SELECT array_agg(c.delivery_id ORDER BY c.next_attempt_at, c.delivery_id),
           array_agg(c.endpoint_id ORDER BY c.next_attempt_at, c.delivery_id),
           array_agg(c.lost_at ORDER BY c.next_attempt_at, c.delivery_id),
           array_agg(c.attempts ORDER BY c.next_attempt_at, c.delivery_id)
      INTO locked_ids, locked_endpoints, locked_lost_at, locked_attempts
      FROM (SELECT q.delivery_id, q.endpoint_id, q.next_attempt_at, q.attempts,
                   CASE WHEN q.lease_owner IS NOT NULL THEN q.next_attempt_at END AS lost_at
              FROM hookline.delivery_queue AS q
             WHERE q.delivery_id = ANY (candidate_ids) AND q.state = 'pending' AND q.next_attempt_at <= at
               FOR UPDATE SKIP LOCKED) AS c;
    IF locked_ids IS NULL THEN
        RETURN;
    END IF;

    WITH orphan AS (
        SELECT q.delivery_id,
               CASE WHEN NOT EXISTS (SELECT FROM hookline.endpoints AS ep WHERE ep.id = q.endpoint_id)
                    THEN 'endpoint deleted' ELSE 'event deleted' END AS reason
          FROM hookline.delivery_queue AS q
         WHERE q.delivery_id = ANY (locked_ids)
           AND (NOT EXISTS (SELECT FROM hookline.endpoints AS ep WHERE ep.id = q.endpoint_id)
                OR NOT EXISTS (SELECT FROM hookline.events AS e WHERE e.id = q.event_id))
    ),
    ended AS (
        DELETE FROM hookline.delivery_queue AS q USING orphan AS o
         WHERE q.delivery_id = o.delivery_id
        RETURNING q.delivery_id, o.reason, q.endpoint_id, q.lane
    ),
    was AS (
        SELECT d.id, d.state, d.attempts, d.endpoint_id, d.tenant, d.event_type, d.created_at
          FROM hookline.deliveries AS d WHERE d.id IN (SELECT e.delivery_id FROM ended AS e)
    ),
    history AS (
        UPDATE hookline.deliveries AS d
           SET state = 'dead', last_error = e.reason, completed_at = at
          FROM ended AS e WHERE d.id = e.delivery_id
        RETURNING d.id
    ),
    counted AS (
        INSERT INTO hookline.rollup_deltas
        SELECT t.*
          FROM was AS w
         CROSS JOIN LATERAL hookline.transition_delta(w.endpoint_id, w.tenant, w.event_type, w.created_at,
                                                      w.state, 'dead', w.attempts, w.attempts) AS t
         WHERE w.id IN (SELECT h.id FROM history AS h)
    )
    SELECT array_agg(e.delivery_id), array_agg(e.endpoint_id) FILTER (WHERE e.lane IS NOT NULL),
           array_agg(e.lane) FILTER (WHERE e.lane IS NOT NULL)
      INTO ended_ids, ended_endpoints, ended_lanes
      FROM ended AS e;

    -- Ordered lanes: this statement's snapshot is newer than the candidates'
    -- lock, so it sees every earlier row of each lane that is committed.
    WITH waiting AS (
        UPDATE hookline.delivery_queue AS q
           SET state = 'waiting'
          FROM hookline.endpoints AS ep
         WHERE q.delivery_id = ANY (locked_ids) AND q.lane IS NOT NULL AND ep.id = q.endpoint_id AND ep.enabled
           AND q.delivery_id <> ALL (coalesce(ended_ids, '{}'))
           AND NOT EXISTS (SELECT FROM hookline.lane_head(q.lane, ep.ordering_on_dead = 'wait') AS h
                            WHERE h.delivery_id = q.delivery_id)
        RETURNING q.delivery_id
    )
    SELECT array_agg(w.delivery_id) INTO waited FROM waiting AS w;
    IF ended_lanes IS NOT NULL THEN
        PERFORM hookline.advance_lanes(ended_endpoints, ended_lanes);
    END IF;

    -- Each step below is one pass over the candidates (window functions
    -- rather than joins of the candidates with per-endpoint aggregates, so
    -- the cost stays linear whatever the planner estimates).
    WITH candidate AS (
        -- Every limit as a number of deliveries that may start now (NULL = no such limit).
        SELECT c.delivery_id, c.endpoint_id, c.ord,
               row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.ord)          AS nth,
               count(*) OVER (PARTITION BY c.endpoint_id)                             AS candidates,
               at + make_interval(secs => least(ep.timeout_ms / 1000.0 + 5, lease_max_s)) AS lease_until,
               ep.enabled,
               ep.disabled_reason,
               coalesce(b.room, share)                                                AS room,
               c.endpoint_id = ANY (stalled_ids)                                      AS stalled,
               CASE WHEN ep.max_in_flight IS NOT NULL
                    THEN greatest(ep.max_in_flight - hookline.lease_batches_live(s.leases, at), 0) END AS cap_free,
               s.circuit_state,
               s.circuit_retry_at,
               hookline.circuit_room(s.circuit_state, s.circuit_retry_at, s.circuit_probe_until, at) AS circuit_room,
               ep.rate_limit_per_s                                                    AS rate,
               make_interval(secs => 1.05 / ep.rate_limit_per_s)                      AS rate_step,
               greatest(coalesce(s.rate_tat, at), at)                                 AS rate_from,
               s.rate_horizon,
               hookline.rate_room(ep.rate_limit_per_s, s.rate_tat, at)                AS rate_room,
               -- Only an open circuit's deliveries need it (and cost its lookups).
               -- Its last attempt, alone or batched, else its creation.
               CASE WHEN s.circuit_state = 'open' THEN hookline.last_attempt_due(
                   coalesce((SELECT coalesce(greatest(
                                        (SELECT max(a.started_at) FROM hookline.attempts AS a
                                          WHERE a.delivery_id = d.id),
                                        (SELECT max(ba.started_at) FROM hookline.batch_attempts AS ba
                                          WHERE ba.id = ANY (d.batch_attempts))),
                                    d.created_at)
                               FROM hookline.deliveries AS d WHERE d.id = c.delivery_id), at),
                   c.attempts, coalesce(ep.retry_schedule, default_schedule)) END     AS last_due
          FROM unnest(locked_ids, locked_endpoints, locked_attempts) WITH ORDINALITY AS c(delivery_id, endpoint_id, attempts, ord)
          JOIN hookline.endpoints AS ep
            ON ep.id = c.endpoint_id AND c.delivery_id <> ALL (coalesce(ended_ids, '{}') || coalesce(waited, '{}'))
          JOIN hookline.endpoint_state AS s ON s.endpoint_id = c.endpoint_id
          LEFT JOIN unnest(busy_ids, busy_room) AS b(endpoint_id, room) ON b.endpoint_id = c.endpoint_id
    ),
    allowed AS (
        SELECT c.*, hookline.claim_allowance(c.enabled, c.room, c.cap_free, c.circuit_room, c.rate_room, c.candidates)
                        AS allowed
          FROM candidate AS c
    ),
    -- Within their endpoint's allowance, in due order, as many as the worker can start.
    eligible AS (
        SELECT a.*, a.nth <= a.allowed AND count(*) FILTER (WHERE a.nth <= a.allowed) OVER (ORDER BY a.ord) <= wanted
                        AS chosen
          FROM allowed AS a
    ),
    taken AS (
        SELECT e.*, count(*) FILTER (WHERE e.chosen) OVER (PARTITION BY e.endpoint_id) AS taken
          FROM eligible AS e
    ),
    decision AS (
        SELECT t.*, hookline.limited_claim_action(t.chosen, t.enabled, t.nth, t.allowed, t.circuit_state,
                                                  t.circuit_room, t.taken, t.cap_free, t.rate_room, t.room,
                                                  t.stalled, coalesce(t.last_due <= at, false)) AS action
          FROM taken AS t
    ),
    -- Deferred by the rate limit: the j-th gets the j-th free start after
    -- both this claim's and earlier deferrals' (rate_horizon).
    placed AS (
        SELECT d.*,
               CASE WHEN d.action = 'defer_by_rate'
                    THEN greatest(d.rate_from + d.taken * d.rate_step - d.rate_step / 2,
                                  coalesce(d.rate_horizon + d.rate_step, '-infinity'))
                         + (count(*) FILTER (WHERE d.action = 'defer_by_rate')
                                OVER (PARTITION BY d.endpoint_id ORDER BY d.ord) - 1) * d.rate_step
               END AS starts_at
          FROM decision AS d
    ),
    moved AS (
        UPDATE hookline.delivery_queue AS q
           SET state           = CASE p.action WHEN 'hold' THEN 'held' WHEN 'park' THEN 'dead' ELSE 'pending'
                                 END::hookline.queue_state,
               next_attempt_at = CASE p.action
                                     WHEN 'claim' THEN p.lease_until
                                     WHEN 'expire' THEN p.lease_until
                                     WHEN 'defer_to_probe' THEN least(p.circuit_retry_at, p.last_due)
                                     WHEN 'retry_probe' THEN at + interval '1 second'
                                     WHEN 'defer_by_rate' THEN p.starts_at
                                     ELSE q.next_attempt_at END,
               lease_owner     = CASE WHEN p.action IN ('claim', 'expire') THEN worker_id END,
               attempts        = q.attempts + CASE WHEN p.action = 'expire' THEN 1
                                                   WHEN p.action = 'claim' AND q.lease_owner IS NULL THEN 1
                                                   ELSE 0 END
          FROM placed AS p
         WHERE q.delivery_id = p.delivery_id AND p.action <> 'leave'
        RETURNING q.delivery_id, p.action, q.endpoint_id, q.lane
    ),
    parked AS (
        UPDATE hookline.deliveries AS d
           SET state = 'dead',
               last_error = 'endpoint disabled: ' || coalesce(p.disabled_reason, 'disabled'),
               completed_at = at
          FROM placed AS p
         WHERE d.id = p.delivery_id AND p.action = 'park' AND d.state = 'pending'
        RETURNING d.endpoint_id, d.tenant, d.event_type, d.created_at, d.attempts
    ),
    parked_counted AS (
        INSERT INTO hookline.rollup_deltas
        SELECT t.*
          FROM parked AS p
         CROSS JOIN LATERAL hookline.transition_delta(p.endpoint_id, p.tenant, p.event_type, p.created_at,
                                                      'pending', 'dead', p.attempts, p.attempts) AS t
    ),
    shared_state AS (
        UPDATE hookline.endpoint_state AS s
           SET leases = CASE WHEN t.cap_free IS NOT NULL AND t.taken > 0
                             THEN hookline.lease_batches_add(s.leases, t.lease_until, t.taken::integer, at)
                             ELSE s.leases END,
               rate_tat = CASE WHEN t.rate IS NOT NULL AND t.taken > 0
                               THEN t.rate_from + t.taken * t.rate_step ELSE s.rate_tat END,
               rate_horizon = coalesce(t.horizon, s.rate_horizon),
               circuit_state = CASE WHEN t.circuit_room = 1 AND t.taken = 1 THEN 'half_open' ELSE s.circuit_state END,
               circuit_probe_until = CASE WHEN t.circuit_room = 1 AND t.taken = 1
                                          THEN t.lease_until ELSE s.circuit_probe_until END
          FROM (SELECT DISTINCT ON (p.endpoint_id) p.*, max(p.starts_at) OVER (PARTITION BY p.endpoint_id) AS horizon
                  FROM placed AS p
                 ORDER BY p.endpoint_id) AS t
         -- Only rows locked above: a limit added since waits for the next claim.
         WHERE s.endpoint_id = t.endpoint_id AND s.endpoint_id = ANY (limited_ids)
           AND ((t.cap_free IS NOT NULL AND t.taken > 0) OR (t.rate IS NOT NULL AND (t.taken > 0 OR t.horizon IS NOT NULL))
                OR (t.circuit_room = 1 AND t.taken = 1))
    )
    SELECT array_agg(m.delivery_id) FILTER (WHERE m.action IN ('claim', 'expire')),
           array_agg(m.delivery_id) FILTER (WHERE m.action = 'expire'),
           array_agg(m.endpoint_id) FILTER (WHERE m.action = 'park' AND m.lane IS NOT NULL),
           array_agg(m.lane) FILTER (WHERE m.action = 'park' AND m.lane IS NOT NULL)
      INTO claimed, expired, parked_endpoints, parked_lanes
      FROM moved AS m;
    -- A parked head no longer blocks its lane where dead ones do not.
    IF parked_lanes IS NOT NULL THEN
        PERFORM hookline.advance_lanes(parked_endpoints, parked_lanes);
    END IF;

    RETURN QUERY
    SELECT q.delivery_id, q.attempts, q.next_attempt_at, e.id, e.event_type, e.created_at, e.payload::text,
           ep.id, ep.url, ep.http_method, ep.headers, ep.timeout_ms, ep.retry_schedule, ep.secret,
           CASE WHEN ep.previous_secret_expires_at > at THEN ep.previous_secret END,
           l.lost_at - make_interval(secs => least(ep.timeout_ms / 1000.0 + 5, lease_max_s)), l.lost_at,
           CASE WHEN l.lost_at IS NOT NULL THEN hookline.worker_losses(q.delivery_id) END,
           q.delivery_id = ANY (coalesce(expired, '{}')), q.lane,
           ep.batch_max_events, ep.batch_max_bytes, ep.batch_format,
           ep.signature, ep.signature_header, ep.signature_hash, e.tenant, ep.transformation
      FROM hookline.delivery_queue AS q
      JOIN hookline.events AS e ON e.id = q.event_id
      JOIN hookline.endpoints AS ep ON ep.id = q.endpoint_id
      JOIN unnest(locked_ids, locked_lost_at) AS l(delivery_id, lost_at) ON l.delivery_id = q.delivery_id
     WHERE q.delivery_id = ANY (claimed);
END
$$;
