-- hookline.circuit_after and hookline.complete_deliveries: what a batch of
-- attempt outcomes does to the queue, the history and each endpoint's health.
-- Internal to hookline (the worker calls them); not part of the public SQL
-- interface.

-- The circuit breaker's next state for one endpoint, given the attempts of a
-- batch: `downs` said the endpoint is down (network error, timeout, 5xx,
-- 429), `ups` that it answers, `downs_since_up` how many downs came after the
-- last up.
--
--   closed ──(run of failed attempts reaches `threshold`)──▶ open
--   open ──(cool-down over: the claim sends one probe)──▶ half_open
--   half_open ──(probe answered)──▶ closed
--   half_open ──(probe failed)──▶ open, cool-down doubled up to its cap
--   open ──(a request sent before it opened succeeds)──▶ closed
--
-- An outcome that says neither (an invalid URL, a blocked address, a
-- payload too large) leaves the run alone; in half_open it ends the probe
-- without a verdict, and the next claim sends another.
CREATE OR REPLACE FUNCTION hookline.circuit_after(
    state text, run integer, cooldown_s float8, retry_at timestamptz, probe_until timestamptz,
    downs bigint, ups bigint, downs_since_up bigint,
    threshold integer, base_cooldown_s float8, max_cooldown_s float8,
    OUT next_state text, OUT next_run integer, OUT next_cooldown_s float8,
    OUT next_retry_at timestamptz, OUT next_probe_until timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH v AS (
        SELECT CASE WHEN ups > 0 THEN downs_since_up ELSE run + downs END::integer AS run
    ),
    s AS (
        SELECT v.run,
               CASE WHEN state = 'half_open' AND ups > 0 AND v.run < threshold THEN 'closed'
                    WHEN state = 'half_open' AND downs > 0                    THEN 'open'
                    WHEN state = 'half_open'                                  THEN 'half_open'
                    WHEN state = 'closed' AND v.run >= threshold              THEN 'open'
                    WHEN state = 'open' AND ups > 0 AND v.run < threshold     THEN 'closed'
                    ELSE state END AS verdict
          FROM v
    )
    SELECT s.verdict,
           s.run,
           CASE WHEN s.verdict = 'closed' THEN NULL
                WHEN s.verdict = 'open' AND state = 'closed' THEN base_cooldown_s
                WHEN s.verdict = 'open' AND state = 'half_open'
                    THEN least(coalesce(cooldown_s, base_cooldown_s) * 2, max_cooldown_s)
                ELSE cooldown_s END,
           CASE WHEN s.verdict = 'closed' THEN NULL
                WHEN s.verdict = 'open' AND state = 'closed' THEN now() + make_interval(secs => base_cooldown_s)
                WHEN s.verdict = 'open' AND state = 'half_open'
                    THEN now() + make_interval(secs => least(coalesce(cooldown_s, base_cooldown_s) * 2, max_cooldown_s))
                ELSE retry_at END,
           CASE WHEN state = 'half_open' THEN NULL ELSE probe_until END
      FROM s
$$;

-- Records a batch of outcomes. The queue and history change only for
-- deliveries still under the lease they were claimed with (owner and lease
-- end), so a late outcome can never overwrite a newer claim of the same
-- delivery; every outcome is still an attempt that was made, so all of them
-- are recorded in attempts, the rollups and the breaker. Successes leave the queue, retries get their next attempt
-- time, dead ones stay as dead letters (a retry for an endpoint that was
-- disabled meanwhile is dead too); the history row (a HOT update) and the
-- attempt follow. Then per endpoint:
-- * health: the run of dead deliveries (any success resets it; reaching
--   disable_after_failures disables the endpoint, and the endpoints trigger
--   publishes endpoint.disabled), last success and failure times, the
--   circuit breaker, and the in-flight lease batches;
-- * held deliveries are released as room appears: up to max_in_flight's
--   free slots, or two per completion for endpoints without one (so a stalled
--   endpoint that recovers ramps up, doubling, instead of flooding the
--   queue), none while the circuit is not closed; a circuit that just opened
--   gets one held delivery back, due at the end of the cool-down, to probe with;
-- * the hourly attempt rollup (count, failures, latency histogram).
-- Returns how many outcomes were still ours, and how many deliveries were
-- released (idle workers are notified when some were).
--
-- Healthy busy endpoints cost no endpoint_state write: last_success_at is
-- refreshed at most once a second, and nothing else changes.
DROP FUNCTION IF EXISTS hookline.complete_deliveries(
    uuid, uuid[], uuid[], integer[], text[], float8[], timestamptz[], integer[], integer[], jsonb[], text[],
    text[], text[], timestamptz[], boolean[], integer, float8, float8);
CREATE FUNCTION hookline.complete_deliveries(
    worker_id        uuid,
    delivery_ids     uuid[],
    endpoint_ids     uuid[],
    attempt_numbers  integer[],
    states           text[],         -- succeeded | pending (to retry) | dead
    retry_in_s       float8[],
    started_at       timestamptz[],
    duration_ms      integer[],
    status_codes     integer[],
    response_headers jsonb[],
    response_bodies  text[],
    error_kinds      text[],
    errors           text[],
    lease_ends       timestamptz[],  -- the lease each delivery was claimed with
    endpoint_down    boolean[],      -- the attempt's verdict for the breaker (NULL: none)
    circuit_failures integer,
    cooldown_s       float8,
    cooldown_max_s   float8
) RETURNS TABLE (recorded bigint, released bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    touched     uuid[];
    ours        uuid[];
    needs_probe uuid[];
    recorded_n  bigint;
    released_n  bigint;
BEGIN
    -- The endpoint_state rows this batch will change, locked in id order as
    -- the claim locks them.
    SELECT array_agg(l.endpoint_id) INTO touched
      FROM (SELECT s.endpoint_id
              FROM hookline.endpoint_state AS s
             WHERE s.endpoint_id = ANY (endpoint_ids)
               AND (s.consecutive_failures > 0 OR s.failed_attempts > 0 OR s.circuit_state <> 'closed'
                    OR cardinality(s.leases) > 0
                    OR s.last_success_at IS NULL OR s.last_success_at < now() - interval '1 second'
                    OR s.endpoint_id IN (SELECT o.endpoint_id
                                           FROM unnest(endpoint_ids, states, endpoint_down) AS o(endpoint_id, state, down)
                                          WHERE o.state <> 'succeeded' OR o.down))
             ORDER BY s.endpoint_id
               FOR UPDATE) AS l;

    WITH outcome AS (
        SELECT o.*,
               CASE WHEN o.state = 'pending' AND NOT coalesce(ep.enabled, false) THEN 'dead' ELSE o.state END AS final_state
          FROM unnest(delivery_ids, endpoint_ids, attempt_numbers, states, retry_in_s,
                      started_at, duration_ms, status_codes, response_headers, response_bodies,
                      error_kinds, errors, lease_ends, endpoint_down)
            AS o(delivery_id, endpoint_id, attempt, state, retry_in_s,
                 started_at, duration_ms, status_code, response_headers, response_body,
                 error_kind, error, lease_until, down)
          LEFT JOIN hookline.endpoints AS ep ON ep.id = o.endpoint_id
    ),
    kept AS (
        UPDATE hookline.delivery_queue AS q
           SET state = CASE WHEN o.final_state = 'dead' THEN 'dead' ELSE 'pending' END,
               next_attempt_at = CASE WHEN o.final_state = 'pending'
                                      THEN now() + make_interval(secs => o.retry_in_s)
                                      ELSE now() END,
               lease_owner = NULL
          FROM outcome AS o
         WHERE q.delivery_id = o.delivery_id AND q.lease_owner = worker_id AND q.next_attempt_at = o.lease_until
           AND o.final_state <> 'succeeded'
        RETURNING q.delivery_id
    ),
    removed AS (
        DELETE FROM hookline.delivery_queue AS q
         USING outcome AS o
         WHERE q.delivery_id = o.delivery_id AND q.lease_owner = worker_id AND q.next_attempt_at = o.lease_until
           AND o.final_state = 'succeeded'
        RETURNING q.delivery_id
    ),
    still_ours AS (
        SELECT k.delivery_id FROM kept AS k UNION ALL SELECT r.delivery_id FROM removed AS r
    ),
    history AS (
        UPDATE hookline.deliveries AS d
           SET state = o.final_state,
               attempts = o.attempt,
               last_status_code = o.status_code,
               last_error = o.error,
               completed_at = CASE WHEN o.final_state IN ('succeeded', 'dead') THEN now() END
          FROM outcome AS o
         WHERE d.id = o.delivery_id AND d.id IN (SELECT so.delivery_id FROM still_ours AS so)
    ),
    recorded_attempts AS (
        INSERT INTO hookline.attempts (delivery_id, endpoint_id, attempt, started_at, duration_ms,
                                       status_code, response_headers, response_body, error_kind, error, worker)
        SELECT o.delivery_id, o.endpoint_id, o.attempt, o.started_at, o.duration_ms,
               o.status_code, o.response_headers, o.response_body, o.error_kind, o.error, worker_id
          FROM outcome AS o
        -- Attempt numbers only grow, so a clash is a duplicate of an outcome
        -- already written; it must not make the whole batch fail.
            ON CONFLICT (delivery_id, attempt) DO NOTHING
    ),
    attempt_stats AS (
        INSERT INTO hookline.endpoint_hourly AS r (endpoint_id, hour, attempts, failed_attempts, latency)
        SELECT o.endpoint_id, date_trunc('hour', o.started_at, 'UTC'), count(*), count(*) FILTER (WHERE o.error_kind IS NOT NULL),
               hookline.latency_histogram(array_agg(o.duration_ms))
          FROM outcome AS o
         GROUP BY 1, 2
         ORDER BY 1, 2
            ON CONFLICT (endpoint_id, hour) DO UPDATE
           SET attempts = r.attempts + excluded.attempts,
               failed_attempts = r.failed_attempts + excluded.failed_attempts,
               latency = hookline.histogram_add(r.latency, excluded.latency)
    ),
    per_endpoint AS (
        SELECT x.endpoint_id,
               bool_or(x.final_state = 'succeeded')                                          AS succeeded,
               bool_or(x.final_state <> 'succeeded')                                         AS failed,
               count(*) FILTER (WHERE x.final_state = 'dead')                                AS dead,
               count(*) FILTER (WHERE x.down)                                                AS downs,
               count(*) FILTER (WHERE NOT x.down)                                            AS ups,
               count(*) FILTER (WHERE x.down AND x.started_at > coalesce(x.last_up, '-infinity')) AS downs_since_up,
               array_agg(x.lease_until) FILTER (WHERE x.delivery_id IN (SELECT so.delivery_id FROM still_ours AS so))
                                                                                             AS ended_leases,
               -- A half-open circuit is judged by its probe alone.
               bool_or(x.lease_until = x.probe_until)                                        AS probe_done,
               count(*) FILTER (WHERE x.lease_until = x.probe_until AND x.down)              AS probe_downs,
               count(*) FILTER (WHERE x.lease_until = x.probe_until AND NOT x.down)          AS probe_ups
          FROM (SELECT o.*, max(o.started_at) FILTER (WHERE NOT o.down) OVER (PARTITION BY o.endpoint_id) AS last_up,
                       ps.circuit_probe_until AS probe_until
                  FROM outcome AS o
                  LEFT JOIN hookline.endpoint_state AS ps ON ps.endpoint_id = o.endpoint_id) AS x
         GROUP BY x.endpoint_id
    ),
    health AS (
        UPDATE hookline.endpoint_state AS s
           SET consecutive_failures = CASE WHEN h.succeeded THEN 0 ELSE s.consecutive_failures + h.dead END,
               last_success_at = CASE WHEN h.succeeded THEN now() ELSE s.last_success_at END,
               last_failure_at = CASE WHEN h.failed THEN now() ELSE s.last_failure_at END,
               leases = CASE WHEN h.ended_leases IS NOT NULL AND cardinality(s.leases) > 0
                             THEN hookline.lease_batches_end(s.leases, h.ended_leases) ELSE s.leases END,
               (circuit_state, failed_attempts, circuit_cooldown_s, circuit_retry_at, circuit_probe_until) =
                   (SELECT c.next_state, c.next_run, c.next_cooldown_s, c.next_retry_at, c.next_probe_until
                      FROM hookline.circuit_after(s.circuit_state, s.failed_attempts, s.circuit_cooldown_s,
                                                  s.circuit_retry_at, s.circuit_probe_until,
                                                  h.downs, h.ups, h.downs_since_up,
                                                  circuit_failures, cooldown_s, cooldown_max_s) AS c
                     WHERE s.circuit_state <> 'half_open'
                     UNION ALL
                    -- Half-open: only the probe's outcome counts (requests sent before the
                    -- circuit opened may still come back); until it does, nothing changes.
                    SELECT c.next_state, c.next_run, c.next_cooldown_s, c.next_retry_at, c.next_probe_until
                      FROM hookline.circuit_after(s.circuit_state, s.failed_attempts, s.circuit_cooldown_s,
                                                  s.circuit_retry_at, s.circuit_probe_until,
                                                  h.probe_downs, h.probe_ups, h.probe_downs,
                                                  circuit_failures, cooldown_s, cooldown_max_s) AS c
                     WHERE s.circuit_state = 'half_open' AND h.probe_done
                     UNION ALL
                    SELECT s.circuit_state, s.failed_attempts, s.circuit_cooldown_s, s.circuit_retry_at,
                           s.circuit_probe_until
                     WHERE s.circuit_state = 'half_open' AND NOT h.probe_done)
          FROM per_endpoint AS h, hookline.endpoint_state AS was
         WHERE s.endpoint_id = h.endpoint_id AND was.endpoint_id = s.endpoint_id
           AND s.endpoint_id = ANY (touched)
        RETURNING s.endpoint_id, s.consecutive_failures,
                  (s.circuit_state = 'open' AND was.circuit_state <> 'open')
                      OR (s.circuit_state = 'half_open' AND s.circuit_probe_until IS NULL) AS needs_probe
    ),
    tripped AS (
        -- Auto-disable: a run of dead deliveries as long as the endpoint allows.
        -- The endpoints trigger parks its queue and publishes endpoint.disabled.
        UPDATE hookline.endpoints AS ep
           SET enabled = false,
               disabled_reason = h.consecutive_failures || ' consecutive failed deliveries',
               disabled_at = now()
          FROM health AS h
         WHERE ep.id = h.endpoint_id AND ep.enabled AND h.consecutive_failures >= ep.disable_after_failures
    )
    SELECT (SELECT count(*) FROM still_ours),
           (SELECT array_agg(so.delivery_id) FROM still_ours AS so),
           (SELECT array_agg(h.endpoint_id) FROM health AS h WHERE h.needs_probe)
      INTO recorded_n, ours, needs_probe;

    -- Most of the time nothing is held anywhere: then there is nothing to release.
    IF needs_probe IS NULL AND NOT EXISTS (SELECT FROM hookline.delivery_queue AS q WHERE q.state = 'held') THEN
        RETURN QUERY SELECT recorded_n, 0::bigint;
        RETURN;
    END IF;

    WITH finished AS (
        SELECT o.endpoint_id, count(*) AS n
          FROM unnest(delivery_ids, endpoint_ids) AS o(delivery_id, endpoint_id)
         WHERE o.delivery_id = ANY (ours)
         GROUP BY o.endpoint_id
    ),
    quota AS (
        SELECT f.endpoint_id,
               least(CASE WHEN s.circuit_state <> 'closed' THEN 0
                          WHEN ep.max_in_flight IS NOT NULL
                              THEN greatest(ep.max_in_flight - hookline.lease_batches_live(s.leases), 0)
                          ELSE 2 * f.n END, 1000) AS n
          FROM finished AS f
          JOIN hookline.endpoint_state AS s ON s.endpoint_id = f.endpoint_id
          JOIN hookline.endpoints AS ep ON ep.id = f.endpoint_id AND ep.enabled
    ),
    released_rows AS (
        UPDATE hookline.delivery_queue AS q
           SET state = 'pending'
          FROM quota AS t
          CROSS JOIN LATERAL (SELECT h.delivery_id
                                FROM hookline.delivery_queue AS h
                               WHERE h.endpoint_id = t.endpoint_id AND h.state = 'held'
                               ORDER BY h.next_attempt_at
                               LIMIT t.n
                                 FOR UPDATE SKIP LOCKED) AS r
         WHERE q.delivery_id = r.delivery_id
        RETURNING q.delivery_id
    ),
    probe AS (
        UPDATE hookline.delivery_queue AS q
           SET state = 'pending', next_attempt_at = coalesce(s.circuit_retry_at, now())
          FROM hookline.endpoint_state AS s
          JOIN hookline.endpoints AS ep ON ep.id = s.endpoint_id AND ep.enabled
          CROSS JOIN LATERAL (SELECT h.delivery_id
                                FROM hookline.delivery_queue AS h
                               WHERE h.endpoint_id = s.endpoint_id AND h.state = 'held'
                               ORDER BY h.next_attempt_at
                               LIMIT 1
                                 FOR UPDATE SKIP LOCKED) AS r
         WHERE s.endpoint_id = ANY (needs_probe) AND q.delivery_id = r.delivery_id
        RETURNING q.delivery_id
    )
    SELECT (SELECT count(*) FROM released_rows) + (SELECT count(*) FROM probe) INTO released_n;

    IF released_n > 0 AND EXISTS (SELECT FROM hookline.idle_workers) THEN
        PERFORM pg_notify('hookline_wake', '');
    END IF;
    RETURN QUERY SELECT recorded_n, released_n;
END
$$;
