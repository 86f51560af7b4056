-- What a security review found (issue 9), in the tables.

-- A secret that cannot sign used to be skipped, and the delivery sent
-- unsigned. Now the worker refuses to send (error_kind `invalid_secret`),
-- and the table refuses such secrets in the first place: `whsec_` and
-- canonical base64 of 24 to 64 bytes, exactly what the worker can sign with.
CREATE FUNCTION hookline.secret_is_valid(secret text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN secret ~ '^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
                THEN octet_length(decode(substr(secret, 7), 'base64')) BETWEEN 24 AND 64
                ELSE false END
$$;

ALTER TABLE hookline.endpoints
    DROP CONSTRAINT endpoints_secret_format,
    ADD CONSTRAINT endpoints_secret_valid CHECK (hookline.secret_is_valid(secret)) NOT VALID,
    ADD CONSTRAINT endpoints_previous_secret_valid
        CHECK (previous_secret IS NULL OR hookline.secret_is_valid(previous_secret)) NOT VALID;

-- Rows written before these checks are validated when they pass; an
-- installation holding a secret that cannot sign keeps the checks for new
-- and changed rows only, and those endpoints' attempts fail `invalid_secret`
-- until a new secret is set (rotate-secret).
DO $$
DECLARE
    constraint_name text;
BEGIN
    FOREACH constraint_name IN ARRAY ARRAY['endpoints_secret_valid', 'endpoints_previous_secret_valid'] LOOP
        BEGIN
            EXECUTE format('ALTER TABLE hookline.endpoints VALIDATE CONSTRAINT %I', constraint_name);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'hookline: some endpoints hold a secret that cannot sign (%); rotate their secrets',
                constraint_name;
        END;
    END LOOP;
END
$$;

ALTER TABLE hookline.attempts
    DROP CONSTRAINT attempts_error_kind_valid,
    ADD CONSTRAINT attempts_error_kind_valid CHECK (error_kind IN (
        'dns', 'connect', 'tls', 'timeout', 'http_status',
        'invalid_url', 'blocked_address', 'body_too_large', 'invalid_secret'));
