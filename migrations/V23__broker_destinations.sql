-- Broker destinations (issue 12): an endpoint's `url` may be nats://,
-- amqp:// or redis:// (src/worker/brokers.rs). A broker that does not take
-- the message (no stream for the subject, no queue for the routing key) is
-- an attempt that failed with this kind, retried like any other.
ALTER TYPE hookline.error_kind ADD VALUE IF NOT EXISTS 'broker_rejected';

ALTER TABLE hookline.endpoints
    DROP CONSTRAINT endpoints_url_http,
    ADD CONSTRAINT endpoints_url_scheme CHECK (url ~ '^(https?|nats|amqp|redis)://');
