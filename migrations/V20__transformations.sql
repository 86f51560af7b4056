-- Transformations (issue 12): an endpoint's minijinja template writes the
-- request body (src/domain/transform.rs). Compiled by the API before it is
-- stored; a template that fails at delivery time is an attempt that failed
-- with error kind `transformation`, retried on the endpoint's schedule.
ALTER TABLE hookline.endpoints
    ADD COLUMN transformation text,
    ADD CONSTRAINT endpoints_transformation_length CHECK (octet_length(transformation) <= 65536),
    -- Not yet: each envelope of a batch would need its own rendering.
    ADD CONSTRAINT endpoints_transformation_unbatched CHECK (transformation IS NULL OR batch_max_events IS NULL);

ALTER TYPE hookline.error_kind ADD VALUE IF NOT EXISTS 'transformation';
