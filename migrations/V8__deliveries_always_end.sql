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
