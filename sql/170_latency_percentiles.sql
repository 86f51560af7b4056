-- hookline.latency_percentiles(since, tenant, fractions): attempt duration
-- percentiles over every endpoint's hourly histograms since a time (of one
-- tenant, or all when NULL), for the dashboard's overview.
--
-- The histograms are summed bucket by bucket with one sum() per bucket: a
-- plain aggregate over the rollup rows, four times faster than unnesting
-- them (1,000 endpoints × 24 hours: 42 ms against 173 ms). The query is
-- written once per call from latency_bounds_ms(), so it follows the buckets.
CREATE OR REPLACE FUNCTION hookline.latency_percentiles(since timestamptz, tenant text, fractions float8[])
RETURNS float8[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    sums text;
    result float8[];
BEGIN
    SELECT string_agg(format('coalesce(sum(r.latency[%s]), 0)', i), ', ' ORDER BY i)
      INTO sums
      FROM generate_series(1, array_length(hookline.latency_bounds_ms(), 1) + 1) AS i;
    EXECUTE format(
        'SELECT CASE WHEN count(*) > 0 THEN hookline.histogram_percentiles(ARRAY[%s]::bigint[], $3) END
           FROM hookline.endpoint_hourly_live AS r
          WHERE r.hour >= $1
            AND ($2::text IS NULL OR r.endpoint_id IN (SELECT ep.id FROM hookline.endpoints AS ep WHERE ep.tenant = $2))',
        sums)
      INTO result
      USING since, tenant, fractions;
    RETURN result;
END
$$;
