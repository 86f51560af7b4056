-- Batching (issue 13; the design is in src/worker/batch.rs).
--
-- hookline.batch_candidates: up to `room` of an endpoint's pending batched
-- deliveries, in due order, locked, skipping rows other workers are
-- claiming: those due by `at`, and fresh ones (never attempted) not due
-- yet, which wait only for their endpoint's max_wait_ms. A retry keeps its
-- backoff; a lost lease is left to the claims, which record the loss.
--
-- It walks delivery_queue_batch in order and stops after `room` rows. The
-- planner, when its statistics say an endpoint has few batched rows (say,
-- after a quiet hour, just as a backlog arrives), prefers a bitmap scan
-- that reads and sorts all of them, every call: bitmap scans are off here.
CREATE OR REPLACE FUNCTION hookline.batch_candidates(endpoint_id uuid, room integer, at timestamptz)
RETURNS TABLE (delivery_id uuid, event_id uuid, next_attempt_at timestamptz)
LANGUAGE sql VOLATILE
SET enable_bitmapscan = off
AS $$
    SELECT q.delivery_id, q.event_id, q.next_attempt_at
      FROM hookline.delivery_queue AS q
     WHERE q.endpoint_id = batch_candidates.endpoint_id AND q.state = 'pending' AND q.batched
       AND q.lease_owner IS NULL
       AND (q.attempts = 0 OR q.next_attempt_at <= batch_candidates.at)
     ORDER BY q.next_attempt_at
     LIMIT room
       FOR UPDATE SKIP LOCKED
$$;
