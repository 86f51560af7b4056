-- What every hookline process and every SQL producer must agree on, in the
-- database itself: a producer's INSERT is checked by triggers that cannot
-- see any process's environment. One row; `hookline migrate` writes what the
-- HOOKLINE_* variables set, and an operator may UPDATE it.
CREATE TABLE hookline.settings (
    one               boolean NOT NULL DEFAULT true,
    -- An event's payload as JSON text, in bytes, at most (HOOKLINE_MAX_PAYLOAD_BYTES).
    max_payload_bytes integer NOT NULL DEFAULT 1048576,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT settings_pkey PRIMARY KEY (one),
    CONSTRAINT settings_one_row CHECK (one),
    CONSTRAINT settings_max_payload_bytes_valid CHECK (max_payload_bytes BETWEEN 1024 AND 1073741823)
);
INSERT INTO hookline.settings DEFAULT VALUES;
