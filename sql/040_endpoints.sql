-- An endpoint's URL as anything but the endpoint itself shows it: a
-- broker password (or a user name alone, a NATS token) as ********, as the
-- API does (src/api/validate.rs).
CREATE OR REPLACE FUNCTION hookline.shown_url(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN url ~ '^[a-z]+://[^/@]*:[^/@]*@' THEN regexp_replace(url, '^([a-z]+://[^/@:]*):[^/@]*@', '\1:********@')
        WHEN url ~ '^[a-z]+://[^/@]+@' THEN regexp_replace(url, '^([a-z]+://)[^/@]+@', '\1********@')
        ELSE url
    END
$$;

-- Endpoint bookkeeping that must hold however an endpoint is changed (API or
-- plain SQL):
-- * every endpoint has an endpoint_state row (health counters);
-- * updated_at follows every update;
-- * a plaintext secret suits the endpoint's signature (whsk_ for v1a);
-- * disabling stamps disabled_at, publishes an `endpoint.disabled` event
--   (source `hookline`) in the endpoint's tenant, and moves its waiting deliveries
--   (pending, held, or waiting in an ordered lane) to `dead` (reason in last_error, counted in
--   rollup_deltas) so the claim index never has to skip them; `recover`
--   can re-queue them later. Rows a worker is claiming at that moment are
--   skipped, not waited for (a claim may be waiting on this endpoint's state
--   row, which a completion disabling it holds). Enabling clears the reason, the failure run and the circuit,
--   and releases rows a claim was holding meanwhile; a new rate limit
--   restarts the endpoint's pacing; a new ordering_on_dead lets its lanes
--   move on past dead deliveries, or stop at them (sql/058_ordering.sql).
--   (The queue has no index on endpoint_id, to keep claims cheap: these rare
--   operations scan it.)

-- A new `v1a` private key: `whsk_` and a 32-byte seed (src/signing.rs),
-- the same 32 random bytes a `whsec_` secret gets.
CREATE OR REPLACE FUNCTION hookline.new_private_key() RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT 'whsk_' || substr(hookline.new_secret(), length('whsec_') + 1)
$$;

-- A new secret of the kind `signature` signs with.
CREATE OR REPLACE FUNCTION hookline.new_secret_for(signature text) RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT CASE WHEN signature = 'v1a' THEN hookline.new_private_key() ELSE hookline.new_secret() END
$$;

-- Whether a plaintext secret is of the wrong kind for `signature` (a
-- sealed one cannot be told apart here: NULL).
CREATE OR REPLACE FUNCTION hookline.secret_mismatched(secret text, signature text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN secret LIKE 'whsk\_%' THEN signature <> 'v1a'
                WHEN secret LIKE 'whsec\_%' THEN signature = 'v1a' END
$$;

CREATE OR REPLACE FUNCTION hookline.endpoints_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The secret suits the signature (whsk_ for v1a, whsec_ otherwise), as
    -- the API keeps it: a change of kind without a new secret gets one of
    -- the new kind (sealed or not, the old one cannot sign any more), as
    -- does an insert with the default whsec_ and signature 'v1a'; a secret
    -- of the wrong kind written on purpose is refused; a previous secret
    -- that cannot sign any more is dropped.
    IF TG_OP = 'UPDATE' AND (OLD.signature = 'v1a') <> (NEW.signature = 'v1a')
       AND NEW.secret IS NOT DISTINCT FROM OLD.secret THEN
        NEW.secret := hookline.new_secret_for(NEW.signature);
        NEW.previous_secret := NULL;
        NEW.previous_secret_expires_at := NULL;
    ELSIF TG_OP = 'INSERT' AND NEW.signature = 'v1a' AND NEW.secret LIKE 'whsec\_%' THEN
        NEW.secret := hookline.new_private_key();
    ELSIF hookline.secret_mismatched(NEW.secret, NEW.signature) THEN
        RAISE EXCEPTION 'hookline: a % secret does not suit signature %', split_part(NEW.secret, '_', 1), NEW.signature
              USING ERRCODE = 'check_violation',
                    HINT = 'hookline.new_secret_for(signature) makes one that does.';
    END IF;
    IF hookline.secret_mismatched(NEW.previous_secret, NEW.signature) THEN
        NEW.previous_secret := NULL;
        NEW.previous_secret_expires_at := NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
        IF OLD.enabled AND NOT NEW.enabled THEN
            NEW.disabled_at := coalesce(NEW.disabled_at, now());
            NEW.disabled_reason := coalesce(NEW.disabled_reason, 'disabled');
        ELSIF NEW.enabled AND NOT OLD.enabled THEN
            NEW.disabled_at := NULL;
            NEW.disabled_reason := NULL;
        END IF;
    ELSIF NOT NEW.enabled THEN
        NEW.disabled_at := coalesce(NEW.disabled_at, now());
        NEW.disabled_reason := coalesce(NEW.disabled_reason, 'disabled');
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS endpoints_before_write ON hookline.endpoints;
CREATE TRIGGER endpoints_before_write
    BEFORE INSERT OR UPDATE ON hookline.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookline.endpoints_before_write();

CREATE OR REPLACE FUNCTION hookline.endpoints_after_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO hookline.endpoint_state (endpoint_id) VALUES (NEW.id);
    ELSIF OLD.enabled AND NOT NEW.enabled THEN
        -- Rows in flight keep their lease; their outcome is recorded as usual.
        WITH waiting AS (
            SELECT delivery_id
              FROM hookline.delivery_queue
             WHERE endpoint_id = NEW.id AND state IN ('pending', 'held', 'waiting')
               AND (lease_owner IS NULL OR next_attempt_at <= now())
               FOR UPDATE SKIP LOCKED
        ),
        parked AS (
            UPDATE hookline.delivery_queue AS q
               SET state = 'dead', lease_owner = NULL
              FROM waiting AS w
             WHERE q.delivery_id = w.delivery_id
            RETURNING q.delivery_id
        ),
        history AS (
            UPDATE hookline.deliveries
               SET state = 'dead',
                   last_error = 'endpoint disabled: ' || NEW.disabled_reason,
                   completed_at = now()
             WHERE id IN (SELECT delivery_id FROM parked) AND state = 'pending'
            RETURNING tenant, event_type, created_at, attempts
        )
        INSERT INTO hookline.rollup_deltas
        SELECT t.*
          FROM history AS h
         CROSS JOIN LATERAL hookline.transition_delta(NEW.id, h.tenant, h.event_type, h.created_at,
                                                      'pending', 'dead', h.attempts, h.attempts) AS t;
        -- Tell whoever subscribes (an operator's endpoint, say).
        INSERT INTO hookline.events (tenant, event_type, payload, source)
        VALUES (NEW.tenant, 'endpoint.disabled',
                jsonb_build_object('endpoint_id', NEW.id, 'url', hookline.shown_url(NEW.url),
                                   'reason', NEW.disabled_reason, 'disabled_at', NEW.disabled_at),
                'hookline');
    ELSIF NEW.enabled AND NOT OLD.enabled THEN
        UPDATE hookline.endpoint_state
           SET consecutive_failures = 0, failed_attempts = 0, circuit_state = 'closed',
               circuit_cooldown_s = NULL, circuit_retry_at = NULL, circuit_probe_until = NULL,
               rate_tat = NULL, rate_horizon = NULL
         WHERE endpoint_id = NEW.id;
        -- Rows a claim held while the disabling parked the rest.
        UPDATE hookline.delivery_queue SET state = 'pending' WHERE endpoint_id = NEW.id AND state = 'held';
    ELSIF NEW.rate_limit_per_s IS DISTINCT FROM OLD.rate_limit_per_s THEN
        -- A new pace starts afresh; deliveries already given a later start keep it.
        UPDATE hookline.endpoint_state SET rate_tat = NULL, rate_horizon = NULL WHERE endpoint_id = NEW.id;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.enabled
       AND (NOT OLD.enabled OR NEW.ordering_on_dead IS DISTINCT FROM OLD.ordering_on_dead) THEN
        -- Enabled again (rows the disabling could not park may wait in their
        -- lanes), or dead deliveries now block their lanes, or no longer do.
        PERFORM hookline.advance_endpoint_lanes(NEW.id);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS endpoints_after_write ON hookline.endpoints;
CREATE TRIGGER endpoints_after_write
    AFTER INSERT OR UPDATE OF enabled, rate_limit_per_s, ordering_on_dead ON hookline.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookline.endpoints_after_write();

-- Deleting an endpoint cancels what is still queued for it; its history stays.
CREATE OR REPLACE FUNCTION hookline.endpoints_after_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH removed AS (
        DELETE FROM hookline.delivery_queue WHERE endpoint_id = OLD.id RETURNING delivery_id, state
    ),
    history AS (
        UPDATE hookline.deliveries
           SET state = 'cancelled', last_error = 'endpoint deleted', completed_at = now()
         WHERE id IN (SELECT delivery_id FROM removed WHERE state IN ('pending', 'held', 'waiting')) AND state = 'pending'
        RETURNING tenant, event_type, created_at, attempts
    )
    INSERT INTO hookline.rollup_deltas
    SELECT t.*
      FROM history AS h
     CROSS JOIN LATERAL hookline.transition_delta(OLD.id, h.tenant, h.event_type, h.created_at,
                                                  'pending', 'cancelled', h.attempts, h.attempts) AS t;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS endpoints_after_delete ON hookline.endpoints;
CREATE TRIGGER endpoints_after_delete
    AFTER DELETE ON hookline.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookline.endpoints_after_delete();

-- Since when an endpoint's circuit has been open (open or half-open, not
-- closed in between): what HOOKLINE_DISABLE_AFTER_OPEN measures. Fires only
-- when the circuit changes state, which is rare.
CREATE OR REPLACE FUNCTION hookline.endpoint_state_circuit_opened() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.circuit_opened_at := CASE WHEN NEW.circuit_state = 'closed' THEN NULL
                                  ELSE coalesce(OLD.circuit_opened_at, now()) END;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS endpoint_state_circuit_opened ON hookline.endpoint_state;
CREATE TRIGGER endpoint_state_circuit_opened
    BEFORE UPDATE OF circuit_state ON hookline.endpoint_state
    FOR EACH ROW WHEN (OLD.circuit_state IS DISTINCT FROM NEW.circuit_state)
    EXECUTE FUNCTION hookline.endpoint_state_circuit_opened();
