-- Counting an endpoint's deliveries in flight across all workers, for
-- max_in_flight (internal to hookline: the claim and completion use these).
-- See hookline.lease_batch in the migrations. Each call is a pass over the
-- live batches of one endpoint: a handful of elements. `at` is the clock
-- (now(), or a test's).

DROP FUNCTION IF EXISTS hookline.lease_batches_live(hookline.lease_batch[], timestamptz);
DROP FUNCTION IF EXISTS hookline.lease_batches_add(hookline.lease_batch[], timestamptz, integer, timestamptz);
DROP FUNCTION IF EXISTS hookline.lease_batches_end(hookline.lease_batch[], timestamptz[], timestamptz);

-- Deliveries whose lease has not run out.
CREATE FUNCTION hookline.lease_batches_live(batches hookline.lease_batch[], at timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(sum(b.n), 0)::integer FROM unnest(batches) AS b WHERE b.until > at
$$;

-- `batches` plus `added` deliveries leased until `ends`; expired batches dropped.
CREATE FUNCTION hookline.lease_batches_add(batches hookline.lease_batch[], ends timestamptz, added integer, at timestamptz)
RETURNS hookline.lease_batch[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(ROW(b.until, b.n)::hookline.lease_batch ORDER BY b.until), '{}')
      FROM (SELECT l.until, sum(l.n)::integer AS n
              FROM (SELECT * FROM unnest(batches)
                    UNION ALL
                    SELECT ends, added WHERE added > 0) AS l
             WHERE l.until > at
             GROUP BY l.until) AS b
$$;

-- `batches` less one delivery for each element of `ended` (the lease end it
-- was claimed with); expired and emptied batches dropped.
CREATE FUNCTION hookline.lease_batches_end(batches hookline.lease_batch[], ended timestamptz[], at timestamptz)
RETURNS hookline.lease_batch[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(ROW(b.until, b.n - coalesce(e.n, 0))::hookline.lease_batch ORDER BY b.until), '{}')
      FROM unnest(batches) AS b
      LEFT JOIN (SELECT u, count(*)::integer AS n FROM unnest(ended) AS u GROUP BY u) AS e ON e.u = b.until
     WHERE b.until > at AND b.n > coalesce(e.n, 0)
$$;
