-- hookline.source_stats: one row per inbound source with what its receiver
-- saw (counts reach it within about a second). Cost: a join of sources and
-- source_state, one row per source each.
DROP VIEW IF EXISTS hookline.source_stats;
CREATE VIEW hookline.source_stats AS
SELECT so.id                                 AS source_id,
       so.tenant,
       so.name,
       so.enabled,
       coalesce(st.accepted, 0)              AS accepted,
       coalesce(st.duplicates, 0)            AS duplicates,
       coalesce(st.failed_verifications, 0)  AS failed_verifications,
       st.last_accepted_at,
       st.last_failed_at,
       st.last_failure
FROM hookline.sources AS so
LEFT JOIN hookline.source_state AS st ON st.source_id = so.id;

COMMENT ON VIEW hookline.source_stats IS 'Per inbound source: requests accepted, duplicates stored once, and failed verifications.';
COMMENT ON COLUMN hookline.source_stats.accepted IS 'Verified requests stored as new events.';
COMMENT ON COLUMN hookline.source_stats.duplicates IS 'Verified requests whose delivery id was already stored (answered 2xx, not stored again).';
COMMENT ON COLUMN hookline.source_stats.failed_verifications IS 'Requests refused for a missing or bad signature (401) or a timestamp outside the tolerance (400).';
