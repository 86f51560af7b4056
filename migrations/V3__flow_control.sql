-- Flow control and the circuit breaker: what workers must agree on about an
-- endpoint, kept in its endpoint_state row (the claim locks that row only for
-- endpoints with a limit or an unclosed circuit, so plain endpoints pay
-- nothing for it).

-- A batch of one endpoint's deliveries claimed together: how many, and when
-- their leases end. An endpoint's live batches are its deliveries in flight
-- across all workers; a batch whose leases ran out counts for nothing, so the
-- slots of a killed worker free themselves exactly when its leases expire.
CREATE TYPE hookline.lease_batch AS (
    until timestamptz,
    n     integer
);

ALTER TABLE hookline.endpoint_state
    -- In-flight batches, kept only for endpoints with a max_in_flight.
    ADD COLUMN leases hookline.lease_batch[] NOT NULL DEFAULT '{}',
    -- Rate limit (GCRA): the theoretical arrival time of the next delivery.
    -- A delivery may start once rate_tat - 1/(2 rate) <= now().
    ADD COLUMN rate_tat timestamptz,
    -- The last start time handed to a delivery that the rate limit deferred;
    -- the next deferred one queues 1/rate after it.
    ADD COLUMN rate_horizon timestamptz,
    -- Circuit breaker: failed attempts in a row (network errors, timeouts,
    -- 5xx, 429). Unlike consecutive_failures this counts attempts, not
    -- deliveries, so an outage is noticed within a few requests.
    ADD COLUMN failed_attempts integer NOT NULL DEFAULT 0,
    -- closed: delivering. open: no attempts until circuit_retry_at. half_open:
    -- one probe in flight (until circuit_probe_until), whose outcome decides.
    ADD COLUMN circuit_state text NOT NULL DEFAULT 'closed',
    -- The current cool-down; it doubles with each failed probe, up to a cap.
    ADD COLUMN circuit_cooldown_s float8,
    ADD COLUMN circuit_retry_at timestamptz,
    ADD COLUMN circuit_probe_until timestamptz,
    ADD CONSTRAINT endpoint_state_circuit_state_valid CHECK (circuit_state IN ('closed', 'open', 'half_open'));

-- A queue row is `held` while its endpoint cannot take it (max_in_flight
-- reached, a circuit probe in flight, or a stalled endpoint filling a
-- worker's share): out of the due index, so a blocked endpoint's backlog
-- never sits in front of other endpoints' deliveries. A completion of that
-- endpoint releases held rows back to `pending`, at their old due time.
ALTER TABLE hookline.delivery_queue
    DROP CONSTRAINT delivery_queue_state_valid,
    ADD CONSTRAINT delivery_queue_state_valid CHECK (state IN ('pending', 'held', 'dead'));

-- Releasing one endpoint's held rows, oldest due first. Only held rows are
-- in it, so the claim and completion of everything else never touch it.
CREATE INDEX delivery_queue_held ON hookline.delivery_queue (endpoint_id, next_attempt_at)
    WHERE state = 'held';
