-- Browser sessions of the operator dashboard (`/ui`, issue 11). Signing in
-- with an API token opens one; the browser keeps its key in a cookie and the
-- database keeps only the key's SHA-256, as for tokens. A session acts with
-- exactly its token's scope and tenant, and ends with the token (cascade).
-- Idle and absolute lifetimes are enforced on every read and the expired
-- rows deleted by the workers' housekeeping.
CREATE TABLE hookline.ui_sessions (
    key_hash     bytea       NOT NULL,
    token_id     uuid        NOT NULL REFERENCES hookline.api_tokens (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ui_sessions_pkey PRIMARY KEY (key_hash)
);
CREATE INDEX ui_sessions_token ON hookline.ui_sessions (token_id);
CREATE INDEX ui_sessions_last_seen ON hookline.ui_sessions (last_seen_at);
