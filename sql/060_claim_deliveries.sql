-- hookline.claim_deliveries: a worker takes due deliveries under a lease,
-- applying each endpoint's flow control on the way. Internal to hookline (the
-- worker calls it); not part of the public SQL interface.
--
-- 1. Lock up to `scan_limit` due candidates in due order, skipping rows that
--    other workers are claiming (FOR UPDATE SKIP LOCKED).
-- 2. Lock, in endpoint id order, the endpoint_state rows of the candidates'
--    endpoints that have a limit or an unclosed circuit: claims of the same
--    endpoint by several workers take turns there, which is what makes
--    max_in_flight and rate_limit_per_s hold across all of them. Completions
--    lock in the same order, so the two never deadlock.
-- 3. Per endpoint, claim up to its allowance, the least of
--      * the worker's room for it (its share, less what it already sends there),
--      * max_in_flight less the live leases of every worker,
--      * the deliveries the rate limit lets start now (GCRA: one every
--        1.05/rate seconds; after a pause the second may follow the first at
--        half that interval, the one delivery of burst SPEC §5 allows). The
--        5% keeps the receiver's count within the limit although requests
--        reach it with some jitter after their start is decided: a second's
--        worth of starts spans 1.05 s, so up to 50 ms of jitter cannot crowd
--        rate + 2 of them into any second at the receiver,
--      * the circuit: nothing while open, one probe once the cool-down is over;
--    and move the rest out of the way, by what stopped them:
--      * open circuit: due again at the end of the cool-down,
--      * rate limit: each given its own later start, 1/rate apart,
--      * max_in_flight full, a probe in flight, or a stalled endpoint filling
--        the worker's share: `held` until a completion releases them,
--      * a probe that is due but stopped by a limit: due again in a second,
--      * an endpoint disabled while we held its rows: dead, as its disabling
--        made the rest,
--      * otherwise (the batch is full, or the share is full but moving): left
--        due for the next claim.
--    At most `wanted` deliveries are claimed in all.
--
-- Candidates whose endpoint or event no longer exists are ended (dead, with
-- the reason) rather than skipped.
--
-- Cost: when no candidate's endpoint has a limit or an unclosed circuit and
-- the worker's share limits none, the claim is one UPDATE of the candidates,
-- as cheap as a claim without flow control. Otherwise a limited endpoint
-- costs one row lock and update per claim, and one queue update per
-- delivery moved aside.

DROP FUNCTION IF EXISTS hookline.claim_deliveries(uuid, integer, integer, float8, integer, uuid[], integer[], uuid[]);
CREATE FUNCTION hookline.claim_deliveries(
    worker_id   uuid,
    wanted      integer,    -- free request slots in the worker
    scan_limit  integer,    -- due candidates to look at (at least `wanted`)
    lease_max_s float8,     -- a lease is the endpoint's timeout + 5 s, at most this
    share       integer,    -- requests the worker may send one endpoint at once
    busy_ids    uuid[],     -- endpoints the worker already sends to, with
    busy_room   integer[],  --   the room left in its share for each
    stalled_ids uuid[]      -- busy endpoints whose requests have stopped finishing
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
    previous_secret  text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    candidate_ids       uuid[];
    candidate_endpoints uuid[];
    shared_endpoints    integer;
    claimed             uuid[];
    orphan_ids          uuid[];
    orphan_reasons      text[];
    -- The rate limit measures from here rather than from the transaction's
    -- start, so the starts it spaces are as close as can be to the sends.
    decided_at          timestamptz;
BEGIN
    SELECT array_agg(c.delivery_id ORDER BY c.next_attempt_at, c.delivery_id) FILTER (WHERE c.ending IS NULL),
           array_agg(c.endpoint_id ORDER BY c.next_attempt_at, c.delivery_id) FILTER (WHERE c.ending IS NULL),
           count(DISTINCT c.endpoint_id) FILTER (WHERE c.ending IS NULL AND c.limited),
           array_agg(c.delivery_id) FILTER (WHERE c.ending IS NOT NULL),
           array_agg(c.ending) FILTER (WHERE c.ending IS NOT NULL)
      INTO candidate_ids, candidate_endpoints, shared_endpoints, orphan_ids, orphan_reasons
      FROM (SELECT q.delivery_id, q.endpoint_id, q.next_attempt_at,
                   CASE WHEN ep.id IS NULL THEN 'endpoint deleted'
                        WHEN NOT EXISTS (SELECT FROM hookline.events AS e WHERE e.id = q.event_id)
                            THEN 'event deleted' END AS ending,
                   ep.max_in_flight IS NOT NULL OR ep.rate_limit_per_s IS NOT NULL
                       OR s.circuit_state <> 'closed' OR NOT ep.enabled AS limited
              FROM (SELECT q.delivery_id, q.endpoint_id, q.event_id, q.next_attempt_at
                      FROM hookline.delivery_queue AS q
                     WHERE q.state = 'pending' AND q.next_attempt_at <= now()
                     ORDER BY q.next_attempt_at
                     LIMIT scan_limit
                       FOR UPDATE SKIP LOCKED) AS q
              LEFT JOIN hookline.endpoints AS ep ON ep.id = q.endpoint_id
              LEFT JOIN hookline.endpoint_state AS s ON s.endpoint_id = q.endpoint_id) AS c;

    -- A row whose endpoint or event is gone (deleted by hand, or re-queued
    -- before that was refused) can never be sent: end it, or it would stay
    -- at the head of the queue and fill every claim.
    IF orphan_ids IS NOT NULL THEN
        WITH ended AS (
            DELETE FROM hookline.delivery_queue AS q WHERE q.delivery_id = ANY (orphan_ids) RETURNING q.delivery_id
        )
        UPDATE hookline.deliveries AS d
           SET state = 'dead', last_error = o.reason, completed_at = now()
          FROM unnest(orphan_ids, orphan_reasons) AS o(id, reason)
         WHERE d.id = o.id AND d.id IN (SELECT e.delivery_id FROM ended AS e);
    END IF;
    IF candidate_ids IS NULL THEN
        RETURN;
    END IF;

    -- The common case, no limits in play: every candidate goes (there are
    -- no more of them than `wanted`, and no endpoint can exceed its share).
    -- One statement, as cheap as a claim without flow control.
    IF shared_endpoints = 0 AND cardinality(busy_ids) = 0 AND scan_limit <= least(wanted, share) THEN
        RETURN QUERY
        WITH moved AS (
            UPDATE hookline.delivery_queue AS q
               SET next_attempt_at = now() + make_interval(secs => least(ep.timeout_ms / 1000.0 + 5, lease_max_s)),
                   lease_owner = worker_id,
                   attempts = q.attempts + 1
              FROM hookline.endpoints AS ep
             WHERE q.delivery_id = ANY (candidate_ids) AND ep.id = q.endpoint_id
            RETURNING q.delivery_id, q.event_id, q.attempts, q.next_attempt_at, ep.*
        )
        SELECT m.delivery_id, m.attempts, m.next_attempt_at, e.id, e.event_type, e.created_at, e.payload::text,
               m.id, m.url, m.http_method, m.headers, m.timeout_ms, m.retry_schedule, m.secret,
               CASE WHEN m.previous_secret_expires_at > now() THEN m.previous_secret END
          FROM moved AS m
          JOIN hookline.events AS e ON e.id = m.event_id;
        RETURN;
    END IF;

    IF shared_endpoints > 0 THEN
        PERFORM
           FROM hookline.endpoint_state AS s
           JOIN hookline.endpoints AS ep ON ep.id = s.endpoint_id
          WHERE s.endpoint_id = ANY (candidate_endpoints)
            AND (ep.max_in_flight IS NOT NULL OR ep.rate_limit_per_s IS NOT NULL OR s.circuit_state <> 'closed'
                 OR NOT ep.enabled)
          ORDER BY s.endpoint_id
            FOR UPDATE OF s;
    END IF;

    -- Only the worker's share in play: up to each endpoint's room, `wanted`
    -- in all; a stalled endpoint's other candidates are held.
    IF shared_endpoints = 0 THEN
        WITH candidate AS (
            SELECT c.delivery_id, c.ord,
                   row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.ord) <= coalesce(b.room, share) AS in_share,
                   c.endpoint_id = ANY (stalled_ids) AS stalled
              FROM unnest(candidate_ids, candidate_endpoints) WITH ORDINALITY AS c(delivery_id, endpoint_id, ord)
              LEFT JOIN unnest(busy_ids, busy_room) AS b(endpoint_id, room) ON b.endpoint_id = c.endpoint_id
        ),
        decision AS (
            SELECT c.delivery_id,
                   CASE WHEN c.in_share AND count(*) FILTER (WHERE c.in_share) OVER (ORDER BY c.ord) <= wanted
                            THEN 'claim'
                        WHEN NOT c.in_share AND c.stalled THEN 'hold'
                        ELSE 'leave' END AS action
              FROM candidate AS c
        ),
        moved AS (
            UPDATE hookline.delivery_queue AS q
               SET state = CASE d.action WHEN 'hold' THEN 'held' ELSE 'pending' END,
                   next_attempt_at = CASE d.action
                       WHEN 'claim' THEN now() + make_interval(secs => least(ep.timeout_ms / 1000.0 + 5, lease_max_s))
                       ELSE q.next_attempt_at END,
                   lease_owner = CASE WHEN d.action = 'claim' THEN worker_id END,
                   attempts = q.attempts + CASE WHEN d.action = 'claim' THEN 1 ELSE 0 END
              FROM decision AS d, hookline.endpoints AS ep
             WHERE q.delivery_id = d.delivery_id AND d.action <> 'leave' AND ep.id = q.endpoint_id
            RETURNING q.delivery_id, d.action
        )
        SELECT array_agg(m.delivery_id) FILTER (WHERE m.action = 'claim') INTO claimed FROM moved AS m;

    ELSE
        -- Limits or circuits in play: the whole plan.
        decided_at := clock_timestamp();

        -- Each step below is one pass over the candidates (window functions
        -- rather than joins of the candidates with per-endpoint aggregates, so
        -- the cost stays linear whatever the planner estimates).
        WITH candidate AS (
            -- Every limit as a number of deliveries that may start now (NULL = no such limit).
            SELECT c.delivery_id, c.endpoint_id, c.ord,
                   row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.ord)          AS nth,
                   count(*) OVER (PARTITION BY c.endpoint_id)                             AS candidates,
                   now() + make_interval(secs => least(ep.timeout_ms / 1000.0 + 5, lease_max_s)) AS lease_until,
                   ep.max_in_flight IS NOT NULL OR ep.rate_limit_per_s IS NOT NULL
                       OR s.circuit_state <> 'closed'                                     AS shared,
                   ep.enabled,
                   ep.disabled_reason,
                   coalesce(b.room, share)                                                AS room,
                   CASE WHEN ep.max_in_flight IS NOT NULL
                        THEN greatest(ep.max_in_flight - hookline.lease_batches_live(s.leases), 0) END AS cap_free,
                   s.circuit_state,
                   s.circuit_retry_at,
                   CASE s.circuit_state
                        WHEN 'closed' THEN NULL
                        WHEN 'open' THEN CASE WHEN coalesce(s.circuit_retry_at, '-infinity') <= now() THEN 1 ELSE 0 END
                        ELSE CASE WHEN coalesce(s.circuit_probe_until, '-infinity') <= now() THEN 1 ELSE 0 END
                   END                                                                    AS circuit_free,
                   ep.rate_limit_per_s                                                    AS rate,
                   make_interval(secs => 1.05 / ep.rate_limit_per_s)                      AS rate_step,
                   greatest(coalesce(s.rate_tat, decided_at), decided_at)                 AS rate_from,
                   s.rate_horizon,
                   -- The k-th may start once rate_from + (k - 1.5) * rate_step <= decided_at.
                   CASE WHEN ep.rate_limit_per_s IS NOT NULL
                        THEN greatest(floor(extract(epoch FROM decided_at
                                                    - greatest(coalesce(s.rate_tat, decided_at), decided_at))
                                            * ep.rate_limit_per_s / 1.05 + 1.5)::integer, 0) END AS rate_free
              FROM unnest(candidate_ids, candidate_endpoints) WITH ORDINALITY AS c(delivery_id, endpoint_id, ord)
              JOIN hookline.endpoints AS ep ON ep.id = c.endpoint_id
              JOIN hookline.endpoint_state AS s ON s.endpoint_id = c.endpoint_id
              LEFT JOIN unnest(busy_ids, busy_room) AS b(endpoint_id, room) ON b.endpoint_id = c.endpoint_id
        ),
        allowed AS (
            SELECT c.*,
                   CASE WHEN c.enabled
                        THEN greatest(least(c.room, c.cap_free, c.circuit_free, c.rate_free, c.candidates), 0)
                        ELSE 0 END AS allowed
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
            SELECT t.*,
                   CASE WHEN t.chosen                                       THEN 'claim'
                        -- Disabled meanwhile (its trigger skipped rows we had locked).
                        WHEN NOT t.enabled                                  THEN 'park'
                        WHEN t.nth <= t.allowed                             THEN 'leave'  -- the batch is full
                        WHEN t.circuit_state = 'open' AND t.circuit_free = 0 THEN 'defer_to_probe'
                        WHEN t.circuit_free = 0                             THEN 'hold'   -- a probe is out
                        WHEN t.circuit_free = 1 AND t.taken = 1             THEN 'hold'   -- the probe just left
                        -- The probe is due but a limit stops it: keep one to try again shortly.
                        WHEN t.circuit_free = 1 AND t.nth = 1               THEN 'retry_probe'
                        WHEN t.cap_free <= t.allowed                        THEN 'hold'
                        WHEN t.rate_free <= t.allowed                       THEN 'defer_by_rate'
                        WHEN t.room <= t.allowed
                            THEN CASE WHEN t.endpoint_id = ANY (stalled_ids) THEN 'hold' ELSE 'leave' END
                        ELSE 'leave'
                   END AS action
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
               SET state           = CASE p.action WHEN 'hold' THEN 'held' WHEN 'park' THEN 'dead' ELSE 'pending' END,
                   next_attempt_at = CASE p.action
                                         WHEN 'claim' THEN p.lease_until
                                         WHEN 'defer_to_probe' THEN p.circuit_retry_at
                                         WHEN 'retry_probe' THEN now() + interval '1 second'
                                         WHEN 'defer_by_rate' THEN p.starts_at
                                         ELSE q.next_attempt_at END,
                   lease_owner     = CASE WHEN p.action = 'claim' THEN worker_id END,
                   attempts        = q.attempts + CASE WHEN p.action = 'claim' THEN 1 ELSE 0 END
              FROM placed AS p
             WHERE q.delivery_id = p.delivery_id AND p.action <> 'leave'
            RETURNING q.delivery_id, p.action
        ),
        parked AS (
            UPDATE hookline.deliveries AS d
               SET state = 'dead',
                   last_error = 'endpoint disabled: ' || coalesce(p.disabled_reason, 'disabled'),
                   completed_at = now()
              FROM placed AS p
             WHERE d.id = p.delivery_id AND p.action = 'park'
        ),
        shared_state AS (
            UPDATE hookline.endpoint_state AS s
               SET leases = CASE WHEN t.cap_free IS NOT NULL AND t.taken > 0
                                 THEN hookline.lease_batches_add(s.leases, t.lease_until, t.taken::integer)
                                 ELSE s.leases END,
                   rate_tat = CASE WHEN t.rate IS NOT NULL AND t.taken > 0
                                   THEN t.rate_from + t.taken * t.rate_step ELSE s.rate_tat END,
                   rate_horizon = coalesce(t.horizon, s.rate_horizon),
                   circuit_state = CASE WHEN t.circuit_free = 1 AND t.taken = 1 THEN 'half_open' ELSE s.circuit_state END,
                   circuit_probe_until = CASE WHEN t.circuit_free = 1 AND t.taken = 1
                                              THEN t.lease_until ELSE s.circuit_probe_until END
              FROM (SELECT DISTINCT ON (p.endpoint_id) p.*, max(p.starts_at) OVER (PARTITION BY p.endpoint_id) AS horizon
                      FROM placed AS p
                     WHERE p.shared
                     ORDER BY p.endpoint_id) AS t
             WHERE s.endpoint_id = t.endpoint_id
               AND ((t.cap_free IS NOT NULL AND t.taken > 0) OR (t.rate IS NOT NULL AND (t.taken > 0 OR t.horizon IS NOT NULL))
                    OR (t.circuit_free = 1 AND t.taken = 1))
        )
        SELECT array_agg(m.delivery_id) FILTER (WHERE m.action = 'claim') INTO claimed FROM moved AS m;
    END IF;

    RETURN QUERY
    SELECT q.delivery_id, q.attempts, q.next_attempt_at, e.id, e.event_type, e.created_at, e.payload::text,
           ep.id, ep.url, ep.http_method, ep.headers, ep.timeout_ms, ep.retry_schedule, ep.secret,
           CASE WHEN ep.previous_secret_expires_at > now() THEN ep.previous_secret END
      FROM hookline.delivery_queue AS q
      JOIN hookline.events AS e ON e.id = q.event_id
      JOIN hookline.endpoints AS ep ON ep.id = q.endpoint_id
     WHERE q.delivery_id = ANY (claimed);
END
$$;
