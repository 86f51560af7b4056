-- hookline.endpoint_stats_24h (SPEC §4): per endpoint, deliveries created in
-- the last 24 hours by state, and attempt latency percentiles over the same
-- window. Cost: per endpoint, a range scan of deliveries_endpoint (ids are
-- UUIDv7, so "the last 24 hours" is an id range) and of attempts_endpoint_time
-- (an index-only scan thanks to its INCLUDE columns): proportional to one
-- day's traffic, not to the history.
DROP VIEW IF EXISTS hookline.endpoint_stats_24h;
CREATE VIEW hookline.endpoint_stats_24h AS
SELECT ep.id     AS endpoint_id,
       ep.tenant,
       ep.url,
       d.total,
       d.succeeded,
       d.dead,
       d.pending,
       CASE WHEN d.succeeded + d.dead > 0
            THEN round(d.succeeded::numeric / (d.succeeded + d.dead), 4) END AS success_rate,
       a.p50_ms,
       a.p95_ms,
       a.p99_ms
FROM hookline.endpoints AS ep
CROSS JOIN LATERAL (
    SELECT count(*)                                               AS total,
           count(*) FILTER (WHERE state = 'succeeded')            AS succeeded,
           count(*) FILTER (WHERE state = 'dead')                 AS dead,
           count(*) FILTER (WHERE state IN ('pending', 'in_flight')) AS pending
    FROM hookline.deliveries
    WHERE endpoint_id = ep.id
      AND id >= hookline.uuid_v7_floor(now() - interval '24 hours')
) AS d
CROSS JOIN LATERAL (
    SELECT percentile_cont(0.50) WITHIN GROUP (ORDER BY duration_ms)::float8 AS p50_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)::float8 AS p95_ms,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)::float8 AS p99_ms
    FROM hookline.attempts
    WHERE endpoint_id = ep.id
      AND started_at >= now() - interval '24 hours'
) AS a;

COMMENT ON VIEW hookline.endpoint_stats_24h IS 'Per endpoint: deliveries created in the last 24 hours and attempt latency.';
COMMENT ON COLUMN hookline.endpoint_stats_24h.total IS 'Deliveries created in the last 24 hours.';
COMMENT ON COLUMN hookline.endpoint_stats_24h.pending IS 'Of those, not finished yet (pending or in flight).';
COMMENT ON COLUMN hookline.endpoint_stats_24h.success_rate IS 'succeeded / (succeeded + dead); NULL before any finished.';
COMMENT ON COLUMN hookline.endpoint_stats_24h.p50_ms IS 'Median attempt duration in milliseconds over the last 24 hours.';
