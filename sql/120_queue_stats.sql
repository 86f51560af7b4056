-- hookline.queue_stats (SPEC §4): one row describing the whole queue.
-- Cost: reads only delivery_queue, which holds open deliveries (not the
-- history): pending and in-flight counts scan its due index, held ones its
-- held index, dead ones its dead-letter index.
DROP VIEW IF EXISTS hookline.queue_stats;
CREATE VIEW hookline.queue_stats AS
WITH open AS (
    SELECT count(*) FILTER (WHERE lease_owner IS NULL OR next_attempt_at <= now()) AS waiting,
           count(*) FILTER (WHERE next_attempt_at <= now())                        AS due_now,
           count(*) FILTER (WHERE lease_owner IS NOT NULL AND next_attempt_at > now()) AS in_flight,
           min(next_attempt_at) FILTER (WHERE next_attempt_at <= now())             AS oldest_due_at
    FROM hookline.delivery_queue
    WHERE state = 'pending'
),
held AS (
    SELECT count(*) AS held FROM hookline.delivery_queue WHERE state = 'held'
)
SELECT open.waiting + held.held                                      AS pending,
       open.due_now,
       open.in_flight,
       (SELECT count(*) FROM hookline.delivery_queue WHERE state = 'dead') AS dead,
       coalesce(extract(epoch FROM now() - open.oldest_due_at), 0)::float8 AS oldest_due_age_s,
       held.held
FROM open, held;

COMMENT ON VIEW hookline.queue_stats IS 'The delivery queue right now: one row.';
COMMENT ON COLUMN hookline.queue_stats.pending IS 'Deliveries waiting for their next attempt, due or not, held ones included (not in-flight ones).';
COMMENT ON COLUMN hookline.queue_stats.due_now IS 'Pending deliveries whose next attempt is due (including expired leases).';
COMMENT ON COLUMN hookline.queue_stats.in_flight IS 'Deliveries a worker holds under an unexpired lease.';
COMMENT ON COLUMN hookline.queue_stats.dead IS 'Deliveries in the dead-letter queue.';
COMMENT ON COLUMN hookline.queue_stats.oldest_due_age_s IS 'Seconds the longest-waiting due delivery has been due; 0 when none.';
COMMENT ON COLUMN hookline.queue_stats.held IS 'Of the pending ones, those waiting for their endpoint: max_in_flight reached, circuit not closed, or the endpoint stalled.';
