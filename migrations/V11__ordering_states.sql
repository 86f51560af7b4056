-- FIFO ordering (issue 13): a queue row of an ordered lane that may not go
-- yet — an earlier delivery of its lane is still open — waits out of the
-- due index until that one ends. (Its own migration: a new enum value
-- cannot be used in the transaction that adds it.)
ALTER TYPE hookline.queue_state ADD VALUE IF NOT EXISTS 'waiting';
