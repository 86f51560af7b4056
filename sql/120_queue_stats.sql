-- hookline.queue_stats (SPEC §4): one row describing the whole queue, and
-- hookline.queue_stats_of(tenant), the same for one tenant's endpoints (the
-- API's /v1/stats for a tenant-bound token; NULL: every tenant).
-- Cost: reads only delivery_queue, which holds open deliveries (not the
-- history), once; for a tenant, through that tenant's endpoints (the queue
-- has no tenant column: claims would pay for its index).
DROP VIEW IF EXISTS hookline.queue_stats;
DROP FUNCTION IF EXISTS hookline.queue_stats_of(text);
CREATE FUNCTION hookline.queue_stats_of(tenant text)
RETURNS TABLE (pending bigint, due_now bigint, in_flight bigint, dead bigint, oldest_due_age_s float8, held bigint)
LANGUAGE sql STABLE AS $$
    WITH q AS (
        SELECT q.state, q.lease_owner, q.next_attempt_at
          FROM hookline.delivery_queue AS q
         WHERE queue_stats_of.tenant IS NULL
            OR q.endpoint_id IN (SELECT ep.id FROM hookline.endpoints AS ep WHERE ep.tenant = queue_stats_of.tenant)
    )
    SELECT count(*) FILTER (WHERE q.state IN ('held', 'waiting')
                               OR (q.state = 'pending' AND (q.lease_owner IS NULL OR q.next_attempt_at <= now()))),
           count(*) FILTER (WHERE q.state = 'pending' AND q.next_attempt_at <= now()),
           count(*) FILTER (WHERE q.state = 'pending' AND q.lease_owner IS NOT NULL AND q.next_attempt_at > now()),
           count(*) FILTER (WHERE q.state = 'dead'),
           coalesce(extract(epoch FROM now() - min(q.next_attempt_at)
                                                FILTER (WHERE q.state = 'pending' AND q.next_attempt_at <= now())), 0)::float8,
           count(*) FILTER (WHERE q.state IN ('held', 'waiting'))
      FROM q
$$;

CREATE VIEW hookline.queue_stats AS
SELECT pending, due_now, in_flight, dead, oldest_due_age_s, held FROM hookline.queue_stats_of(NULL);

COMMENT ON VIEW hookline.queue_stats IS 'The delivery queue right now: one row.';
COMMENT ON COLUMN hookline.queue_stats.pending IS 'Deliveries waiting for their next attempt, due or not, held ones included (not in-flight ones).';
COMMENT ON COLUMN hookline.queue_stats.due_now IS 'Pending deliveries whose next attempt is due (including expired leases).';
COMMENT ON COLUMN hookline.queue_stats.in_flight IS 'Deliveries a worker holds under an unexpired lease.';
COMMENT ON COLUMN hookline.queue_stats.dead IS 'Deliveries in the dead-letter queue.';
COMMENT ON COLUMN hookline.queue_stats.oldest_due_age_s IS 'Seconds the longest-waiting due delivery has been due; 0 when none.';
COMMENT ON COLUMN hookline.queue_stats.held IS 'Of the pending ones, those waiting for their endpoint (max_in_flight reached, circuit not closed, or the endpoint stalled) or behind an earlier delivery of their ordered lane.';
