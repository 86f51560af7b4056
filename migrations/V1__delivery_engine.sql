-- The delivery engine's tables. Public functions, triggers and views live in
-- sql/ and are re-applied by `hookline migrate` after these migrations.
--
-- Design notes that shape everything below:
-- * Ids are UUIDv7 (time-ordered): B-tree inserts append at the right edge,
--   cursor pagination orders by id, and a later switch to time partitions can
--   prune by id range.
-- * No foreign keys from deliveries/attempts to events: partitions of those
--   tables must be droppable independently (retention by DROP, not DELETE),
--   and an FK check per fanned-out row would cost the producer's transaction.
-- * Deliveries live twice: their history in `deliveries`, their place in the
--   queue in `delivery_queue` (see below), so the claim path stays small and
--   fast however long the history grows.

CREATE SCHEMA IF NOT EXISTS hookline;

-- UUIDv7 from SQL (PostgreSQL 15 has no built-in): the v4 generator's random
-- bits with the first 48 replaced by Unix milliseconds and the version nibble
-- set to 7.
CREATE FUNCTION hookline.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- A new Standard Webhooks secret: 32 random bytes (two v4 UUIDs' worth).
CREATE FUNCTION hookline.new_secret() RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64')
$$;

-- An endpoint's filter patterns as LIKE patterns: `order.*` → `order.%`,
-- `*` or an empty list → `%`, exact names escaped. Fan-out then matches with
-- one `event_type LIKE ANY (…)`, several times cheaper than unnesting the
-- patterns for every (event, endpoint) pair.
CREATE FUNCTION hookline.event_type_like_patterns(patterns text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(patterns) = 0 OR '*' = ANY (patterns) THEN '{%}'::text[]
           ELSE array(
               SELECT CASE WHEN right(p, 2) = '.*'
                           THEN replace(replace(replace(left(p, -1), '\', '\\'), '%', '\%'), '_', '\_') || '%'
                           ELSE replace(replace(replace(p, '\', '\\'), '%', '\%'), '_', '\_') END
               FROM unnest(patterns) AS p)
           END
$$;

CREATE TABLE hookline.endpoints (
    id                     uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    tenant                 text        NOT NULL DEFAULT 'default',
    url                    text        NOT NULL,
    description            text        NOT NULL DEFAULT '',
    -- Filter patterns: exact names or a trailing wildcard (`order.*`); empty = all.
    event_types            text[]      NOT NULL DEFAULT '{}',
    event_types_like       text[]      NOT NULL
        GENERATED ALWAYS AS (hookline.event_type_like_patterns(event_types)) STORED,
    -- Standard Webhooks secret `whsec_<base64>`, generated when not given.
    secret                 text        NOT NULL DEFAULT hookline.new_secret(),
    -- During a rotation the old secret keeps signing until it expires.
    previous_secret        text,
    previous_secret_expires_at timestamptz,
    http_method            text        NOT NULL DEFAULT 'POST',
    headers                jsonb       NOT NULL DEFAULT '{}',
    timeout_ms             integer     NOT NULL DEFAULT 10000,
    rate_limit_per_s       integer,
    max_in_flight          integer,
    -- Seconds to wait before each retry; NULL = the worker's global schedule.
    retry_schedule         float8[],
    disable_after_failures integer     NOT NULL DEFAULT 5,
    enabled                boolean     NOT NULL DEFAULT true,
    disabled_reason        text,
    disabled_at            timestamptz,
    metadata               jsonb       NOT NULL DEFAULT '{}',
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT endpoints_pkey PRIMARY KEY (id),
    CONSTRAINT endpoints_url_http CHECK (url ~ '^https?://'),
    CONSTRAINT endpoints_secret_format CHECK (secret LIKE 'whsec\_%'),
    CONSTRAINT endpoints_http_method_valid CHECK (http_method IN ('POST', 'PUT', 'PATCH')),
    CONSTRAINT endpoints_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT endpoints_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT endpoints_timeout_positive CHECK (timeout_ms BETWEEN 1 AND 300000),
    CONSTRAINT endpoints_rate_limit_positive CHECK (rate_limit_per_s > 0),
    CONSTRAINT endpoints_max_in_flight_positive CHECK (max_in_flight > 0),
    CONSTRAINT endpoints_disable_after_positive CHECK (disable_after_failures > 0),
    CONSTRAINT endpoints_retry_schedule_valid CHECK (
        retry_schedule IS NULL
        OR (array_ndims(retry_schedule) = 1 AND 0 <= ALL (retry_schedule))
        OR cardinality(retry_schedule) = 0)
);

-- Fan-out looks up the enabled endpoints of one tenant for every produced event.
CREATE INDEX endpoints_fanout ON hookline.endpoints (tenant) WHERE enabled;

-- Per-endpoint delivery health, kept apart from `endpoints` so the frequent
-- updates after each completion batch touch a narrow row (HOT-updatable: no
-- index covers the columns that change).
CREATE TABLE hookline.endpoint_state (
    endpoint_id          uuid        NOT NULL,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    CONSTRAINT endpoint_state_pkey PRIMARY KEY (endpoint_id),
    CONSTRAINT endpoint_state_endpoint_fkey FOREIGN KEY (endpoint_id)
        REFERENCES hookline.endpoints (id) ON DELETE CASCADE
) WITH (fillfactor = 50);

CREATE TABLE hookline.events (
    id              uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    tenant          text        NOT NULL DEFAULT 'default',
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    idempotency_key text,
    -- `api`, `sql` or `inbound:<source name>`.
    source          text        NOT NULL DEFAULT 'sql',
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (id),
    -- Length checks only: a regular expression here cost producers 8% of
    -- their throughput. The API validates the characters.
    CONSTRAINT events_event_type_length CHECK (char_length(event_type) BETWEEN 1 AND 200),
    CONSTRAINT events_tenant_length CHECK (char_length(tenant) BETWEEN 1 AND 100)
);

-- Idempotency keys live in their own table rather than as a unique index on
-- events, so events can later be partitioned by time (a unique index on a
-- partitioned table must include the partition key).
CREATE TABLE hookline.event_idempotency (
    tenant          text        NOT NULL,
    idempotency_key text        NOT NULL,
    event_id        uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_idempotency_pkey PRIMARY KEY (tenant, idempotency_key)
);

-- Deliveries are split in two tables by how often rows change:
--
-- * `deliveries` is the history: one row per (event, endpoint), written at
--   fan-out and updated once per attempt. No index covers a column that
--   changes after insert, so every update is HOT (no index writes), and the
--   table only grows, ready to be partitioned by time and dropped by
--   partition later.
-- * `delivery_queue` holds the open deliveries only: pending (including in
--   flight) and dead (the dead-letter queue). It is small and churns: a row
--   is inserted at fan-out, updated at each claim, and deleted on success.
--
-- A successful first attempt therefore costs: deliveries insert + queue
-- insert (fan-out), queue update (claim), queue delete + deliveries HOT
-- update + attempts insert (completion).
CREATE TABLE hookline.deliveries (
    id               uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    event_id         uuid        NOT NULL,
    endpoint_id      uuid        NOT NULL,
    -- Copied from the event so filters and stats need no join.
    tenant           text        NOT NULL,
    event_type       text        NOT NULL,
    -- pending | succeeded | dead | cancelled. Whether a pending delivery is
    -- in flight right now is known from its queue row's lease.
    state            text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    CONSTRAINT deliveries_pkey PRIMARY KEY (id),
    CONSTRAINT deliveries_state_valid CHECK (state IN ('pending', 'succeeded', 'dead', 'cancelled'))
-- Room on each page for a second version of most rows on it: most rows are
-- updated exactly once (their first attempt succeeds), and with 40% free a
-- drain measured 94% HOT updates (65% at fillfactor 80).
) WITH (fillfactor = 60, autovacuum_vacuum_scale_factor = 0.05);

-- An event's deliveries, and an endpoint's deliveries in creation order
-- (UUIDv7 ids sort by time).
CREATE INDEX deliveries_event ON hookline.deliveries (event_id);
CREATE INDEX deliveries_endpoint ON hookline.deliveries (endpoint_id, id);

CREATE TABLE hookline.delivery_queue (
    delivery_id     uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    endpoint_id     uuid        NOT NULL,
    -- pending (waiting or in flight) | dead
    state           text        NOT NULL DEFAULT 'pending',
    -- When the next attempt may start. While a worker holds the delivery it
    -- is the end of the lease: an expired lease simply makes it due again,
    -- so a killed worker's deliveries need no separate rescue.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Claims so far; the attempt number of the current claim.
    attempts        integer     NOT NULL DEFAULT 0,
    -- The worker holding it (until next_attempt_at), or NULL.
    lease_owner     uuid,
    CONSTRAINT delivery_queue_pkey PRIMARY KEY (delivery_id),
    CONSTRAINT delivery_queue_state_valid CHECK (state IN ('pending', 'dead'))
-- Constant churn: keep free space for updates and vacuum early and often.
) WITH (fillfactor = 70,
        autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_cost_delay = 0);

-- The claim path: pending deliveries in due order.
CREATE INDEX delivery_queue_due ON hookline.delivery_queue (next_attempt_at)
    WHERE state = 'pending';
-- The dead-letter queue in creation order.
CREATE INDEX delivery_queue_dead ON hookline.delivery_queue (delivery_id)
    WHERE state = 'dead';

-- One row per HTTP try. Keyed by (delivery, attempt number) so a row costs
-- one index entry less than a surrogate id would.
CREATE TABLE hookline.attempts (
    delivery_id      uuid        NOT NULL,
    endpoint_id      uuid        NOT NULL,
    attempt          integer     NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer     NOT NULL,
    status_code      integer,
    response_headers jsonb,
    -- Truncated to 5,000 characters by the worker.
    response_body    text,
    error_kind       text,
    error            text,
    worker           uuid        NOT NULL,
    CONSTRAINT attempts_pkey PRIMARY KEY (delivery_id, attempt),
    CONSTRAINT attempts_error_kind_valid CHECK (error_kind IN (
        'dns', 'connect', 'tls', 'timeout', 'http_status',
        'invalid_url', 'blocked_address', 'body_too_large'))
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05);

-- Latency percentiles per endpoint over a time window (endpoint_stats_24h).
CREATE INDEX attempts_endpoint_time ON hookline.attempts (endpoint_id, started_at)
    INCLUDE (duration_ms, status_code);

-- Workers that found nothing to do and are waiting for a NOTIFY. Producers
-- notify only while this table has a row: a NOTIFY serialises the commits of
-- every notifying transaction in the database (PostgreSQL takes a
-- database-wide lock for it), so under load, when every worker is busy
-- anyway, producers skip it and commit in parallel. Unlogged: it is only a
-- hint, and a crash that empties it merely makes workers poll once.
CREATE UNLOGGED TABLE hookline.idle_workers (
    worker_id uuid        NOT NULL,
    since     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idle_workers_pkey PRIMARY KEY (worker_id)
);

-- The smallest UUIDv7 of a moment: `id >= hookline.uuid_v7_floor(t)` selects
-- rows created at or after t through any index on a UUIDv7 id.
CREATE FUNCTION hookline.uuid_v7_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT encode(
        substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
            || '\x70000000000000000000'::bytea,
        'hex')::uuid
$$;
