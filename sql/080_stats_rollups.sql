-- The hourly rollups (hookline.endpoint_hourly, event_type_hourly; see the
-- migrations) that the statistics views read, how changes reach them, and
-- reading their latency histograms. Internal to hookline; dashboards use the
-- views.
--
-- The invariant: for every endpoint (or tenant and event type) and hour,
--     the true count = the rollup row + the sum of its rows in rollup_deltas.
-- Every statement that records an attempt or changes a delivery's state
-- (completions, claims that end or park a delivery, replays, cancels, an
-- endpoint's disabling or deletion) inserts its change into rollup_deltas in
-- the same transaction, as one row per group it touched. Inserts into that
-- unindexed table never wait for one another, so no two completions contend
-- on a counter row, whatever the load. hookline.fold_rollup_deltas() moves
-- the deltas into the rollups in one statement (delete and add together, so
-- the sum never changes); workers call it about once a second, one at a
-- time. The `*_live` views add what is not folded yet: readers always see
-- exact numbers, and a killed process loses nothing.

-- The rollups as they stand right now: folded rows plus pending deltas.
-- Filter on endpoint_id / hour (or hour / tenant / event_type): the filter
-- reaches the rollup through its key; the deltas are few.
DROP VIEW IF EXISTS hookline.endpoint_stats_24h;
DROP VIEW IF EXISTS hookline.delivery_stats_hourly;
DROP VIEW IF EXISTS hookline.endpoint_health;
DROP VIEW IF EXISTS hookline.endpoint_hourly_live;
CREATE VIEW hookline.endpoint_hourly_live AS
SELECT r.endpoint_id, r.hour, r.succeeded, r.dead, r.cancelled, r.attempts, r.failed_attempts, r.latency
  FROM hookline.endpoint_hourly AS r
UNION ALL
SELECT d.endpoint_id, d.created_hour, d.succeeded, d.dead, d.cancelled, 0, 0, '{}'::bigint[]
  FROM hookline.rollup_deltas AS d
 WHERE d.created_hour IS NOT NULL
UNION ALL
SELECT d.endpoint_id, d.attempt_hour, 0, 0, 0, d.attempts, d.failed_attempts, hookline.latency_histogram(d.durations_ms)
  FROM hookline.rollup_deltas AS d
 WHERE d.attempt_hour IS NOT NULL;

DROP VIEW IF EXISTS hookline.event_type_hourly_live;
CREATE VIEW hookline.event_type_hourly_live AS
SELECT r.hour, r.tenant, r.event_type, r.succeeded, r.dead, r.cancelled, r.attempts
  FROM hookline.event_type_hourly AS r
UNION ALL
SELECT d.created_hour, d.tenant, d.event_type, d.succeeded, d.dead, d.cancelled, d.finished_attempts
  FROM hookline.rollup_deltas AS d
 WHERE d.created_hour IS NOT NULL;

-- Folds every pending delta into the rollups and the endpoints' last
-- success and failure times; returns how many delta rows it folded. Safe to
-- run concurrently (each delta row is folded once), but workers take turns
-- through an advisory lock so they never wait on one another here.
-- Cost: one pass over the deltas, one upsert per rollup row they touch.
CREATE OR REPLACE FUNCTION hookline.fold_rollup_deltas() RETURNS bigint
LANGUAGE sql AS $$
    WITH folded AS (
        DELETE FROM hookline.rollup_deltas RETURNING *
    ),
    per_endpoint AS (
        INSERT INTO hookline.endpoint_hourly AS h
               (endpoint_id, hour, succeeded, dead, cancelled, attempts, failed_attempts, latency)
        SELECT x.endpoint_id, x.hour, sum(x.succeeded), sum(x.dead), sum(x.cancelled), sum(x.attempts),
               sum(x.failed_attempts),
               hookline.latency_histogram(coalesce(array_agg(x.duration_ms) FILTER (WHERE x.duration_ms IS NOT NULL), '{}'))
          FROM (SELECT f.endpoint_id, f.created_hour AS hour, f.succeeded, f.dead, f.cancelled,
                       0 AS attempts, 0 AS failed_attempts, NULL::integer AS duration_ms
                  FROM folded AS f WHERE f.created_hour IS NOT NULL
                UNION ALL
                SELECT f.endpoint_id, f.attempt_hour, 0, 0, 0, f.attempts, f.failed_attempts, NULL
                  FROM folded AS f WHERE f.attempt_hour IS NOT NULL
                UNION ALL
                SELECT f.endpoint_id, f.attempt_hour, 0, 0, 0, 0, 0, unnest(f.durations_ms)
                  FROM folded AS f WHERE f.attempt_hour IS NOT NULL) AS x
         GROUP BY x.endpoint_id, x.hour
         ORDER BY x.endpoint_id, x.hour
            ON CONFLICT (endpoint_id, hour) DO UPDATE
           SET succeeded = h.succeeded + excluded.succeeded,
               dead = h.dead + excluded.dead,
               cancelled = h.cancelled + excluded.cancelled,
               attempts = h.attempts + excluded.attempts,
               failed_attempts = h.failed_attempts + excluded.failed_attempts,
               latency = hookline.histogram_add(h.latency, excluded.latency)
    ),
    per_type AS (
        INSERT INTO hookline.event_type_hourly AS h (hour, tenant, event_type, succeeded, dead, cancelled, attempts)
        SELECT f.created_hour, f.tenant, f.event_type, sum(f.succeeded), sum(f.dead), sum(f.cancelled),
               sum(f.finished_attempts)
          FROM folded AS f
         WHERE f.created_hour IS NOT NULL
         GROUP BY 1, 2, 3
        HAVING sum(f.succeeded) <> 0 OR sum(f.dead) <> 0 OR sum(f.cancelled) <> 0 OR sum(f.finished_attempts) <> 0
         ORDER BY 1, 2, 3
            ON CONFLICT (hour, tenant, event_type) DO UPDATE
           SET succeeded = h.succeeded + excluded.succeeded,
               dead = h.dead + excluded.dead,
               cancelled = h.cancelled + excluded.cancelled,
               attempts = h.attempts + excluded.attempts
    ),
    last_seen AS (
        UPDATE hookline.endpoint_state AS s
           SET last_success_at = greatest(s.last_success_at, t.last_success_at),
               last_failure_at = greatest(s.last_failure_at, t.last_failure_at)
          FROM (SELECT f.endpoint_id, max(f.last_success_at) AS last_success_at, max(f.last_failure_at) AS last_failure_at
                  FROM folded AS f
                 WHERE f.last_success_at IS NOT NULL OR f.last_failure_at IS NOT NULL
                 GROUP BY f.endpoint_id
                 ORDER BY f.endpoint_id) AS t
         WHERE s.endpoint_id = t.endpoint_id
    )
    SELECT count(*) FROM folded
$$;

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
