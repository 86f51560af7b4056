-- A delivery whose worker died (its lease ran out) gets an attempt of its
-- own, `worker_lost`, and follows the retry schedule instead of being sent
-- again at once; too many such losses make it dead (issue 14). The claim
-- tells such deliveries by their queue row: pending, with a lease owner,
-- and a lease end already past.
ALTER TYPE hookline.error_kind ADD VALUE IF NOT EXISTS 'worker_lost';
