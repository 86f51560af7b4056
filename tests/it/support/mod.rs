//! Test harness: a database per test cloned from a migrated template, a real
//! HTTP receiver on 127.0.0.1, and workers in-process or as real processes.

pub mod api;
pub mod browser;
pub mod db;
pub mod drive;
pub mod explain;
pub mod receiver;
pub mod worker;

use std::time::Duration;

/// The key every test's hookline seals endpoint secrets with, in process
/// and in the processes tests start (HOOKLINE_SECRET_KEY).
pub const TEST_SECRET_KEY: &str = "aG9va2xpbmUgdGVzdCBrZXk6IG5vdCBhIHNlY3JldCE=";

pub fn test_keys() -> hookline::secrets::KeyRing {
    hookline::secrets::KeyRing::parse(TEST_SECRET_KEY).unwrap()
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An endpoint row with test-friendly defaults, inserted with plain SQL.
pub struct NewEndpoint<'a> {
    pub url: &'a str,
    pub tenant: &'a str,
    pub event_types: &'a [&'a str],
    pub retry_schedule: Option<Vec<f64>>,
    pub headers: serde_json::Value,
    pub http_method: &'a str,
    pub timeout_ms: i32,
    pub enabled: bool,
    pub rate_limit_per_s: Option<i32>,
    pub max_in_flight: Option<i32>,
}

impl Default for NewEndpoint<'_> {
    fn default() -> Self {
        NewEndpoint {
            url: "http://127.0.0.1:9/unused",
            tenant: "default",
            event_types: &[],
            retry_schedule: None,
            headers: serde_json::json!({}),
            http_method: "POST",
            timeout_ms: 5000,
            enabled: true,
            rate_limit_per_s: None,
            max_in_flight: None,
        }
    }
}

impl NewEndpoint<'_> {
    pub async fn insert(&self, db: &db::TestDb) -> uuid::Uuid {
        db.client()
            .await
            .query_one(
                "INSERT INTO hookline.endpoints (url, tenant, event_types, retry_schedule, headers, http_method,
                                                 timeout_ms, enabled, rate_limit_per_s, max_in_flight)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                &[
                    &self.url,
                    &self.tenant,
                    &self.event_types,
                    &self.retry_schedule,
                    &self.headers,
                    &self.http_method,
                    &self.timeout_ms,
                    &self.enabled,
                    &self.rate_limit_per_s,
                    &self.max_in_flight,
                ],
            )
            .await
            .expect("insert endpoint")
            .get(0)
    }
}

/// An endpoint's signing secret: the stored one, opened (a worker seals
/// the plaintext ones SQL writes).
pub async fn endpoint_secret(db: &db::TestDb, endpoint: uuid::Uuid) -> String {
    let stored: String = db
        .client()
        .await
        .query_one("SELECT secret FROM hookline.endpoints WHERE id = $1", &[&endpoint])
        .await
        .unwrap()
        .get(0);
    test_keys().open(&hookline::secrets::StoredSecret::from_stored(stored)).unwrap()
}

/// Counts rows matching a query that returns one bigint.
pub async fn count(db: &db::TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}
