//! hookline: webhook delivery whose whole state lives in PostgreSQL.
//!
//! # Layout
//!
//! - [`config`] — settings from flags, `HOOKLINE_*` variables and a TOML file.
//! - [`db`] — the pool, migrations, LISTEN, and one module of named statements per table.
//! - [`domain`] — delivery states, error kinds, the retry schedule; no IO.
//! - [`signing`] — Standard Webhooks signatures.
//! - [`secrets`] — endpoint and source secrets sealed at rest (HOOKLINE_SECRET_KEY).
//! - [`worker`] — claims due deliveries, sends them, records outcomes.
//! - [`inbound`] — verifying and counting webhooks third parties send us.
//! - [`api`] — the HTTP API (poem-openapi) and its OpenAPI document.
//! - [`ui`] — the operator dashboard (`/ui`) and the tenant portal (`/portal`): HTML
//!   pages that act through the API's operations.
//! - [`remembered`] — a short memory of lookups, unknown keys apart (tokens, sources),
//!   forgotten when the database says they changed ([`api::changes`]).
//! - [`pg_local`] — a throwaway PostgreSQL from the local binaries (`hookline dev`, tests, bench).
//! - [`dev`] — `hookline dev`, the one-command first run.
//! - [`telemetry`] — logging.
//!
//! The SQL half lives in `migrations/` (tables) and `sql/` (the public
//! functions, triggers and views that producers and dashboards use).

pub mod api;
pub mod config;
pub mod db;
pub mod dev;
pub mod domain;
pub mod inbound;
pub mod pg_local;
pub mod remembered;
pub mod secrets;
pub mod signing;
pub mod telemetry;
pub mod ui;
pub mod worker;
