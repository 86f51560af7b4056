-- Batching and ordering combine (issue 13): a batch of an ordered endpoint
-- carries each lane's head and the deliveries waiting behind it, in order
-- (hookline.claim_lane_followers in sql/065_batching.sql).
ALTER TABLE hookline.endpoints DROP CONSTRAINT endpoints_batch_unordered;
