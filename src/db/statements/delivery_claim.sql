-- hookline: claim. A worker takes due deliveries under a lease, in one
-- statement (see DELIVERY_CLAIM in src/db/deliveries.rs for the parameters).
--
-- Due candidates are locked in due order, skipping rows other workers are
-- claiming (FOR UPDATE SKIP LOCKED), and each gets a hookline.claim_action
-- (hookline.plain_claim_action): `claim` within its endpoint's room in this
-- worker's share and the worker's free slots; `limit` when its endpoint has
-- a limit or an unclosed circuit, is gone, or stalled past its share, or its
-- event is gone, or it is in an ordered lane (sql/058_ordering.sql) — those ids go back to the worker, which hands them to
-- hookline.claim_limited; `leave` otherwise. So an endpoint without limits
-- costs this one statement and nothing else. The same statement keeps the
-- worker's entry in hookline.idle_workers as asked ($10: true registers,
-- false deregisters, NULL leaves it) and reports when the next pending
-- delivery falls due.
--
-- A candidate with a lease owner is a lost lease (its worker died): it is
-- taken over without counting a new attempt, and returned with when the
-- lost attempt began and ended and how many attempts were lost before, for
-- the worker to record the loss instead of sending (src/domain/delivery.rs).
--
-- Returns the claimed deliveries with all their requests need, then one
-- last row with no delivery: the `limit` candidates and the seconds until
-- the next due delivery (NULL: none pending).
WITH candidate AS MATERIALIZED (
    SELECT q.delivery_id, q.event_id, q.endpoint_id, q.next_attempt_at, q.lease_owner IS NOT NULL AS lost,
           q.lane IS NOT NULL AS ordered
      FROM hookline.delivery_queue AS q
     WHERE q.state = 'pending' AND q.next_attempt_at <= coalesce($9::timestamptz, now())
     ORDER BY q.next_attempt_at
     LIMIT $3::integer
       FOR UPDATE SKIP LOCKED
),
decided AS MATERIALIZED (
    SELECT j.delivery_id, j.lease_s, j.next_attempt_at, j.lost,
           hookline.plain_claim_action(
               j.orphan, j.limited, j.in_share,
               count(*) FILTER (WHERE NOT j.orphan AND NOT j.limited AND j.in_share)
                   OVER (ORDER BY j.next_attempt_at, j.delivery_id) <= $2::integer,
               j.stalled) AS action
      FROM (SELECT c.delivery_id, c.next_attempt_at, c.lost,
                   ep.id IS NULL OR e.id IS NULL AS orphan,
                   coalesce(NOT ep.enabled OR ep.max_in_flight IS NOT NULL OR ep.rate_limit_per_s IS NOT NULL
                            OR s.circuit_state <> 'closed', false) OR c.ordered AS limited,
                   row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.delivery_id)
                       <= coalesce(b.room, $5) AS in_share,
                   c.endpoint_id = ANY ($8::uuid[]) AS stalled,
                   least(ep.timeout_ms / 1000.0 + 5, $4::float8) AS lease_s
              FROM candidate AS c
              LEFT JOIN hookline.endpoints AS ep ON ep.id = c.endpoint_id
              LEFT JOIN hookline.endpoint_state AS s ON s.endpoint_id = c.endpoint_id
              LEFT JOIN hookline.events AS e ON e.id = c.event_id
              LEFT JOIN unnest($6::uuid[], $7::integer[]) AS b(endpoint_id, room) ON b.endpoint_id = c.endpoint_id
           ) AS j
),
claimed AS (
    UPDATE hookline.delivery_queue AS q
       SET next_attempt_at = coalesce($9::timestamptz, now()) + make_interval(secs => d.lease_s),
           lease_owner = $1,
           attempts = q.attempts + CASE WHEN d.lost THEN 0 ELSE 1 END
      FROM decided AS d
     WHERE q.delivery_id = d.delivery_id AND d.action = 'claim'
    RETURNING q.delivery_id, q.event_id, q.endpoint_id, q.attempts, q.next_attempt_at,
              CASE WHEN d.lost THEN d.next_attempt_at END AS lost_at, d.lease_s
),
registered AS (
    INSERT INTO hookline.idle_workers (worker_id)
    SELECT $1 WHERE $10::boolean
        ON CONFLICT (worker_id) DO NOTHING
),
deregistered AS (
    DELETE FROM hookline.idle_workers WHERE worker_id = $1 AND NOT $10::boolean
)
SELECT cl.delivery_id, cl.attempts AS attempt, cl.next_attempt_at AS lease_until,
       e.id AS event_id, e.event_type, e.created_at AS event_created_at, e.payload::text AS payload,
       ep.id AS endpoint_id, ep.url, ep.http_method, ep.headers, ep.timeout_ms, ep.retry_schedule, ep.secret,
       CASE WHEN ep.previous_secret_expires_at > coalesce($9::timestamptz, now()) THEN ep.previous_secret END
           AS previous_secret,
       cl.lost_at - make_interval(secs => cl.lease_s) AS lost_since, cl.lost_at,
       CASE WHEN cl.lost_at IS NOT NULL THEN hookline.worker_losses(cl.delivery_id) END AS worker_losses,
       false AS circuit_expired, NULL::bigint AS lane,
       ep.batch_max_events, ep.batch_max_bytes, ep.batch_format,
       ep.signature, ep.signature_header, ep.signature_hash, e.tenant, ep.transformation,
       NULL::uuid[] AS limited, NULL::float8 AS next_due_s
  FROM claimed AS cl
  JOIN hookline.events AS e ON e.id = cl.event_id
  JOIN hookline.endpoints AS ep ON ep.id = cl.endpoint_id
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT array_agg(d.delivery_id ORDER BY d.next_attempt_at, d.delivery_id)
          FROM decided AS d WHERE d.action = 'limit'),
       (SELECT extract(epoch FROM min(q.next_attempt_at) - coalesce($9::timestamptz, now()))::float8
          FROM hookline.delivery_queue AS q
         WHERE q.state = 'pending'
           AND q.delivery_id NOT IN (SELECT d.delivery_id FROM decided AS d WHERE d.action = 'claim'))
