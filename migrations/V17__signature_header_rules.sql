-- An `hmac_header` endpoint's header, as the API checks it, for writes from
-- SQL too: an HTTP token, and not a header hookline owns or that frames
-- the request (src/api/endpoints/rules.rs RESERVED_HEADERS).
ALTER TABLE hookline.endpoints
    ADD CONSTRAINT endpoints_signature_header_valid CHECK (
        signature_header ~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]{1,100}$'
        AND lower(signature_header) NOT IN (
            'content-type', 'content-length', 'host', 'user-agent', 'webhook-id', 'webhook-timestamp',
            'webhook-signature', 'transfer-encoding', 'connection', 'te', 'trailer', 'upgrade', 'expect',
            'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'proxy-connection'));
