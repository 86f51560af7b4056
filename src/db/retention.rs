//! Retention by partitions (see `sql/160_partitions.sql`): the history's
//! partitions created ahead, those past retention dropped once nothing open
//! is in them, and old hourly rollups deleted.

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

use super::Result;

/// How many days history and statistics are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub history_days: i32,
    pub stats_days: i32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { history_days: 30, stats_days: 400 }
    }
}

impl Retention {
    /// Days one partition spans: a quarter of the history's retention, at
    /// most a week. History is then kept for its retention and at most this
    /// much longer, in few partitions (see `sql/160_partitions.sql`).
    pub fn partition_days(self) -> i32 {
        (self.history_days / 4).clamp(1, 7)
    }
}

/// Days of partitions kept ready ahead of today: a week without any worker
/// or `hookline maintain` still finds them there.
pub const DAYS_AHEAD: i32 = 7;

/// Arbitrary, fixed: "hl-keep" in ASCII. One session maintains at a time.
const MAINTAIN_LOCK_KEY: i64 = 0x0068_6c2d_6b65_6570;

/// How long creating or dropping a partition may wait for its lock before
/// it is left for the next round: writers queue behind a waiting lock.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '200ms'";

const CREATE_PARTITIONS: &str = "SELECT hookline.create_partitions($1, $2, $3)";
const EXPIRED_PARTITIONS: &str =
    "SELECT partition_name, kept FROM hookline.expired_partitions(make_interval(days => $1), $2)";
const DETACH_PARTITION: &str = "SELECT hookline.detach_partition($1)";
const DROP_EXPIRED_TABLES: &str = "SELECT hookline.drop_expired_tables()";
const ANALYZE_PARENTS: &str =
    "ANALYZE hookline.events, hookline.deliveries, hookline.attempts, hookline.batch_attempts";
const DROP_EXPIRED_ROLLUPS: &str = "SELECT hookline.drop_expired_rollups(make_interval(days => $1), $2)";

/// What one round of maintenance did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintained {
    pub created: i32,
    pub dropped: Vec<String>,
    /// Partitions past retention kept for open work, or whose lock was not
    /// granted in time: the next round tries again.
    pub kept: Vec<String>,
    pub rollup_rows_deleted: i64,
    /// Expired sandboxes deleted, with their endpoints.
    pub sandboxes_deleted: i64,
    /// Dashboard sessions past their idle or absolute lifetime, and expired
    /// portal links (with their sessions).
    pub ui_sessions_deleted: i64,
}

/// One round by the clock `at` (`None`: the database's), unless another
/// session is maintaining right now (`None`).
/// Each step is a transaction of its own: creating comes first, so a drop
/// that fails never leaves tomorrow without its partitions, and each detach
/// holds its table's lock only for itself.
pub async fn maintain(
    client: &mut deadpool_postgres::Client,
    retention: Retention,
    at: Option<DateTime<Utc>>,
) -> Result<Option<Maintained>> {
    if !client.query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTAIN_LOCK_KEY]).await?.get::<_, bool>(0) {
        return Ok(None);
    }
    let result = maintain_locked(client, retention, at).await;
    // The lock is session-level (it spans the transactions); the connection
    // goes back to the pool, so release it whatever happened.
    client.execute("SELECT pg_advisory_unlock($1)", &[&MAINTAIN_LOCK_KEY]).await?;
    result.map(Some)
}

async fn maintain_locked(
    client: &mut deadpool_postgres::Client,
    retention: Retention,
    at: Option<DateTime<Utc>>,
) -> Result<Maintained> {
    let mut done = Maintained::default();
    let tx = client.transaction().await?;
    tx.batch_execute(LOCK_TIMEOUT).await?;
    // Attaching locks the default partition: a busy one is tried next round
    // (a week of partitions stands ready), and the drops still go on.
    match tx.query_one(CREATE_PARTITIONS, &[&DAYS_AHEAD, &retention.partition_days(), &at]).await {
        Ok(row) => {
            done.created = row.get(0);
            tx.commit().await?;
        }
        Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => tx.rollback().await?,
        Err(error) => return Err(error.into()),
    }

    for row in client.query(EXPIRED_PARTITIONS, &[&retention.history_days, &at]).await? {
        let (name, kept): (String, bool) = (row.get(0), row.get(1));
        if !kept && detach_partition(client, &name).await? {
            done.dropped.push(name);
        } else {
            done.kept.push(name);
        }
    }
    // Removing the files of a large partition takes a while: under no lock
    // of the table, and also for what a process that died here left.
    client.query(DROP_EXPIRED_TABLES, &[]).await?;
    done.rollup_rows_deleted = client.query_one(DROP_EXPIRED_ROLLUPS, &[&retention.stats_days, &at]).await?.get(0);
    done.sandboxes_deleted = super::sandboxes::delete_expired(&*client).await?;
    done.ui_sessions_deleted =
        super::ui_sessions::delete_expired(&*client).await? + super::portal::delete_expired(&*client).await?;
    // Autovacuum analyzes partitions, never their parents, whose statistics
    // plans across partitions use: renewed when the partitions change.
    if done.created > 0 || !done.dropped.is_empty() {
        client.batch_execute(ANALYZE_PARENTS).await?;
    }
    Ok(done)
}

/// Whether the partition left its table; a lock not granted in time is a
/// "not yet".
async fn detach_partition(client: &mut deadpool_postgres::Client, name: &str) -> Result<bool> {
    let tx = client.transaction().await?;
    tx.batch_execute(LOCK_TIMEOUT).await?;
    match tx.query_one(DETACH_PARTITION, &[&name]).await {
        Ok(row) => {
            tx.commit().await?;
            Ok(row.get(0))
        }
        Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Creates the partitions ahead (for `migrate`: a new installation has its
/// days before its first event), after any maintenance under way.
pub async fn create_ahead(client: &mut deadpool_postgres::Client, retention: Retention) -> Result<i32> {
    let now: Option<DateTime<Utc>> = None;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MAINTAIN_LOCK_KEY]).await?;
    let created = tx.query_one(CREATE_PARTITIONS, &[&DAYS_AHEAD, &retention.partition_days(), &now]).await?.get(0);
    tx.commit().await?;
    Ok(created)
}
