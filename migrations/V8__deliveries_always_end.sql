-- A delivery always ends (issue 14).
--
-- * A delivery whose worker died (its lease ran out) gets an attempt of its
--   own, `worker_lost`, and follows the retry schedule instead of being
--   sent again at once; too many such losses make it dead. The claim tells
--   such deliveries by their queue row: pending, with a lease owner, and a
--   lease end already past.
-- * A delivery whose endpoint's circuit stays open past the delivery's last
--   scheduled attempt ends dead, with an attempt `circuit_open` (not sent),
--   rather than waiting for the endpoint for ever: the claim's `expire`.
ALTER TYPE hookline.error_kind ADD VALUE IF NOT EXISTS 'worker_lost';
ALTER TYPE hookline.error_kind ADD VALUE IF NOT EXISTS 'circuit_open';
ALTER TYPE hookline.claim_action ADD VALUE IF NOT EXISTS 'expire';

-- * An endpoint whose circuit has stayed open longer than
--   HOOKLINE_DISABLE_AFTER_OPEN (or its own disable_after_open_s) is
--   disabled. endpoint_state.circuit_opened_at says since when (kept by a
--   trigger on circuit changes, sql/040_endpoints.sql); circuits open now
--   start counting from this migration.
ALTER TABLE hookline.endpoint_state ADD COLUMN circuit_opened_at timestamptz;
UPDATE hookline.endpoint_state SET circuit_opened_at = now() WHERE circuit_state <> 'closed';
ALTER TABLE hookline.endpoints
    ADD COLUMN disable_after_open_s integer,
    ADD CONSTRAINT endpoints_disable_after_open_positive CHECK (disable_after_open_s > 0);
