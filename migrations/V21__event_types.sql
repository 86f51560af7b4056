-- The event-type catalogue (issue 12): the types producers publish, each with
-- an optional JSON Schema that events of the type are checked against,
-- inside PostgreSQL, for every producer (sql/025_event_types.sql).
--
-- A type with no tenant is shared by every tenant; a tenant's own type of
-- the same name takes its place for that tenant.
CREATE TABLE hookline.event_types (
    id          uuid        NOT NULL DEFAULT hookline.uuid_v7(),
    name        text        NOT NULL,
    tenant      text,
    description text        NOT NULL DEFAULT '',
    -- A JSON Schema (draft 2020-12): an object, or true/false.
    schema      jsonb,
    -- The same as the database checks it: its patterns in PostgreSQL's
    -- terms with ECMA-262's meaning (src/domain/schema.rs, translate).
    checked_schema jsonb,
    example     jsonb,
    deprecated  boolean     NOT NULL DEFAULT false,
    -- off: not checked; warn: accepted and recorded in
    -- event_schema_warnings; enforce: refused.
    validation  text        NOT NULL DEFAULT 'off',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_types_pkey PRIMARY KEY (id),
    CONSTRAINT event_types_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT event_types_tenant_length CHECK (char_length(tenant) BETWEEN 1 AND 100),
    CONSTRAINT event_types_description_length CHECK (char_length(description) <= 1000),
    CONSTRAINT event_types_validation_valid CHECK (validation IN ('off', 'warn', 'enforce')),
    CONSTRAINT event_types_schema_kind CHECK (jsonb_typeof(schema) IN ('object', 'boolean')),
    CONSTRAINT event_types_schema_size CHECK (pg_column_size(schema) <= 262144),
    CONSTRAINT event_types_example_size CHECK (pg_column_size(example) <= 262144),
    CONSTRAINT event_types_validation_needs_schema CHECK (validation = 'off' OR schema IS NOT NULL),
    CONSTRAINT event_types_schema_checked CHECK ((schema IS NULL) = (checked_schema IS NULL))
);

-- One type per name and tenant, and one shared type per name.
CREATE UNIQUE INDEX event_types_name_tenant ON hookline.event_types (name, coalesce(tenant, ''));
-- What the events trigger asks first: does any type check payloads at all?
CREATE INDEX event_types_validating ON hookline.event_types (name) WHERE validation <> 'off';

-- The first place a payload fails its schema, or NULL (the validator's answer).
CREATE TYPE hookline.schema_violation AS (pointer text, message text);

-- Events a `warn` type accepted although their payload fails its schema.
-- Insert-only, one row per such event; its rows go with their events'
-- partitions (hookline.drop_expired_tables).
CREATE TABLE hookline.event_schema_warnings (
    event_id      uuid        NOT NULL,
    event_type_id uuid        NOT NULL,
    -- The event's: a shared type's counts are told apart per tenant.
    tenant        text        NOT NULL,
    pointer       text        NOT NULL,
    message       text        NOT NULL,
    CONSTRAINT event_schema_warnings_pkey PRIMARY KEY (event_id)
);
CREATE INDEX event_schema_warnings_type ON hookline.event_schema_warnings (event_type_id, event_id);

