-- The HTTP API's own state: bearer tokens and the audit log.

-- Tokens are shown once at creation; only their SHA-256 is stored. A token
-- bound to a tenant sees and changes only that tenant's objects.
CREATE TABLE hookline.api_tokens (
    id         uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    name       text        NOT NULL,
    scope      text        NOT NULL,
    tenant     text,
    token_hash bytea       NOT NULL,
    -- The token's first characters, to recognise it in lists (`hl_AbCd…`).
    prefix     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT api_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT api_tokens_scope_valid CHECK (scope IN ('read', 'write', 'admin')),
    CONSTRAINT api_tokens_name_length CHECK (char_length(name) BETWEEN 1 AND 200)
);

-- Every mutation through the API: who, what, when, and the object before and
-- after (secrets removed).
CREATE TABLE hookline.audit_log (
    id          uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    at          timestamptz NOT NULL DEFAULT now(),
    token_id    uuid,
    token_name  text        NOT NULL,
    tenant      text,
    action      text        NOT NULL,
    object_type text        NOT NULL,
    object_id   text,
    before      jsonb,
    after       jsonb,
    CONSTRAINT audit_log_pkey PRIMARY KEY (id)
);

-- Event lists are per tenant, newest first (a type filter scans within the
-- tenant: one index per event costs producers enough already).
CREATE INDEX events_tenant ON hookline.events (tenant, id);
-- Endpoint lists per tenant in creation order.
CREATE INDEX endpoints_tenant ON hookline.endpoints (tenant, id);

-- /metrics reads the last minutes of attempts. Attempts arrive in time order,
-- so a BRIN index finds them for a few bytes per block range, where a B-tree
-- would cost every attempt another index entry.
CREATE INDEX attempts_started_brin ON hookline.attempts USING brin (started_at);
