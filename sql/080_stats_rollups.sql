-- Keeping the hourly rollups (hookline.endpoint_hourly, event_type_hourly;
-- see the migrations) that the statistics views read, and reading their
-- latency histograms. Internal to hookline; dashboards use the views.

-- Every statement that changes deliveries' states (completions, replays,
-- cancels, an endpoint's disabling or deletion) moves those deliveries
-- between the outcome counts of the hour they were created in. Cost: one
-- aggregation over the changed rows and one upsert per (endpoint, hour) and
-- per (hour, tenant, event type) whose counts changed; retries that leave a
-- delivery pending change no count and write nothing.
CREATE OR REPLACE FUNCTION hookline.deliveries_count_outcomes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The new rows counted in, the old ones out: a delivery whose state did
    -- not change cancels itself, and no join of the two is needed.
    WITH change AS (
        SELECT c.endpoint_id, c.tenant, c.event_type, date_trunc('hour', c.created_at, 'UTC') AS hour,
               sum(c.sign * (c.state = 'succeeded')::integer) AS succeeded,
               sum(c.sign * (c.state = 'dead')::integer) AS dead,
               sum(c.sign * (c.state = 'cancelled')::integer) AS cancelled,
               sum(c.sign * CASE WHEN c.state <> 'pending' THEN c.attempts ELSE 0 END) AS attempts
          FROM (SELECT n.endpoint_id, n.tenant, n.event_type, n.created_at, n.state, n.attempts, 1 AS sign
                  FROM changed_after AS n
                UNION ALL
                SELECT o.endpoint_id, o.tenant, o.event_type, o.created_at, o.state, o.attempts, -1
                  FROM changed_before AS o) AS c
         GROUP BY 1, 2, 3, 4
    ),
    moved AS (
        SELECT * FROM change AS c WHERE c.succeeded <> 0 OR c.dead <> 0 OR c.cancelled <> 0 OR c.attempts <> 0
    ),
    per_endpoint AS (
        INSERT INTO hookline.endpoint_hourly AS h (endpoint_id, hour, succeeded, dead, cancelled)
        SELECT c.endpoint_id, c.hour, sum(c.succeeded), sum(c.dead), sum(c.cancelled)
          FROM moved AS c
         GROUP BY 1, 2
        HAVING sum(c.succeeded) <> 0 OR sum(c.dead) <> 0 OR sum(c.cancelled) <> 0
         ORDER BY 1, 2
            ON CONFLICT (endpoint_id, hour) DO UPDATE
           SET succeeded = h.succeeded + excluded.succeeded,
               dead = h.dead + excluded.dead,
               cancelled = h.cancelled + excluded.cancelled
    )
    INSERT INTO hookline.event_type_hourly AS h (hour, tenant, event_type, succeeded, dead, cancelled, attempts)
    SELECT c.hour, c.tenant, c.event_type, sum(c.succeeded), sum(c.dead), sum(c.cancelled), sum(c.attempts)
      FROM moved AS c
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
        ON CONFLICT (hour, tenant, event_type) DO UPDATE
       SET succeeded = h.succeeded + excluded.succeeded,
           dead = h.dead + excluded.dead,
           cancelled = h.cancelled + excluded.cancelled,
           attempts = h.attempts + excluded.attempts;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS deliveries_count_outcomes ON hookline.deliveries;
CREATE TRIGGER deliveries_count_outcomes
    AFTER UPDATE ON hookline.deliveries
    REFERENCING OLD TABLE AS changed_before NEW TABLE AS changed_after
    FOR EACH STATEMENT
    EXECUTE FUNCTION hookline.deliveries_count_outcomes();

-- The durations (ms) below which each of `fractions` of a latency
-- histogram's attempts fall, interpolated within their bucket (so within
-- the bucket's width: about ±25% here); NULLs for an empty histogram.
-- Attempts of 300 s and more count as 300 s. One pass for all fractions.
CREATE OR REPLACE FUNCTION hookline.histogram_percentiles(histogram bigint[], fractions float8[]) RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH bucket AS (
        SELECT t.n,
               t.i,
               sum(t.n) OVER (ORDER BY t.i) AS up_to,
               sum(t.n) OVER () AS total,
               coalesce((hookline.latency_bounds_ms())[t.i - 1], 0) AS low,
               coalesce((hookline.latency_bounds_ms())[t.i], (hookline.latency_bounds_ms())[t.i - 1]) AS high
          FROM unnest(histogram) WITH ORDINALITY AS t(n, i)
    )
    SELECT array_agg(
               (SELECT (b.low + (b.high - b.low) * (f.fraction * b.total - (b.up_to - b.n)) / b.n)::float8
                  FROM bucket AS b
                 WHERE b.n > 0 AND b.up_to >= f.fraction * b.total
                 ORDER BY b.i
                 LIMIT 1)
               ORDER BY f.k)
      FROM unnest(fractions) WITH ORDINALITY AS f(fraction, k)
$$;
