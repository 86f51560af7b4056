-- The tenant portal (`/portal`, issue 11): a one-time link for one tenant,
-- made by `POST /v1/portal/sessions`, that a customer's browser exchanges
-- once for a session. Both keys are stored as their SHA-256 only. The
-- session ends with its link (expiry, or deletion by cascade).
CREATE TABLE hookline.portal_links (
    id            uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    key_hash      bytea       NOT NULL,
    tenant        text        NOT NULL,
    -- What the portal lets the customer do besides looking.
    capabilities  text[]      NOT NULL,
    -- Only these endpoints (NULL: all of the tenant's, and new ones).
    endpoint_ids  uuid[],
    -- product_name, accent_color, logo_url.
    branding      jsonb       NOT NULL DEFAULT '{}',
    -- The API token that made the link: who answers for what it does. Its
    -- links and their sessions end with it.
    created_by    uuid        NOT NULL REFERENCES hookline.api_tokens (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    -- Set when the link was exchanged; a link works once.
    exchanged_at  timestamptz,
    CONSTRAINT portal_links_pkey PRIMARY KEY (id),
    CONSTRAINT portal_links_key_hash_key UNIQUE (key_hash),
    CONSTRAINT portal_links_capabilities_known
        CHECK (capabilities <@ ARRAY['manage_endpoints', 'reveal_secrets', 'replay']::text[])
);
CREATE INDEX portal_links_expires_at ON hookline.portal_links (expires_at);
CREATE INDEX portal_links_created_by ON hookline.portal_links (created_by);

CREATE TABLE hookline.portal_sessions (
    key_hash   bytea       NOT NULL,
    link_id    uuid        NOT NULL REFERENCES hookline.portal_links (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT portal_sessions_pkey PRIMARY KEY (key_hash)
);
CREATE INDEX portal_sessions_link ON hookline.portal_sessions (link_id);
