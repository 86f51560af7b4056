-- hookline.endpoint_health (SPEC §4): one row per endpoint with its current
-- delivery health. Cost: a join of endpoints and endpoint_state, both one row
-- per endpoint, independent of history size.
DROP VIEW IF EXISTS hookline.endpoint_health;
CREATE VIEW hookline.endpoint_health AS
SELECT ep.id                                  AS endpoint_id,
       ep.tenant,
       ep.url,
       ep.enabled,
       ep.disabled_reason,
       coalesce(st.consecutive_failures, 0)   AS consecutive_failures,
       st.last_success_at,
       st.last_failure_at,
       CASE WHEN NOT ep.enabled THEN 'open' ELSE 'closed' END AS circuit_state
FROM hookline.endpoints AS ep
LEFT JOIN hookline.endpoint_state AS st ON st.endpoint_id = ep.id;

COMMENT ON VIEW hookline.endpoint_health IS 'Per endpoint: enabled state and the current run of failed deliveries.';
COMMENT ON COLUMN hookline.endpoint_health.consecutive_failures IS 'Failed deliveries (dead, not single attempts) since the last success.';
COMMENT ON COLUMN hookline.endpoint_health.circuit_state IS 'closed (delivering), open (not delivering) or half_open (probing).';
