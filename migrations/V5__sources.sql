-- Inbound webhooks: sources that third parties (payment providers, GitHub,
-- other hookline instances) send to at POST /in/{name}. A verified request
-- becomes an event (source `inbound:<name>`) and fans out like any other;
-- a provider's retry of a delivery id it already sent is stored once, through
-- the events' idempotency keys.

CREATE TABLE hookline.sources (
    id                    uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    tenant                text        NOT NULL DEFAULT 'default',
    -- The receiver's path, /in/{name}: unique across tenants.
    name                  text        NOT NULL,
    description           text        NOT NULL DEFAULT '',
    -- standard_webhooks | hmac_sha256 | stripe | none
    scheme                text        NOT NULL,
    -- The shared secret (or, for standard_webhooks v1a, the sender's whpk_
    -- public key); required unless scheme is none. Never shown by the API.
    secret                text,
    -- hmac_sha256: the header carrying the signature (default X-Hub-Signature-256).
    signature_header      text,
    -- hmac_sha256: how it is written.
    signature_encoding    text        NOT NULL DEFAULT 'hex',
    -- The header with the provider's delivery id, to store retries once
    -- (default: the scheme's own, webhook-id or a Stripe event's id).
    id_header             text,
    -- Signed timestamps further than this from now are refused (anti-replay).
    timestamp_tolerance_s integer     NOT NULL DEFAULT 300,
    -- What verified payloads are published as.
    event_type            text        NOT NULL,
    enabled               boolean     NOT NULL DEFAULT true,
    metadata              jsonb       NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sources_pkey PRIMARY KEY (id),
    CONSTRAINT sources_name_key UNIQUE (name),
    CONSTRAINT sources_name_format CHECK (name ~ '^[A-Za-z0-9_-]{1,100}$'),
    CONSTRAINT sources_scheme_valid CHECK (scheme IN ('standard_webhooks', 'hmac_sha256', 'stripe', 'none')),
    CONSTRAINT sources_secret_required CHECK (scheme = 'none' OR coalesce(secret, '') <> ''),
    CONSTRAINT sources_signature_encoding_valid CHECK (signature_encoding IN ('hex', 'base64')),
    CONSTRAINT sources_timestamp_tolerance_valid CHECK (timestamp_tolerance_s BETWEEN 1 AND 86400),
    CONSTRAINT sources_event_type_length CHECK (char_length(event_type) BETWEEN 1 AND 200),
    CONSTRAINT sources_tenant_length CHECK (char_length(tenant) BETWEEN 1 AND 100),
    CONSTRAINT sources_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

-- Source lists per tenant in creation order.
CREATE INDEX sources_tenant ON hookline.sources (tenant, id);

-- What each source's receiver saw. Every `serve` process counts in memory
-- and adds its counts here every second, so a flood of forged requests
-- costs one row update a second, not one per request.
CREATE TABLE hookline.source_state (
    source_id            uuid        NOT NULL,
    accepted             bigint      NOT NULL DEFAULT 0,
    duplicates           bigint      NOT NULL DEFAULT 0,
    failed_verifications bigint      NOT NULL DEFAULT 0,
    last_accepted_at     timestamptz,
    last_failed_at       timestamptz,
    -- Why the last refused request was refused (no secrets, no payload).
    last_failure         text,
    CONSTRAINT source_state_pkey PRIMARY KEY (source_id),
    CONSTRAINT source_state_source_fkey FOREIGN KEY (source_id)
        REFERENCES hookline.sources (id) ON DELETE CASCADE
) WITH (fillfactor = 50);
