-- Batching (issue 13): an endpoint with `batch` settings gets its due
-- deliveries together, up to max_events / max_bytes per request, in one
-- JSON array (or NDJSON) signed as one Standard Webhooks message. See
-- src/worker/batch.rs for how a worker forms batches and
-- src/db/statements/delivery_claim_batch.sql for how it fills them.
ALTER TABLE hookline.endpoints
    ADD COLUMN batch_max_events  integer,
    ADD COLUMN batch_max_bytes   integer,
    ADD COLUMN batch_max_wait_ms integer,
    ADD COLUMN batch_format      text,
    -- All four or none: the API fills in the defaults.
    ADD CONSTRAINT endpoints_batch_valid CHECK (
        (batch_max_events IS NULL AND batch_max_bytes IS NULL AND batch_max_wait_ms IS NULL AND batch_format IS NULL)
        OR (batch_max_events BETWEEN 1 AND 1000
            AND batch_max_bytes BETWEEN 1024 AND 4194304
            AND batch_max_wait_ms BETWEEN 0 AND 60000
            AND batch_format IN ('json', 'ndjson'))),
    -- Not yet: a batch of an ordered endpoint would have to carry
    -- consecutive events of one lane.
    ADD CONSTRAINT endpoints_batch_unordered CHECK (batch_max_events IS NULL OR ordering = 'none');

-- Set at fan-out for an endpoint that batches, so a worker can fill a batch
-- from that endpoint's own pending rows (delivery_queue_batch) without
-- every other endpoint's claims and completions writing that index too.
ALTER TABLE hookline.delivery_queue
    ADD COLUMN batched boolean NOT NULL DEFAULT false;
CREATE INDEX delivery_queue_batch ON hookline.delivery_queue (endpoint_id, next_attempt_at)
    WHERE state = 'pending' AND batched;

-- One row per batched request: what the receiver answered, once for all
-- the deliveries it carried (deliveries, with each one's attempt number).
-- Each of those deliveries names it in deliveries.batch_attempts; a
-- delivery's own attempts rows hold only what was not sent in a batch.
CREATE TABLE hookline.batch_attempts (
    -- The request's webhook-id.
    id                uuid        NOT NULL,
    endpoint_id       uuid        NOT NULL,
    started_at        timestamptz NOT NULL,
    duration_ms       integer     NOT NULL,
    status_code       integer,
    response_headers  jsonb,
    response_body     text,
    error_kind        hookline.error_kind,
    error             text,
    worker            uuid        NOT NULL,
    bytes             integer     NOT NULL,
    deliveries        uuid[]      NOT NULL,
    delivery_attempts integer[]   NOT NULL,
    CONSTRAINT batch_attempts_pkey PRIMARY KEY (id)
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05);
CREATE INDEX batch_attempts_started_brin ON hookline.batch_attempts USING brin (started_at);

-- The batched requests that carried this delivery, in order (appended by
-- the completion's HOT update: no index covers it).
ALTER TABLE hookline.deliveries
    ADD COLUMN batch_attempts uuid[];

-- An outcome reached through batched requests names them; its response is
-- in their batch_attempts rows, not repeated per delivery.
ALTER TYPE hookline.attempt_outcome ADD ATTRIBUTE requests uuid[];

CREATE TYPE hookline.batch_attempt AS (
    id                uuid,
    endpoint_id       uuid,
    started_at        timestamptz,
    duration_ms       integer,
    status_code       integer,
    response_headers  jsonb,
    response_body     text,
    error_kind        hookline.error_kind,
    error             text,
    bytes             integer,
    deliveries        uuid[],
    delivery_attempts integer[]
);
