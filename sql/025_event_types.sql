-- Event payloads checked against their type's JSON Schema (the catalogue,
-- migrations/V21), inside PostgreSQL, so that SQL producers and the API meet
-- the same rules in the same transaction.
--
-- * hookline.schema_violation(schema, instance): the first place the
--   instance fails the schema, as (pointer, message), or NULL. It implements
--   draft 2020-12's validation keywords but not $dynamicRef, $anchor,
--   unevaluated*, or $ref outside the schema; the API refuses schemas that
--   use those (src/domain/schema.rs), so what it stores is checked exactly;
--   the triggers read `checked_schema`, the schema with its patterns
--   translated to mean in PostgreSQL what they mean in ECMA-262.
--   `format` and the content keywords are annotations, as the draft says.
-- * events_check_schemas (AFTER, per statement, fires before events_fan_out):
--   for each new event whose type (the tenant's own, else the shared one)
--   has `validation` warn or enforce: enforce refuses the statement with
--   SQLSTATE 23514 (check_violation) inside the producer's transaction;
--   warn accepts it and records the failure in event_schema_warnings.
-- * hookline.payload_violation(event_type, payload, tenant): the same check
--   without sending, for a producer that would rather ask first.
--
-- Cost for producers: one probe of a partial index per statement while no
-- type validates; then one catalogue probe per event, and the check itself.

CREATE OR REPLACE FUNCTION hookline.json_pointer_token(key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT replace(replace(key, '~', '~0'), '/', '~1')
$$;

-- A value for a message: its JSON text, cut short.
CREATE OR REPLACE FUNCTION hookline.json_excerpt(value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(value::text) > 60 THEN left(value::text, 57) || '...' ELSE value::text END
$$;

-- A schema a local `$ref` ("#", "#/$defs/name") points at in `root`.
CREATE OR REPLACE FUNCTION hookline.schema_at(root jsonb, ref text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT root #> coalesce(
        (SELECT array_agg(replace(replace(token, '~1', '/'), '~0', '~') ORDER BY nth)
           FROM unnest(string_to_array(substr(ref, 3), '/')) WITH ORDINALITY AS t(token, nth)
          WHERE ref LIKE '#/%'),
        '{}')
$$;

CREATE OR REPLACE FUNCTION hookline.schema_check(schema jsonb, instance jsonb, root jsonb, at text, depth integer)
RETURNS hookline.schema_violation
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    kind       text := jsonb_typeof(instance);
    failure    hookline.schema_violation;
    prop       text;
    names      jsonb;
    sub        jsonb;
    item       jsonb;
    number     numeric;
    size       integer;
    prefix     integer := 0;
    matched    boolean;
    passing    integer;
BEGIN
    IF jsonb_typeof(schema) = 'boolean' THEN
        IF schema = 'false'::jsonb THEN
            RETURN (at, 'no value is allowed here'::text);
        END IF;
        RETURN NULL;
    END IF;
    -- A schema that refers to itself with no step into the instance never
    -- ends: stop, and say where.
    IF depth > 64 THEN
        RETURN (at, 'nests deeper than 64 levels of the schema'::text);
    END IF;
    IF kind = 'number' THEN
        number := instance::numeric;
        IF number = trunc(number) THEN
            kind := 'integer';
        END IF;
    END IF;

    -- `?` finds a name in a list of them, or is the one name given.
    IF schema ? 'type' AND NOT (schema->'type' ? kind OR (kind = 'integer' AND schema->'type' ? 'number')) THEN
        RETURN (at, format('expected %s, got %s',
                           (SELECT string_agg(t, ' or ') FROM jsonb_array_elements_text(
                                CASE jsonb_typeof(schema->'type') WHEN 'array' THEN schema->'type'
                                     ELSE jsonb_build_array(schema->'type') END) AS t),
                           kind));
    END IF;
    IF schema ? 'enum' AND NOT EXISTS (SELECT FROM jsonb_array_elements(schema->'enum') AS e WHERE e = instance) THEN
        RETURN (at, format('%s is not one of %s', hookline.json_excerpt(instance), hookline.json_excerpt(schema->'enum')));
    END IF;
    IF schema ? 'const' AND schema->'const' IS DISTINCT FROM instance THEN
        RETURN (at, format('expected %s', hookline.json_excerpt(schema->'const')));
    END IF;

    -- The applicators, skipped together when a schema has none (most).
    IF schema ?| ARRAY['$ref', 'allOf', 'anyOf', 'oneOf', 'not', 'if'] THEN
        IF schema ? '$ref' THEN
            failure := hookline.schema_check(hookline.schema_at(root, schema->>'$ref'), instance, root, at, depth + 1);
            IF failure IS NOT NULL THEN RETURN failure; END IF;
        END IF;
        IF schema ? 'allOf' THEN
            FOR sub IN SELECT jsonb_array_elements(schema->'allOf') LOOP
                failure := hookline.schema_check(sub, instance, root, at, depth + 1);
                IF failure IS NOT NULL THEN RETURN failure; END IF;
            END LOOP;
        END IF;
        IF schema ? 'anyOf' THEN
            matched := false;
            FOR sub IN SELECT jsonb_array_elements(schema->'anyOf') LOOP
                IF hookline.schema_check(sub, instance, root, at, depth + 1) IS NULL THEN
                    matched := true;
                    EXIT;
                END IF;
            END LOOP;
            IF NOT matched THEN RETURN (at, 'matches none of the schemas in anyOf'::text); END IF;
        END IF;
        IF schema ? 'oneOf' THEN
            passing := 0;
            FOR sub IN SELECT jsonb_array_elements(schema->'oneOf') LOOP
                IF hookline.schema_check(sub, instance, root, at, depth + 1) IS NULL THEN
                    passing := passing + 1;
                END IF;
            END LOOP;
            IF passing = 0 THEN RETURN (at, 'matches none of the schemas in oneOf'::text); END IF;
            IF passing > 1 THEN RETURN (at, 'matches more than one of the schemas in oneOf'::text); END IF;
        END IF;
        IF schema ? 'not' AND hookline.schema_check(schema->'not', instance, root, at, depth + 1) IS NULL THEN
            RETURN (at, 'matches the schema in not'::text);
        END IF;
        IF schema ? 'if' THEN
            IF hookline.schema_check(schema->'if', instance, root, at, depth + 1) IS NULL THEN
                IF schema ? 'then' THEN
                    failure := hookline.schema_check(schema->'then', instance, root, at, depth + 1);
                END IF;
            ELSIF schema ? 'else' THEN
                failure := hookline.schema_check(schema->'else', instance, root, at, depth + 1);
            END IF;
            IF failure IS NOT NULL THEN RETURN failure; END IF;
        END IF;
    END IF;

    CASE kind
    WHEN 'integer', 'number' THEN
        IF number < (schema->>'minimum')::numeric THEN
            RETURN (at, format('%s is less than the minimum of %s', number, schema->>'minimum'));
        ELSIF number <= (schema->>'exclusiveMinimum')::numeric THEN
            RETURN (at, format('%s is not greater than %s', number, schema->>'exclusiveMinimum'));
        ELSIF number > (schema->>'maximum')::numeric THEN
            RETURN (at, format('%s is more than the maximum of %s', number, schema->>'maximum'));
        ELSIF number >= (schema->>'exclusiveMaximum')::numeric THEN
            RETURN (at, format('%s is not less than %s', number, schema->>'exclusiveMaximum'));
        ELSIF number % (schema->>'multipleOf')::numeric <> 0 THEN
            RETURN (at, format('%s is not a multiple of %s', number, schema->>'multipleOf'));
        END IF;

    WHEN 'string' THEN
        size := length(instance #>> '{}');
        IF size < (schema->>'minLength')::numeric THEN
            RETURN (at, format('is shorter than %s characters', schema->>'minLength'));
        ELSIF size > (schema->>'maxLength')::numeric THEN
            RETURN (at, format('is longer than %s characters', schema->>'maxLength'));
        ELSIF NOT (instance #>> '{}') ~ (schema->>'pattern') THEN
            RETURN (at, format('does not match the pattern %s', schema->'pattern'));
        END IF;

    WHEN 'array' THEN
        size := jsonb_array_length(instance);
        IF size < (schema->>'minItems')::numeric THEN
            RETURN (at, format('has fewer than %s items', schema->>'minItems'));
        ELSIF size > (schema->>'maxItems')::numeric THEN
            RETURN (at, format('has more than %s items', schema->>'maxItems'));
        END IF;
        IF schema ? 'prefixItems' THEN
            prefix := jsonb_array_length(schema->'prefixItems');
            FOR i IN 0 .. least(prefix, size) - 1 LOOP
                failure := hookline.schema_check(schema->'prefixItems'->i, instance->i, root, at || '/' || i, depth + 1);
                IF failure IS NOT NULL THEN RETURN failure; END IF;
            END LOOP;
        END IF;
        IF schema ? 'items' THEN
            FOR i IN prefix .. size - 1 LOOP
                failure := hookline.schema_check(schema->'items', instance->i, root, at || '/' || i, depth + 1);
                IF failure IS NOT NULL THEN RETURN failure; END IF;
            END LOOP;
        END IF;
        IF schema->'uniqueItems' = 'true'::jsonb
           AND (SELECT count(DISTINCT e) FROM jsonb_array_elements(instance) AS e) < size THEN
            RETURN (at, 'has items that are equal'::text);
        END IF;
        IF schema ? 'contains' THEN
            passing := 0;
            FOR item IN SELECT jsonb_array_elements(instance) LOOP
                IF hookline.schema_check(schema->'contains', item, root, at, depth + 1) IS NULL THEN
                    passing := passing + 1;
                END IF;
            END LOOP;
            IF passing < coalesce((schema->>'minContains')::numeric, 1) THEN
                RETURN (at, format('has fewer than %s items that match contains', coalesce(schema->>'minContains', '1')));
            ELSIF passing > (schema->>'maxContains')::numeric THEN
                RETURN (at, format('has more than %s items that match contains', schema->>'maxContains'));
            END IF;
        END IF;

    WHEN 'object' THEN
        -- The names of the instance's properties, asked of jsonpath (no
        -- query): a loop over them runs only when some are not in
        -- `properties`, or a rule applies to every one.
        names := jsonb_path_query_array(instance, '$.keyvalue().key');
        IF schema ? 'required' AND NOT schema->'required' <@ names THEN
            FOR prop IN SELECT jsonb_array_elements_text(schema->'required') LOOP
                IF NOT instance ? prop THEN
                    RETURN (at || '/' || hookline.json_pointer_token(prop), 'is required'::text);
                END IF;
            END LOOP;
        END IF;
        IF schema ? 'dependentRequired' THEN
            FOR prop, sub IN SELECT * FROM jsonb_each(schema->'dependentRequired') LOOP
                CONTINUE WHEN NOT instance ? prop;
                FOR item IN SELECT jsonb_array_elements(sub) LOOP
                    IF NOT instance ? (item #>> '{}') THEN
                        RETURN (at || '/' || hookline.json_pointer_token(item #>> '{}'),
                                format('is required when %s is present', to_jsonb(prop)));
                    END IF;
                END LOOP;
            END LOOP;
        END IF;
        IF schema ?| ARRAY['minProperties', 'maxProperties'] THEN
            size := (SELECT count(*) FROM jsonb_object_keys(instance));
            IF size < (schema->>'minProperties')::numeric THEN
                RETURN (at, format('has fewer than %s properties', schema->>'minProperties'));
            ELSIF size > (schema->>'maxProperties')::numeric THEN
                RETURN (at, format('has more than %s properties', schema->>'maxProperties'));
            END IF;
        END IF;
        IF schema ? 'properties' THEN
            FOR prop, sub IN SELECT * FROM jsonb_each(schema->'properties') LOOP
                CONTINUE WHEN NOT instance ? prop;
                failure := hookline.schema_check(sub, instance->prop, root,
                                                 at || '/' || hookline.json_pointer_token(prop), depth + 1);
                IF failure IS NOT NULL THEN RETURN failure; END IF;
            END LOOP;
        END IF;
        IF schema ?| ARRAY['patternProperties', 'propertyNames']
           OR (schema ? 'additionalProperties'
               AND NOT names <@ jsonb_path_query_array(coalesce(schema->'properties', '{}'), '$.keyvalue().key')) THEN
            FOR prop, item IN SELECT * FROM jsonb_each(instance) LOOP
                IF schema ? 'propertyNames' THEN
                    failure := hookline.schema_check(schema->'propertyNames', to_jsonb(prop), root,
                                                     at || '/' || hookline.json_pointer_token(prop), depth + 1);
                    IF failure IS NOT NULL THEN
                        RETURN ((failure).pointer, 'is not an allowed property name: ' || (failure).message);
                    END IF;
                END IF;
                matched := coalesce(schema->'properties' ? prop, false);
                FOR sub IN SELECT p.value FROM jsonb_each(schema->'patternProperties') AS p WHERE prop ~ p.key LOOP
                    matched := true;
                    failure := hookline.schema_check(sub, item, root,
                                                     at || '/' || hookline.json_pointer_token(prop), depth + 1);
                    IF failure IS NOT NULL THEN RETURN failure; END IF;
                END LOOP;
                CONTINUE WHEN matched OR NOT schema ? 'additionalProperties';
                IF schema->'additionalProperties' = 'false'::jsonb THEN
                    RETURN (at || '/' || hookline.json_pointer_token(prop), 'is not an allowed property'::text);
                END IF;
                failure := hookline.schema_check(schema->'additionalProperties', item, root,
                                                 at || '/' || hookline.json_pointer_token(prop), depth + 1);
                IF failure IS NOT NULL THEN RETURN failure; END IF;
            END LOOP;
        END IF;
        IF schema ? 'dependentSchemas' THEN
            FOR prop, sub IN SELECT * FROM jsonb_each(schema->'dependentSchemas') LOOP
                CONTINUE WHEN NOT instance ? prop;
                failure := hookline.schema_check(sub, instance, root, at, depth + 1);
                IF failure IS NOT NULL THEN RETURN failure; END IF;
            END LOOP;
        END IF;

    ELSE
        NULL; -- booleans and null: only type, enum, const and the applicators above
    END CASE;
    RETURN NULL;
END
$$;

-- PL/pgSQL rather than SQL for this and the two below: called in a query's
-- FROM, a SQL function is planned afresh on every execution of that query.
CREATE OR REPLACE FUNCTION hookline.schema_violation(schema jsonb, instance jsonb)
RETURNS hookline.schema_violation
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN hookline.schema_check(schema, instance, schema, '', 0);
END
$$;

-- What PostgreSQL says of a regular expression it cannot compile, or NULL:
-- a schema's patterns are tried before the schema is stored.
CREATE OR REPLACE FUNCTION hookline.regex_error(pattern text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    PERFORM '' ~ pattern;
    RETURN NULL;
EXCEPTION WHEN invalid_regular_expression THEN
    RETURN SQLERRM;
END
$$;

-- How large a payload's JSON text may be for its schema to be checked. The
-- check runs in the producer's statement at about 10-30 µs a value; 256 KiB
-- bounds it to well under a second even for the smallest values (an array
-- of digits), and most payloads are far smaller. (Measuring the text costs
-- about 1 µs for a small payload, 9 ms for 700 KB; counting the values
-- with jsonb_path_query cost 35 µs and 470 ms.)
CREATE OR REPLACE FUNCTION hookline.schema_check_budget_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 262144 $$;

-- schema_check within the budget: a larger payload is a violation at its
-- top level (enforce refuses it, warn records it).
CREATE OR REPLACE FUNCTION hookline.budgeted_schema_check(schema jsonb, instance jsonb)
RETURNS hookline.schema_violation
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    size integer := octet_length(instance::text);
BEGIN
    IF size > hookline.schema_check_budget_bytes() THEN
        RETURN ROW('', format('the payload is %s bytes of JSON, more than the %s a schema check may look at',
                              size, hookline.schema_check_budget_bytes()))::hookline.schema_violation;
    END IF;
    RETURN hookline.schema_check(schema, instance, schema, '', 0);
END
$$;

-- The catalogue entry that applies to events of a type in a tenant: the
-- tenant's own, else the shared one.
CREATE OR REPLACE FUNCTION hookline.event_type_for(name text, tenant text) RETURNS hookline.event_types
LANGUAGE plpgsql STABLE AS $$
DECLARE
    applying hookline.event_types;
BEGIN
    SELECT t.* INTO applying FROM hookline.event_types AS t
     WHERE t.name = event_type_for.name AND coalesce(t.tenant, '') IN (event_type_for.tenant, '')
     ORDER BY t.tenant NULLS LAST LIMIT 1;
    RETURN applying;
END
$$;

-- What sending this payload as this type would meet: NULL when it would be
-- accepted as it is (or the type does not validate).
CREATE OR REPLACE FUNCTION hookline.payload_violation(event_type text, payload jsonb, tenant text DEFAULT 'default')
RETURNS hookline.schema_violation
LANGUAGE plpgsql STABLE AS $$
DECLARE
    applies hookline.event_types := hookline.event_type_for(event_type, tenant);
BEGIN
    IF applies.validation <> 'off' THEN
        RETURN hookline.budgeted_schema_check(applies.checked_schema, payload);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION hookline.events_check_schemas() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    checked   record;
    violation hookline.schema_violation;
BEGIN
    IF NOT EXISTS (SELECT FROM hookline.event_types AS t WHERE t.validation <> 'off') THEN
        RETURN NULL;
    END IF;
    FOR checked IN
        SELECT e.id AS event_id, e.tenant, e.event_type, e.payload, t.id AS type_id, t.checked_schema AS schema,
               t.validation
          FROM new_events AS e
         CROSS JOIN LATERAL hookline.event_type_for(e.event_type, e.tenant) AS t
        -- An endpoint's test event carries hookline's own sample payload.
         WHERE t.validation <> 'off' AND e.source <> 'test'
    LOOP
        violation := hookline.budgeted_schema_check(checked.schema, checked.payload);
        CONTINUE WHEN violation IS NULL;
        IF checked.validation = 'enforce' THEN
            RAISE EXCEPTION 'hookline: the payload does not match the schema of event type % at %: %',
                            checked.event_type,
                            CASE violation.pointer WHEN '' THEN 'its top level' ELSE violation.pointer END,
                            violation.message
                  USING ERRCODE = 'check_violation', SCHEMA = 'hookline', TABLE = 'events',
                        COLUMN = 'payload', CONSTRAINT = 'event_type_schema',
                        DETAIL = json_build_object('event_type', checked.event_type, 'pointer', violation.pointer,
                                                   'message', violation.message)::text,
                        HINT = 'hookline.payload_violation(event_type, payload, tenant) checks a payload without sending it.';
        END IF;
        INSERT INTO hookline.event_schema_warnings (event_id, event_type_id, tenant, pointer, message)
        VALUES (checked.event_id, checked.type_id, checked.tenant, violation.pointer, violation.message);
    END LOOP;
    RETURN NULL;
END
$$;

-- AFTER triggers fire in name order: this one before events_fan_out, so a
-- refused statement queues nothing first.
DROP TRIGGER IF EXISTS events_check_schemas ON hookline.events;
CREATE TRIGGER events_check_schemas
    AFTER INSERT ON hookline.events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT
    EXECUTE FUNCTION hookline.events_check_schemas();
