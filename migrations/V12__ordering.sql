-- FIFO ordering per endpoint or per ordering key (issue 13).
--
-- An endpoint's `ordering` puts its deliveries in lanes: `endpoint`, one
-- lane; `key`, one lane per event `ordering_key` (events without a key are
-- not ordered); `none`, no lanes. A lane delivers one delivery at a time,
-- in its events' order, the next only after the one before succeeded, was
-- cancelled, or died (`ordering_on_dead`: `wait`, the default, keeps the
-- lane waiting for an operator to replay or cancel the dead one; `skip`
-- moves on). See sql/058_ordering.sql for how.
ALTER TABLE hookline.endpoints
    ADD COLUMN ordering text NOT NULL DEFAULT 'none',
    ADD COLUMN ordering_on_dead text NOT NULL DEFAULT 'wait',
    ADD CONSTRAINT endpoints_ordering_valid CHECK (ordering IN ('none', 'endpoint', 'key')),
    ADD CONSTRAINT endpoints_ordering_on_dead_valid CHECK (ordering_on_dead IN ('wait', 'skip'));

ALTER TABLE hookline.events
    ADD COLUMN ordering_key text,
    ADD CONSTRAINT events_ordering_key_length CHECK (char_length(ordering_key) BETWEEN 1 AND 200);

-- A queue row's lane (a hash of endpoint and key; NULL: not ordered) and
-- its place in it. Places come from one sequence, taken while the producer
-- holds its lanes' rows in ordering_lanes, so within a lane they follow
-- commit order.
ALTER TABLE hookline.delivery_queue
    ADD COLUMN lane bigint,
    ADD COLUMN lane_seq bigint;
-- A lane's rows in place order, its dead letters apart: a lane whose dead
-- letters do not block finds its head without stepping over them.
CREATE INDEX delivery_queue_lane ON hookline.delivery_queue (lane, lane_seq)
    WHERE lane IS NOT NULL AND state <> 'dead';
CREATE INDEX delivery_queue_lane_dead ON hookline.delivery_queue (lane, lane_seq)
    WHERE lane IS NOT NULL AND state = 'dead';
CREATE SEQUENCE hookline.lane_seq AS bigint;

-- One row per lane that took places lately: whatever takes a place in a
-- lane (a producer's fan-out, a replay, a recover) first updates the lane's
-- row here, so they take turns until each commits. Claims and completions
-- never touch it (they take the lane locks of sql/058_ordering.sql); a
-- worker only meets it when it produces an event itself (`endpoint.disabled`
-- to an ordered endpoint). Rows unused for a day are removed by the
-- workers; a lane's places do not depend on its row.
CREATE TABLE hookline.ordering_lanes (
    lane    bigint      NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ordering_lanes_pkey PRIMARY KEY (lane)
);
