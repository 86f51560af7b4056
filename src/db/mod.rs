//! PostgreSQL access: the pool, the error type, and one module per table with
//! its statements as named constants beside the functions that run them.
//!
//! Functions take a `deadpool_postgres::GenericClient` (a pooled connection or
//! a transaction on one) and run fixed statements through `prepare_cached`:
//! one round trip instead of two, and no re-planning. List queries with
//! optional filters (`$n IS NULL OR …`) are the exception: they are prepared
//! afresh so the planner sees the actual filter and picks its index.

pub mod audit;
pub mod dashboard;
pub mod deliveries;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod lanes;
pub mod listen;
pub mod metrics;
pub mod migrate;
pub mod portal;
pub mod retention;
pub mod rollups;
pub mod sandboxes;
pub mod secrets;
pub mod settings;
pub mod sources;
pub mod stats;
pub mod tokens;
pub mod ui_sessions;
pub mod workers;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

pub use migrate::{migrate, schema_fingerprint};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("database error")]
    Pg(#[from] tokio_postgres::Error),
    #[error("database pool error")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    #[error("a stored secret cannot be opened")]
    Secret(#[from] crate::secrets::OpenError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection pool for `url`, opened lazily (no connection is made here).
pub fn pool(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))?;
    pool_from(config, max_size)
}

/// The worker's pool: like [`pool`], but unless `synchronous_commit` its
/// transactions commit without waiting for their WAL flush. A worker's
/// writes are claims and outcomes, never events: a PostgreSQL crash can
/// undo the last fraction of a second of them (the WAL writer flushes every
/// 200 ms), which only means those deliveries are sent again —
/// at-least-once holds, as it does for a lease cut short — while every
/// claim and completion saves a flush, the largest single cost of a
/// delivery at a light load (latency and CPU). Each transaction stays
/// atomic, and a killed worker loses nothing.
///
/// Its statements are also planned once per connection (a generic plan):
/// the claim and completion are fixed statements whose best plan does not
/// depend on their parameters, and PostgreSQL would otherwise plan them
/// afresh on every call, as its estimate of a generic plan over arrays of
/// unknown length looks worse than the custom ones. And they are never
/// compiled by the JIT: a generic plan over a table whose statistics lag a
/// burst is costed high enough to pass `jit_above_cost`, and compiling the
/// limited claim then took 170–390 ms of a statement that runs in 1.
pub fn worker_pool(url: &str, max_size: usize, synchronous_commit: bool) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))?;
    let mut options = config.get_options().map_or(String::new(), |o| format!("{o} "));
    options.push_str("-c plan_cache_mode=force_generic_plan -c jit=off");
    if !synchronous_commit {
        options.push_str(" -c synchronous_commit=off");
    }
    config.options(options);
    pool_from(config, max_size)
}

fn pool_from(config: tokio_postgres::Config, max_size: usize) -> anyhow::Result<Pool> {
    let manager =
        Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Ok(Pool::builder(manager).max_size(max_size).build()?)
}
