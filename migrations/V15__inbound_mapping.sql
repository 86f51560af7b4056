-- Inbound mapping (issue 12): a source may take the event type from the
-- request — a header (`X-GitHub-Event`) or a JSON pointer into the payload
-- (`/type`) — behind a prefix (`github.`), and keep chosen request headers
-- with the payload. See src/inbound/mapping.rs.
ALTER TABLE hookline.sources
    -- A header name, or a JSON pointer (starting with `/`); NULL: the
    -- source's event_type always.
    ADD COLUMN event_type_from   text,
    ADD COLUMN event_type_prefix text   NOT NULL DEFAULT '',
    ADD COLUMN keep_headers      text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT sources_event_type_from_length CHECK (char_length(event_type_from) BETWEEN 1 AND 200),
    ADD CONSTRAINT sources_event_type_prefix_length CHECK (char_length(event_type_prefix) <= 100),
    ADD CONSTRAINT sources_keep_headers_count CHECK (cardinality(keep_headers) <= 20);
