-- A credential in an endpoint's URL (a broker's password or token, an
-- https URL's user info) is a secret: hookline stores it sealed in place,
-- percent-encoded (`amqp://app:aes256gcm%3A…@rabbit/`), and the workers
-- seal the plaintext ones SQL writes every few seconds, as they do signing
-- secrets. This keeps their look for those free of a scan.
CREATE INDEX endpoints_url_unsealed ON hookline.endpoints (id)
    WHERE url ~ '^[^:/?#]+://[^/?#@]+@' AND url !~ '^[^:/?#]+://[^/?#@]*aes256gcm%3A';
