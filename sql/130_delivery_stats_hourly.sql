-- hookline.delivery_stats_hourly (SPEC §4): per hour of creation, tenant and
-- event type, how many deliveries ended in each state and their mean number
-- of attempts. Cost: a scan of the deliveries it covers, so filter on `hour`
-- (e.g. `WHERE hour >= now() - interval '7 days'`) to keep it to that range.
DROP VIEW IF EXISTS hookline.delivery_stats_hourly;
CREATE VIEW hookline.delivery_stats_hourly AS
SELECT date_trunc('hour', created_at)                              AS hour,
       tenant,
       event_type,
       count(*)                                                    AS total,
       count(*) FILTER (WHERE state = 'succeeded')                 AS succeeded,
       count(*) FILTER (WHERE state = 'dead')                      AS dead,
       count(*) FILTER (WHERE state = 'cancelled')                 AS cancelled,
       count(*) FILTER (WHERE state IN ('pending', 'in_flight'))   AS pending,
       round(avg(attempts), 2)::float8                             AS mean_attempts
FROM hookline.deliveries
GROUP BY 1, 2, 3;

COMMENT ON VIEW hookline.delivery_stats_hourly IS 'Per hour of creation, tenant and event type: deliveries by state and mean attempts.';
COMMENT ON COLUMN hookline.delivery_stats_hourly.mean_attempts IS 'Average attempts per delivery (1 = delivered at the first try).';
