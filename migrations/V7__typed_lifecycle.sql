-- The fast path (issue 10): one typed contract between the worker and the
-- database, and statistics that no two deliveries write to the same row.
--
-- * Delivery states, queue states, error kinds and claim actions become enum
--   types, mirrored by the Rust domain enums (src/domain/delivery.rs draws
--   the state machine). The columns are rewritten once, here.
-- * A completion arrives as one array of `hookline.attempt_outcome`.
-- * Statistics: completions, claims and the API add their changes to
--   `rollup_deltas` (insert-only, unindexed: inserts never wait for each
--   other), and a worker folds them into the hourly rollups about once a
--   second. Before, every completion upserted the same rollup rows, which
--   serialised every worker on them.

-- On a first install the views and functions dropped below do not exist yet
-- (sql/ creates them after the migrations): no NOTICE for each.
SET LOCAL client_min_messages = warning;

CREATE TYPE hookline.delivery_state AS ENUM ('pending', 'succeeded', 'dead', 'cancelled');
-- A queue row: due or waiting for its next attempt (a lease is a pending row
-- with a lease owner), held back for its endpoint, or a dead letter.
CREATE TYPE hookline.queue_state AS ENUM ('pending', 'held', 'dead');
CREATE TYPE hookline.error_kind AS ENUM (
    'dns', 'connect', 'tls', 'timeout', 'http_status',
    'invalid_url', 'blocked_address', 'body_too_large', 'invalid_secret');
-- What a claim does with a due candidate (see src/domain/delivery.rs).
CREATE TYPE hookline.claim_action AS ENUM (
    'claim',           -- leased to the worker
    'leave',           -- stays due for the next claim
    'limit',           -- for the flow-control claim: a limit or an unclosed circuit, an orphan, a stalled backlog
    'hold',            -- out of the due index until a completion of its endpoint releases it
    'defer_to_probe',  -- due again when its endpoint's circuit may probe
    'retry_probe',     -- due again in a second, to be the probe
    'defer_by_rate',   -- given its own later start by the rate limit
    'park',            -- its endpoint was disabled: dead
    'end');            -- its endpoint or event no longer exists: dead

-- Views and functions that read these columns are re-created from sql/.
DROP VIEW IF EXISTS hookline.endpoint_health;
DROP VIEW IF EXISTS hookline.endpoint_stats_24h;
DROP VIEW IF EXISTS hookline.queue_stats;
DROP VIEW IF EXISTS hookline.delivery_stats_hourly;
DROP TRIGGER IF EXISTS deliveries_count_outcomes ON hookline.deliveries;
DROP FUNCTION IF EXISTS hookline.deliveries_count_outcomes();
DROP FUNCTION IF EXISTS hookline.claim_deliveries(uuid, integer, integer, float8, integer, uuid[], integer[], uuid[]);
DROP FUNCTION IF EXISTS hookline.complete_deliveries(
    uuid, uuid[], uuid[], integer[], text[], float8[], timestamptz[], integer[], integer[], jsonb[], text[],
    text[], text[], timestamptz[], boolean[], integer, float8, float8);
DROP FUNCTION IF EXISTS hookline.circuit_after(
    text, integer, float8, timestamptz, timestamptz, bigint, bigint, bigint, integer, float8, float8);
DROP FUNCTION IF EXISTS hookline.lease_batches_live(hookline.lease_batch[]);
DROP FUNCTION IF EXISTS hookline.lease_batches_add(hookline.lease_batch[], timestamptz, integer);
DROP FUNCTION IF EXISTS hookline.lease_batches_end(hookline.lease_batch[], timestamptz[]);

ALTER TABLE hookline.deliveries
    DROP CONSTRAINT deliveries_state_valid,
    ALTER COLUMN state DROP DEFAULT,
    ALTER COLUMN state TYPE hookline.delivery_state USING state::hookline.delivery_state,
    ALTER COLUMN state SET DEFAULT 'pending';

-- The partial indexes name the state in their predicates: rebuilt for the new type.
DROP INDEX hookline.delivery_queue_due;
DROP INDEX hookline.delivery_queue_dead;
DROP INDEX hookline.delivery_queue_held;
ALTER TABLE hookline.delivery_queue
    DROP CONSTRAINT delivery_queue_state_valid,
    ALTER COLUMN state DROP DEFAULT,
    ALTER COLUMN state TYPE hookline.queue_state USING state::hookline.queue_state,
    ALTER COLUMN state SET DEFAULT 'pending';
CREATE INDEX delivery_queue_due ON hookline.delivery_queue (next_attempt_at) WHERE state = 'pending';
CREATE INDEX delivery_queue_dead ON hookline.delivery_queue (delivery_id) WHERE state = 'dead';
CREATE INDEX delivery_queue_held ON hookline.delivery_queue (endpoint_id, next_attempt_at) WHERE state = 'held';

ALTER TABLE hookline.attempts
    DROP CONSTRAINT attempts_error_kind_valid,
    ALTER COLUMN error_kind TYPE hookline.error_kind USING error_kind::hookline.error_kind;

-- Latency percentiles come from the rollups since V4; nothing reads attempts
-- by endpoint and time any more, and every attempt paid for this entry.
DROP INDEX hookline.attempts_endpoint_time;

-- One attempt's outcome as the worker reports it.
CREATE TYPE hookline.attempt_outcome AS (
    delivery_id      uuid,
    endpoint_id      uuid,
    attempt          integer,
    -- The lease the delivery was claimed with: the outcome changes the
    -- delivery only while that lease is still the worker's.
    lease_until      timestamptz,
    -- succeeded, pending (to retry after retry_in_s) or dead.
    next_state       hookline.delivery_state,
    retry_in_s       float8,
    started_at       timestamptz,
    duration_ms      integer,
    status_code      integer,
    response_headers jsonb,
    response_body    text,
    error_kind       hookline.error_kind,
    error            text,
    -- The attempt's verdict for the circuit breaker: down, answering, or neither (NULL).
    endpoint_down    boolean
);

-- Changes to the hourly rollups not folded in yet. Each completion batch
-- (and each API change of a delivery's state) inserts one row per group it
-- touched; `hookline.fold_rollup_deltas()` moves them into endpoint_hourly,
-- event_type_hourly and endpoint_state about once a second. The views add
-- what is still here, so they are exact at every moment, and everything is
-- transactional: a killed process loses no count.
CREATE TABLE hookline.rollup_deltas (
    endpoint_id       uuid        NOT NULL,
    -- Outcome counts of deliveries created in `created_hour` (NULL: none).
    tenant            text,
    event_type        text,
    created_hour      timestamptz,
    succeeded         integer     NOT NULL DEFAULT 0,
    dead              integer     NOT NULL DEFAULT 0,
    cancelled         integer     NOT NULL DEFAULT 0,
    -- Attempts the deliveries that finished (or stopped being finished) took.
    finished_attempts integer     NOT NULL DEFAULT 0,
    -- Attempts started in `attempt_hour` (NULL: none).
    attempt_hour      timestamptz,
    attempts          integer     NOT NULL DEFAULT 0,
    failed_attempts   integer     NOT NULL DEFAULT 0,
    durations_ms      integer[],
    last_success_at   timestamptz,
    last_failure_at   timestamptz
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000,
        autovacuum_vacuum_cost_delay = 0);
