-- hookline: complete. Records a batch of attempt outcomes in one statement
-- (see DELIVERY_COMPLETE in src/db/deliveries.rs for the parameters).
--
-- * The queue and the history change only for deliveries still under the
--   lease they were claimed with (owner and lease end), so a late outcome
--   never overwrites a newer claim of the same delivery. Successes leave the
--   queue, retries get their next attempt time, dead ones stay as dead
--   letters (a retry for an endpoint disabled meanwhile is dead too); the
--   history row follows (a HOT update).
-- * Every outcome is an attempt that was made: all are recorded in
--   attempts, counted in rollup_deltas (one row per group the batch touched:
--   never a row another completion writes) and judged by the breaker.
--   Batched requests ($7) are recorded once each in batch_attempts, and
--   their deliveries' outcomes name them (`requests`) instead of repeating
--   the response; the breaker and the run of failures count a request once
--   however many deliveries it carried.
-- * Endpoint health is written only when it changes: an endpoint with no
--   failure run, a closed circuit and no max_in_flight leases, whose batch
--   had no dead delivery and no down attempt, is not even locked. Otherwise
--   its endpoint_state row is locked (in endpoint id order, as claims lock
--   them) and gets its run of dead deliveries (any success resets it;
--   reaching disable_after_failures disables the endpoint, whose trigger
--   publishes endpoint.disabled), its circuit (hookline.circuit_after; a
--   half-open circuit is judged by its probe alone) and its lease batches.
-- * Held deliveries of the batch's endpoints are released as room appears:
--   up to max_in_flight's free slots, or two per finished delivery for
--   endpoints without one (a stalled endpoint that recovers ramps up instead
--   of flooding the queue), none while the circuit is not closed; a circuit
--   that just opened gets one held delivery back, due when it may probe.
--   Finding that nothing is held is one probe of an empty index.
--
-- Returns how many outcomes were still the worker's, how many held
-- deliveries were released, and whether idle workers were notified.
WITH clock AS MATERIALIZED (
    SELECT coalesce($6::timestamptz, now()) AS at
),
outcome AS MATERIALIZED (
    SELECT o.*,
           CASE WHEN o.next_state = 'pending'
                 AND NOT EXISTS (SELECT FROM hookline.endpoints AS ep WHERE ep.id = o.endpoint_id AND ep.enabled)
                THEN 'dead'::hookline.delivery_state
                ELSE o.next_state END AS final_state,
           max(o.started_at) FILTER (WHERE NOT o.endpoint_down) OVER (PARTITION BY o.endpoint_id) AS last_up,
           coalesce(o.requests[cardinality(o.requests)], o.delivery_id) AS request_id,
           coalesce(cardinality(o.requests), 1) AS requests_made
      FROM unnest($2::hookline.attempt_outcome[]) AS o
),
kept AS (
    UPDATE hookline.delivery_queue AS q
       SET state = CASE WHEN o.final_state = 'dead' THEN 'dead' ELSE 'pending' END::hookline.queue_state,
           next_attempt_at = CASE WHEN o.final_state = 'pending' THEN c.at + make_interval(secs => o.retry_in_s)
                                  ELSE c.at END,
           lease_owner = NULL,
           attempts = greatest(q.attempts, o.attempt)
      FROM outcome AS o, clock AS c
     WHERE q.delivery_id = o.delivery_id AND q.lease_owner = $1 AND q.next_attempt_at = o.lease_until
       AND o.final_state <> 'succeeded'
    RETURNING o.delivery_id, o.final_state, o.attempt, o.status_code, o.error, o.requests
),
removed AS (
    DELETE FROM hookline.delivery_queue AS q
     USING outcome AS o
     WHERE q.delivery_id = o.delivery_id AND q.lease_owner = $1 AND q.next_attempt_at = o.lease_until
       AND o.final_state = 'succeeded'
    RETURNING o.delivery_id, o.final_state, o.attempt, o.status_code, o.error, o.requests
),
-- The outcomes still under their lease. The history joins these rows (it
-- never joins outcome to a CTE of ids: the planner, not knowing how many
-- rows either holds, compared every pair).
still_leased AS (
    SELECT * FROM kept
    UNION ALL
    SELECT * FROM removed
),
history AS (
    UPDATE hookline.deliveries AS d
       SET state = o.final_state,
           attempts = o.attempt,
           last_status_code = o.status_code,
           last_error = o.error,
           completed_at = CASE WHEN o.final_state IN ('succeeded', 'dead') THEN c.at END,
           batch_attempts = CASE WHEN o.requests IS NULL THEN d.batch_attempts
                                 ELSE coalesce(d.batch_attempts, '{}') || o.requests END
      FROM still_leased AS o, clock AS c
     WHERE d.id = o.delivery_id AND d.id BETWEEN $8::uuid AND $9::uuid
    RETURNING d.id, d.tenant, d.event_type, d.created_at, d.state, d.attempts
),
recorded AS (
    INSERT INTO hookline.attempts (delivery_id, endpoint_id, attempt, started_at, duration_ms, status_code,
                                   response_headers, response_body, error_kind, error, worker)
    SELECT o.delivery_id, o.endpoint_id, o.attempt, o.started_at, o.duration_ms, o.status_code,
           o.response_headers, o.response_body, o.error_kind, o.error, $1
      FROM outcome AS o
     WHERE o.requests IS NULL
    -- Attempt numbers only grow, so a clash is a duplicate of an outcome
    -- already written; it must not make the whole batch fail.
        ON CONFLICT (delivery_id, attempt) DO NOTHING
),
requested AS (
    INSERT INTO hookline.batch_attempts (id, endpoint_id, started_at, duration_ms, status_code, response_headers,
                                         response_body, error_kind, error, worker, bytes, deliveries,
                                         delivery_attempts)
    SELECT r.id, r.endpoint_id, r.started_at, r.duration_ms, r.status_code, r.response_headers,
           r.response_body, r.error_kind, r.error, $1, r.bytes, r.deliveries, r.delivery_attempts
      FROM unnest($7::hookline.batch_attempt[]) AS r
        ON CONFLICT (id) DO NOTHING
),
counted AS (
    INSERT INTO hookline.rollup_deltas (endpoint_id, tenant, event_type, created_hour, succeeded, dead,
                                        finished_attempts, attempt_hour, attempts, failed_attempts, durations_ms,
                                        last_success_at, last_failure_at)
    SELECT o.endpoint_id, h.tenant, h.event_type, date_trunc('hour', h.created_at, 'UTC'),
           count(*) FILTER (WHERE h.state = 'succeeded'),
           count(*) FILTER (WHERE h.state = 'dead'),
           coalesce(sum(h.attempts) FILTER (WHERE h.state IN ('succeeded', 'dead')), 0),
           date_trunc('hour', o.started_at, 'UTC'),
           sum(o.requests_made),
           -- A 413 that split a batch failed before the request that decided.
           sum(o.requests_made - 1) + count(*) FILTER (WHERE o.error_kind IS NOT NULL),
           array_agg(o.duration_ms),
           max(c.at) FILTER (WHERE o.error_kind IS NULL),
           max(c.at) FILTER (WHERE o.error_kind IS NOT NULL)
      FROM outcome AS o
      LEFT JOIN history AS h ON h.id = o.delivery_id
     CROSS JOIN clock AS c
     GROUP BY o.endpoint_id, h.tenant, h.event_type, date_trunc('hour', h.created_at, 'UTC'),
              date_trunc('hour', o.started_at, 'UTC')
),
batch AS MATERIALIZED (
    SELECT o.endpoint_id,
           bool_or(o.final_state = 'succeeded') AS any_success,  -- any success resets the run, ours or not
           count(DISTINCT o.request_id) FILTER (WHERE h.state = 'dead') AS dead,
           count(DISTINCT o.request_id) FILTER (WHERE o.endpoint_down) AS downs,
           count(DISTINCT o.request_id) FILTER (WHERE NOT o.endpoint_down) AS ups,
           count(DISTINCT o.request_id) FILTER (WHERE o.endpoint_down AND o.started_at > coalesce(o.last_up, '-infinity'))
               AS downs_since_up,
           array_agg(o.lease_until) FILTER (WHERE h.id IS NOT NULL) AS ended_leases,
           count(h.id) AS finished
      FROM outcome AS o
      LEFT JOIN history AS h ON h.id = o.delivery_id
     GROUP BY o.endpoint_id
),
locked AS MATERIALIZED (
    SELECT s.endpoint_id, s.consecutive_failures, s.leases, s.failed_attempts, s.circuit_state,
           s.circuit_cooldown_s, s.circuit_retry_at, s.circuit_probe_until,
           b.any_success, b.dead, b.downs, b.ups, b.downs_since_up, b.ended_leases
      FROM hookline.endpoint_state AS s
      JOIN batch AS b ON b.endpoint_id = s.endpoint_id
     WHERE s.consecutive_failures > 0 OR b.dead > 0 OR s.failed_attempts > 0 OR b.downs > 0
        OR s.circuit_state <> 'closed' OR cardinality(s.leases) > 0
     ORDER BY s.endpoint_id
       FOR UPDATE OF s
),
-- A half-open circuit is judged by its probe alone: the outcome whose lease
-- is the probe's (requests sent before the circuit opened may still come back).
probe AS (
    SELECT l.endpoint_id,
           count(DISTINCT o.request_id) FILTER (WHERE o.endpoint_down) AS downs,
           count(DISTINCT o.request_id) FILTER (WHERE NOT o.endpoint_down) AS ups
      FROM locked AS l
      JOIN outcome AS o ON o.endpoint_id = l.endpoint_id AND o.lease_until = l.circuit_probe_until
     WHERE l.circuit_state = 'half_open'
     GROUP BY l.endpoint_id
),
health AS (
    UPDATE hookline.endpoint_state AS s
       SET consecutive_failures = CASE WHEN l.any_success THEN 0 ELSE l.consecutive_failures + l.dead END,
           leases = CASE WHEN l.ended_leases IS NOT NULL AND cardinality(l.leases) > 0
                         THEN hookline.lease_batches_end(l.leases, l.ended_leases, c.at) ELSE l.leases END,
           (circuit_state, failed_attempts, circuit_cooldown_s, circuit_retry_at, circuit_probe_until) =
               (SELECT n.next_state, n.next_run, n.next_cooldown_s, n.next_retry_at, n.next_probe_until
                  FROM hookline.circuit_after(l.circuit_state, l.failed_attempts, l.circuit_cooldown_s,
                                              l.circuit_retry_at, l.circuit_probe_until,
                                              CASE WHEN l.circuit_state = 'half_open' THEN p.downs ELSE l.downs END,
                                              CASE WHEN l.circuit_state = 'half_open' THEN p.ups ELSE l.ups END,
                                              CASE WHEN l.circuit_state = 'half_open' THEN p.downs ELSE l.downs_since_up END,
                                              $3, $4, $5, c.at) AS n
                 WHERE l.circuit_state <> 'half_open' OR p.endpoint_id IS NOT NULL
                 UNION ALL
                SELECT l.circuit_state, l.failed_attempts, l.circuit_cooldown_s, l.circuit_retry_at, l.circuit_probe_until
                 WHERE l.circuit_state = 'half_open' AND p.endpoint_id IS NULL)
      FROM locked AS l
      LEFT JOIN probe AS p ON p.endpoint_id = l.endpoint_id
     CROSS JOIN clock AS c
     WHERE s.endpoint_id = l.endpoint_id
    RETURNING s.endpoint_id, s.consecutive_failures, s.circuit_state, s.circuit_retry_at, s.leases,
              (s.circuit_state = 'open' AND l.circuit_state <> 'open')
                  OR (s.circuit_state = 'half_open' AND s.circuit_probe_until IS NULL) AS needs_probe
),
tripped AS (
    -- Auto-disable: a run of dead deliveries as long as the endpoint allows.
    UPDATE hookline.endpoints AS ep
       SET enabled = false,
           disabled_reason = h.consecutive_failures || ' consecutive failed deliveries',
           disabled_at = c.at
      FROM health AS h, clock AS c
     WHERE ep.id = h.endpoint_id AND ep.enabled AND h.consecutive_failures >= ep.disable_after_failures
),
quota AS (
    SELECT b.endpoint_id,
           least(CASE WHEN coalesce(h.circuit_state, s.circuit_state) <> 'closed' THEN 0
                      WHEN ep.max_in_flight IS NOT NULL
                          THEN greatest(ep.max_in_flight
                                        - hookline.lease_batches_live(coalesce(h.leases, s.leases), c.at), 0)
                      ELSE 2 * b.finished END, 1000) AS n
      FROM batch AS b
      JOIN hookline.endpoints AS ep ON ep.id = b.endpoint_id AND ep.enabled
      JOIN hookline.endpoint_state AS s ON s.endpoint_id = b.endpoint_id
      LEFT JOIN health AS h ON h.endpoint_id = b.endpoint_id
     CROSS JOIN clock AS c
     WHERE b.finished > 0
       AND EXISTS (SELECT FROM hookline.delivery_queue AS q WHERE q.endpoint_id = b.endpoint_id AND q.state = 'held')
),
released AS (
    UPDATE hookline.delivery_queue AS q
       SET state = 'pending'
      FROM quota AS t
     CROSS JOIN LATERAL (SELECT hq.delivery_id
                           FROM hookline.delivery_queue AS hq
                          WHERE hq.endpoint_id = t.endpoint_id AND hq.state = 'held'
                          ORDER BY hq.next_attempt_at
                          LIMIT t.n
                            FOR UPDATE SKIP LOCKED) AS r
     WHERE q.delivery_id = r.delivery_id
    RETURNING q.delivery_id
),
probe_released AS (
    UPDATE hookline.delivery_queue AS q
       SET state = 'pending', next_attempt_at = coalesce(h.circuit_retry_at, c.at)
      FROM health AS h
      JOIN hookline.endpoints AS ep ON ep.id = h.endpoint_id AND ep.enabled
     CROSS JOIN clock AS c
     CROSS JOIN LATERAL (SELECT hq.delivery_id
                           FROM hookline.delivery_queue AS hq
                          WHERE hq.endpoint_id = h.endpoint_id AND hq.state = 'held'
                          ORDER BY hq.next_attempt_at
                          LIMIT 1
                            FOR UPDATE SKIP LOCKED) AS r
     WHERE h.needs_probe AND q.delivery_id = r.delivery_id
    RETURNING q.delivery_id
),
woken AS (
    SELECT pg_notify('hookline_wake', '')
     WHERE (EXISTS (SELECT FROM released) OR EXISTS (SELECT FROM probe_released))
       AND EXISTS (SELECT FROM hookline.idle_workers)
)
SELECT (SELECT count(*) FROM kept) + (SELECT count(*) FROM removed) AS recorded,
       (SELECT count(*) FROM released) + (SELECT count(*) FROM probe_released) AS released,
       (SELECT count(*) FROM woken) AS notified
