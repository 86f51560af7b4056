-- hookline.queue_stats (SPEC §4): one row describing the whole queue.
-- Cost: pending, due_now and oldest_due_age_s read the partial index
-- deliveries_due (as large as the queue, not the history); in_flight reads
-- deliveries_leased; dead counts the dead rows, a scan of the history, so
-- dashboards should poll it at most every few seconds.
DROP VIEW IF EXISTS hookline.queue_stats;
CREATE VIEW hookline.queue_stats AS
SELECT
    (SELECT count(*) FROM hookline.deliveries WHERE state = 'pending')                              AS pending,
    (SELECT count(*) FROM hookline.deliveries WHERE state = 'pending' AND next_attempt_at <= now()) AS due_now,
    (SELECT count(*) FROM hookline.deliveries WHERE state = 'in_flight')                            AS in_flight,
    (SELECT count(*) FROM hookline.deliveries WHERE state = 'dead')                                 AS dead,
    coalesce(extract(epoch FROM now() - (
        SELECT min(next_attempt_at) FROM hookline.deliveries
        WHERE state = 'pending' AND next_attempt_at <= now())), 0)::float8                          AS oldest_due_age_s;

COMMENT ON VIEW hookline.queue_stats IS 'The delivery queue right now: one row.';
COMMENT ON COLUMN hookline.queue_stats.pending IS 'Deliveries waiting for their next attempt (due or not).';
COMMENT ON COLUMN hookline.queue_stats.due_now IS 'Pending deliveries whose next attempt is due.';
COMMENT ON COLUMN hookline.queue_stats.in_flight IS 'Deliveries a worker holds under a lease.';
COMMENT ON COLUMN hookline.queue_stats.dead IS 'Deliveries in the dead-letter queue.';
COMMENT ON COLUMN hookline.queue_stats.oldest_due_age_s IS 'Seconds the longest-waiting due delivery has been due; 0 when none.';
