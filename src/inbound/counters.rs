//! Per-source counts of what the receiver did, kept in memory and added to
//! `hookline.source_state` every second: a flood of forged requests then
//! costs one row update a second instead of one per request. Counts of the
//! last second are lost if the process is killed (the events never are).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::db::{self, sources::CountsDelta};

const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Counters {
    pending: Mutex<HashMap<Uuid, CountsDelta>>,
}

impl Counters {
    fn entry<R>(&self, source: Uuid, change: impl FnOnce(&mut CountsDelta) -> R) -> R {
        let mut pending = self.pending.lock().expect("not poisoned");
        let delta = pending.entry(source).or_insert_with(|| CountsDelta {
            source_id: source,
            accepted: 0,
            duplicates: 0,
            failed: 0,
            last_accepted_at: None,
            last_failed_at: None,
            last_failure: None,
        });
        change(delta)
    }

    /// A verified request, stored (`duplicate` false) or already stored.
    pub fn accepted(&self, source: Uuid, duplicate: bool) {
        self.entry(source, |d| {
            if duplicate {
                d.duplicates += 1;
            } else {
                d.accepted += 1;
            }
            d.last_accepted_at = Some(Utc::now());
        });
    }

    /// A request refused by verification, and why.
    pub fn failed(&self, source: Uuid, reason: String) {
        self.entry(source, |d| {
            d.failed += 1;
            d.last_failed_at = Some(Utc::now());
            d.last_failure = Some(reason);
        });
    }

    /// Adds the counts so far to the database; on failure they are kept for
    /// the next flush.
    pub async fn flush(&self, pool: &Pool) -> db::Result<()> {
        let deltas: Vec<CountsDelta> =
            std::mem::take(&mut *self.pending.lock().expect("not poisoned")).into_values().collect();
        if deltas.is_empty() {
            return Ok(());
        }
        let written = match pool.get().await {
            Ok(client) => db::sources::add_counts(&client, &deltas).await,
            Err(error) => Err(error.into()),
        };
        if written.is_err() {
            for d in deltas {
                self.entry(d.source_id, |mine| {
                    mine.accepted += d.accepted;
                    mine.duplicates += d.duplicates;
                    mine.failed += d.failed;
                    mine.last_accepted_at = mine.last_accepted_at.max(d.last_accepted_at);
                    if mine.last_failed_at < d.last_failed_at {
                        mine.last_failed_at = d.last_failed_at;
                        mine.last_failure = d.last_failure;
                    }
                });
            }
        }
        written
    }

    /// Flushes every second for as long as `counters` is alive.
    pub fn spawn_flusher(counters: &Arc<Counters>, pool: Pool) {
        let counters: Weak<Counters> = Arc::downgrade(counters);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                let Some(counters) = counters.upgrade() else { break };
                if let Err(error) = counters.flush(&pool).await {
                    tracing::warn!(error = %crate::telemetry::error_chain(&error), "could not record source counts; retrying");
                }
            }
        });
    }
}
