-- hookline.endpoint_health (SPEC §4): one row per endpoint with its current
-- delivery health. Cost: a join of endpoints and endpoint_state, both one row
-- per endpoint, independent of history size, and of the (few) rollup deltas
-- not folded yet, which hold the newest success and failure times.
DROP VIEW IF EXISTS hookline.endpoint_health;
CREATE VIEW hookline.endpoint_health AS
SELECT ep.id                                  AS endpoint_id,
       ep.tenant,
       hookline.shown_url(ep.url) AS url,
       ep.enabled,
       ep.disabled_reason,
       coalesce(st.consecutive_failures, 0)   AS consecutive_failures,
       greatest(st.last_success_at, d.last_success_at) AS last_success_at,
       greatest(st.last_failure_at, d.last_failure_at) AS last_failure_at,
       CASE WHEN NOT ep.enabled THEN 'open' ELSE coalesce(st.circuit_state, 'closed') END AS circuit_state,
       coalesce(st.failed_attempts, 0)        AS failed_attempts,
       CASE WHEN ep.enabled AND st.circuit_state = 'open' THEN st.circuit_retry_at END AS circuit_retry_at
FROM hookline.endpoints AS ep
LEFT JOIN hookline.endpoint_state AS st ON st.endpoint_id = ep.id
LEFT JOIN (SELECT r.endpoint_id, max(r.last_success_at) AS last_success_at, max(r.last_failure_at) AS last_failure_at
             FROM hookline.rollup_deltas AS r
            GROUP BY r.endpoint_id) AS d ON d.endpoint_id = ep.id;

COMMENT ON VIEW hookline.endpoint_health IS 'Per endpoint: enabled state, the current run of failed deliveries, and the circuit breaker.';
COMMENT ON COLUMN hookline.endpoint_health.consecutive_failures IS 'Failed deliveries (dead, not single attempts) since the last success.';
COMMENT ON COLUMN hookline.endpoint_health.circuit_state IS 'closed (delivering), open (not delivering: disabled, or the breaker tripped) or half_open (one probe in flight).';
COMMENT ON COLUMN hookline.endpoint_health.failed_attempts IS 'Failed attempts in a row (network errors, timeouts, 5xx, 429): what trips the breaker.';
COMMENT ON COLUMN hookline.endpoint_health.circuit_retry_at IS 'While the breaker is open: when a probe may go.';
