-- The delivery lifecycle's decisions as named, pure SQL functions: no table
-- access, the clock an argument. The claim and the completion (statements
-- in src/db/deliveries.rs, and hookline.claim_limited) only apply them; the
-- tests call them with tables of cases. The state machine they drive is
-- drawn in src/domain/delivery.rs. Internal to hookline.

-- What the plain claim does with a due candidate. `orphan`: its endpoint or
-- event is gone. `limited`: its endpoint has max_in_flight, a rate limit or
-- a circuit that is not closed (or was disabled). `in_share`: within what
-- this worker may send that endpoint now; `within_wanted`: within the
-- worker's free slots, in due order; `stalled`: the worker's requests to
-- that endpoint stopped finishing. Everything out of the ordinary — limits,
-- orphans to end, a stalled endpoint's backlog to hold — goes to the
-- flow-control claim (`limit`), so the plain claim stays one lean statement.
-- Its literals are typed where they stand: a cast of the CASE's text to the
-- enum calls enum_in (STABLE), which keeps an IMMUTABLE function from being
-- inlined, and a call per candidate cost more than the rest of the claim.
CREATE OR REPLACE FUNCTION hookline.plain_claim_action(
    orphan boolean, limited boolean, in_share boolean, within_wanted boolean, stalled boolean)
RETURNS hookline.claim_action
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN orphan OR limited          THEN 'limit'::hookline.claim_action
                WHEN in_share AND within_wanted THEN 'claim'
                WHEN NOT in_share AND stalled   THEN 'limit'
                ELSE 'leave' END
$$;

-- How many of an endpoint's deliveries its circuit lets start: NULL when
-- closed (no limit), 1 when the probe may go (the cool-down of an open
-- circuit is over, or a half-open circuit's probe lease ran out), else 0.
CREATE OR REPLACE FUNCTION hookline.circuit_room(
    circuit_state text, retry_at timestamptz, probe_until timestamptz, at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE circuit_state
                WHEN 'closed' THEN NULL
                WHEN 'open' THEN CASE WHEN coalesce(retry_at, '-infinity') <= at THEN 1 ELSE 0 END
                ELSE CASE WHEN coalesce(probe_until, '-infinity') <= at THEN 1 ELSE 0 END
           END
$$;

-- The rate limit (GCRA): how many deliveries may start at `at`, given the
-- theoretical arrival time `tat` of the next one; NULL without a limit.
-- Starts are spaced 1.05/rate seconds apart — the 5% keeps the receiver's
-- count of a second within the limit although requests reach it with some
-- jitter after their start is decided — and after a pause the second may
-- follow the first at half that interval, the one delivery of burst SPEC §5
-- allows: the k-th may start once from + (k - 1.5) × step <= at.
CREATE OR REPLACE FUNCTION hookline.rate_room(rate integer, tat timestamptz, at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN rate IS NOT NULL
                THEN greatest(floor(extract(epoch FROM at - greatest(coalesce(tat, at), at)) * rate / 1.05 + 1.5)::integer, 0)
           END
$$;

-- How many of an endpoint's candidates a claim takes: the least of the
-- worker's room for it, max_in_flight's free slots, the circuit's and the
-- rate limit's room, and the candidates there are (NULL: no such limit);
-- none for a disabled endpoint.
CREATE OR REPLACE FUNCTION hookline.claim_allowance(
    enabled boolean, room integer, cap_free integer, circuit_room integer, rate_room integer, candidates bigint)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN enabled THEN greatest(least(room, cap_free, circuit_room, rate_room, candidates), 0)::integer
                ELSE 0 END
$$;

-- When the last attempt a delivery's retry schedule allows falls due, had
-- every attempt failed: `schedule` holds the waits after each attempt (after
-- attempt k, schedule[k]), `attempts` were made, the last one (or, with none,
-- the delivery's creation) at `since`. An open circuit defers a delivery no
-- later than this, and expires it after.
CREATE OR REPLACE FUNCTION hookline.last_attempt_due(since timestamptz, attempts integer, schedule float8[])
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT since + make_interval(secs => coalesce(
               (SELECT sum(wait) FROM unnest(schedule[greatest(attempts, 1):]) AS wait), 0))
$$;

-- What the flow-control claim does with the `nth` candidate of an endpoint
-- (in due order), given its allowance and whether the worker chose it
-- (within the allowance and the worker's free slots), how many of the
-- endpoint's it took (`taken`), each limit's room, and whether its last
-- scheduled attempt is past (`overdue`). A candidate it does not take is
-- moved aside by what stopped it.
DROP FUNCTION IF EXISTS hookline.limited_claim_action(
    boolean, boolean, bigint, integer, text, integer, bigint, integer, integer, integer, boolean);
CREATE OR REPLACE FUNCTION hookline.limited_claim_action(
    chosen boolean, enabled boolean, nth bigint, allowed integer, circuit_state text, circuit_room integer,
    taken bigint, cap_free integer, rate_room integer, room integer, stalled boolean, overdue boolean)
RETURNS hookline.claim_action
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN chosen                                      THEN 'claim'::hookline.claim_action
                -- Disabled meanwhile (its trigger skipped rows a claim had locked).
                WHEN NOT enabled                                 THEN 'park'
                WHEN nth <= allowed                              THEN 'leave'  -- the worker's slots are full
                -- A delivery always ends: an outage does not outlast its retries.
                WHEN circuit_state = 'open' AND circuit_room = 0 AND overdue THEN 'expire'
                WHEN circuit_state = 'open' AND circuit_room = 0 THEN 'defer_to_probe'
                WHEN circuit_room = 0                            THEN 'hold'   -- a probe is out
                WHEN circuit_room = 1 AND taken = 1              THEN 'hold'   -- the probe just left
                -- The probe is due but a limit stops it: keep one to try again shortly.
                WHEN circuit_room = 1 AND nth = 1                THEN 'retry_probe'
                WHEN cap_free <= allowed                         THEN 'hold'
                WHEN rate_room <= allowed                        THEN 'defer_by_rate'
                WHEN room <= allowed AND stalled                 THEN 'hold'
                ELSE 'leave' END
$$;

-- The circuit breaker's next state for one endpoint, given the attempts of a
-- batch: `downs` said the endpoint is down (network error, timeout, 5xx,
-- 408, 429), `ups` that it answers, `downs_since_up` how many downs came
-- after the last up.
--
--   closed ──(run of failed attempts reaches `threshold`)──▶ open
--   open ──(cool-down over: the claim sends one probe)──▶ half_open
--   half_open ──(probe answered)──▶ closed
--   half_open ──(probe failed)──▶ open, cool-down doubled up to its cap
--   open ──(a request sent before it opened succeeds)──▶ closed
--
-- An outcome that says neither (an invalid URL, a blocked address, a
-- payload too large, a secret that cannot sign) leaves the run alone; in
-- half_open it ends the probe without a verdict, and the next claim sends
-- another. (The completion hands a half-open circuit only its probe's
-- outcome.)
CREATE OR REPLACE FUNCTION hookline.circuit_after(
    state text, run integer, cooldown_s float8, retry_at timestamptz, probe_until timestamptz,
    downs bigint, ups bigint, downs_since_up bigint,
    threshold integer, base_cooldown_s float8, max_cooldown_s float8, at timestamptz,
    OUT next_state text, OUT next_run integer, OUT next_cooldown_s float8,
    OUT next_retry_at timestamptz, OUT next_probe_until timestamptz)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
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
                WHEN s.verdict = 'open' AND state = 'closed' THEN at + make_interval(secs => base_cooldown_s)
                WHEN s.verdict = 'open' AND state = 'half_open'
                    THEN at + make_interval(secs => least(coalesce(cooldown_s, base_cooldown_s) * 2, max_cooldown_s))
                ELSE retry_at END,
           CASE WHEN state = 'half_open' THEN NULL ELSE probe_until END
      FROM s
$$;

-- The rollup_deltas row that records one delivery moving from state `was`
-- to `now`: its creation hour's outcome counts (what was counted out, what
-- is counted in) and the attempts of finished deliveries. Every path that
-- changes a delivery's state outside the completion (claims that end or
-- park it, replays, cancels, an endpoint's disabling or deletion) inserts
-- these rows; see sql/080_stats_rollups.sql for the invariant.
DROP FUNCTION IF EXISTS hookline.transition_delta(
    uuid, text, text, timestamptz, hookline.delivery_state, hookline.delivery_state, integer, integer);
CREATE FUNCTION hookline.transition_delta(
    endpoint_id uuid, tenant text, event_type text, created_at timestamptz,
    was hookline.delivery_state, now hookline.delivery_state, attempts_was integer, attempts_now integer)
RETURNS hookline.rollup_deltas
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT endpoint_id, tenant, event_type, date_trunc('hour', created_at, 'UTC'),
           (now = 'succeeded')::integer - (was = 'succeeded')::integer,
           (now = 'dead')::integer - (was = 'dead')::integer,
           (now = 'cancelled')::integer - (was = 'cancelled')::integer,
           CASE WHEN now <> 'pending' THEN attempts_now ELSE 0 END - CASE WHEN was <> 'pending' THEN attempts_was ELSE 0 END,
           NULL::timestamptz, 0, 0, NULL::integer[], NULL::timestamptz, NULL::timestamptz
$$;
