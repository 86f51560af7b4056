//! PostgreSQL access: the pool, the error type, and one module per table with
//! its statements as named constants beside the functions that run them.
//!
//! Functions take a `deadpool_postgres::GenericClient` (a pooled connection or
//! a transaction on one) and run fixed statements through `prepare_cached`:
//! one round trip instead of two, and no re-planning. List queries with
//! optional filters (`$n IS NULL OR …`) are the exception: they are prepared
//! afresh so the planner sees the actual filter and picks its index.

pub mod audit;
pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod metrics;
pub mod migrate;
pub mod rollups;
pub mod sources;
pub mod stats;
pub mod tokens;
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection pool for `url`, opened lazily (no connection is made here).
pub fn pool(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))?;
    let manager =
        Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Ok(Pool::builder(manager).max_size(max_size).build()?)
}
