-- Signatures per endpoint (issue 12): Standard Webhooks `v1` (the default),
-- or `hmac_header` for receivers built for the older convention: the
-- body's HMAC as `sha256=<hex>` (or `sha512=`) in one header, keyed by the
-- endpoint's secret. See src/signing.rs.
ALTER TABLE hookline.endpoints
    ADD COLUMN signature        text NOT NULL DEFAULT 'v1',
    -- hmac_header: the header (NULL: X-Hookline-Signature) and the hash.
    ADD COLUMN signature_header text,
    ADD COLUMN signature_hash   text NOT NULL DEFAULT 'sha256',
    ADD CONSTRAINT endpoints_signature_valid CHECK (signature IN ('v1', 'hmac_header')),
    ADD CONSTRAINT endpoints_signature_header_length CHECK (char_length(signature_header) BETWEEN 1 AND 100),
    ADD CONSTRAINT endpoints_signature_hash_valid CHECK (signature_hash IN ('sha256', 'sha512'));
