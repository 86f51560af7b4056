-- Standard Webhooks v1a (issue 12): an endpoint may sign with ed25519.
-- hookline holds the private key as the endpoint's secret, `whsk_` and a
-- 32-byte seed in base64 (64 bytes, seed and public key, as some libraries
-- write it, also do); receivers get the `whpk_` public key. Sealed at rest
-- like any secret (V10).
ALTER TABLE hookline.endpoints
    DROP CONSTRAINT endpoints_signature_valid,
    ADD CONSTRAINT endpoints_signature_valid CHECK (signature IN ('v1', 'v1a', 'hmac_header'));

CREATE OR REPLACE FUNCTION hookline.secret_is_valid(secret text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN secret ~ '^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
                THEN octet_length(decode(substr(secret, 7), 'base64')) BETWEEN 24 AND 64
                WHEN secret ~ '^whsk_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
                THEN octet_length(decode(substr(secret, 6), 'base64')) IN (32, 64)
                ELSE secret ~ '^aes256gcm:[0-9a-f]{8}:[A-Za-z0-9_-]{40,}$' END
$$;
