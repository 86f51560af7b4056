-- Transformations now work on batching endpoints too (each element of the
-- batch is what the template writes for its event).
ALTER TABLE hookline.endpoints DROP CONSTRAINT endpoints_transformation_unbatched;
