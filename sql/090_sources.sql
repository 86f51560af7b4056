-- Source bookkeeping that must hold however a source is changed (API or
-- plain SQL): updated_at follows every update.
CREATE OR REPLACE FUNCTION hookline.sources_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS sources_touch ON hookline.sources;
CREATE TRIGGER sources_touch
    BEFORE UPDATE ON hookline.sources
    FOR EACH ROW EXECUTE FUNCTION hookline.sources_touch();
