-- The batch index (hookline.batch_candidates, sql/065_batching.sql) holds
-- only what a batch may still take: unleased rows outside ordered lanes.
-- A claim's lease then writes no entry into it (an UPDATE adds index
-- entries only where the new row meets the index's predicate), so every
-- claimed row of a batching endpoint costs one index insert less; ordered
-- rows, which follow their lane heads through delivery_queue_lane, none.
CREATE INDEX delivery_queue_batch_unleased ON hookline.delivery_queue (endpoint_id, next_attempt_at)
    WHERE state = 'pending' AND batched AND lease_owner IS NULL AND lane IS NULL;
DROP INDEX hookline.delivery_queue_batch;
ALTER INDEX hookline.delivery_queue_batch_unleased RENAME TO delivery_queue_batch;
