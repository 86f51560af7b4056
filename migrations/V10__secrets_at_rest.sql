-- Endpoint secrets sealed at rest (issue 14): hookline stores
-- `aes256gcm:<key id>:<base64url>` (see src/secrets.rs), which the
-- database cannot open nor check beyond its form. A plaintext `whsec_`
-- secret (from SQL, or from before keys) stays valid until a worker seals it.
CREATE OR REPLACE FUNCTION hookline.secret_is_valid(secret text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN secret ~ '^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
                THEN octet_length(decode(substr(secret, 7), 'base64')) BETWEEN 24 AND 64
                ELSE secret ~ '^aes256gcm:[0-9a-f]{8}:[A-Za-z0-9_-]{40,}$' END
$$;

-- The endpoints whose secrets still wait to be sealed: the workers look
-- for them every few seconds, and this keeps that look free of a scan.
CREATE INDEX endpoints_unsealed ON hookline.endpoints (id)
    WHERE secret NOT LIKE 'aes256gcm:%' OR previous_secret NOT LIKE 'aes256gcm:%';
