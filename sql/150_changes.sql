-- hookline_changes: a NOTIFY at commit whenever a table that `serve`
-- processes remember lookups of (API tokens, inbound sources) changes, with
-- the table's name as the payload. Each serve process LISTENs and forgets
-- what it remembered of that table, so a deleted token or a disabled
-- source stops working everywhere at once, not after its time to live.
--
-- Per statement, not per row: these tables change by hand or through the
-- API, rarely, and a change of any row forgets them all (lookups are
-- cheap; telling which remembered key a row stood for is not: tokens are
-- remembered by hash). INSERTs count too: a name looked up before it
-- existed is remembered as unknown.

CREATE OR REPLACE FUNCTION hookline.notify_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookline_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS api_tokens_changed ON hookline.api_tokens;
CREATE TRIGGER api_tokens_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hookline.api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION hookline.notify_changed();

DROP TRIGGER IF EXISTS sources_changed ON hookline.sources;
CREATE TRIGGER sources_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hookline.sources
    FOR EACH STATEMENT EXECUTE FUNCTION hookline.notify_changed();
