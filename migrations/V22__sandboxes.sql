-- Sandboxes (issue 12): a capture URL served by hookline itself
-- (`/sandbox/{token}`) with an endpoint delivering to it, so a developer can
-- see what hookline sends without a receiver of their own. Each keeps its
-- last 100 requests and expires 24 hours after it was made; the workers'
-- housekeeping deletes an expired one with its endpoint.
CREATE TABLE hookline.sandboxes (
    id          uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    tenant      text        NOT NULL,
    -- The capture URL's last segment: random, unguessable.
    token       text        NOT NULL,
    -- The endpoint made with it; NULL once that is deleted (the capture URL
    -- still records what anything else sends until the sandbox expires).
    endpoint_id uuid        REFERENCES hookline.endpoints (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CONSTRAINT sandboxes_pkey PRIMARY KEY (id),
    CONSTRAINT sandboxes_token_key UNIQUE (token)
);
CREATE INDEX sandboxes_endpoint ON hookline.sandboxes (endpoint_id);

CREATE TABLE hookline.sandbox_requests (
    id              uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    sandbox_id      uuid        NOT NULL REFERENCES hookline.sandboxes (id) ON DELETE CASCADE,
    received_at     timestamptz NOT NULL DEFAULT now(),
    method          text        NOT NULL,
    headers         jsonb       NOT NULL,
    body            text        NOT NULL,
    -- Whether the signature verifies with the endpoint's secret, and if not why.
    signature_valid boolean     NOT NULL,
    signature_error text,
    CONSTRAINT sandbox_requests_pkey PRIMARY KEY (id)
);
CREATE INDEX sandbox_requests_sandbox ON hookline.sandbox_requests (sandbox_id, id);
