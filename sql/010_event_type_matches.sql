-- hookline.event_type_matches(patterns, event_type): does an endpoint's filter
-- accept an event type? Patterns are exact names or a trailing wildcard
-- (`order.*` matches `order.created` and `order.item.added`, not `order`);
-- `*` alone and an empty list accept everything.
--
-- The fan-out trigger (020) does not call this: it matches against the
-- endpoints' precomputed `event_types_like` column with the same rule.
CREATE OR REPLACE FUNCTION hookline.event_type_matches(patterns text[], event_type text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT event_type LIKE ANY (hookline.event_type_like_patterns(patterns))
$$;
