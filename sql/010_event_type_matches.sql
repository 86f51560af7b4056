-- hookline.event_type_matches(patterns, event_type): does an endpoint's filter
-- accept an event type? Patterns are exact names or a trailing wildcard
-- (`order.*` matches `order.created` and `order.item.added`, not `order`);
-- `*` alone and an empty list accept everything.
--
-- Used by the fan-out trigger (020) for every (event, enabled endpoint of the
-- tenant) pair. A SQL function so the planner inlines it into the fan-out join.
CREATE OR REPLACE FUNCTION hookline.event_type_matches(patterns text[], event_type text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cardinality(patterns) = 0
        OR event_type = ANY (patterns)
        OR EXISTS (
            SELECT 1 FROM unnest(patterns) AS p
            WHERE p = '*'
               OR (right(p, 2) = '.*' AND starts_with(event_type, left(p, -1)))
        )
$$;
